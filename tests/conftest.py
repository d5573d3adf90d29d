"""Shared fixtures: paths of the spec library and a helper to load a spec from text."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import resgraph

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` (the README's command): one thread per worker, or two workers' torch threads fight over
    # two cores. Set before any test imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
CASES = Path(__file__).resolve().parent / "cases"


def spec_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _through_file(tmp_path, api):
    """`api` (resgraph.load or resgraph.validate) on YAML text written to a file, so that includes and
    spans work."""

    def call(text: str, name: str = "spec.yaml", **kwargs):
        path = tmp_path / name
        path.write_text(spec_text(text))
        return api(path, **kwargs)

    return call


@pytest.fixture
def load_text(tmp_path):
    return _through_file(tmp_path, resgraph.load)


@pytest.fixture
def validate_text(tmp_path):
    return _through_file(tmp_path, resgraph.validate)


def exported_outputs(network, tmp_path, x):
    """The outputs for `x` of the network compiled (seed 0, eval) and of its `.pt2` and `.onnx` exports: the first
    as `forward` returns it, the other two as dicts (the ONNX one by output name, in the session's order)."""
    import onnxruntime
    import torch

    from resgraph.export import export

    model = resgraph.compile(network, seed=0).eval()
    with torch.no_grad():
        want = model(x)
    program = torch.export.load(str(export(network, tmp_path / "net.pt2", seed=0)))
    session = onnxruntime.InferenceSession(str(export(network, tmp_path / "net.onnx", seed=0)),
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    got = session.run(None, {"input": x.numpy()})
    return want, dict(program.module()(x)), dict(zip(names, map(torch.from_numpy, got)))


def randomize_batch_norm(model):
    """Seeded random batch-norm statistics and affine parameters, so that an eval-mode comparison
    exercises every buffer (fresh ones are 0 and 1, which hide a swapped or missing key)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for tensor, low, high in ((module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 1.5),
                                          (module.weight, 0.5, 1.5), (module.bias, -0.5, 0.5)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


def randomize_norms(model):
    """Seeded random affine parameters of layer, group and RMS norms (fresh ones are 1 and 0, which hide a
    swapped or missing key); batch norms are `randomize_batch_norm`'s."""
    import torch

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm)):
                for tensor, low, high in ((module.weight, 0.5, 1.5), (getattr(module, "bias", None), -0.5, 0.5)):
                    if tensor is not None:
                        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture
def plugins_on_path(monkeypatch):
    """The example plugin packages (tests/plugins/src) importable; every op they register, every module
    they add and resgraph's record of loaded plugins are undone afterwards, so other tests see the built-in
    registry."""
    import sys

    from resgraph import plugins
    from resgraph.ops import REGISTRY

    registry, modules = dict(REGISTRY), set(sys.modules)
    monkeypatch.syspath_prepend(str(PLUGINS / "src"))
    yield PLUGINS
    REGISTRY.clear()
    REGISTRY.update(registry)
    for name in set(sys.modules) - modules:
        if name.startswith(("resgraph_cbam", "resgraph_broken")):
            del sys.modules[name]
    plugins._loaded.clear()

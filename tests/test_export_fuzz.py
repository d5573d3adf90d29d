"""Differential fuzz: random small valid networks (tests/netgen.py), each compiled and exported; the
exported module must compute what the compiled one computes, on every output, with the compiled
weights (strict load_state_dict, batch-norm statistics randomised, eval mode), and must draw the
same initial weights from one seed. A subset also goes through .pt2 (torch.export) and .onnx
(onnxruntime). The default run checks a few hundred networks; `-m slow` (or RESGRAPH_SLOW=1) runs
10,000 (results in docs/security.md)."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import time

import pytest
import torch

import resgraph
from resgraph.export import export

from .hostile import SIDE_EFFECT_FILE, TEXTS, yaml_string
from .netgen import random_network

DEFAULT_COUNT = 200
SLOW_COUNT = int(os.environ.get("RESGRAPH_FUZZ_COUNT", "10000"))


class Mismatch(AssertionError):
    pass


def randomize_norms(model):
    """Seeded random statistics and affine parameters of every norm (conftest's `randomize_batch_norm`, also
    for norms without affine parameters, group and layer norms), so that eval-mode comparisons see every buffer."""
    generator = torch.Generator().manual_seed(0)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, norms):
                for attribute, low, high in (("running_mean", -0.5, 0.5), ("running_var", 0.5, 1.5),
                                             ("weight", 0.5, 1.5), ("bias", -0.5, 0.5)):
                    tensor = getattr(module, attribute, None)
                    if tensor is not None:
                        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # a file resgraph generated from our own random specs
    return module


def _outputs(result):
    return list(result) if isinstance(result, tuple) else [result]


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is several times faster than many on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_network(seed: int, directory, formats=("py",), name: str | None = None) -> bool:
    """Compile and export the random network `seed` (called `name`: any text); raise Mismatch with its spec
    where they differ. Returns False for the rare generated spec that is not valid (nothing to compare)."""
    text = random_network(seed)
    if name is not None:
        text = text.replace("name: fuzz\n", f"name: {yaml_string(name)}\n")
    spec = directory / f"fuzz{seed}.yaml"
    spec.write_text(text)
    try:
        network = resgraph.load(spec)
    except resgraph.SpecError:
        return False
    model = randomize_norms(resgraph.compile(network, seed=seed)).eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(2, *shape, generator=generator) for shape in network.input_shapes.values()]
    with torch.no_grad():
        expected = _outputs(model(*inputs))

    def compare(what, got):
        if len(got) != len(expected):
            raise Mismatch(f"{what}: {len(got)} outputs, compiled {len(expected)}\n{text}")
        for index, (a, b) in enumerate(zip(got, expected)):
            # .py runs torch's own kernels: 1e-5 absolute, the parity standard. onnxruntime's kernels round
            # otherwise: 1e-5 of the output's magnitude (seed 4600 has values of 256, differing by 4.6e-5).
            tolerance = 1e-5 if what == ".py" else 1e-5 * max(1.0, b.abs().max().item())
            if a.shape != b.shape or not (a - b).abs().max().item() <= tolerance:
                raise Mismatch(f"{what}: output {index} differs\n{text}")

    if "py" in formats:
        path = export(network, directory / f"fuzz{seed}.py")
        module = _import(path, f"resgraph_fuzz_{seed}")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            cls = getattr(module, [node.name for node in tree.body if isinstance(node, ast.ClassDef)][-1])
            ejected = cls()
            ejected.load_state_dict(model.state_dict(), strict=True)
            with torch.no_grad():
                compare(".py", _outputs(ejected.eval()(*inputs)))
            # the same initial weights from one seed, drawn from the global RNG by both
            torch.manual_seed(seed)
            fresh = cls().state_dict()
            torch.manual_seed(seed)
            compiled = resgraph.compile(network, seed=None).state_dict()
            if fresh.keys() != compiled.keys() or any(not torch.equal(fresh[k], compiled[k]) for k in fresh):
                raise Mismatch(f".py: initial weights differ from compile's\n{text}")
        finally:
            sys.modules.pop(f"resgraph_fuzz_{seed}", None)
    if "pt2" in formats:
        program = torch.export.load(str(export(network, directory / f"fuzz{seed}.pt2", seed=seed)))
        module = program.module()
        module.load_state_dict(model.state_dict(), strict=True)   # the exported buffers, then the randomised ones
        with torch.no_grad():
            compare(".pt2", _outputs(module(*inputs)))
    if "onnx" in formats:
        import onnxruntime

        path = export(network, directory / f"fuzz{seed}.onnx", seed=seed)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fresh = resgraph.compile(network, seed=seed).eval()   # what the file holds: compile's weights, seed `seed`
        with torch.no_grad():
            expected = _outputs(fresh(*inputs))
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
        compare(".onnx", [torch.from_numpy(o) for o in session.run(None, feeds)])
    return True


def test_the_generator_makes_valid_varied_networks(tmp_path):
    texts = [random_network(seed) for seed in range(200)]
    assert len(set(texts)) == 200
    joined = "\n".join(texts)
    for op in ("conv2d", "shortcut: pad", "shortcut: project", "concat", "mul", "flatten", "linear", "layernorm",
               "groupnorm", "maxpool2d", "image"):
        assert op in joined, op
    assert any(text.count("outputs: [") and text.split("outputs: [")[1].count(",") >= 1 for text in texts)


def test_compiled_and_exported_python_agree_on_random_networks(tmp_path, one_thread):
    checked = sum(check_network(seed, tmp_path) for seed in range(DEFAULT_COUNT))
    assert checked >= DEFAULT_COUNT * 0.9, checked   # the generator makes valid specs


def test_compiled_pt2_and_onnx_agree_on_a_random_network_with_a_hostile_name(tmp_path, one_thread):
    """One network of the slow run's subset, named with every hostile text at once (tests/hostile.py):
    the exporters see the name and doc only as text (onnx.checker), and compute what compile does."""
    formats = ["py", "pt2"]
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        formats.append("onnx")
    seed = next(s for s in range(100, 200) if "shortcut: p" in random_network(s) and "concat" in random_network(s))
    assert check_network(seed, tmp_path, formats, name="".join(TEXTS))
    if "onnx" in formats:
        import onnx

        onnx.checker.check_model(onnx.load(str(tmp_path / f"fuzz{seed}.onnx")), full_check=True)
    assert not (tmp_path / SIDE_EFFECT_FILE).exists()


@pytest.mark.slow
def test_ten_thousand_random_networks(tmp_path, request, one_thread):
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("RESGRAPH_SLOW"):
        pytest.skip("slow: run with -m slow or RESGRAPH_SLOW=1")
    start, failures, checked = time.monotonic(), [], 0
    for seed in range(1000, 1000 + SLOW_COUNT):
        formats = ("py", "pt2", "onnx") if seed % 200 == 0 else ("py",)
        try:
            checked += check_network(seed, tmp_path, formats)
        except Exception as error:   # collect them all, report at the end
            failures.append(f"seed {seed}: {type(error).__name__}: {error}")
        if seed % 500 == 0:
            print(f"{seed - 1000 + 1} networks, {checked} valid, {len(failures)} failures, "
                  f"{time.monotonic() - start:.0f} s", flush=True)
        for path in tmp_path.iterdir():
            path.unlink()
    print(f"done: {SLOW_COUNT} generated, {checked} checked, {len(failures)} failures, "
          f"{time.monotonic() - start:.0f} s", flush=True)
    assert not failures, "\n\n".join(failures[:20])

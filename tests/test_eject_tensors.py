"""Eject of `parameter` and `buffer` nodes, dotted `key`s and named repetitions (`names`, `start`): the ejected
class has the compiled module's state_dict keys in the same order, draws the same initial weights from one
seed, and computes the same outputs from the same weights."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

import resgraph
from resgraph.eject import eject_network

from .conftest import SPECS, randomize_batch_norm, randomize_norms


def ejected_class(tmp_path, network, name):
    """Eject `network` to a file, import it (a fresh module) and return its network class."""
    source = eject_network(network)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"ejected_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, re.findall(r"^class (\w+)\(nn\.Module\):", source, re.M)[-1]), source


# Small configurations of the specs, to stay fast (the full sizes, ViT-B/16 at 224x224 included, were checked
# the same way by hand).
SMALL = [
    ("convnext_tiny", {"num_classes": 10, "dims": [8, 16, 24, 32], "depths": [1, 1, 2, 1]}, 32),
    ("vit_b_16", {"num_classes": 10, "image_size": 32, "hidden": 32, "heads": 2, "mlp_dim": 64, "layers": 2}, 32),
    ("regnet_y_400mf", {"num_classes": 10, "widths": [8, 16, 24, 32], "depths": [1, 2, 1, 1]}, 32),
    ("shufflenet_v2_x1_0", {"num_classes": 10}, 32),
]


@pytest.mark.parametrize("name, params, size", SMALL, ids=[s[0] for s in SMALL])
def test_keyed_specs_eject_with_the_compiled_state_dict_and_outputs(tmp_path, name, params, size):
    network = resgraph.load(SPECS / f"{name}.yaml", params)
    cls, _ = ejected_class(tmp_path, network, name)
    torch.manual_seed(0)
    compiled = network.compile(seed=None)
    torch.manual_seed(0)
    ejected = cls().eval()
    assert list(ejected.state_dict()) == list(compiled.state_dict())
    for key, value in compiled.state_dict().items():   # the same initial weights from the same seed
        assert torch.equal(ejected.state_dict()[key], value), key
    randomize_norms(randomize_batch_norm(compiled)).eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ejected(x) - compiled(x)).abs().max().item() <= 1e-5


TENSORS = """
resgraph: 1
name: tensors
blocks:
  unit:
    params: {c: 4}
    nodes:
      conv: {op: conv2d, out: c, kernel: 3, padding: 1, key: body.0}
      bn: {op: batchnorm2d, key: body.1}
      scale: {op: parameter, shape: [c, 1, 1], batch: false, init: uniform, low: -1, high: 2, key: gamma.0}
      scaled: {op: mul, inputs: [bn, scale]}
params: {c: 4}
input: [4, 8, 8]
nodes:
  stem: {op: conv2d, out: c, kernel: 1, key: stem.conv}
  offset: {op: parameter, shape: [c, 8, 8], init: trunc_normal, std: 0.5, key: stem.offset}
  shifted: {op: add, inputs: [stem, offset]}
  stages: {block: unit, repeat: 2, names: "stage{i}", start: 1, key: trunk.stages, with: {c: c}}
  bias: {op: parameter, shape: [c, 8, 8], init: normal, mean: 1, std: 2}
  biased: {op: add, inputs: [stages, bias]}
  fixed: {op: buffer, generator: ones, shape: [c, 8, 8], key: consts.0}
  gated: {op: mul, inputs: [biased, fixed]}
  rows: {op: reshape, shape: [c, 64]}
  table: {op: buffer, generator: sinusoidal, shape: [4, 64], batch: true, persistent: false, key: consts.1}
  tabled: {op: add, inputs: [rows, table]}
  one: {op: parameter, shape: [1, 1], init: constant, value: 0.25}
  out: {op: mul, inputs: [tabled, one]}
"""


def test_parameters_buffers_keys_and_names_draw_the_compiled_weights(tmp_path, load_text):
    network = load_text(TENSORS)
    cls, source = ejected_class(tmp_path, network, "tensors")
    torch.manual_seed(3)
    compiled = network.compile(seed=None)   # drawn from the global RNG, as the ejected class draws
    torch.manual_seed(3)
    ejected = cls()
    expected, got = compiled.state_dict(), ejected.state_dict()
    assert list(got) == list(expected)
    assert "trunk.stages.stage1.gamma.0" in got and "consts.1" not in got   # `persistent: false` stays out
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    buffers = dict(compiled.named_buffers()), dict(ejected.named_buffers())
    assert torch.equal(buffers[1]["consts.1"], buffers[0]["consts.1"])
    assert 'OrderedDict(' in source and '("stage1", Unit(' in source and "self.consts.register_buffer(" in source
    randomize_batch_norm(compiled).eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    ejected.eval()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ejected(x) - compiled(x)).abs().max().item() <= 1e-5

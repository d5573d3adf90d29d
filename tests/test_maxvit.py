"""MaxViT's composite op `relative_position_attention` (resgraph/ops/maxvit.py) and the blocks of
specs/blocks/maxvit.yaml against torchvision's own modules (models/maxvit.py): shapes, parameter counts,
state_dict keys, MACs against FlopCounterMode and equal outputs; and the `.py` export of a small MaxViT."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import maxvit as tv_maxvit

import resgraph
from resgraph.eject import eject_network

from .conftest import SPECS, randomize_batch_norm, randomize_norms
from .zoo import randomize


def _load_text(tmp_path, text: str, params=None):
    path = tmp_path / "net.yaml"
    path.write_text(text)
    return resgraph.load(path, params=params, include_path=[SPECS])


ATTENTION = """
resgraph: 1
params: {groups: 2, side: 2, features: 8, head_dim: 4}
input: [groups, side * side, features]
nodes:
  attention: {op: relative_position_attention, head_dim: head_dim}
"""


def _macs(module, x) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


@settings(derandomize=True, database=None, max_examples=6, deadline=None)
@given(groups=st.integers(1, 3), side=st.integers(1, 4), heads=st.integers(1, 3), head_dim=st.integers(1, 6))
def test_relative_position_attention_is_torchvisions_module(tmp_path_factory, groups, side, heads, head_dim):
    features = heads * head_dim
    network = _load_text(tmp_path_factory.mktemp("attention"), ATTENTION,
                         {"groups": groups, "side": side, "features": features, "head_dim": head_dim})
    torch.manual_seed(0)
    reference = tv_maxvit.RelativePositionalMultiHeadAttention(features, head_dim, side * side).eval()
    compiled = resgraph.compile(network).eval()
    node = network.graph.nodes["attention"]
    assert node.shape == (groups, side * side, features)
    assert network.params == sum(p.numel() for p in reference.parameters())
    assert [(k, v.shape) for k, v in compiled.state_dict().items()] == \
        [(k.join(["attention.", ""]), v.shape) for k, v in reference.state_dict().items()]
    compiled.load_state_dict({f"attention.{k}": v for k, v in reference.state_dict().items()}, strict=True)
    x = torch.randn(2, groups, side * side, features, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(compiled(x), reference(x))
    if side > 1 and head_dim > 1:
        # (torch's einsum computes a contraction of length 1, over one token or one feature, as an elementwise
        # product, which FlopCounterMode does not count; real windows and heads are longer)
        assert network.macs == _macs(reference, x[:1])


PARTITION = """
resgraph: 1
include: [blocks/maxvit.yaml]
params: {grid: false}
input: [16, 8, 8]
nodes:
  layer: {block: partition_attention, with: {head_dim: 8, partition: 4, grid: grid}}
"""


@pytest.mark.parametrize("kind", ["window", "grid"])
def test_partition_attention_is_torchvisions_layer(tmp_path, kind):
    network = _load_text(tmp_path, PARTITION, {"grid": kind == "grid"})
    torch.manual_seed(0)
    reference = tv_maxvit.PartitionAttentionLayer(16, 8, 4, kind, (8, 8), 4, torch.nn.GELU, torch.nn.LayerNorm,
                                                  0.0, 0.0, 0.0).eval()
    randomize(reference)
    compiled = resgraph.compile(network).eval()
    theirs = {f"layer.{k}": v for k, v in reference.state_dict().items()}
    assert [(k, v.shape) for k, v in compiled.state_dict().items()] == [(k, v.shape) for k, v in theirs.items()]
    compiled.load_state_dict(theirs, strict=True)
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (compiled(x) - reference(x)).abs().max().item() <= 1e-6
    assert network.macs == _macs(reference, x[:1])


MBCONV = """
resgraph: 1
include: [blocks/maxvit.yaml]
params: {out: 16, stride: 2}
input: [8, 8, 8]
nodes:
  mbconv: {block: mbconv, with: {out: out, stride: stride}}
"""


# (the identity shortcut is in every maxvit_t layer but the first of a stage: test_zoo's parity covers it)
@pytest.mark.parametrize("out, stride", [(16, 2), (16, 1)], ids=["pooled", "projected"])
def test_mbconv_is_torchvisions(tmp_path, out, stride):
    network = _load_text(tmp_path, MBCONV, {"out": out, "stride": stride})
    torch.manual_seed(0)
    norm = lambda channels: torch.nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # noqa: E731
    reference = tv_maxvit.MBConv(8, out, 4, 0.25, stride, torch.nn.GELU, norm).eval()
    randomize(reference)
    compiled = resgraph.compile(network).eval()
    theirs = {f"mbconv.{k}": v for k, v in reference.state_dict().items()}
    assert [(k, v.shape) for k, v in compiled.state_dict().items()] == [(k, v.shape) for k, v in theirs.items()]
    compiled.load_state_dict(theirs, strict=True)
    x = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (compiled(x) - reference(x)).abs().max().item() <= 1e-5
    assert network.macs == _macs(reference, x[:1])


SMALL = {"num_classes": 10, "size": 64, "partition": 2, "head_dim": 8, "stem_channels": 8,
         "channels": [8, 16, 24, 32], "depths": [1, 1, 1, 1]}


def test_small_maxvit_exports_to_python_with_the_compiled_weights_and_outputs(tmp_path):
    network = resgraph.load(SPECS / "maxvit_t.yaml", SMALL)
    source = eject_network(network)
    path = tmp_path / "maxvit.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("ejected_maxvit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, re.findall(r"^class (\w+)\(nn\.Module\):", source, re.M)[-1])
    torch.manual_seed(0)
    compiled = network.compile(seed=None)
    torch.manual_seed(0)
    ejected = cls().eval()
    theirs, ours = ejected.state_dict(), compiled.state_dict()
    assert list(theirs) == list(ours)
    for key, value in ours.items():   # the same initial weights from the same seed
        assert torch.equal(theirs[key], value), key
    randomize_norms(randomize_batch_norm(compiled)).eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ejected(x) - compiled(x)).abs().max().item() <= 1e-5


def test_an_input_size_the_partitions_do_not_divide_is_refused():
    with pytest.raises(resgraph.SpecError) as error:
        resgraph.load(SPECS / "maxvit_t.yaml", {"size": 220})
    message = str(error.value)
    assert "error[RG023]" in message and "`size` = 220" in message and "the size is 221 to 224" in message

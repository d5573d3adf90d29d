"""Swin's ops against torchvision's own modules: `shifted_window_attention` against `ShiftedWindowAttention`
(version 1) and `ShiftedWindowAttentionV2` (version 2), `patch_merging` against `PatchMerging` and
`PatchMergingV2`, over random configurations (maps that windows cover or not, padded or not, shifted or
not): the inferred shape, the parameter count, the state_dict keys and the outputs after a strict load, and
the MACs against FlopCounterMode. Then small Swin networks from the specs (a `--set` of narrow widths) against
torchvision's `SwinTransformer` built alike, compiled and exported to `.py`. tests/test_zoo.py checks the
published variants."""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import swin_transformer as tv

import resgraph
from resgraph.eject import eject_network

from .conftest import SPECS
from .zoo import randomize


def one_node(op: str, attrs: dict, shape: list[int]):
    text = json.dumps({"resgraph": 1, "input": list(shape), "nodes": {"x": {"op": op, **attrs}}})
    return resgraph.load("swin.yaml", text=text)


def compare(network, reference: torch.nn.Module, shape: list[int]) -> None:
    """Shape, count, keys, outputs (batch 2, randomised reference) and MACs of a one-node network."""
    node = network.graph.nodes["x"]
    torch.manual_seed(0)
    randomize(reference)
    with torch.no_grad():
        for parameter in reference.parameters():    # every weight random, biases and tables included
            parameter.uniform_(-0.5, 0.5)
    compiled = resgraph.compile(network).eval()
    reference.eval()
    assert node.meta["params"] == network.params == sum(p.numel() for p in reference.parameters())
    theirs = {f"x.{k}": v for k, v in reference.state_dict().items()}
    assert list(compiled.state_dict()) == list(theirs)
    compiled.load_state_dict(theirs, strict=True)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), compiled(x)
    assert tuple(got.shape) == tuple(expected.shape) == (2, *node.shape)
    assert (got - expected).abs().max().item() <= 1e-5
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        reference(x[:1])
    assert network.macs == counter.get_total_flops() // 2


@st.composite
def attention_configs(draw):
    heads = draw(st.integers(1, 3))
    channels = heads * draw(st.integers(1, 3))
    window = [draw(st.integers(2, 5)), draw(st.integers(2, 5))]
    shape = [draw(st.integers(1, 11)), draw(st.integers(1, 11)), channels]
    shift = draw(st.sampled_from([[0, 0], [w // 2 for w in window], [w - 1 for w in window]]))
    version = draw(st.sampled_from([1, 2]))
    return {"heads": heads, "window": window, "shift": shift, "version": version,
            "qkv_bias": draw(st.booleans()), "proj_bias": draw(st.booleans())}, shape


@settings(derandomize=True, database=None, max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(attention_configs())
def test_shifted_window_attention_equals_torchvision(config):
    attrs, shape = config
    cls = tv.ShiftedWindowAttention if attrs["version"] == 1 else tv.ShiftedWindowAttentionV2
    reference = cls(shape[2], attrs["window"], attrs["shift"], attrs["heads"], qkv_bias=attrs["qkv_bias"],
                    proj_bias=attrs["proj_bias"])
    compare(one_node("shifted_window_attention", attrs, shape), reference, shape)


@settings(derandomize=True, database=None, max_examples=4, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=3, max_size=3), st.sampled_from([1, 2]))
def test_patch_merging_equals_torchvision(shape, version):
    reference = (tv.PatchMerging if version == 1 else tv.PatchMergingV2)(shape[2])
    compare(one_node("patch_merging", {"version": version}, shape), reference, shape)


def test_the_shift_is_refused_where_it_is_not_smaller_than_the_window():
    with pytest.raises(resgraph.SpecError) as caught:
        one_node("shifted_window_attention", {"heads": 1, "window": 4, "shift": [2, 4]}, [8, 8, 4])
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "RG052" and "the shift 4 is not smaller than the window's width 4" in diagnostic.message


# Narrow Swin networks: 48x48 inputs give maps of 12, 6, 3 and 2 (the last two merges pad an odd map), so with
# windows of 3 the first two stages shift and mask, the third is one window (no shift), the fourth is padded.
SMALL = {"size": 48, "embed_dim": 8, "depths": [2, 2, 2, 2], "heads": [1, 2, 2, 4], "window": 3, "num_classes": 10}


def small_reference(version: int) -> torch.nn.Module:
    v2 = {"block": tv.SwinTransformerBlockV2, "downsample_layer": tv.PatchMergingV2} if version == 2 else {}
    return tv.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                              window_size=[3, 3], stochastic_depth_prob=0.2, num_classes=10, **v2)


@pytest.mark.parametrize("spec, version, class_name", [pytest.param("swin_t", 1, "SwinT", marks=pytest.mark.slow),
                                                        ("swin_v2_t", 2, "SwinV2T")])   # V2 has both orders
def test_small_swin_and_its_export_equal_torchvision(tmp_path, spec, version, class_name):
    network = resgraph.load(SPECS / f"{spec}.yaml", params=SMALL)
    torch.manual_seed(0)
    reference = small_reference(version).eval()
    randomize(reference)
    compiled = resgraph.compile(network).eval()
    # torchvision's V2 block declares `norm1` before `attn` and runs it after: the compiled block, and copies
    # of it, order their submodules as the spec declares its nodes
    assert list(compiled.state_dict()) == list(reference.state_dict())
    assert list(copy.deepcopy(compiled).state_dict()) == list(reference.state_dict())
    assert list(pickle.loads(pickle.dumps(compiled)).state_dict()) == list(reference.state_dict())
    compiled.load_state_dict(reference.state_dict(), strict=True)
    path = tmp_path / f"{spec}.py"
    path.write_text(eject_network(network))
    loader = importlib.util.spec_from_file_location(f"ejected_{spec}", path)
    ejected_module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(ejected_module)
    ejected = getattr(ejected_module, class_name)()   # the exported params are its defaults
    assert list(ejected.state_dict()) == list(compiled.state_dict())   # in order: `norm1` before `attn` in V2
    ejected.load_state_dict(reference.state_dict(), strict=True)
    ejected.eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        assert (compiled(x) - expected).abs().max().item() <= 1e-5
        assert (ejected(x) - expected).abs().max().item() <= 1e-5
    assert expected.abs().max().item() > 1e-2


def test_a_window_too_large_for_its_index_is_a_diagnostic(validate_text):
    """Found by the exhaustive extreme-number run: a window of 2**31 - 1 validated, and compile then tried to make
    its relative-position index. Now the shape rule refuses windows of more than 4,096 tokens."""
    diagnostics = validate_text("""
        resgraph: 1
        input: [8, 8, 4]
        nodes:
          attn: {op: shifted_window_attention, heads: 1, window: 2147483647, version: 2}
        """)
    (error,) = [d for d in diagnostics if d.is_error]
    assert "4,096" in error.message and "relative-position index" in error.message
    assert error.span is not None and error.span.line == 4


@pytest.mark.parametrize("spec, class_name, reference", [("swin_v2_t", "SwinV2T", tv.swin_v2_t)])
def test_the_exported_swin_v2_lists_its_state_dict_as_torchvision_does(tmp_path, spec, class_name, reference):
    """The exported class makes its modules in the order the spec declares its nodes, as the compiled module
    registers them (torchvision's V2 block declares `norm1` before `attn`, and runs it after): its state_dict
    keys come in the compiled module's order and torchvision's, not in the order the forward runs."""
    network = resgraph.load(SPECS / f"{spec}.yaml")
    path = tmp_path / f"{spec}.py"
    path.write_text(eject_network(network))
    loader = importlib.util.spec_from_file_location(f"ejected_full_{spec}", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    with torch.device("meta"):
        ejected = getattr(module, class_name)()
        expected = list(reference().state_dict())
    compiled = list(resgraph.compile(network, device="meta").state_dict())
    assert compiled == expected
    assert list(ejected.state_dict()) == expected
    norm1, attn = (expected.index(f"features.1.0.{name}.weight") for name in ("norm1", "attn.qkv"))
    assert norm1 < attn

"""`upsample` with a second input, `inputs: [x, ref]`: x resized to ref's spatial size when the network runs,
as torchvision's segmentation models and FPN do (`F.interpolate(x, size=ref.shape[2:])`), where a size written
with `shape(...)` is fixed once, at the spec's input size."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import resgraph
from resgraph.eject import eject_network

from .conftest import SPECS, exported_outputs


def network(x: list[int], ref: list[int], **attrs):
    spec = {"resgraph": 1, "input": {"x": x, "ref": ref},
            "nodes": {"up": {"op": "upsample", "inputs": ["x", "ref"], **attrs}}}
    return resgraph.load("up.yaml", text=json.dumps(spec))


@st.composite
def case(draw):
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    n = 2 if mode == "bilinear" else draw(st.integers(1, 3))
    size = st.integers(1, 9)
    x = [draw(st.integers(1, 3))] + [draw(size) for _ in range(n)]
    ref = [draw(st.integers(1, 3))] + [draw(size) for _ in range(n)]
    attrs = {"mode": mode}
    if mode == "bilinear":
        attrs["align_corners"] = draw(st.booleans())
    other = [ref[0]] + [draw(size) for _ in range(n)]   # a second ref size, at run time
    return x, ref, attrs, other


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(case())
def test_shape_rule_and_values_agree_with_interpolate_to_the_ref_size(example):
    x_shape, ref_shape, attrs, other = example
    net = network(x_shape, ref_shape, **attrs)
    node = net.graph.nodes["up"]
    assert node.shape == (x_shape[0], *ref_shape[1:])
    assert node.meta["macs"] == 0 and node.meta["params"] == 0
    module = resgraph.compile(net).eval()
    for ref_size in (ref_shape, other):   # the spec's size, then another: read when the network runs
        x, ref = torch.randn(2, *x_shape), torch.randn(2, *ref_size)
        want = F.interpolate(x, size=ref.shape[2:], **attrs)
        with torch.no_grad():
            got = module(x, ref)
        assert got.shape == (2, x_shape[0], *ref_size[1:])
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("attrs, ref, message", [
    ({"size": [4, 4]}, [3, 8, 8], "not from `size`"),
    ({"scale": 2}, [3, 8, 8], "not from `scale`"),
    ({}, [3, 8], "(1 spatial dimension)"),
    ({"mode": "bilinear"}, [3, 8, 8, 8], "(3 spatial dimensions)"),
])
def test_bad_second_inputs_are_located_errors(attrs, ref, message):
    with pytest.raises(resgraph.SpecError) as caught:
        network([4, 4, 4], ref, **attrs)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "RG052" and message in diagnostic.message and diagnostic.help
    assert diagnostic.span is not None


def test_receptive_field_is_that_of_an_upsample_to_a_fixed_size():
    by_ref = network([4, 4, 4], [3, 8, 8], mode="bilinear").graph.nodes["up"].meta.get("receptive_field")
    spec = {"resgraph": 1, "input": {"x": [4, 4, 4]},
            "nodes": {"up": {"op": "upsample", "size": [8, 8], "mode": "bilinear"}}}
    by_size = resgraph.load("up.yaml", text=json.dumps(spec)).graph.nodes["up"].meta.get("receptive_field")
    assert by_ref == by_size


SMALL = {"resgraph": 1, "input": [3, 16, 16],
         "nodes": {"down": {"op": "conv2d", "out": 4, "kernel": 3, "stride": 2, "padding": 1},
                   "up": {"op": "upsample", "inputs": ["down", "input"], "mode": "bilinear"}},
         "outputs": {"out": "up"}}


@pytest.mark.slow   # ONNX export: about 2 s
def test_pt2_and_onnx_exports_resize_to_the_input(tmp_path):
    """At the spec's size: `export` keeps only the batch dynamic."""
    net = resgraph.load("small.yaml", text=json.dumps(SMALL))
    x = torch.randn(2, 3, 16, 16)
    want, pt2, onnx = exported_outputs(net, tmp_path, x)
    assert want["out"].shape == (2, 4, 16, 16)
    for got in (pt2, onnx):
        torch.testing.assert_close(got["out"], want["out"], rtol=1e-5, atol=1e-5)


def test_torch_export_keeps_the_size_symbolic():
    """The lowering reads the size at run time: torch.export keeps it symbolic when H and W are."""
    net = resgraph.load("small.yaml", text=json.dumps(SMALL))
    x = torch.randn(2, 3, 16, 16)
    model = resgraph.compile(net, seed=0).eval()
    h, w = torch.export.Dim("h", min=4, max=256), torch.export.Dim("w", min=4, max=256)
    program = torch.export.export(model, (x,), dynamic_shapes=({2: h, 3: w},))
    y = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        want = model(y)["out"]
        torch.testing.assert_close(program.module()(y)["out"], want, rtol=1e-5, atol=1e-5)
    assert want.shape == (2, 4, 24, 40)


def _ejected(net, tmp_path, class_name):
    path = tmp_path / "ejected.py"
    path.write_text(eject_network(net))
    spec = importlib.util.spec_from_file_location("ejected_upsample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)(), path.read_text()


def test_fcn_compiled_at_one_size_runs_at_another_as_torchvision(tmp_path):
    """The user's report: compiled at size 64, given 96x128, the outputs were 64x64; torchvision's are 96x128."""
    import torchvision

    from .zoo import randomize

    net = resgraph.load(SPECS / "fcn_resnet50.yaml", {"size": 64})
    ours = resgraph.compile(net).eval()
    reference = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                             aux_loss=True).eval()
    randomize(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert list(got) == ["out", "aux"]
    for key in ("out", "aux"):
        assert got[key].shape == want[key].shape == (1, 21, 96, 128)
        assert (got[key] - want[key]).abs().max().item() <= 1e-5

    # the standalone .py file reads the size the same way, at another size again
    ejected, source = _ejected(net, tmp_path, "FcnResnet50")
    assert "size=x.shape[2:]" in source
    ejected.load_state_dict(reference.state_dict(), strict=True)
    ejected.eval()
    y = torch.randn(1, 3, 72, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(y), ejected(y)
    for key in ("out", "aux"):
        assert got[key].shape == (1, 21, 72, 56)
        assert (got[key] - want[key]).abs().max().item() <= 1e-5


def test_fpn_merges_laterals_of_another_size(tmp_path):
    """The FPN's top-down path upsamples to each lateral's size when the network runs; a size that does not halve
    evenly (50 -> 13 -> 7 -> 4 -> 2 at the trunk's strides) checks that it is the lateral's, not twice the map."""
    net = resgraph.load(SPECS / "resnet50_fpn.yaml", {"size": 64})
    ejected, source = _ejected(net, tmp_path, "Resnet50Fpn")
    assert ".shape[2:]" in source
    ours = resgraph.compile(net).eval()
    ejected.load_state_dict(ours.state_dict(), strict=True)
    ejected.eval()
    y = torch.randn(1, 3, 50, 50, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = ours(y), ejected(y)
    want, got = (list(v.values()) if isinstance(v, dict) else list(v) for v in (want, got))
    assert [tuple(t.shape[2:]) for t in want][:4] == [(13, 13), (7, 7), (4, 4), (2, 2)]
    for a, b in zip(want, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

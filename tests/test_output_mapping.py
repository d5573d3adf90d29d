"""A mapping `outputs` (`{out: classifier, aux: aux_classifier}`): the compiled forward returns a dict with those
keys in the spec's order, as torchvision's segmentation models return {'out', 'aux'}; summary, render and
every export keep the keys."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import resgraph
from resgraph.export import export
from resgraph.lower import check_forward

from .conftest import exported_outputs

# Keys in another order than the nodes are declared: the dict follows the mapping, not the graph.
SPEC = """\
resgraph: 1
name: two_heads
input: [3, 16, 16]
nodes:
  conv: {op: conv2d, out: 8, kernel: 3, padding: 1}
  relu: relu
  classifier: {op: conv2d, out: 4, kernel: 1}
  upsample: {op: upsample, size: "[shape(input)[1] * 2, shape(input)[2] * 2]", mode: bilinear}
  aux_classifier: {op: conv2d, inputs: conv, out: 5, kernel: 1}
outputs: {aux: aux_classifier, out: upsample}
"""


@pytest.fixture(scope="module")
def network():
    return resgraph.load("two_heads.yaml", text=SPEC)


def expected(model, x):
    with torch.no_grad():
        conv = model.conv(x)
        out = torch.nn.functional.interpolate(model.classifier(torch.relu(conv)), size=(32, 32), mode="bilinear",
                                              align_corners=False)
        return {"aux": model.aux_classifier(conv), "out": out}


def assert_same(got, want):
    assert isinstance(got, dict) and list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape and (got[key] - want[key]).abs().max().item() <= 1e-5, key


def test_forward_returns_a_dict_in_the_mappings_order(network):
    assert network.output_shapes == {"aux": (5, 16, 16), "out": (4, 32, 32)}
    assert network.graph.outputs == ["aux_classifier", "upsample"]
    model = resgraph.compile(network).eval()
    assert "return {'aux': aux_classifier, 'out': upsample}" in model.code
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert_same(model(x), expected(model, x))
    check_forward(model, network.graph, "cpu", torch.float32)   # `resgraph compile`'s check reads the dict
    wrong = resgraph.load("two_heads.yaml", text=SPEC).graph
    wrong.nodes["upsample"].shape = (4, 31, 32)   # a wrong prediction: the check compares each value of the dict
    with pytest.raises(RuntimeError, match="output `upsample` has shape"):
        check_forward(model, wrong, "cpu", torch.float32)


def test_summary_and_render_name_the_keys(network, tmp_path):
    assert "outputs: {aux: aux_classifier 5x16x16, out: upsample 4x32x32}" in network.summary()
    svg = resgraph.render(network, tmp_path / "net.svg").read_text()
    assert "output `aux`" in svg and "output `out`" in svg


def test_py_export_returns_the_same_dict(network, tmp_path):
    path = export(network, tmp_path / "net.py")
    text = path.read_text()
    assert '-> dict[str, torch.Tensor]:' in text and 'return {"aux": ' in text
    spec = importlib.util.spec_from_file_location("two_heads_exported", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = resgraph.compile(network).eval()
    written = module.TwoHeads().eval()
    assert list(written.state_dict()) == list(model.state_dict())
    written.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert_same(written(x), model(x))


@pytest.mark.slow   # the two exporters take about a minute on 2 loaded cores
def test_pt2_returns_the_dict_and_onnx_names_its_outputs_by_the_keys(network, tmp_path):
    pytest.importorskip("onnxruntime")
    want, pt2, onnx = exported_outputs(network, tmp_path, torch.randn(3, 3, 16, 16))
    assert_same(pt2, want)
    assert list(onnx) == ["aux", "out"]
    assert_same(onnx, want)

"""Blocks with several outputs (`output: [c3, c4, c5]`), read by their callers as `call:k`: expansion, shapes
and `shape(call:k)`, the compiled module (a block instance returns a tuple, the caller takes items with
`operator.getitem`), every export, `resgraph expand`, summary, diagrams, the viewer's data and the editor; and
specs/resnet50_fpn.yaml against torchvision's default FPN backbone (FrozenBatchNorm2d). The bad cases are in
tests/cases/bad/block_output*.yaml."""

from __future__ import annotations

import ast
import importlib.util
import json
import operator

import pytest
import torch

import resgraph
from resgraph.editor import SpecIndex, complete, locate
from resgraph.export import export
from resgraph.provenance import expanded_spec
from resgraph.report import summary_json
from resgraph.viewer import graph_data

from .conftest import ROOT, exported_outputs, spec_text
from .zoo import randomize

# A trunk of three outputs, wrapped by a block that returns two of them and a head on the third (a nested block
# with several outputs), read by an FPN-like merge at the top level through `call:k` and `shape(call:k)`.
SPEC = spec_text("""
    resgraph: 1
    name: pyramid
    input: [3, 32, 32]
    blocks:
      trunk:
        nodes:
          c1: {op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1}
          r1: relu
          c2: {op: conv2d, out: 16, kernel: 3, stride: 2, padding: 1}
          r2: relu
          c3: {op: conv2d, out: 32, kernel: 3, stride: 2, padding: 1}
        output: [r1, r2, c3]
      wrap:
        nodes:
          inner: {block: trunk}
          head: {op: conv2d, inputs: "inner:2", out: 4, kernel: 1}
        output: ["inner:0", "inner:1", head]
    nodes:
      backbone: {block: wrap}
      lat: {op: conv2d, inputs: "backbone:1", out: 4, kernel: 1}
      up: {op: upsample, inputs: "backbone:2", size: "[shape(backbone:1)[1], shape(backbone:1)[2]]", mode: nearest}
      p: {op: add, inputs: [lat, up]}
    outputs: {p: p, c1: "backbone:0", top: "backbone:2"}
    """)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    path = tmp_path_factory.mktemp("pyramid") / "pyramid.yaml"
    path.write_text(SPEC)
    return resgraph.load(path)


def by_hand(model, x):
    """What the spec computes, written out with the compiled module's layers."""
    inner = model.backbone.inner
    r1 = torch.relu(inner.c1(x))
    r2 = torch.relu(inner.c2(r1))
    head = model.backbone.head(inner.c3(r2))
    lat = model.lat(r2)
    return {"p": lat + torch.nn.functional.interpolate(head, size=lat.shape[-2:], mode="nearest"), "c1": r1,
            "top": head}


def assert_same(got, want, tolerance=1e-6):
    assert isinstance(got, dict) and list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        assert (got[key] - want[key]).abs().max().item() <= tolerance, key


def test_calls_are_read_as_call_k_with_shapes_counts_and_shape_of_an_item(network):
    graph = network.graph
    instance = graph.instances["backbone"]
    assert instance.outputs == ["backbone.inner.r1", "backbone.inner.r2", "backbone.head"]
    assert instance.output == instance.outputs[0]
    assert graph.instances["backbone.inner"].outputs == ["backbone.inner.r1", "backbone.inner.r2",
                                                         "backbone.inner.c3"]
    # `call:k` is the node itself: no extra node, and `shape(backbone:1)` read its 8x8
    assert graph.nodes["lat"].inputs == ["backbone.inner.r2"] and graph.nodes["up"].inputs == ["backbone.head"]
    assert graph.nodes["up"].op.size == (8, 8)
    assert network.output_shapes == {"p": (4, 8, 8), "c1": (8, 16, 16), "top": (4, 4, 4)}
    assert network.params == 224 + 1168 + 4640 + 132 + 68
    model = resgraph.compile(network)
    assert network.params == sum(p.numel() for p in model.parameters())


def test_the_compiled_instance_returns_a_tuple_and_the_caller_takes_items(network):
    model = resgraph.compile(network, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_same(model(x), by_hand(model, x))
        returned = model.backbone(x)
    assert isinstance(returned, tuple) and [tuple(t.shape[1:]) for t in returned] == [(8, 16, 16), (16, 8, 8),
                                                                                      (4, 4, 4)]
    # torch.fx graphs show the items as torch's do: call_function operator.getitem on the call's result
    for module, call in ((model, "backbone"), (model.backbone, "inner")):
        items = [n for n in module.graph.nodes if n.op == "call_function" and n.target is operator.getitem]
        assert [(n.args[0].target, n.args[1]) for n in items] == [(call, 0), (call, 1), (call, 2)]
    assert "return (r1, r2, c3)" in model.backbone.inner.code
    # the state_dict is the one the expanded, flat spec (no blocks) has, and so are the outputs
    flat = resgraph.compile(resgraph.load("flat.yaml", text=expanded_spec(network.program, network.graph))).eval()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in flat.state_dict().items()]
    flat.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert_same(flat(x), model(x), tolerance=0.0)


def test_an_output_the_block_also_reads_is_never_overwritten_in_place(tmp_path):
    """`c1` is returned and read by the relu after it, inside the block: the relu must not run in place."""
    path = tmp_path / "pair.yaml"
    path.write_text(spec_text("""
        resgraph: 1
        input: [3, 8, 8]
        blocks:
          pair:
            nodes:
              c1: {op: conv2d, out: 4, kernel: 3, padding: 1}
              r1: relu
            output: [c1, r1]
        nodes:
          b: {block: pair}
          s: {op: add, inputs: ["b:0", "b:1"]}
        """))
    model = resgraph.compile(path).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        c1 = model.b.c1(x)
        assert torch.equal(model(x), c1 + torch.relu(c1))


def test_py_export_writes_the_block_returning_a_tuple_and_the_caller_indexing_it(network, tmp_path):
    path = export(network, tmp_path / "pyramid.py")
    text = path.read_text()
    tree = ast.parse(text)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    forward = {name: next(f for f in c.body if isinstance(f, ast.FunctionDef) and f.name == "forward")
               for name, c in classes.items()}
    returned = forward["Trunk"].body[-1]
    assert isinstance(returned, ast.Return) and isinstance(returned.value, ast.Tuple) and \
        len(returned.value.elts) == 3
    assert ast.unparse(forward["Trunk"].returns) == "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"
    for name, call in (("Wrap", "inner"), ("Pyramid", "backbone")):
        items = [node for node in ast.walk(forward[name]) if isinstance(node, ast.Subscript)
                 and isinstance(node.value, ast.Name) and node.value.id == call]
        assert sorted(ast.literal_eval(node.slice) for node in items) == [0, 1, 2], name
    assert "backbone = self.backbone(x)" in text and "backbone_1 = backbone[1]" in text
    spec = importlib.util.spec_from_file_location("pyramid_exported", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = resgraph.compile(network, seed=0).eval()
    written = module.Pyramid().eval()
    assert list(written.state_dict()) == list(model.state_dict())
    written.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert_same(written(x), model(x), tolerance=0.0)


@pytest.mark.slow   # the two exporters take a few seconds
def test_pt2_and_onnx_return_every_output(network, tmp_path):
    pytest.importorskip("onnxruntime")
    want, pt2, onnx = exported_outputs(network, tmp_path, torch.randn(3, 3, 32, 32))
    assert_same(pt2, want)
    assert list(onnx) == ["p", "c1", "top"]
    assert_same(onnx, want, tolerance=1e-5)


def test_a_list_of_outputs_and_a_chunk_piece_as_network_outputs(tmp_path):
    """`outputs: [backbone:0, ...]` returns a tuple; `name:k` of a chunk node is a network output too, and
    `shape(parts:1)` reads a piece."""
    path = tmp_path / "list.yaml"
    path.write_text(spec_text("""
        resgraph: 1
        input: [4, 8, 8]
        blocks:
          split2:
            nodes:
              a: {op: conv2d, out: 4, kernel: 1}
              b: {op: conv2d, inputs: input, out: 6, kernel: 1}
            output: [b, a]
        nodes:
          body: {block: split2, repeat: 1}
          parts: {op: chunk, chunks: 2, inputs: "body:1"}
          widen: {op: conv2d, inputs: "parts:1", out: "shape(parts:1)[0] * 3", kernel: 1}
        outputs: ["body:0", "parts:1", widen]
        """))
    network = resgraph.load(path)
    assert list(network.graph.instances) == ["body.0"]
    assert list(network.output_shapes.values()) == [(6, 8, 8), (2, 8, 8), (6, 8, 8)]
    model = resgraph.compile(network).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        b, piece, widen = model(x)
        a = model.body[0].a(x)
        assert torch.equal(b, model.body[0].b(x)) and torch.equal(piece, a[:, 2:])
        assert torch.equal(widen, model.widen(a[:, 2:]))


def test_summary_render_and_viewer_show_each_output(network, tmp_path):
    table = network.summary()
    assert "= backbone" in table and "8x16x16, 16x8x8, 4x4x4" in table
    entry = next(b for b in json.loads(summary_json(network.graph))["blocks"] if b["name"] == "backbone")
    assert entry["output_shape"] == [8, 16, 16] and entry["output_shapes"] == [[8, 16, 16], [16, 8, 8], [4, 4, 4]]
    dot = resgraph.render(network, tmp_path / "net.dot").read_text()
    assert ":0 8×16×16\\n:1 16×8×8\\n:2 4×4×4" in dot
    assert 'backbone -> lat [label="backbone:1\\n16×8×8"' in dot and 'backbone -> up [label="backbone:2\\n4×4×4"' in dot
    blocks = resgraph.render(network, tmp_path / "blocks.dot", blocks=True).read_text()
    assert '"trunk/(output) 2" [label="output 2\\n32×4×4"' in blocks
    assert "output `c1`" not in blocks   # the network's outputs are not drawn as the block's
    scopes = {s["name"]: s for s in graph_data(network.graph, {})["scopes"]}
    nodes = graph_data(network.graph, {})["nodes"]
    assert [nodes[i]["name"] for i in scopes["backbone"]["outputs"]] == network.graph.instances["backbone"].outputs


def test_the_editor_hovers_completes_and_follows_call_k(network):
    from resgraph import run_passes

    path = network.graph.nodes["input"].source.path
    text = open(path).read()
    state = run_passes(path, text=text)
    index = SpecIndex(state.program, state.graph)
    source = index.source_for(path)
    lines = text.splitlines()

    def at(needle: str, hint: str, offset: int = 1):
        number, line = next((n, l) for n, l in enumerate(lines) if hint in l and needle in l)
        return locate(source, number + 1, line.index(needle) + 1 + offset)

    hover = index.hover(at("backbone:", "backbone: {block"))
    assert "`backbone:0` [8, 16, 16], `backbone:1` [16, 8, 8], `backbone:2` [4, 4, 4]" in hover
    definition = index.definition(at('"backbone:1"', "lat:", 2))
    assert (definition.line, definition.col) == (lines.index("  backbone: {block: wrap}") + 1, 3)
    uses = index.references(at("backbone:", "backbone: {block", 0))
    assert len(uses) == 4   # lat, up and two outputs
    labels = [c.label for c in complete("  x: {op: relu, inputs: [", at("lat", "lat:"), index)]
    assert labels[:4] == ["input", "backbone:0", "backbone:1", "backbone:2"]


def test_the_expanded_fpn_spec_validates_and_compiles_to_the_same_state_dict():
    network = resgraph.load(ROOT / "specs" / "resnet50_fpn.yaml", params={"size": 40})
    flat = resgraph.load("flat.yaml", text=expanded_spec(network.program, network.graph))
    assert flat.output_shapes == network.output_shapes and flat.params == network.params
    model, model_flat = resgraph.compile(network, device="meta"), resgraph.compile(flat, device="meta")
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in model_flat.state_dict().items()]


def test_the_fpn_spec_loads_strictly_into_torchvisions_default_frozen_batchnorm_backbone():
    """resnet_fpn_backbone's default norm is FrozenBatchNorm2d: the same keys minus `num_batches_tracked`, which
    it drops when it loads; in eval mode it computes what batchnorm2d does (with another formula: rounding)."""
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    network = resgraph.load(ROOT / "specs" / "resnet50_fpn.yaml", params={"size": 40})
    model = resgraph.compile(network, seed=0).eval()
    randomize(model)
    with torch.device("meta"):   # no weights drawn: every tensor is the spec's, loaded below
        reference = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=5).eval()
    assert isinstance(reference.body.bn1, torchvision.ops.FrozenBatchNorm2d)
    theirs = list(reference.state_dict())
    assert theirs == [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    result = reference.load_state_dict(model.state_dict(), strict=True, assign=True)
    assert not any(t.is_meta for t in list(reference.parameters()) + list(reference.buffers()))
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert list(got) == list(want) == ["0", "1", "2", "3", "pool"]
    for key in want:
        scale = want[key].abs().max().item()
        assert scale > 1e-2 and (got[key] - want[key]).abs().max().item() <= 1e-5 * scale, key


def test_the_json_schema_offers_the_list_form_of_output():
    from resgraph.spec import json_schema

    schema = json_schema()
    output = schema["$defs"]["BlockDef"]["properties"]["output"]
    forms = {form.get("type") for form in output["anyOf"]}
    assert forms == {"string", "array", "null"}
    listed = next(form for form in output["anyOf"] if form.get("type") == "array")
    assert listed["minItems"] == 1 and listed["items"]["pattern"] == "^[A-Za-z0-9_]+(:[0-9]+)?$"


def test_diff_reports_a_change_inside_a_block_with_several_outputs(network, tmp_path):
    from resgraph.diff import diff_graphs, diff_text

    path = tmp_path / "wider.yaml"
    path.write_text(SPEC.replace("c2: {op: conv2d, out: 16", "c2: {op: conv2d, out: 24"))
    text = diff_text(diff_graphs(network.graph, resgraph.load(path).graph))
    assert "~ changed `backbone.inner.c2`: out: 16 -> 24" in text and "~ changed `lat`" in text

"""Tied parameters (`tie: {weight: wte.weight}`, resgraph/ties.py) through every pass: counted once, one
`nn.Parameter` in the compiled module (kept through the meta device, `to_empty`, `.to()`, copies and
`load_state_dict`), written by `export` (.py, .pt2; .onnx under `-m slow`), shown by `render`, recovered by
`import`; and `linear`'s `weight_layout: in_out` against torch."""

from __future__ import annotations

import copy
import importlib.util
import pickle

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.importer import import_module

TIED = """
resgraph: 1
name: tied_lm
input: {shape: [8], dtype: int64}
nodes:
  wte: {op: embedding, num: 100, dim: 16, key: transformer.wte}
  proj: {op: linear, out: 16, weight_layout: in_out}
  norm: layernorm
  lm_head: {op: linear, out: 100, bias: false, tie: {weight: wte.weight}}
"""
PARAMS = 100 * 16 + (16 * 16 + 16) + 2 * 16   # the head's weight is the embedding's


def tokens(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 100, (batch, 8), generator=torch.Generator().manual_seed(seed))


def tied(module: nn.Module) -> bool:
    return module.lm_head.weight is module.transformer.wte.weight


def test_a_tied_tensor_is_counted_once(load_text):
    network = load_text(TIED)
    assert network.params == PARAMS
    assert network.graph.nodes["lm_head"].meta["params"] == 0
    assert "weight tied to wte.weight" in network.summary()
    assert sum(p.numel() for p in resgraph.compile(network).parameters()) == PARAMS


def test_the_compiled_modules_hold_one_parameter_and_both_keys(load_text):
    network = load_text(TIED)
    model = resgraph.compile(network)
    assert tied(model)
    assert list(model.state_dict()) == ["transformer.wte.weight", "proj.weight", "proj.bias", "norm.weight",
                                        "norm.bias", "lm_head.weight"]
    model.lm_head.weight.data.mul_(2)   # one tensor: the embedding changes with the head
    assert torch.equal(model.transformer.wte.weight, model.lm_head.weight)


def test_ties_hold_through_meta_to_empty_copies_and_dtype(load_text):
    network = load_text(TIED)
    model = resgraph.compile(network, device="meta")
    assert tied(model)
    model.to_empty(device="cpu")   # one new tensor per module: the tie is made again
    assert tied(model) and sum(p.numel() for p in model.parameters()) == PARAMS
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert tied(copied)
    model.double()
    assert tied(model) and model.lm_head.weight.dtype == torch.float64


def test_load_state_dict_keeps_the_tie(load_text):
    network = load_text(TIED)
    state = resgraph.compile(network, seed=3).state_dict()
    for assign in (False, True):
        model = resgraph.compile(network, device="meta" if assign else "cpu")
        model.load_state_dict(state, strict=True, assign=assign)
        assert tied(model) and torch.equal(model.lm_head.weight, state["transformer.wte.weight"])
    # a checkpoint that holds the tensor once, under its owner's key (Hugging Face's safetensors files)
    model = resgraph.compile(network)
    result = model.load_state_dict({k: v for k, v in state.items() if k != "lm_head.weight"}, strict=True)
    assert not result.missing_keys and tied(model)
    # the owner's key is still required
    with pytest.raises(RuntimeError, match="transformer.wte.weight"):
        resgraph.compile(network).load_state_dict({k: v for k, v in state.items() if k != "transformer.wte.weight"})


def test_export_py_writes_the_tie(load_text, tmp_path):
    network = load_text(TIED)
    path = tmp_path / "tied.py"
    result = CliRunner().invoke(main, ["export", str(tmp_path / "spec.yaml"), "-o", str(path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "self.lm_head.weight = self.transformer.wte.weight" in path.read_text()
    spec = importlib.util.spec_from_file_location("tied_ejected", path)
    ejected = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ejected)
    torch.manual_seed(0)
    written = ejected.TiedLm()
    compiled = resgraph.compile(network, seed=0)
    assert tied(written) and sum(p.numel() for p in written.parameters()) == PARAMS
    assert list(written.state_dict()) == list(compiled.state_dict())
    for key, value in compiled.state_dict().items():   # the same initial weights from the same seed
        assert torch.equal(written.state_dict()[key], value), key
    x = tokens()
    assert torch.equal(written(x), compiled(x))


def exported(load_text, tmp_path, suffix):
    """The tied network exported by the CLI, and its compiled outputs for 3 samples."""
    network = load_text(TIED)
    compiled = resgraph.compile(network, seed=0).eval()
    x = tokens(3)
    with torch.no_grad():
        expected = compiled(x)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / f"net.{suffix}")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return tmp_path / f"net.{suffix}", x, expected


def test_pt2_export_of_a_tied_network(load_text, tmp_path):
    path, x, expected = exported(load_text, tmp_path, "pt2")
    program = torch.export.load(str(path)).module()
    assert (program(x) - expected).abs().max().item() <= 1e-5


@pytest.mark.slow   # the ONNX exporter takes about 5 s
def test_onnx_export_of_a_tied_network(load_text, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path, x, expected = exported(load_text, tmp_path, "onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert (torch.from_numpy(out) - expected).abs().max().item() <= 1e-5


def test_render_labels_the_tied_head(load_text, tmp_path):
    load_text(TIED)
    out = resgraph.render(tmp_path / "spec.yaml", tmp_path / "net.dot", depth=None)
    assert "weight tied to wte.weight" in out.read_text()


def test_a_tie_inside_a_block(load_text):
    network = load_text("""
        resgraph: 1
        input: [16]
        blocks:
          twin:
            nodes:
              a: {op: linear, out: 16}
              b: {op: linear, out: 16, tie: {weight: a.weight}}
        nodes:
          pair: {block: twin, repeat: 2}
        """)
    assert network.params == 2 * (16 * 16 + 2 * 16)
    model = resgraph.compile(network)
    assert model.pair[0].b.weight is model.pair[0].a.weight and model.pair[1].b.weight is model.pair[1].a.weight
    assert model.pair[0].a.weight is not model.pair[1].a.weight
    assert sum(p.numel() for p in model.parameters()) == network.params


@pytest.mark.parametrize("text, code, words", [
    ("lm_head: {op: linear, out: 100, bias: false, tie: {weight: wte.weight}}\n  x: relu", None, None),
    ("lm_head: {op: relu, tie: {weight: wte.weight}}", "RG048", "`lm_head` (`relu`) has no parameter `weight`"),
    ("lm_head: {op: linear, out: 100, tie: {bias: wte.weight}}", "RG049", "`lm_head.bias` is [100]"),
    ("lm_head: {op: linear, out: 100, tie: {weight: lm_head.weight}}", "RG048", "ties a parameter to itself"),
    ("lm_head: {op: linear, out: 100, tie: weight}", "RG048", "maps parameters of this node"),
    ("lm_head: {op: linear, out: 16, weight_layout: in_out, tie: {weight: wte.weight}}", "RG049",
     "`lm_head.weight` is [16, 16]"),
])
def test_tie_diagnostics(load_text, text, code, words):
    base = "resgraph: 1\ninput: {shape: [8], dtype: int64}\nnodes:\n  wte: {op: embedding, num: 100, dim: 16}\n  "
    if code is None:
        load_text(base + text)
        return
    with pytest.raises(resgraph.SpecError) as caught:
        load_text(base + text)
    (error,) = [d for d in caught.value.diagnostics if d.is_error]
    assert error.code == code and words in error.message and error.help and error.span is not None


def test_a_tie_to_a_tied_tensor_names_its_owner(load_text):
    with pytest.raises(resgraph.SpecError) as caught:
        load_text("""
            resgraph: 1
            input: [16]
            nodes:
              a: {op: linear, out: 16}
              b: {op: linear, out: 16, tie: {weight: a.weight}}
              c: {op: linear, out: 16, tie: {weight: b.weight}}
            """)
    (error,) = caught.value.diagnostics
    assert error.code == "RG048" and "is itself tied to `a.weight`" in error.message and "a.weight" in error.help


def test_a_tie_to_a_block_call(load_text):
    with pytest.raises(resgraph.SpecError) as caught:
        load_text("""
            resgraph: 1
            input: [16]
            blocks:
              unit:
                nodes: {fc: {op: linear, out: 16}}
            nodes:
              body: {block: unit}
              head: {op: linear, out: 16, tie: {weight: body.weight}}
            """)
    (error,) = caught.value.diagnostics
    assert error.code == "RG048" and "`body` is a block call" in error.message


# ---- linear's weight_layout: in_out (Hugging Face's Conv1D) --------------------------------------------------

@pytest.mark.parametrize("features, out, bias, lead", [(5, 7, True, (3,)), (16, 1, False, (2, 4)), (1, 9, True, ())])
def test_in_out_layout_is_the_transposed_linear(load_text, features, out, bias, lead):
    shape = list(lead) + [features]
    text = f"resgraph: 1\ninput: {shape}\nnodes:\n  fc: {{op: linear, out: {out}, bias: {str(bias).lower()}, " \
           "weight_layout: in_out}\n"
    network = load_text(text)
    plain = load_text(text.replace(", weight_layout: in_out", ""), name="plain.yaml")
    assert network.params == plain.params == features * out + (out if bias else 0)
    model, reference = resgraph.compile(network, seed=1), resgraph.compile(plain, seed=1)
    assert model.fc.weight.shape == (features, out)
    assert torch.equal(model.fc.weight, reference.fc.weight.t())   # drawn as nn.Linear draws it
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(model(x), reference(x), atol=1e-6)


def test_hugging_face_conv1d_loads_into_the_in_out_layout(load_text):
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(12, 8)
    with torch.no_grad():
        layer.weight.normal_(), layer.bias.normal_()
    model = resgraph.compile(load_text("resgraph: 1\ninput: [5, 8]\nnodes:\n  fc: {op: linear, out: 12, "
                                       "weight_layout: in_out}\n"))
    model.load_state_dict({"fc." + k: v for k, v in layer.state_dict().items()}, strict=True)
    x = torch.randn(3, 5, 8)
    assert torch.equal(model(x), layer(x))   # the same addmm
    assert transformers is not None


# ---- import --------------------------------------------------------------------------------------------------

class TiedLM(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 16, conv1d: bool = False) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        if conv1d:
            from transformers.pytorch_utils import Conv1D

            self.proj = Conv1D(dim, dim)
        else:
            self.proj = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, x):
        return self.lm_head(torch.tanh(self.proj(self.wte(x))))


@pytest.mark.parametrize("conv1d", [False, True])
def test_import_writes_a_tie_for_a_shared_parameter(tmp_path, conv1d):
    if conv1d:
        pytest.importorskip("transformers")
    model = TiedLM(conv1d=conv1d)
    text = import_module(model, [8])
    assert "lm_head: {op: linear, out: 50, bias: false, tie: {weight: \"wte.weight\"}}" in text
    assert ("weight_layout: in_out" in text) == conv1d
    path = tmp_path / "imported.yaml"
    path.write_text(text)
    network = resgraph.load(path)
    assert network.params == sum(p.numel() for p in model.parameters())
    compiled = resgraph.compile(network)
    compiled.load_state_dict(model.state_dict(), strict=True)
    assert compiled.lm_head.weight is compiled.wte.weight
    x = torch.randint(0, 50, (2, 8))
    assert torch.equal(compiled(x), model(x))


def test_import_refuses_a_parameter_shared_across_blocks():
    class Inner(nn.Module):
        def __init__(self, layer: nn.Linear | None = None) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            if layer is not None:
                self.fc.weight = layer.weight

        def forward(self, x):
            return self.fc(x)

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = Inner()
            self.b = Inner(self.a.fc)

        def forward(self, x):
            return self.b(self.a(x))

    with pytest.raises(resgraph.SpecError, match="in another block"):
        import_module(Outer(), [8])


def test_declared_parameter_shapes_are_the_lowered_modules(load_text):
    """What a tie checks (`Op.parameter_shapes`) is what the compiled module holds, for every op that declares it."""
    network = load_text("""
        resgraph: 1
        input: {shape: [6], dtype: int64}
        nodes:
          embed: {op: embedding, num: 30, dim: 12}
          fc: {op: linear, out: 10}
          fc_t: {op: linear, out: 9, bias: false, weight_layout: in_out}
          wide: {op: unflatten, dim: 2, sizes: [3, 3]}
          conv: {op: conv2d, out: 4, kernel: [2, 3], padding: 1}
          grouped: {op: conv2d, out: 8, kernel: 1, groups: 2, bias: false}
          flat: {op: flatten, start_dim: 1, end_dim: 2}
          conv1d: {op: conv1d, out: 5, kernel: 3}
        """)
    model = resgraph.compile(network, device="meta")
    declared = 0
    for node in network.graph:
        if node.is_input:
            continue
        shapes = node.op.parameter_shapes([network.graph.nodes[n].shape for n in node.inputs], node.shape, node.meta)
        if shapes is None:
            continue
        module = model.get_submodule(network.graph.module_path(node))
        assert shapes == {name: tuple(p.shape) for name, p in module.named_parameters(recurse=False)}, node.name
        declared += 1
    assert declared == 6

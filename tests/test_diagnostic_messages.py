"""Diagnostics say the real cause, where it is, in the language of specs: no pydantic internals, the help
fixes proven by applying them, and the behaviour behind the messages (dotted outputs, `allow`, RG054,
`--set` lists, YAML booleans in expressions, bare words, every activation as a `function`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.diagnostics import apply_fixes
from resgraph.ops import REGISTRY
from resgraph.spec import BlockCall, BlockDef, Requirement, SpecFile

from .conftest import CASES, SPECS, spec_text

# Words of pydantic's own error texts and type names: none may reach a user
PYDANTIC_WORDS = re.compile(r"function-(plain|after|before|wrap)|constrained-str|list\[|dict\[|literal\[|union\[|"
                            r"tagged-union|model-|lax-|json-or-python|nullable\[|definition-ref|is-instance|\[key\]|"
                            r"pydantic|input should|unable to interpret|validation error|\btype=", re.I)
WRONG_VALUES = ["{a: 1}", "[[1], {b: 2}]", "'x, y'", "1.5", "true", "-3", "a b c", "3, 32, 32", "null"]


def _field_cases():
    """(what, spec text, line of the wrong value, field name) for every field of every model of the language."""
    for op, cls in sorted(REGISTRY.items()):
        for name in cls.model_fields:
            if name != "op":
                yield f"op {op}.{name}", f"input: [3, 8, 8]\nnodes:\n  n:\n    op: {op}\n    {name}: VALUE\n", 6, name
    for name, field in BlockCall.model_fields.items():
        key = field.alias or name
        if key != "block":
            yield (f"block call {key}", "input: [3, 8, 8]\nblocks:\n  b:\n    nodes:\n      r: relu\nnodes:\n  n:\n"
                   f"    block: b\n    {key}: VALUE\n", 10, key)
    for name in BlockDef.model_fields:
        body = "" if name == "nodes" else "    nodes:\n      r: relu\n"
        yield f"block {name}", f"blocks:\n  b:\n{body}    {name}: VALUE\n", 4 if name == "nodes" else 6, name
    for name in SpecFile.model_fields:
        if name != "resgraph":
            yield f"spec {name}", f"{name}: VALUE\n", 2, name
    for name in Requirement.model_fields:
        other = "    help: h\n" if name == "check" else "    check: 'true'\n"
        yield f"requirement {name}", f"require:\n  - {name}: VALUE\n{other}", 3, name


def test_no_pydantic_words_and_located_at_the_value():
    cases = list(_field_cases())
    assert len(cases) > 100
    problems = []
    for what, template, line, name in cases:
        for value in WRONG_VALUES:
            text = "resgraph: 1\n" + template.replace("VALUE", value)
            for d in resgraph.validate("probe.yaml", text=text):
                words = " ".join([d.message, d.help or ""] + [note.message for note in d.notes])
                if PYDANTIC_WORDS.search(words):
                    problems.append(f"{what} = {value}: {d.code} {words}")
                elif d.span is None or d.span.line == 1:
                    problems.append(f"{what} = {value}: at {d.span}: {d.message}")
                elif f"`{name}`" in d.message.split(":")[0] and d.span.line != line:
                    problems.append(f"{what} = {value}: at line {d.span.line}, not {line}: {d.message}")
    assert not problems, "\n".join(problems[:20])


# ---- the fixes in diagnostics are true: applied, the spec validates ------------------------------------

BAD = sorted((CASES / "bad").glob("*.yaml"))
# The cases of issue 15 that must carry a machine-applicable fix.
MUST_FIX = {"list_without_brackets", "output_path_unknown", "add_inputs_reversed", "true_division_repeat",
            "float_expression", "inputs_comma_text", "flow_mapping_comma", "linear_without_flatten", "unknown_op",
            "unknown_ref"}


def _fixable():
    """The bad cases whose every diagnostic carries a fix."""
    found = {}
    for path in BAD:
        diagnostics = resgraph.validate(path)
        if diagnostics and all(d.fixes for d in diagnostics):
            found[path.stem] = (path, diagnostics)
    return found


def test_every_fix_applied_makes_its_case_valid():
    fixable = _fixable()
    assert MUST_FIX <= set(fixable), sorted(MUST_FIX - set(fixable))
    for name, (path, diagnostics) in fixable.items():
        text = path.read_text(encoding="utf-8")
        fixed = apply_fixes(text, [edit for d in diagnostics for edit in d.fixes])
        assert fixed != text, name
        assert all(edit.span.file == str(path) for d in diagnostics for edit in d.fixes), name
        after = resgraph.validate(path, text=fixed)
        assert after == [], f"{name}: after its fixes:\n{fixed}\n{after}"


def test_fix_edits_replace_exactly_their_span():
    from resgraph.diagnostics import Edit, Span

    text = "a: 1\nbb: [x,\n  y]\n"
    edit = Edit(Span("f", 2, 5, 3, 5), "[y, x]")
    assert apply_fixes(text, [edit]) == "a: 1\nbb: [y, x]\n"
    insert = Edit(Span("f", 1, 1, 1, 1), "z: 0\n")
    assert apply_fixes(text, [edit, insert]) == "z: 0\na: 1\nbb: [y, x]\n"


# ---- outputs inside blocks ------------------------------------------------------------------------------

FEATURES = """
    resgraph: 1
    include: [SPECS/blocks/resnet.yaml]
    input: [3, 32, 32]
    nodes:
      conv1: {op: conv2d, out: 16, kernel: 3, padding: 1, bias: false}
      layer1: {block: basic, repeat: 2, with: {planes: 16}}
      layer2: {block: basic, with: {planes: 32, stride: 2}}
      pool: {op: adaptive_avgpool2d, size: 1}
    outputs: [layer1.0.relu1, layer1.0, layer2.bn1, layer1.1.conv2, pool]
"""


def test_outputs_inside_blocks_are_returned(load_text):
    import torch

    network = load_text(FEATURES.replace("SPECS", str(SPECS)), include_path=[SPECS])
    assert network.graph.outputs == ["layer1.0.relu1", "layer1.0.relu2", "layer2.bn1", "layer1.1.conv2", "pool"]
    model = resgraph.compile(network).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        relu1, block0, bn1, conv2, pool = model(x)
        # the same tensors, computed module by module
        stem = model.conv1(x)
        first = model.layer1[0]
        expected_relu1 = torch.relu(first.bn1(first.conv1(stem)))
        expected_block0 = first(stem)[0]
        second = model.layer1[1]
        expected_conv2 = second.conv2(torch.relu(second.bn1(second.conv1(expected_block0))))
        expected_bn1 = model.layer2.bn1(model.layer2.conv1(second(expected_block0)[0]))
    assert torch.equal(relu1, expected_relu1) and torch.equal(block0, expected_block0)
    assert torch.equal(conv2, expected_conv2) and torch.equal(bn1, expected_bn1)
    assert pool.shape == (2, 32, 1, 1)
    # training mode and in-place ops: the returned intermediate is not overwritten by a later relu_ or +=
    model.train()
    relu1, *_ = model(x)
    assert (relu1 >= 0).all()


def test_export_of_an_output_inside_a_block(load_text, tmp_path):
    from resgraph.eject import EjectError
    from resgraph.export import export

    network = load_text(FEATURES.replace("SPECS", str(SPECS)), include_path=[SPECS])
    with pytest.raises(EjectError, match=r"cannot write Python source for an output inside a block "
                                         r"\(`layer1.0.relu1`\).*export to .pt2 or .onnx"):
        export(network, tmp_path / "net.py")
    assert not (tmp_path / "net.py").exists()


@pytest.mark.slow
def test_pt2_export_of_outputs_inside_blocks(load_text, tmp_path):
    import torch

    from resgraph.export import export

    network = load_text(FEATURES.replace("SPECS", str(SPECS)), include_path=[SPECS])
    path = export(network, tmp_path / "net.pt2")
    program = torch.export.load(str(path))
    x = torch.randn(2, 3, 32, 32)
    expected = resgraph.compile(network).eval()(x)
    got = program.module()(x)
    assert len(got) == 5 and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, expected))


# ---- RG054: a linear over a spatial map --------------------------------------------------------------

@pytest.mark.parametrize("nodes, warned", [
    ("conv: {op: conv2d, out: 8, kernel: 3}\n  fc: {op: linear, out: 10}", True),
    ("conv: {op: conv2d, out: 8, kernel: 3, bias: false}\n  bn: batchnorm2d\n  act: relu\n  fc: {op: linear, out: 10}", True),
    ("pool: {op: adaptive_avgpool2d, size: 1}\n  fc: {op: linear, out: 10}", True),
    ("pool: {op: adaptive_avgpool2d, size: 1}\n  flat: flatten\n  fc: {op: linear, out: 10}", False),
    ("pool: {op: adaptive_avgpool2d, size: 1}\n  fc: {op: linear, out: 10, allow: [RG054]}", False),
    ("fc: {op: linear, out: 10}", False),   # the input itself is no map: tokens or features
])
def test_linear_over_a_map(validate_text, nodes, warned):
    diagnostics = validate_text(f"resgraph: 1\ninput: [3, 8, 8]\nnodes:\n  {nodes}\n")
    assert [d.code for d in diagnostics] == (["RG054"] if warned else [])


def test_no_linear_warning_for_tokens_or_the_library():
    assert resgraph.validate(SPECS / "transformer_encoder.yaml") == []
    assert resgraph.validate(SPECS / "residual_mlp.yaml") == []
    assert resgraph.validate(SPECS / "resnet18.yaml") == []


# ---- allow: warnings that are meant ------------------------------------------------------------------

def test_allow_unused_on_a_node_and_on_a_block_call(validate_text):
    text = """
        resgraph: 1
        input: [8]
        blocks:
          probe:
            nodes:
              a: {op: linear, out: 4}
              b: relu
        nodes:
          fc1: {op: linear, out: 8}
          aux: {op: linear, out: 4ALLOW_NODE}
          taps: {block: probe, inputs: fc1ALLOW_CALL}
          fc2: {op: linear, out: 2, inputs: fc1}
    """
    warned = validate_text(text.replace("ALLOW_NODE", "").replace("ALLOW_CALL", ""))
    assert [(d.code, d.message) for d in warned] == [
        ("RG043", "node `aux` is not used by any output"), ("RG043", "node `taps.a` is not used by any output"),
        ("RG043", "node `taps.b` is not used by any output")]
    assert "allow: [RG043]" in warned[0].help
    allowed = validate_text(text.replace("ALLOW_NODE", ", allow: [RG043]").replace("ALLOW_CALL", ", allow: [RG043]"))
    assert allowed == []


# ---- --set, expressions and words -----------------------------------------------------------------------

LIST_PARAM = """
    resgraph: 1
    params: {layers: [2, 2]}
    input: [8]
    blocks:
      unit:
        nodes:
          fc: {op: linear, out: 8}
    nodes:
      body: {block: unit, repeat: "layers[-1]"}
"""


@pytest.mark.parametrize("value, nodes", [("2,2,3", 4), ("[3,3]", 4), ("[1]", 2), ("4,", None), ("4", None)])
def test_set_of_a_list_param(tmp_path, monkeypatch, value, nodes):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(spec_text(LIST_PARAM))
    result = CliRunner().invoke(main, ["validate", "--set", f"layers={value}", "net.yaml"])
    if nodes is not None:
        assert result.exit_code == 0 and result.stdout.startswith(f"net.yaml: ok ({nodes} nodes"), result.stderr
    else:
        assert result.exit_code == 1
        assert "`layers` is set to " in result.stderr and "from outside the spec (`--set` or `params=`)" \
            in result.stderr and "`--set layers=[2,2]`" in result.stderr, result.stderr


def test_expressions_read_yaml_booleans_and_null(load_text):
    network = load_text("""
        resgraph: 1
        params: {stride: 2, skip: null}
        input: [4, 8, 8]
        nodes:
          conv: {op: conv2d, out: 4, kernel: 3, padding: 1, stride: stride}
          drop: {op: dropout, p: 0.1, when: "stride == 2 and true"}
          id: {op: identity, when: "skip == null or false"}
    """)
    assert set(network.graph.nodes) == {"input", "conv", "drop", "id"}


def test_a_bare_word_in_with_is_text(load_text, validate_text):
    text = """
        resgraph: 1
        params: {width: 8}
        input: [4, 8, 8]
        blocks:
          res:
            params: {shortcut: identity, out: 4}
            nodes:
              conv: {op: conv2d, out: out, kernel: 3, stride: 2, padding: 1}
              add: {op: add, inputs: [conv, input], shortcut: shortcut}
        nodes:
          body: {block: res, with: {shortcut: WORD}}
    """
    assert load_text(text.replace("WORD", "pad")).params == 4 * 4 * 9 + 4
    (error,) = validate_text(text.replace("WORD", "widht"))   # close to the param `width`: a misspelt name
    assert (error.code, error.help.split(";")[0]) == ("RG021", "did you mean `width`?")


def test_every_activation_op_is_a_function():
    import torch

    from resgraph.ops.activation import _Activation
    from resgraph.ops.named_activation import FUNCTIONS

    from resgraph.ops.activation import _SoftmaxBase

    assert set(FUNCTIONS) == {name for name, cls in REGISTRY.items() if issubclass(cls, (_Activation, _SoftmaxBase))}
    assert {"relu6", "softmax", "log_softmax"} <= set(FUNCTIONS)
    spec = "resgraph: 1\ninput: [4]\nnodes:\n  act: {op: activation, function: relu6}\n"
    network = resgraph.load("act.yaml", text=spec)
    x = torch.linspace(-3, 9, 8).reshape(2, 4)
    assert torch.equal(resgraph.compile(network)(x), torch.nn.functional.relu6(x))


def test_unet_size_must_divide_by_two_to_the_depth():
    (error,) = resgraph.validate(SPECS / "unet.yaml", params={"size": 100})
    assert (error.code, error.message) == ("RG023", "requirement `size % 2**depth == 0` is false "
                                                    "(`depth` = 4, `size` = 100)")
    assert "divisible by 2**depth" in error.help
    assert resgraph.validate(SPECS / "unet.yaml", params={"size": 100, "depth": 2}) == []


def test_importer_names_the_model_without_broken_quotes():
    import torch
    import torch.nn as nn

    from resgraph.importer import import_module

    class WithToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("class_token", torch.zeros(1, 4))   # a parameter would import: a buffer cannot
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + self.class_token

    with pytest.raises(resgraph.SpecError) as info:
        import_module(WithToken(), input_shape=(4,))
    (error,) = info.value.diagnostics
    assert error.message == ("the model reads the tensor `class_token` directly in its forward, and it is not a "
                             "learnable parameter")

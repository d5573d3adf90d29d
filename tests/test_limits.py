"""Denial of service and overflow (issue 14, section 3): every number a spec can hold is bounded, every builtin
of the expression language returns quickly at its bounds, and a spec that `validate` accepts compiles on the meta
device: sizes are checked against torch's int64 limits before lowering, and node names that torch modules
cannot have as attributes are renamed with a warning."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resgraph
from resgraph.expr import FUNCTIONS, MAX_DIGITS, ExprError, evaluate
from resgraph.ops import REGISTRY

from .test_ops import STRATEGIES, spec_text


# ---- every op's numeric attributes at extreme values ----------------------------------------------------------

EXTREME_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**62, 2**63, 10**30]
EXTREME_FLOATS = [0.0, 1e308, -1e308, 1.7976931348623157e308, 1e300, 5e-324, 1e-300, 0.5, 2.0**63]


def numeric_attributes(op: type) -> dict[str, str]:
    """Each attribute of `op` that takes numbers -> `integer` or `number`, read from its JSON schema, so that an op
    added to the registry is covered without a change here."""
    found = {}
    for name, schema in op.model_json_schema()["properties"].items():
        text = json.dumps(schema)
        if '"integer"' in text:
            found[name] = "integer"
        elif '"number"' in text:
            found[name] = "number"
    return found


def test_every_op_with_numbers_is_found():
    assert numeric_attributes(REGISTRY["conv2d"]).keys() >= {"out", "kernel", "stride", "padding", "groups"}
    assert numeric_attributes(REGISTRY["upsample"])["scale"] == "number"


@st.composite
def extreme_case(draw, name: str):
    attrs, shapes = draw(STRATEGIES[name])
    attrs, shapes = dict(attrs), [list(s) for s in shapes]
    numeric = numeric_attributes(REGISTRY[name])
    targets = sorted(numeric) + (["input dims"] if shapes else [])   # `parameter` and `buffer` read no input
    for _ in range(draw(st.integers(1, 2))):
        target = draw(st.sampled_from(targets))
        if target == "input dims":
            shape = draw(st.sampled_from(shapes))
            if shape:
                shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from(EXTREME_INTS[:5]))
            continue
        values = EXTREME_INTS + EXTREME_FLOATS if numeric[target] == "number" else EXTREME_INTS
        value = draw(st.sampled_from(values))
        attrs[target] = [value] * draw(st.integers(1, 2)) if draw(st.booleans()) and numeric[target] == "integer" \
            else value
    return attrs, shapes


def check_validate_then_compile(text: str) -> str:
    """'error' (located diagnostics only) or 'compiled' (validate said ok and compile on meta worked)."""
    diagnostics = resgraph.validate("extreme.yaml", text=text)
    errors = [d for d in diagnostics if d.is_error]
    for diagnostic in diagnostics:
        assert diagnostic.span is not None and diagnostic.span.file == "extreme.yaml", diagnostic
    if errors:
        return "error"
    network = resgraph.load("extreme.yaml", text=text)
    model = resgraph.compile(network, device="meta")
    assert sum(p.numel() for p in model.parameters()) == network.params
    return "compiled"


def _run_extremes(name: str, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(extreme_case(name))
    def run(case):
        attrs, shapes = case
        check_validate_then_compile(spec_text(name, attrs, shapes))

    run()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_extreme_numbers_give_a_diagnostic_or_compile(name):
    _run_extremes(name, 8)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_extreme_numbers_give_a_diagnostic_or_compile_exhaustive(name):
    _run_extremes(name, 300)


# ---- the expression builtins at their bounds ------------------------------------------------------------------

LARGEST = 2**62
# The slowest calls each builtin accepts (arguments at their bounds), and calls just past them.
AT_BOUNDS = {
    "round": [f"round({LARGEST}, -{MAX_DIGITS})", f"round({LARGEST}, {MAX_DIGITS})", "round(1e308, -64)",
              f"round({LARGEST} * 1.0, -64)"],
    "min": ["min(" + ", ".join([str(LARGEST)] * 16) + ")", "min([" + ", ".join(["1e308"] * 16) + "])"],
    "max": ["max(" + ", ".join([str(-LARGEST)] * 16) + ")"],
    "abs": [f"abs(-{LARGEST})", "abs(-1e308)"],
    "int": ["int(1e308)", "int('" + "9" * 32 + "')", f"int({LARGEST})"],
    "float": [f"float({LARGEST})", "float('" + "9" * 32 + "')"],
    "floor": ["floor(1e308)", "floor(-1e308)", "floor(4.6e18)"],
    "ceil": ["ceil(1e308)", "ceil(5e-324)"],
    "make_divisible": ["make_divisible(1e308, 5e-324)", f"make_divisible({LARGEST}, 1)",
                       f"make_divisible({LARGEST}, {LARGEST}, {LARGEST})", "make_divisible(5e-324, 1e308)"],
    "shape": ["shape(x)"],
}
PAST_BOUNDS = ["round(1, -10**18)", "round(1, 65)", "round(1.5, 10**18)", "round(1, 0.5)",
               "min(" + ", ".join(["1"] * 17) + ")", "int('" + "9" * 33 + "')", "float('" + "1" * 33 + "')",
               "abs('x')", "floor(1, 2)", "make_divisible(1)", f"abs({LARGEST} + 1)", "(-8) ** 0.5"]


def test_every_builtin_has_calls_at_its_bounds():
    assert set(AT_BOUNDS) == set(FUNCTIONS)


@pytest.mark.parametrize("name", sorted(AT_BOUNDS))
def test_each_builtin_returns_quickly_at_its_bounds(name):
    from resgraph.expr import Names

    scope = Names({}, lambda ref: (LARGEST,) * 3)
    for text in AT_BOUNDS[name]:
        slowest = 0.0
        for _ in range(5):
            start = time.perf_counter()
            try:
                evaluate(text, scope)
            except ExprError:
                pass   # refused (a result past 2**62, say) is also an answer
            slowest = max(slowest, time.perf_counter() - start)
        assert slowest < 0.1, (text, slowest)


@pytest.mark.parametrize("text", PAST_BOUNDS)
def test_builtins_refuse_arguments_past_their_bounds(text):
    start = time.perf_counter()
    with pytest.raises(ExprError):
        evaluate(text, {})
    assert time.perf_counter() - start < 0.1


# ---- literals, however written ------------------------------------------------------------------------------

def _one_value(value: str) -> str:
    return f"resgraph: 1\ninput: [8]\nparams: {{m: {value}}}\nnodes:\n  fc: {{op: linear, out: m}}\n"


@pytest.mark.parametrize("value", ["1" * 4301, "0x" + "f" * 2_000_000, "0o" + "7" * 30, "-" + "9" * 20,
                                   str(2**62 + 1), "0x" + "0" * 100 + "1" + "0" * 16])
def test_integer_literals_past_2_62_are_located_errors(value):
    start = time.perf_counter()
    (error,) = resgraph.validate("big.yaml", text=_one_value(value))
    assert time.perf_counter() - start < 5   # two megabytes of digits: read, never converted
    assert (error.code, error.span.line, error.span.col) == ("RG038", 3, 13)


@pytest.mark.parametrize("value", [str(2**62), "0x4000000000000000", "-" + str(2**62), "0x" + "0" * 1000 + "8",
                                   "0" * 5000 + "8", "-" + "0" * 5000 + "8", "+8", "-0", "0o" + "0" * 5000 + "7"])
def test_integer_literals_up_to_2_62_are_read(value):
    diagnostics = resgraph.validate("big.yaml", text=_one_value(value))
    assert all(d.code != "RG038" for d in diagnostics)


def test_params_from_python_and_the_command_line_are_bounded():
    (error,) = resgraph.validate("p.yaml", {"m": 10**100}, text=_one_value("8"))
    assert error.code == "RG038" and error.span.line == 3
    from click.testing import CliRunner

    from resgraph.cli import main

    result = CliRunner().invoke(main, ["validate", "--set", "m=0x" + "f" * 5000, "p.yaml"])
    assert result.exit_code == 2 and "too large" in result.output and "Traceback" not in result.output


# ---- names torch modules cannot take, sizes torch cannot hold ---------------------------------------------------

RESERVED = ["class", "def", "None", "True", "lambda", "import", "forward", "to", "cuda", "eval", "train",
            "parameters", "training", "state_dict", "modules", "children", "apply", "half", "float", "type",
            "graph", "code", "meta", "_modules", "register_buffer", "__init__", "__class__", "__dict__"]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_compile_and_run(name):
    import torch

    key = json.dumps(name)   # `True:` unquoted would be a boolean key
    text = (f"resgraph: 1\ninput: [8]\nblocks:\n  unit:\n    nodes:\n      {key}: {{op: linear, out: 8}}\n"
            f"nodes:\n  {key}: {{block: unit}}\n  {name}_: {{op: linear, out: 4}}\n  fc: {{op: linear, out: 2}}\n")
    warnings = resgraph.validate("names.yaml", text=text)
    assert [w.code for w in warnings] == ["RG039", "RG039"] and not any(w.is_error for w in warnings)
    model = resgraph.compile(resgraph.load("names.yaml", text=text))
    keys = list(model.state_dict())
    assert f"{name}_.weight" in keys and f"{name}__.{name}_.weight" in keys and "fc.weight" in keys, keys
    assert model(torch.randn(2, 8)).shape == (2, 2)


def test_reserved_name_list_covers_this_torch():
    import torch.fx as fx
    import torch.nn as nn

    from resgraph.lower import CompiledNetwork
    from resgraph.module_names import MODULE_ATTRIBUTES

    probe = CompiledNetwork(nn.Module(), fx.Graph(), class_name="Probe")
    found = {n for n in set(dir(probe)) | set(vars(probe)) | set(dir(nn.Sequential())) if not n.startswith("__")}
    assert found <= MODULE_ATTRIBUTES, sorted(found - MODULE_ATTRIBUTES)


@pytest.mark.parametrize("text", [
    "input: [2147483647, 8]\nnodes:\n  att: {op: multihead_attention, heads: 2}",
    "input: [536870912]\nnodes:\n  fc: {op: linear, out: 536870912}",
    "input: [1, 1, 8]\nnodes:\n  up: {op: upsample, scale: 268435455}",
])
def test_large_but_holdable_sizes_compile_on_meta(text):
    assert check_validate_then_compile("resgraph: 1\n" + text + "\n") == "compiled"


@pytest.mark.parametrize("scale", ["1e300", "1e308", "1.7976931348623157e308", "268435456"])
def test_upsample_scale_past_int64_is_located(scale):
    text = f"resgraph: 1\ninput: [3, 8, 8]\nnodes:\n  up: {{op: upsample, scale: {scale}}}\n"
    (error,) = resgraph.validate("up.yaml", text=text)
    assert (error.code, error.span.line) == ("RG046", 4)


@pytest.mark.parametrize("args, message", [
    (["--device", "xla"], "cannot allocate tensors on `xla`"),
    (["--max-memory", "inf"], "--max-memory"),
    (["--max-memory", "nan"], "--max-memory"),
    (["--max-memory", "-1"], "--max-memory"),
    (["--batch", str(2**31)], "--batch"),
])
def test_compile_options_torch_cannot_use_are_usage_errors(tmp_path, args, message):
    from click.testing import CliRunner

    from resgraph.cli import main

    spec = tmp_path / "net.yaml"
    spec.write_text("resgraph: 1\ninput: [8]\nnodes:\n  fc: {op: linear, out: 2}\n")
    result = CliRunner().invoke(main, ["compile", str(spec), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


def test_renaming_ends_for_every_reserved_name():
    """The mutant fuzz found `__init__` looping forever (`__init___` still looked like a dunder)."""
    import keyword

    from resgraph.module_names import MODULE_ATTRIBUTES, is_reserved, module_attribute

    names = sorted(MODULE_ATTRIBUTES) + keyword.kwlist + ["__init__", "__x__", "__", "___", "_"]
    taken = frozenset(name + "_" for name in names)
    for name in names:
        attribute = module_attribute(name, taken)
        assert not is_reserved(attribute) and (attribute == name or attribute not in taken), name


@pytest.mark.parametrize("node", ['{op: split, sizes: 1, dim: 1}', '{op: chunk, chunks: 2147483647, dim: 1}'])
def test_a_cut_into_billions_of_pieces_is_refused_before_it_is_made(node):
    """Found by the slow extreme-number run: `split` of a 2**31 - 1 dimension into pieces of 1 built two billion
    output shapes and was killed for memory. The count is checked before any piece is made."""
    text = f'resgraph: 1\ninput: [2147483647]\nnodes:\n  parts: {node}\n  a: {{op: relu, inputs: "parts:0"}}\n'
    (error,) = resgraph.validate("cut.yaml", text=text)
    assert error.code == "RG035" and error.span is not None and "2,147,483,647 pieces" in error.message

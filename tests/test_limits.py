"""Denial of service and overflow (issue 14, section 3): every number a spec can hold is bounded, every builtin
of the expression language returns quickly at its bounds, and a spec that `validate` accepts compiles on the meta
device: sizes are checked against torch's int64 limits before lowering, and node names that torch modules
cannot have as attributes are renamed with a warning."""

from __future__ import annotations

import json
import math
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
    targets = sorted(numeric) + ["input dims"]
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

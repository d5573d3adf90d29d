"""Bad specs under tests/cases/bad/ carry their expected diagnostics inline, as mypy's test data does:
`# E[CODE]: text` on the line the error must point at (text: a substring of the message)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import resgraph
from resgraph.diagnostics import CODES, Diagnostic, Diagnostics, Span, render_json, render_text

from .conftest import CASES

EXPECT = re.compile(r"#\s*E\[(RG\d{3})\](?::\s*(.*))?$")
BAD = sorted((CASES / "bad").glob("*.yaml"))


def expectations(path: Path) -> list[tuple[int, str, str]]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = EXPECT.search(line)
        if match:
            found.append((number, match.group(1), (match.group(2) or "").strip()))
    return found


def test_every_bad_case_declares_what_it_expects():
    assert BAD, "no bad cases found"
    for path in BAD:
        assert expectations(path), f"{path.name} has no `# E[...]` line"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_case(path: Path):
    diagnostics = resgraph.validate(path)
    errors = [d for d in diagnostics if d.is_error]
    expected = expectations(path)
    got = [(d.span.line if d.span else None, d.code, d.message) for d in errors]
    assert len(errors) == len(expected), f"expected {expected}, got {got}"
    for (line, code, text), error in zip(expected, errors):
        assert error.span is not None and Path(error.span.file).resolve() == path.resolve()
        assert (error.span.line, error.code) == (line, code), got
        assert text in error.message, f"{text!r} not in {error.message!r}"
        assert error.code in CODES


def test_identity_shortcut_mismatch_renders_like_a_compiler():
    path = CASES / "bad" / "identity_stride2.yaml"
    diagnostics = resgraph.validate(path)
    text = render_text(diagnostics, {str(path): path.read_text()})
    first = text.splitlines()[0]
    assert re.match(rf"{re.escape(str(path))}:13:54: error\[RG050\]: `layer2.add`: identity shortcut shapes differ",
                    first)
    assert "[128, 28, 28]" in first and "[64, 56, 56]" in first
    lines = text.splitlines()
    caret_line = next(line for line in lines if "^" in line)
    source_line = next(line for line in lines if line.startswith("13 |"))
    # The caret sits under the offending value `identity`.
    start = caret_line.index("^")
    assert source_line[start:start + len("identity")] == "identity"
    assert "= note: in `layer2`, an instance of block `basic` made here" in text
    assert "= help:" in text and "shortcut: project" in text


def test_json_rendering_has_every_field():
    path = CASES / "bad" / "unknown_op.yaml"
    data = json.loads(render_json(resgraph.validate(path)))
    assert data == [{
        "file": str(path), "line": 5, "column": 13, "end_line": 5, "end_column": 17, "code": "RG013",
        "severity": "error", "message": "unknown op `rleu`", "help": "did you mean `relu`?", "notes": [],
    }]


def test_collector_limits_errors_and_drops_exact_repeats():
    diagnostics = Diagnostics()
    span = Span("f.yaml", 1, 1, 1, 2)
    for _ in range(3):
        diagnostics.error("RG012", "same", span)
    assert len(diagnostics.items) == 1
    for index in range(Diagnostics.MAX_ERRORS + 10):
        diagnostics.error("RG012", f"error {index}", Span("f.yaml", index + 2, 1, index + 2, 2))
    assert diagnostics.error_count == Diagnostics.MAX_ERRORS
    diagnostics.warning("RG043", "a warning still gets through")
    assert not diagnostics.items[-1].is_error


def test_several_independent_errors_in_one_run(validate_text):
    diagnostics = validate_text("""
        resgraph: 1
        input: [3, 32, 32]
        nodes:
          conv1: {op: conv2d, out: 16, kernel: 3, strides: 2}
          act: {op: rleu}
          fc: {op: linear, out: -3}
    """)
    assert [(d.span.line, d.code) for d in diagnostics] == [(4, "RG011"), (5, "RG013"), (6, "RG012")]


def test_warning_for_unused_node_is_not_an_error(validate_text):
    diagnostics = validate_text("""
        resgraph: 1
        input: [8]
        nodes:
          fc1: {op: linear, out: 8}
          dead: {op: linear, out: 4}
          fc2: {op: linear, out: 2, inputs: fc1}
    """)
    assert [(d.code, d.severity.value, d.span.line) for d in diagnostics] == [("RG043", "warning", 5)]
    assert "`dead` is not used by any output" in diagnostics[0].message


def test_diagnostic_without_span_renders_without_excerpt():
    text = render_text([Diagnostic("RG004", "file `x.yaml` does not exist")], {})
    assert text == "error[RG004]: file `x.yaml` does not exist"

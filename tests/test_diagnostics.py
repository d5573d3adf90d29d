"""Bad specs under tests/cases/bad/ carry their expected diagnostics inline, as mypy's test data does:
`# E[CODE]: text` on the line the error must point at (text: a substring of the message); a case may
also state its warnings, `# W[CODE]: text` (then they are checked too; a case of warnings only is valid).

Each case also has a snapshot of its rendered diagnostics in tests/golden/diagnostics/<case>.txt;
`RESGRAPH_UPDATE_GOLDEN=1 python -m pytest tests/test_diagnostics.py` rewrites them (those tests then
skip, saying so). Codes that a single file cannot show (an unreadable file, several files, a limit of
`compile`, warnings) are tested below with files written to tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.diagnostics import CODES, Diagnostic, Diagnostics, Span, render_json, render_text

from .conftest import CASES, ROOT, spec_text

EXPECT = re.compile(r"#\s*E\[(RG\d{3})\](?::\s*(.*))?$")
EXPECT_WARNING = re.compile(r"#\s*W\[(RG\d{3})\](?::\s*(.*))?$")
BAD = sorted((CASES / "bad").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden" / "diagnostics"
UPDATE_GOLDEN = os.environ.get("RESGRAPH_UPDATE_GOLDEN") == "1"

# Cases whose `# E[...]` lines state the behaviour resgraph should have but does not have yet: they
# fail today (strict xfail), and pass -- failing the suite as XPASS -- once it is fixed; then drop the
# entry. Their golden files hold what resgraph prints today.
KNOWN_WRONG: dict[str, str] = {}

# Codes that no single-file case can show, and the tests below that check them instead.
TESTED_ELSEWHERE = {
    "RG004": "test_unreadable_file",
    "RG007": "test_a_spec_that_is_not_a_regular_file",
    "RG036": "test_compile_memory_limit",
    "RG037": "test_compile_memory_limit",
    "RG039": "test_reserved_node_names_compile_with_a_warning",
    "RG043": "test_warning_for_unused_node_is_not_an_error",
    "RG053": "test_projection_of_an_unchanged_shape_is_a_warning",
    "RG060": "test_import_of_an_unsupported_layer",
    "RG075": "test_an_output_that_is_an_input",
    "RG076": "test_an_output_that_is_not_a_regular_file",
    "RG077": "test_input_override_that_fits_no_input",
    "RG100": "test_bias_before_batch_norm_is_a_warning_that_allow_silences",
    "RG101": "test_activation_before_a_residual_add_is_a_warning_that_allow_silences",
    "RG092": "test_plugins_refused",
    "RG093": "test_plugin_whose_shape_rule_raises",
}


def expectations(path: Path, pattern: re.Pattern = EXPECT) -> list[tuple[int, str, str]]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = pattern.search(line)
        if match:
            found.append((number, match.group(1), (match.group(2) or "").strip()))
    return found


def _case(path: Path):
    if path.stem in KNOWN_WRONG:
        return pytest.param(path, id=path.stem, marks=pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[path.stem]))
    return pytest.param(path, id=path.stem)


def test_every_bad_case_declares_what_it_expects():
    assert BAD, "no bad cases found"
    for path in BAD:
        assert expectations(path) or expectations(path, EXPECT_WARNING), f"{path.name} has no `# E[...]` line"
    assert set(KNOWN_WRONG) <= {p.stem for p in BAD}


def test_every_code_has_a_case_or_a_test():
    covered = {code for path in BAD if path.stem not in KNOWN_WRONG
               for _, code, _ in expectations(path) + expectations(path, EXPECT_WARNING)}
    missing = sorted(set(CODES) - covered - set(TESTED_ELSEWHERE))
    assert not missing, f"codes without a bad case in tests/cases/bad/ or a test here: {missing}"
    assert set(TESTED_ELSEWHERE) <= set(CODES)
    for name in TESTED_ELSEWHERE.values():
        assert callable(globals().get(name)), name


@pytest.mark.parametrize("path", [_case(p) for p in BAD])
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
    expected_warnings = expectations(path, EXPECT_WARNING)
    if expected_warnings:
        warnings = [d for d in diagnostics if not d.is_error]
        assert [(d.span.line, d.code) for d in warnings] == [(line, code) for line, code, _ in expected_warnings]
        for (_, _, text), warning in zip(expected_warnings, warnings):
            assert text in warning.message, f"{text!r} not in {warning.message!r}"


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
        "fixes": [{"file": str(path), "line": 5, "column": 13, "end_line": 5, "end_column": 17, "replacement": "relu"}],
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


# ---- golden files: the rendered text of every bad case --------------------------------------------

def _rendered(path: Path) -> str:
    """What `resgraph validate tests/cases/bad/<case>.yaml` prints before its count, run from the repo root."""
    _, diagnostics = resgraph._analyse(path.relative_to(ROOT).as_posix(), None, None)
    return render_text(diagnostics.items, diagnostics.sources, color=False) + "\n"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_golden_rendering(path: Path, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = _rendered(path)
    golden = GOLDEN / f"{path.stem}.txt"
    shown = golden.relative_to(ROOT)
    if UPDATE_GOLDEN:
        changed = not golden.exists() or golden.read_text(encoding="utf-8") != text
        if changed:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text, encoding="utf-8", newline="\n")
        pytest.skip(f"RESGRAPH_UPDATE_GOLDEN=1: {'rewrote' if changed else 'unchanged:'} {shown} (not compared)")
    assert golden.exists(), f"{shown} is missing; create it with RESGRAPH_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8"), \
        f"the output differs from {shown}; if the change is intended, rerun with RESGRAPH_UPDATE_GOLDEN=1"


def test_every_golden_file_has_a_case():
    stale = sorted(p for p in GOLDEN.glob("*.txt") if not (CASES / "bad" / f"{p.stem}.yaml").exists())
    if UPDATE_GOLDEN and stale:
        for path in stale:
            path.unlink()
        pytest.skip(f"RESGRAPH_UPDATE_GOLDEN=1: removed {[p.name for p in stale]}")
    assert not stale, f"golden files without a case: {[p.name for p in stale]}"


def test_the_command_prints_the_golden_text_then_the_count(monkeypatch):
    if UPDATE_GOLDEN:
        pytest.skip("RESGRAPH_UPDATE_GOLDEN=1: golden files are being rewritten, not compared")
    monkeypatch.chdir(ROOT)
    for path in BAD:
        result = CliRunner().invoke(main, ["validate", path.relative_to(ROOT).as_posix()], catch_exceptions=False)
        golden = (GOLDEN / f"{path.stem}.txt").read_text(encoding="utf-8")
        if expectations(path):
            assert result.exit_code == 1 and result.stdout == "", path.name
            assert result.stderr.startswith(golden), path.name
            assert re.fullmatch(r"\d+ errors?(, \d+ warnings?)?\n", result.stderr[len(golden):]), path.name
        else:  # warnings only: valid
            assert result.exit_code == 0 and result.stdout.startswith(f"{path.relative_to(ROOT).as_posix()}: ok")
            assert re.fullmatch(r"\d+ warnings?\n", result.stderr[len(golden):]), path.name
            assert result.stderr.startswith(golden), path.name


# ---- codes that a single case file cannot show ------------------------------------------------------

def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(spec_text(text))
    return path


def _where(diagnostic: Diagnostic) -> tuple:
    span = diagnostic.span
    return (Path(span.file).name, span.line, span.col) if span else None


@pytest.mark.parametrize("kind", ["missing", "directory", "binary", "not utf-8"])
def test_unreadable_file(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = {"missing": "nope.yaml", "directory": "folder.yaml"}.get(kind, "spec.yaml")
    if kind == "directory":
        (tmp_path / name).mkdir()
    elif kind == "binary":
        (tmp_path / name).write_bytes(b"resgraph: 1\x00\n")
    elif kind == "not utf-8":
        (tmp_path / name).write_bytes(b"resgraph: 1\nname: caf\xe9\n")
    (error,) = resgraph.validate(name)
    expected = {
        "missing": (None, "file `nope.yaml` does not exist", "check the path"),
        "directory": (None, "`folder.yaml` is a directory, not a spec file", None),
        "binary": (("spec.yaml", 1, 1), "`spec.yaml` is a binary file, not YAML", None),
        "not utf-8": (("spec.yaml", 2, 10), "`spec.yaml` is not valid UTF-8 (byte 0xe9)", "save the file as UTF-8"),
    }[kind]
    assert (error.code, _where(error), error.message, error.help) == ("RG004", *expected)
    if kind != "directory":  # click refuses a directory itself, before resgraph reads it (also exit 2)
        result = CliRunner().invoke(main, ["validate", name])
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr.startswith(f"{str(error.span) + ': ' if error.span else ''}error[RG004]: {error.message}\n")


def test_missing_file_renders_without_a_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "nope.yaml"])
    assert result.stderr == "error[RG004]: file `nope.yaml` does not exist\n  = help: check the path\n1 error\n"


def test_file_over_the_size_limit(tmp_path):
    from resgraph.source import MAX_FILE_BYTES

    path = tmp_path / "big.yaml"
    path.write_bytes(b"resgraph: 1\n" + b"#" * MAX_FILE_BYTES)
    (error,) = resgraph.validate(path)
    assert (error.code, _where(error)) == ("RG005", ("big.yaml", 1, 1))
    assert error.message == f"`{path}` is {MAX_FILE_BYTES + 12:,} bytes; specs are limited to {MAX_FILE_BYTES:,} bytes"


def test_too_many_values(tmp_path, monkeypatch):
    # The real limit is 500,000 values; a file that size takes PyYAML many seconds to compose.
    monkeypatch.setattr("resgraph.source.MAX_VALUES", 20)
    path = _write(tmp_path, "spec.yaml", "resgraph: 1\nparams: {big: [" + ", ".join(["0"] * 30) + "]}\n")
    (error,) = resgraph.validate(path)
    assert (error.code, _where(error), error.message) == ("RG005", ("spec.yaml", 2, 55),
                                                          "the spec has more than 20 values")


def test_include_cycle_across_two_files(tmp_path):
    _write(tmp_path, "a.yaml", "resgraph: 1\ninclude: [b.yaml]\n")
    _write(tmp_path, "b.yaml", "resgraph: 1\ninclude: [a.yaml]\n")
    (error,) = resgraph.validate(tmp_path / "a.yaml")
    assert (error.code, _where(error)) == ("RG031", ("b.yaml", 2, 11))
    assert error.message == "include cycle: `a.yaml` -> `b.yaml` -> `a.yaml`"
    assert error.help == "a file cannot include itself, directly or through other files"


LIBRARY_WITH_A_TAB = "resgraph: 1\nblocks:\n  unit:\n    nodes:\n\t  fc: {op: linear, out: 8}\n"
USES_THE_LIBRARY = """
    resgraph: 1
    include: [lib.yaml]
    input: [8]
    nodes:
      body: {block: unit}
"""


def test_error_in_an_included_file_points_into_that_file(tmp_path):
    (tmp_path / "lib.yaml").write_text(LIBRARY_WITH_A_TAB)
    errors = resgraph.validate(_write(tmp_path, "net.yaml", USES_THE_LIBRARY))
    assert (errors[0].code, _where(errors[0])) == ("RG001", ("lib.yaml", 5, 1))
    assert "a tab character" in errors[0].message and "tabs" in errors[0].help


def test_error_in_an_included_file_is_reported_once_with_the_include_site(tmp_path):
    (tmp_path / "lib.yaml").write_text(LIBRARY_WITH_A_TAB)
    errors = resgraph.validate(_write(tmp_path, "net.yaml", USES_THE_LIBRARY))
    assert [e.code for e in errors] == ["RG001"]
    assert any(note.span and Path(note.span.file).name == "net.yaml" for note in errors[0].notes)


def test_nodes_of_an_included_file_are_ignored_with_a_warning(tmp_path):
    _write(tmp_path, "lib.yaml", """
        resgraph: 1
        input: [8]
        blocks:
          unit:
            nodes:
              fc: {op: linear, out: 8}
        nodes:
          fc: {op: linear, out: 8}
    """)
    (warning,) = resgraph.validate(_write(tmp_path, "net.yaml", USES_THE_LIBRARY))
    assert (warning.code, warning.severity.value, _where(warning)) == ("RG031", "warning", ("net.yaml", 2, 11))
    assert warning.message == "the nodes of included file `lib.yaml` are ignored"


def test_block_defined_in_two_files(tmp_path):
    library = "resgraph: 1\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: %d}\n"
    (tmp_path / "a.yaml").write_text(library % 8)
    (tmp_path / "b.yaml").write_text(library % 4)
    path = _write(tmp_path, "net.yaml", "resgraph: 1\ninclude: [a.yaml, b.yaml]\ninput: [8]\nnodes:\n"
                                        "  body: {block: unit}\n")
    (error,) = resgraph.validate(path)
    assert (error.code, _where(error), error.message) == ("RG042", ("b.yaml", 3, 3), "block `unit` is defined twice")
    assert [(n.message, Path(n.span.file).name, n.span.line) for n in error.notes] == [("first defined here", "a.yaml", 3)]


BASE = """
    resgraph: 1
    params: {width: 8}
    input: [8]
    nodes:
      fc: {op: linear, out: width}
"""


def test_extending_spec_may_not_change_the_structure(tmp_path):
    _write(tmp_path, "base.yaml", BASE)
    path = _write(tmp_path, "wide.yaml", "resgraph: 1\nextends: base.yaml\nparams: {width: 16}\ninput: [4]\n")
    (error,) = resgraph.validate(path)
    assert (error.code, _where(error)) == ("RG011", ("wide.yaml", 4, 1))
    assert error.message == "a spec that `extends` another cannot set `input`"


def test_extending_spec_sets_an_unknown_param(tmp_path):
    _write(tmp_path, "base.yaml", BASE)
    (error,) = resgraph.validate(_write(tmp_path, "wide.yaml", "resgraph: 1\nextends: base.yaml\nparams: {widht: 16}\n"))
    assert (error.code, _where(error), error.message, error.help) == (
        "RG033", ("wide.yaml", 3, 10), "`base.yaml` has no parameter `widht`", "did you mean `width`?")


def test_set_of_an_unknown_param(tmp_path):
    (error,) = resgraph.validate(_write(tmp_path, "base.yaml", BASE), params={"widht": 3})
    assert (error.code, _where(error), error.message, error.help) == (
        "RG033", ("base.yaml", 2, 1), "the spec has no parameter `widht` to set", "did you mean `width`?")


def test_block_library_cannot_be_loaded(tmp_path):
    path = _write(tmp_path, "lib.yaml", "resgraph: 1\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 8}\n")
    assert resgraph.validate(path) == []
    with pytest.raises(resgraph.SpecError) as info:
        resgraph.load(path)
    (error,) = info.value.diagnostics
    assert (error.code, _where(error), error.message) == (
        "RG010", ("lib.yaml", 1, 1), "the spec defines no network (it has no `nodes`)")


HUGE_LINEAR = """
    resgraph: 1
    name: huge_linear
    input: [10000000]
    nodes:
      fc: {op: linear, out: 10000000}
"""


def test_compile_memory_limit(tmp_path, monkeypatch):
    # A 10^7 x 10^7 linear layer is a valid spec: validation counts its 10^14 parameters without
    # allocating anything; `compile` refuses it before building (RG036, exit 2 on the command line).
    path = _write(tmp_path, "huge.yaml", HUGE_LINEAR)
    start = time.perf_counter()
    (warning,) = resgraph.validate(path)
    assert time.perf_counter() - start < 5
    assert (warning.code, warning.severity.value) == ("RG037", "warning")
    assert warning.message == "`fc` has 100,000,010,000,000 parameters (372,529 GiB in float32)"
    network = resgraph.load(path)
    assert network.params == 10**14 + 10**7
    with pytest.raises(resgraph.SpecError) as info:
        resgraph.compile(network)
    (error,) = info.value.diagnostics
    assert (error.code, error.span) == ("RG036", None)
    assert error.message == ("`huge_linear` needs about 3.73e+05 GiB in float32: 100,000,010,000,000 parameters "
                             "(3.73e+05 GiB) and activations of 76.3 MiB for a batch of 1, more than the limit "
                             "of 16 GiB")
    assert "--max-memory" in error.help
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["compile", "huge.yaml", "--max-memory", "1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("huge.yaml:5:3: warning[RG037]: `fc` has 100,000,010,000,000 parameters")
    error_text = result.stderr.split("1 warning\n", 1)[1]
    assert error_text.startswith("error[RG036]: `huge_linear` needs about 3.73e+05 GiB in float32: "
                                 "100,000,010,000,000 parameters (3.73e+05 GiB) and activations of 153 MiB for a "
                                 "batch of 2, more than the limit of 1 GiB\n  = help: raise the limit")


def test_exit_codes_of_validate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "good.yaml", BASE)
    _write(tmp_path, "warned.yaml", "resgraph: 1\ninput: [8]\nnodes:\n  dead: {op: linear, out: 4}\n"
                                    "  fc: {op: linear, out: 2, inputs: input}\n")
    (tmp_path / "bad.yaml").write_text((CASES / "bad" / "unknown_op.yaml").read_text())

    def run(*args):
        return CliRunner().invoke(main, ["validate", *args])

    assert run("good.yaml").exit_code == 0
    warned = run("warned.yaml")
    assert warned.exit_code == 0 and warned.stdout == "warned.yaml: ok (3 nodes, 54 params)\n"
    assert warned.stderr.startswith("warned.yaml:4:3: warning[RG043]: node `dead` is not used by any output\n")
    assert warned.stderr.endswith("\n1 warning\n")
    assert run("bad.yaml").exit_code == 1
    assert run("nope.yaml").exit_code == 2
    assert run("nope.yaml", "bad.yaml", "good.yaml").exit_code == 1  # an invalid spec outranks an unreadable one
    assert run("--set", "width", "good.yaml").exit_code == 2


def test_json_format_of_a_diagnostic_with_a_note(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["validate", "--format", "json", "tests/cases/bad/let_unknown_name.yaml"])
    assert result.exit_code == 1 and result.stderr == ""
    assert json.loads(result.stdout) == [{
        "file": "tests/cases/bad/let_unknown_name.yaml", "line": 6, "column": 18, "end_line": 6, "end_column": 27,
        "code": "RG021", "severity": "error", "message": "invalid value for `width`: unknown name `plane`",
        "help": "did you mean `planes`?",
        "notes": [{"message": "in `body`, an instance of block `mlp` made here",
                   "file": "tests/cases/bad/let_unknown_name.yaml", "line": 10, "column": 3}],
        "fixes": [],
    }]


def test_errors_doc_has_a_section_per_code():
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    missing = [code for code, title in CODES.items() if f"\n### {code}: {title}\n" not in text]
    assert not missing, f"docs/errors.md has no `### CODE: title` section for {missing}"


def test_import_of_an_unsupported_layer():
    import torch.nn as nn

    from resgraph.importer import import_module

    with pytest.raises(resgraph.SpecError) as info:
        import_module(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Softshrink()), input_shape=(3, 16, 16))
    (error,) = info.value.diagnostics
    assert error.code == "RG060" and error.message == "cannot import `1`: `torch.nn.Softshrink` has no resgraph op"
    assert "replace the layer in the model, or add an op" in error.help


def test_projection_of_an_unchanged_shape_is_a_warning(tmp_path):
    path = _write(tmp_path, "option_c.yaml", """
        resgraph: 1
        input: [8, 4, 4]
        blocks:
          unit:
            nodes:
              conv: {op: conv2d, out: 8, kernel: 3, padding: 1}
              add: {op: add, inputs: [conv, input], shortcut: project}
        nodes:
          body: {block: unit, repeat: 3}
    """)
    (warning,) = resgraph.validate(path)  # one per definition, not one per instance
    assert (warning.code, warning.severity.value, _where(warning)) == ("RG053", "warning", ("option_c.yaml", 7, 55))
    assert warning.message == "`body.0.add` projects a shortcut whose shape does not change ([8, 4, 4])"
    assert "`shortcut: auto`" in warning.help and resgraph.load(path).params > 0


# ---- the files a run reads and writes (more in tests/test_files.py) ----------------------------------

def test_a_spec_that_is_not_a_regular_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe.yaml")
    (error,) = resgraph.validate("pipe.yaml")   # returns at once: a FIFO is never opened
    assert (error.code, error.span, error.message) == ("RG007", None, "`pipe.yaml` is a named pipe (FIFO), not a "
                                                                     "regular file")
    result = CliRunner().invoke(main, ["validate", "pipe.yaml"])
    assert result.exit_code == 2 and "error[RG007]" in result.output


def test_an_output_that_is_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("spec.dot").write_text("resgraph: 1\ninput: [4]\nnodes:\n  fc: {op: linear, out: 2}\n")
    result = CliRunner().invoke(main, ["render", "spec.dot", "-o", "spec.dot"])
    assert result.exit_code == 2 and result.output.startswith(
        "error[RG075]: cannot write `spec.dot`: it is an input of this run")
    assert Path("spec.dot").read_text().startswith("resgraph: 1")


def test_an_output_that_is_not_a_regular_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("spec.yaml").write_text("resgraph: 1\ninput: [4]\nnodes:\n  fc: {op: linear, out: 2}\n")
    os.mkfifo("net.dot")
    result = CliRunner().invoke(main, ["render", "spec.yaml", "-o", "net.dot"])
    assert result.exit_code == 2 and result.output.startswith(
        "error[RG076]: cannot write `net.dot`: it is not a regular file")


def test_input_override_that_fits_no_input(tmp_path, monkeypatch):
    """`--input` (and `inputs=` in Python) replaces declared shapes; one that fits none is located at `input`."""
    monkeypatch.chdir(tmp_path)
    Path("spec.yaml").write_text("resgraph: 1\ninput: {x: [8], y: [8]}\nnodes:\n  sum: {op: add, inputs: [x, y]}\n")
    result = CliRunner().invoke(main, ["summary", "spec.yaml", "--input", "16"])
    assert result.exit_code == 1 and result.output.startswith(
        "spec.yaml:2:1: error[RG077]: `--input 16` gives one shape, but the network has 2 inputs (`x`, `y`)")
    assert "help: name the input each shape is for, e.g. `--input x=16` `--input y=16`" in result.output
    problems = resgraph.validate("spec.yaml", inputs={"z": [8]})
    assert [(d.code, d.message, d.help) for d in problems] == [
        ("RG077", "`--input z=8`: the network has no input `z`", "its inputs: `x`, `y`")]
    problems = resgraph.validate("spec.yaml", inputs={"x": [2, 8]})
    assert [(d.code, d.span.line, d.span.col) for d in problems] == [("RG077", 2, 12)]   # the `[8]` of `x`
    assert problems[0].message == "`--input 2,8` gives 2 dimensions for `x`, but the spec declares 1"


_LINTED = """
    resgraph: 1
    input: [16, 8, 8]
    blocks:
      unit:
        nodes:
          conv: {op: conv2d, out: 16, kernel: 3, padding: 1}
          bn: batchnorm2d
          relu: relu
          add: {op: add, inputs: [relu, input]}
    nodes:
      body: {block: unit, repeat: 2}
      conv: {op: conv2d, out: 16, kernel: 1, bias: true}
      bn: batchnorm2d
"""


def test_bias_before_batch_norm_is_a_warning_that_allow_silences(tmp_path):
    path = _write(tmp_path, "lint.yaml", _LINTED)
    warnings = [d for d in resgraph.validate(path) if d.code == "RG100"]
    assert [(w.severity.value, _where(w)) for w in warnings] == [("warning", ("lint.yaml", 6, 7)),
                                                                ("warning", ("lint.yaml", 12, 48))]
    assert warnings[0].message == ("`body.0.conv` has a bias, but batch norm `bn` right after it subtracts the "
                                   "mean and cancels it")
    assert warnings[0].help.startswith("add `bias: false`") and warnings[1].help.startswith("set `bias: false`")
    quiet = _write(tmp_path, "quiet.yaml", _LINTED + "    allow: [RG100]\n")
    assert [d.code for d in resgraph.validate(quiet)] == ["RG101"]
    # in a block's `allow`, only the warnings located in that block go
    block_only = _write(tmp_path, "block.yaml", _LINTED.replace("      unit:\n", "      unit:\n        allow: [RG100]\n"))
    assert [(d.code, d.span.line) for d in resgraph.validate(block_only)] == [("RG101", 10), ("RG100", 13)]
    # a spec that `extends` another adds to its base's list
    child = _write(tmp_path, "child.yaml", "resgraph: 1\nextends: quiet.yaml\nallow: [RG101]\n")
    assert resgraph.validate(child) == []
    unknown = _write(tmp_path, "unknown.yaml", _LINTED + "    allow: [RG999]\n")
    (error,) = [d for d in resgraph.validate(unknown) if d.is_error]
    assert (error.code, _where(error), error.message) == ("RG012", ("unknown.yaml", 14, 9),
                                                          "`allow` names an unknown code `RG999`")


def test_activation_before_a_residual_add_is_a_warning_that_allow_silences(tmp_path):
    path = _write(tmp_path, "lint.yaml", _LINTED)
    (warning,) = [d for d in resgraph.validate(path) if d.code == "RG101"]
    assert (warning.severity.value, _where(warning)) == ("warning", ("lint.yaml", 9, 31))
    assert "ends with activation `relu` (relu) right before the `add`, so the residual it adds is never negative" \
        in warning.message
    assert "allow: [RG101]" in warning.help
    # the original ResNet (relu after the add) and pre-activation (no relu at the end of the branch) are quiet
    after = _write(tmp_path, "after.yaml", _LINTED.replace("inputs: [relu, input]", "inputs: [bn, input]")
                   .replace("          relu: relu\n", "").replace("bias: true", "bias: false")
                   .replace("padding: 1}", "padding: 1, bias: false}"))
    assert resgraph.validate(after) == []
    assert resgraph.load(_write(tmp_path, "quiet.yaml", _LINTED + "    allow: [RG101, RG100]\n")).warnings == []
def test_plugins_refused(tmp_path):
    path = tmp_path / "refused.yaml"
    path.write_text("resgraph: 1\nplugins: [resgraph_cbam.ops]\ninput: [4, 8, 8]\n"
                    "nodes:\n  a: {op: cbam, reduction: 2}\n")
    (error,) = resgraph.validate(path, plugins=False)
    assert (error.code, error.span.line, error.span.col) == ("RG092", 2, 1)
    assert "`--no-plugins`" in error.message and "you trust" in error.help


def test_plugin_whose_shape_rule_raises(tmp_path, plugins_on_path):
    path = tmp_path / "broken.yaml"
    path.write_text("resgraph: 1\nplugins: [resgraph_broken.ops]\ninput: [1, 4, 4]\n"
                    "nodes:\n  norm: {op: broken_norm}\n")
    (error,) = resgraph.validate(path)
    assert (error.code, error.span.line, error.span.col) == ("RG093", 5, 3)
    assert error.message.startswith("`norm`: plugin `resgraph_broken.ops` raised ZeroDivisionError")
    assert "resgraph_broken/ops.py:18" in error.message
# ---- help texts name real ops ---------------------------------------------------------------------

# Backticked words in help texts that are not spec field names but could be read as ops; none is an op.
NOT_OPS = {"true", "false", "null", "index", "identity"}


def _help_words() -> list[tuple[str, int, str]]:
    """(file, line, word) for every backticked word in a `help=` argument in resgraph/'s source."""
    import ast

    found = []
    for path in sorted((ROOT / "resgraph").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            texts = [keyword.value for keyword in call.keywords if keyword.arg == "help"]
            name = getattr(call.func, "id", getattr(call.func, "attr", None))
            if name in ("fail", "ShapeError") and len(call.args) > 1:   # help given by position
                texts.append(call.args[1])
            for text in texts:
                for part in ast.walk(text):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        for word in re.findall(r"`([a-z][a-z0-9_]*)`", part.value):
                            found.append((path.name, part.lineno, word))
    return found


def _op_like(word: str) -> bool:
    """A word that names a tensor operation in torch (a function of torch, torch.nn.functional or a Tensor
    method, or a torch.nn module lowercased) and is not a spec field: the words a help text would use for
    an op."""
    import torch
    import torch.nn.functional as F

    from resgraph.ops import REGISTRY
    from resgraph.spec import BlockCall, BlockDef, SpecFile

    fields = {name for cls in (*REGISTRY.values(), BlockCall, BlockDef, SpecFile)
              for field_name, info in cls.model_fields.items() for name in (field_name, info.alias) if name}
    if word in fields or word in NOT_OPS:
        return False
    modules = {name.lower() for name in dir(torch.nn) if name[:1].isupper()}
    return (word in REGISTRY or hasattr(F, word) or hasattr(torch.Tensor, word) or word in modules
            or (hasattr(torch, word) and callable(getattr(torch, word))))


def test_help_texts_name_ops_that_exist():
    from resgraph.ops import REGISTRY

    words = _help_words()
    assert len(words) > 30, "the scan found too few help texts to be reading the source"
    wrong = sorted({(f, line, w) for f, line, w in words if _op_like(w) and w not in REGISTRY})
    assert not wrong, f"help texts name ops that do not exist: {wrong}"
    # the detector sees ops that do not exist, and lets field names through
    assert _op_like("view") and _op_like("reshape") and not _op_like("groups") and not _op_like("shortcut")
def test_reserved_node_names_compile_with_a_warning(validate_text, load_text):
    """RG039: a node named like a keyword or a module attribute is renamed in the module, with a warning."""
    text = """
        resgraph: 1
        input: [8]
        nodes:
          forward: {op: linear, out: 4}
          fc: {op: linear, out: 2}
        """
    (warning,) = validate_text(text)
    assert (warning.code, warning.severity.value, warning.span.line) == ("RG039", "warning", 4)
    assert "`forward_`" in warning.message
    model = resgraph.compile(load_text(text), device="meta")
    assert [k for k in model.state_dict()] == ["forward_.weight", "forward_.bias", "fc.weight", "fc.bias"]


def test_text_from_a_spec_cannot_drive_the_terminal(tmp_path):
    """Issue 14: a name or value with ESC (colours, cursor moves), other controls, line separators or bidi
    overrides is printed as escapes in diagnostics, in the message and in the source excerpt, and the caret
    stays under the value."""
    import subprocess
    import sys

    spec = tmp_path / "spec.yaml"
    spec.write_text('resgraph: 1\ninput: [4]\nnodes:\n  "a\\e[2Jb\\u202e": {op: linear, out: 2}\n'
                    '  fc: {op: linear, out: "x\\e]0;title\\a"}\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "resgraph", "validate", str(spec)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown, repr(shown)
    assert "a\\x1b[2Jb\\u202e" in shown
    lines = shown.splitlines()
    excerpt = next(i for i, line in enumerate(lines) if line.startswith("4 |"))
    assert lines[excerpt + 1].index("^") == lines[excerpt].index('"a')   # one column per character, as before

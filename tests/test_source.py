"""The loader: positions for every value, and hostile or broken YAML ending in one clear diagnostic."""

from __future__ import annotations

import pytest

from resgraph.diagnostics import Diagnostics
from resgraph.source import MAX_DEPTH, MAX_FILE_BYTES, load_source, parse_value


def load(text: str | None = None, path: str = "spec.yaml"):
    diagnostics = Diagnostics()
    source = load_source(path, diagnostics, text)
    return source, diagnostics.items


def only_error(items):
    assert len(items) == 1, items
    return items[0]


def test_values_and_keys_keep_their_positions():
    source, items = load("resgraph: 1\nnodes:\n  conv1: {op: conv2d, out: 16}\n  fc: [1, 2]\n")
    assert not items
    assert source.data == {"resgraph": 1, "nodes": {"conv1": {"op": "conv2d", "out": 16}, "fc": [1, 2]}}
    out = source.span(("nodes", "conv1", "out"))
    assert (out.line, out.col, out.end_col) == (3, 28, 30)
    key = source.span(("nodes", "conv1"), key=True)
    assert (key.line, key.col, key.end_col) == (3, 3, 8)
    assert source.span(("nodes", "fc", 1)).col == 11
    # A missing key falls back to the nearest parent that exists.
    assert source.span(("nodes", "conv1", "kernel")) == source.span(("nodes", "conv1"))


@pytest.mark.parametrize("text, expected", [
    ("a: no", "no"), ("a: on", "on"), ("a: yes", "yes"), ("a: 1_000", "1_000"), ("a: 0777", 777),
    ("a: 0o17", 15), ("a: 0x1f", 31), ("a: 1e3", 1000.0), ("a: true", True), ("a: ~", None), ("a: 3.5", 3.5),
    ("a: '12'", "12"), ("a: .inf", float("inf")),
])
def test_yaml_1_2_core_schema(text, expected):
    source, items = load(text)
    assert not items
    assert source.data["a"] == expected and type(source.data["a"]) is type(expected)


def test_duplicate_keys_name_both_lines():
    error = only_error(load("nodes:\n  conv1: 1\n  conv1: 2\n")[1])
    assert error.code == "RG002" and error.span.line == 3
    assert "first defined at line 2" in error.message


@pytest.mark.parametrize("text", [
    "a: !!python/object/apply:os.system ['echo pwned']",
    "a: !!python/name:os.system",
    "a: !!binary aGVsbG8=",
    "a: !custom 1",
    "a: !!set {x, y}",
])
def test_tags_are_refused(text):
    error = only_error(load(text)[1])
    assert error.code == "RG003" and "tag" in error.message


def test_billion_laughs_is_refused_without_expanding():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    error = only_error(load("\n".join(lines))[1])
    assert error.code == "RG003" and "alias" in error.message


def test_merge_keys_are_refused():
    error = only_error(load("base: &b {x: 1}\nother:\n  <<: *b\n")[1])
    assert error.code == "RG003"


def test_tabs_get_a_hint():
    error = only_error(load("nodes:\n\tconv1: 1\n")[1])
    assert error.code == "RG001" and error.span.line == 2 and "tabs" in error.help


def test_syntax_error_is_located():
    error = only_error(load("nodes: {a: 1\nb: 2\n")[1])
    assert error.code == "RG001" and error.span is not None


def test_non_utf8_bytes_are_located(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"resgraph: 1\nname: caf\xe9\n")
    error = only_error(load(path=str(path))[1])
    assert error.code == "RG004" and (error.span.line, error.span.col) == (2, 10) and "UTF-8" in error.message


def test_binary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04\x00\x00binary")
    error = only_error(load(path=str(path))[1])
    assert error.code == "RG004" and "binary" in error.message


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n", "---\n"])
def test_empty_files(text):
    error = only_error(load(text)[1])
    assert error.code == "RG010" and "empty" in error.message


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * MAX_FILE_BYTES)
    error = only_error(load(path=str(path))[1])
    assert error.code == "RG005"


def test_deep_nesting_is_refused():
    error = only_error(load("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))[1])
    assert error.code == "RG005" and "nested" in error.message


def test_very_deep_nesting_does_not_overflow_the_stack():
    error = only_error(load("a: " + "[" * 20000 + "]" * 20000)[1])
    assert error.code in ("RG001", "RG005")


def test_non_string_keys_are_refused():
    error = only_error(load("1: a\n")[1])
    assert error.code == "RG003" and "quote it" in error.help


def test_missing_file_and_directory(tmp_path):
    assert only_error(load(path=str(tmp_path / "nope.yaml"))[1]).code == "RG004"
    assert only_error(load(path=str(tmp_path))[1]).code == "RG004"


@pytest.mark.parametrize("text, expected", [("10", 10), ("pad", "pad"), ("[1, 2]", [1, 2]), ("false", False),
                                            ("0.5", 0.5), ("", "")])
def test_parse_value_for_command_line_overrides(text, expected):
    assert parse_value(text) == expected


@pytest.mark.parametrize("text", ["{a: 1}", "[1, 2", "!!python/name:os.system"])
def test_parse_value_rejects_what_is_not_a_plain_value(text):
    with pytest.raises(ValueError):
        parse_value(text)

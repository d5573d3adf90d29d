"""resgraph/python_text.py: every text from a spec becomes a Python literal whose value is that text, on
one line; every name becomes an identifier that shadows nothing. Checked with Python's own parser."""

from __future__ import annotations

import ast
import builtins
import keyword
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from resgraph.python_text import FILE_NAMES, python_docstring, python_float, python_name, python_string

from .hostile import NAMES, TEXTS

# any code point, lone surrogates included; quotes and backslashes often
TEXT = st.text(st.one_of(st.characters(codec=None), st.sampled_from(['"', "'", "\\", "\n", "\x00", "\u2028", "N"])))


def _single_expression(source: str) -> ast.expr:
    tree = ast.parse(source, mode="eval")
    assert isinstance(tree.body, ast.Constant)
    return tree.body


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_a_string_literal_is_its_text_on_one_line(text):
    source = python_string(text)
    assert len(source.splitlines()) == 1 and "\x00" not in source
    assert _single_expression(source).value == text


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_a_docstring_is_its_text_with_whitespace_collapsed(text):
    source = python_docstring(text)
    assert "\n" not in source and "\x00" not in source
    assert _single_expression(source).value == " ".join(text.split())
    # as the first statement of a class body, nothing after it in the line is code
    module = ast.parse(f"class C:\n    {source}\n    x = 1\n")
    assert [type(s).__name__ for s in module.body[0].body] == ["Expr", "Assign"]


def test_the_hostile_corpus_round_trips():
    for text in TEXTS:
        assert _single_expression(python_string(text)).value == text
        assert _single_expression(python_docstring(text)).value == " ".join(text.split())


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_round_trip_nan_and_infinities_included(value):
    source = python_float(value)
    result = eval(source, {"__builtins__": {"float": float}})  # our own literal, with nothing else in scope
    assert result == value or (math.isnan(value) and math.isnan(result))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.sampled_from(NAMES), st.text("abcxyz_019ABF", min_size=1, max_size=8)))
def test_names_are_identifiers_that_shadow_nothing(name):
    python = python_name(name)
    assert python.isidentifier() and not keyword.iskeyword(python) and not keyword.issoftkeyword(python)
    assert python not in dir(builtins) and python not in FILE_NAMES
    assert not (python.startswith("__") and not python.endswith("__"))   # Python would mangle it in a class
    assert python_name(name, {python}) != python
    if name.isidentifier() and python != name:
        assert name in dir(builtins) or name in FILE_NAMES or keyword.iskeyword(name) \
            or keyword.issoftkeyword(name) or name.startswith("__")

"""Python source text for the ejector: every string, docstring, number and name from a spec passes
through one of these functions before it is written into generated Python.

A spec is data, shared like code: nothing in it may close a string, start a statement, or shadow a
name the generated file relies on.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re

# Names the generated file itself uses: its imports, its helpers and what its methods call.
FILE_NAMES = frozenset({"self", "torch", "nn", "F", "math", "super", "init_conv", "ZeroPadShortcut", "DropPath",
                        "in_channels", "index"})
RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins)) | FILE_NAMES


def escape_text(text: str, quotes: str = "all") -> str:
    """`text` as the inside of a double-quoted Python string: backslashes and double quotes escaped,
    and every character that is not printable (controls, NUL, line and paragraph separators, surrogates,
    unassigned code points) written as an escape, so the literal is one line that nothing can close.
    `quotes="runs"` (for docstrings) escapes only a double quote that another follows, and a first and a last
    one: no two unescaped quotes then touch, nor touch the triple quotes, and `"U-Net"` stays readable."""
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            following = text[index + 1:index + 2]
            out.append('\\"' if quotes == "all" or following in ('"', "") or index == 0 else '"')
        elif char.isprintable() and char not in "\u2028\u2029\x85":
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def python_string(text: str) -> str:
    """A Python string literal whose value is `text`."""
    return '"' + escape_text(text) + '"'


def python_docstring(text: str) -> str:
    """A docstring (with its quotes) whose text is `text` with runs of whitespace made one space."""
    return '"""' + escape_text(" ".join(text.split()), quotes="runs") + '"""'


def python_float(value: float) -> str:
    """A float literal; NaN and the infinities, which have none, as `float("nan")` and `float("inf")`."""
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(value)


def python_name(text: str, taken: set[str] | frozenset = frozenset()) -> str:
    """A Python identifier for the spec name `text`: other characters made `_`, a leading digit
    prefixed, a keyword, builtin or name the file uses suffixed with `_`, leading `__` moved to the end (Python
    mangles such names in a class), and distinct from `taken`."""
    name = re.sub(r"\W", "_", text, flags=re.ASCII)
    if name.startswith("__"):   # private (`__x`) and dunder names: Python mangles or reserves them in a class
        name = name.lstrip("_") + "__" if name.strip("_") else "v" + name
    if not name or name[0].isdigit():
        name = "_" + name
    while name in RESERVED:
        name += "_"
    base, suffix = name, 1
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    return name

"""A corpus of hostile strings and names, for tests of every artefact a spec's text reaches (generated
Python, DOT, SVG, HTML, ONNX, ...). Each payload must come out as inert text, or be refused with a
diagnostic; none may run, close a string or comment, or change what the artefact computes.

`TEXTS` go where a spec allows any text (`name`, `doc`, a block's `doc`, string param values);
`NAMES` where it allows identifiers (node, block and param names): keywords, builtins, the names
generated files use themselves, and `nn.Module` attributes.
"""

from __future__ import annotations

# A payload that, if it ever ran, leaves this file behind (tests look for it).
SIDE_EFFECT_FILE = "pwned.txt"
_SHELL = f'__import__("os").system("echo INJECTED > {SIDE_EFFECT_FILE}")'

TEXTS: list[str] = [
    # closing a Python string or docstring of every quoting kind, then code
    f'pwn""" + str({_SHELL}) + """',
    f"pwn''' + str({_SHELL}) + '''",
    f'pwn" + str({_SHELL}) + "',
    f"pwn' + str({_SHELL}) + '",
    f'"""\n{_SHELL}\n"""',
    f"'''\n{_SHELL}\n#",
    '"', "'", '"""', "'''", '""""', 'x"""', '"""x',
    # backslashes: a trailing one escapes the closing quote; `\N` and `\x` are escapes with a syntax
    "ends in a backslash\\", "\\", "\\\\", "two\\\\", '\\"""', "b\\N", "\\N{BULLET}", "\\x", "\\u12", "\\U0001",
    "\\0", "\\\n",
    # line structure: newlines, carriage returns, NUL, form feed, unicode line/paragraph separators, NEL
    f"line\n{_SHELL}", f"line\r{_SHELL}", f"line\r\n{_SHELL}", "nul\x00byte", "\x0c", "\x0b",
    f"sep\u2028{_SHELL}", f"para\u2029{_SHELL}", f"nel\x85{_SHELL}",
    # comments, f-strings and format fields, HTML/DOT/SVG specials
    f"# {_SHELL}", "{__import__('os')}", "{0.__class__}", "%s%n", "</script><script>alert(1)</script>",
    "<!-- -->", "]]>", "<svg onload=alert(1)>", "javascript:alert(1)", 'a"]; b [label="', "}{;<>&",
    # unicode: bidi overrides, zero-width, combining marks, astral plane, right-to-left, BOM
    "\u202eevil\u202c", "zero\u200bwidth", "e\u0301", "\U0001f600", "\u05d0\u05d1", "\ufeffbom",
    # names the generated file uses, and Python keywords, as text
    "self", "None", "class", "import os", "lambda: 0",
    "", " ", "x" * 300,
]

NAMES: list[str] = [
    # Python keywords and soft keywords
    "class", "def", "return", "lambda", "None", "True", "False", "import", "from", "if", "else", "pass",
    "match", "case", "type", "_",
    # builtins
    "print", "len", "super", "object", "int", "float", "list", "tuple", "open", "eval", "exec", "__import__",
    "getattr", "Exception",
    # what generated code itself uses
    "self", "x", "out", "identity", "torch", "nn", "F", "math", "init_conv", "in_channels", "ZeroPadShortcut",
    "DropPath", "forward", "input_0",
    # nn.Module attributes and methods
    "to", "cuda", "eval", "train", "training", "parameters", "state_dict", "modules", "children", "apply",
    "__init__", "__class__", "__dict__", "_modules", "_parameters", "add_module", "register_buffer", "half",
    # node names that are no Python identifiers (a node name may start with a digit)
    "0", "0a", "1_2",
]


def yaml_string(text: str) -> str:
    """`text` as a YAML double-quoted scalar, every character outside printable ASCII escaped."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


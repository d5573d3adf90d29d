"""Regenerate the op reference in docs/spec.md from `resgraph.ops.REGISTRY`.

    .venv/bin/python docs/op_reference.py           # rewrite the table in place
    .venv/bin/python docs/op_reference.py --check   # exit 1 if docs/spec.md is out of date

Each row comes from one op class: the attributes (defaults, bounds, choices) from its pydantic
fields, the rest from its docstring's `Inputs:`, `Output:` and `Lowered to:` lines (the first
paragraph stands in for `Output:` where a class has none). tests/test_op_reference.py runs --check.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from resgraph.ops import REGISTRY
from resgraph.ops.base import Op

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "spec.md"
START, END = "<!-- op-reference:start -->", "<!-- op-reference:end -->"
# Fields every op has; the spec language documents them once, not per op.
COMMON = {"op", "inputs", "when", "otherwise", "allow", "key", "tie"}
SECTIONS = ("Inputs:", "Output:", "Lowered to:")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _docstring_sections(cls: type[Op]) -> dict[str, str]:
    """The `Inputs:` / `Output:` / `Lowered to:` paragraphs of a class docstring (continuation lines
    are indented), with the first paragraph under "" ."""
    lines = (cls.__doc__ or "").strip().splitlines()
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in lines:
        stripped = line.strip()
        heading = next((s for s in SECTIONS if stripped.startswith(s)), None)
        if heading:
            current = heading
            sections[current] = [stripped[len(heading):]]
        elif not stripped:
            current = None if current == "" else current
        elif current is not None:
            sections[current].append(stripped)
    return {key: _cell(" ".join(value)) for key, value in sections.items()}


def _bounds(schema: dict) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        low = f">{schema['exclusiveMinimum']}"
    elif low is not None:
        low = f"≥{low}"
    if low is not None and high is not None:
        return f"{low.lstrip('≥')}–{high}" if low.startswith("≥") else f"{low}, ≤{high}"
    return low or (f"≤{high}" if high is not None else "")


def _describe_schema(schema: dict) -> str:
    """Bounds and choices of one attribute, from its JSON schema (expressions are always allowed)."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("description") != "an expression over params, e.g. `planes * 4`"]
    parts: list[str] = []
    for option in options:
        if "anyOf" in option:
            parts.append(_describe_schema(option))
        elif "enum" in option:
            parts.append(" \\| ".join(f"`{value}`" for value in option["enum"]))
        elif option.get("type") == "array":
            item = option.get("items", {})
            item = next((s for s in item.get("anyOf", [item]) if s.get("type") == "integer"), item)
            bound = _bounds(item)
            parts.append("int…" + (f" {bound}" if bound else ""))
        elif option.get("type") in ("integer", "number"):
            bound = _bounds(option)
            if bound:
                parts.append(bound)
        elif "const" in option:
            parts.append(f"`{option['const']}`")
    merged: list[str] = []
    for part in parts:
        if part and part not in merged:
            merged.append(part)
    # "≥1; int… ≥1" says the same twice: an int-or-list attribute reads "int… ≥1"
    lists = [part for part in merged if part.startswith("int…")]
    merged = [part for part in merged if not any(l == f"int… {part}" for l in lists)]
    return "; ".join(merged)


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def attributes(cls: type[Op]) -> str:
    properties = cls.model_json_schema()["properties"]
    cells = []
    for name, field in cls.model_fields.items():
        if name in COMMON:
            continue
        constraint = _describe_schema(properties.get(name, {}))
        default = "required" if field.default is PydanticUndefined and field.default_factory is None else \
            _default(field.default if field.default is not PydanticUndefined else field.default_factory())
        inner = "; ".join(p for p in (default, constraint) if p)
        cells.append(f"`{name}` ({inner})")
    return ", ".join(cells) or "—"


def inputs(cls: type[Op]) -> str:
    low, high = cls.min_inputs, cls.max_inputs
    if high is None:
        return f"≥{low}"
    return str(low) if low == high else f"{low}–{high}"


def table() -> str:
    rows = ["| Op | Inputs | Attributes (default; bounds) | Output shape and rules | Lowered to |",
            "|----|--------|------------------------------|------------------------|------------|"]
    for name, cls in REGISTRY.items():
        doc = _docstring_sections(cls)
        rows.append(f"| `{name}` | {doc.get('Inputs:') or inputs(cls)} | {attributes(cls)} | "
                    f"{doc.get('Output:') or doc.get('') or '—'} | {doc.get('Lowered to:') or '—'} |")
    return "\n".join(rows)


def updated(page: str) -> str:
    head, start, rest = page.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"{PAGE}: the markers {START} and {END} are missing")
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    page = PAGE.read_text()
    new = updated(page)
    if "--check" in argv:
        if new != page:
            print(f"{PAGE.relative_to(ROOT)}: the op reference is out of date; run python docs/op_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

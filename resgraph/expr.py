"""Parameter expressions (`planes * 4`, `width // groups`): a small, safe evaluator.

Expressions are parsed with Python's `ast` and walked against a whitelist; nothing is ever
passed to `eval`. Values are bounded so that no expression can exhaust time or memory.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from functools import lru_cache
from typing import Any, Callable, Mapping

MAX_LENGTH = 500
MAX_INT = 2**62
MAX_NODES = 200

Value = Any  # int | float | bool | str | None | list of those


class ExprError(Exception):
    """An expression that cannot be parsed or evaluated. `kind` is syntax, name or value."""

    def __init__(self, message: str, kind: str = "value", help: str | None = None, name: str | None = None):
        super().__init__(message)
        self.message, self.kind, self.help, self.name = message, kind, help, name


MAX_DIGITS = 64         # `round(x, n)`: |n| at most this (10**n is computed for int rounding)
MAX_ARGS = 16           # arguments of `min` and `max`, like list items
MAX_TEXT = 32           # characters of a string that `int(...)` or `float(...)` converts


def _numbers(name: str, args: tuple, least: int, most: int) -> None:
    """The bounds every builtin checks first: a few arguments, each a bounded number."""
    if not least <= len(args) <= most:
        count = f"{least}" if least == most else f"{least} to {most}"
        raise ExprError(f"`{name}(...)` takes {count} argument{'s' * (most != 1)}, got {len(args)}")
    for value in args:
        _number(value, f"`{name}(...)`")
        _bounded(value)


def _min_max(name: str, function: Callable[..., Value]) -> Callable[..., Value]:
    def bounded(*args: Value) -> Value:
        items = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
        if not 1 <= len(items) <= MAX_ARGS:
            raise ExprError(f"`{name}(...)` takes 1 to {MAX_ARGS} values, got {len(items)}")
        for value in items:
            _bounded(value)
        return function(items)
    return bounded


def _abs(*args: Value) -> Value:
    _numbers("abs", args, 1, 1)
    return abs(args[0])


def _convert(name: str, kind: type) -> Callable[..., Value]:
    def convert(*args: Value) -> Value:
        if len(args) == 1 and isinstance(args[0], str):
            if len(args[0]) > MAX_TEXT:
                raise ExprError(f"`{name}(...)` converts strings of at most {MAX_TEXT} characters")
            return kind(args[0])
        _numbers(name, args, 1, 1)
        return kind(args[0])
    return convert


def _round(*args: Value) -> Value:
    _numbers("round", args, 1, 2)
    if len(args) == 2:
        if not isinstance(args[1], int):
            raise ExprError(f"`round(x, digits)` needs an integer number of digits, got `{args[1]!r}`")
        if abs(args[1]) > MAX_DIGITS:
            raise ExprError(f"`round(x, digits)` takes digits from -{MAX_DIGITS} to {MAX_DIGITS}, got {args[1]}")
    return round(*args)


def _rounding(name: str, function: Callable[[Value], Value]) -> Callable[..., Value]:
    def rounding(*args: Value) -> Value:
        _numbers(name, args, 1, 1)
        return function(args[0])
    return rounding


def _make_divisible(*args: Value) -> int:
    # As in timm and torchvision: round to the nearest multiple, never below 90 % of the value.
    _numbers("make_divisible", args, 2, 3)
    value, divisor, min_value = (*args, None)[:3]
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _shape_unavailable(*args: Value) -> Value:
    raise ExprError("`shape(...)` is not available here", help="`shape(name)` reads the shape of a node or input "
                    "in node attributes, block calls, `let`, `require` and `when`, not in `input` dimensions")


FUNCTIONS: dict[str, Callable[..., Value]] = {
    "min": _min_max("min", min), "max": _min_max("max", max), "abs": _abs, "int": _convert("int", int),
    "float": _convert("float", float), "round": _round, "floor": _rounding("floor", math.floor),
    "ceil": _rounding("ceil", math.ceil), "make_divisible": _make_divisible, "shape": _shape_unavailable,
}


class Names(dict):
    """The names an expression may read, with `shapes`: how `shape(name)` finds the per-sample shape of a node
    or input of the scope (it raises ExprError where the shape is not known)."""

    __slots__ = ("shapes",)   # one per block instance: no __dict__

    def __init__(self, values: Mapping[str, Value] = (), shapes: Callable[[str], tuple[int, ...]] | None = None):
        super().__init__(values)
        self.shapes = shapes


_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


_SHAPE_ITEM = re.compile(r"(\bshape\s*\(\s*[A-Za-z_][A-Za-z0-9_]*\s*):(\s*[0-9]+\s*\))")


@lru_cache(maxsize=4096)
def parse_expression(text: str) -> ast.expr:
    """Parse and whitelist-check an expression; raises ExprError(kind='syntax')."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is longer than {MAX_LENGTH} characters", "syntax")
    # `shape(parts:1)` reads output 1 of a node or block call with several outputs; Python has no such
    # syntax, so the colon becomes a second argument (same length: columns stay true)
    source = _SHAPE_ITEM.sub(r"\1,\2", text) if ":" in text else text
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExprError(f"`{text}` is not a valid expression ({exc.msg})", "syntax",
                        help="expressions use names of params, numbers and + - * / // % ** ( )") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError(f"`{text}` is not a valid expression", "syntax") from None
    count = 0
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise ExprError("expression is too complex", "syntax")
        _check_node(node, text)
        if isinstance(node, ast.Call) and len(node.args) == 2 and isinstance(node.func, ast.Name) and \
                node.func.id == "shape":   # only as `shape(name:k)`: `shape(name, k)` is not the language
            first, second = node.args
            written = text.strip().split("\n")[0] if first.end_lineno == second.lineno == 1 else ""
            if ":" not in written[first.end_col_offset:second.col_offset]:
                raise ExprError("`shape(...)` takes one node or input name, e.g. `shape(input)[0]`", "syntax")
    return tree


_ALLOWED = (ast.Constant, ast.Name, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call,
            ast.List, ast.Tuple, ast.Subscript, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)


def _check_node(node: ast.AST, text: str) -> None:
    if not isinstance(node, _ALLOWED) or isinstance(node, (ast.MatMult, ast.BitAnd, ast.BitOr, ast.BitXor,
                                                          ast.LShift, ast.RShift, ast.Invert, ast.Is, ast.IsNot,
                                                          ast.In, ast.NotIn)):
        raise ExprError(f"`{text}` uses syntax that expressions do not allow", "syntax",
                        help="expressions allow numbers, param names, arithmetic, comparisons, "
                             "`a if cond else b` and the functions " + ", ".join(sorted(FUNCTIONS)))
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
        raise ExprError(f"`{text}` contains an unsupported literal", "syntax")
    if isinstance(node, ast.Call):
        available = "available functions: " + ", ".join(sorted(FUNCTIONS))
        if not isinstance(node.func, ast.Name):
            raise ExprError(f"`{ast.unparse(node.func)}` cannot be called: expressions call functions by name only",
                            "syntax", help=available)
        if node.func.id not in FUNCTIONS:
            raise ExprError(f"`{node.func.id}` is not a function expressions can call", "syntax", help=available)
        if node.keywords:
            raise ExprError(f"`{node.func.id}` takes positional arguments only", "syntax")


def evaluate(text: str, scope: Mapping[str, Value]) -> Value:
    """Evaluate `text` with the names in `scope`; raises ExprError."""
    return _Evaluator(scope).visit(parse_expression(text))


def names_in(text: str) -> set[str]:
    return {n.id for n in ast.walk(parse_expression(text))
            if isinstance(n, ast.Name) and n.id not in FUNCTIONS and n.id not in _CONSTANTS}


def _number(value: Value, what: str) -> Value:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"{what} needs numbers, got {type(value).__name__} `{value!r}`")
    return value


def _bounded(value: Value) -> Value:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ExprError("the value is too large (more than 2**62)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"the value is not finite ({value})")
    if isinstance(value, complex):
        raise ExprError("the value is a complex number", help="a negative number to a fractional power has none")
    return value


YAML_CONSTANTS = {"true": True, "false": False, "null": None}
_CONSTANTS = {"True": True, "False": False, "None": None, **YAML_CONSTANTS}


class _Evaluator:
    def __init__(self, scope: Mapping[str, Value]) -> None:
        self.scope = scope

    def visit(self, node: ast.expr) -> Value:
        return getattr(self, "visit_" + type(node).__name__)(node)

    def visit_Constant(self, node: ast.Constant) -> Value:
        return _bounded(node.value)

    def visit_Name(self, node: ast.Name) -> Value:
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in _CONSTANTS:  # YAML's spellings too: a spec writes `true` elsewhere
            return _CONSTANTS[node.id]
        from .diagnostics import did_you_mean

        known = ", ".join(f"`{k}`" for k in sorted(self.scope)) or "none"
        raise ExprError(f"unknown name `{node.id}`", "name",
                        help=did_you_mean(node.id, self.scope) or f"names in scope here: {known}", name=node.id)

    def visit_BinOp(self, node: ast.BinOp) -> Value:
        symbol = _SYMBOL[type(node.op)]
        left = _number(self.visit(node.left), f"`{symbol}`")
        right = _number(self.visit(node.right), f"`{symbol}`")
        if isinstance(node.op, ast.Pow):
            if abs(right) > 64 or (abs(left) > 2**16 and right > 4):
                raise ExprError("the power is too large")
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
            if left and right and abs(left) > MAX_INT // max(1, abs(right)):
                raise ExprError("the value is too large (more than 2**62)")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ExprError("division by zero", help="check the values of the params this expression uses") from None
        except (OverflowError, ValueError) as exc:
            raise ExprError(f"arithmetic error: {exc}") from None

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Value:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        value = _number(value, "a sign")
        return -value if isinstance(node.op, ast.USub) else +value

    def visit_BoolOp(self, node: ast.BoolOp) -> Value:
        if isinstance(node.op, ast.And):
            result = True
            for value in node.values:
                result = self.visit(value)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = self.visit(value)
            if result:
                return result
        return result

    def visit_Compare(self, node: ast.Compare) -> Value:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.visit(comparator)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:
                raise ExprError(f"cannot compare {type(left).__name__} with {type(right).__name__}") from None
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Value:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node: ast.Call) -> Value:
        name = node.func.id  # type: ignore[attr-defined]
        if name == "shape":
            return self.shape(node)
        args = [self.visit(arg) for arg in node.args]
        try:
            return _bounded(FUNCTIONS[name](*args))
        except ExprError:
            raise
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise ExprError(f"`{name}(...)` failed: {exc}") from None

    def shape(self, node: ast.Call) -> Value:
        """`shape(input)`: a node's per-sample shape as a list (`shape(input)[0]` is its channels)."""
        item = node.args[1] if len(node.args) == 2 else None   # `shape(parts:1)`, see parse_expression
        if not 1 <= len(node.args) <= 2 or not isinstance(node.args[0], ast.Name) or item is not None and \
                not (isinstance(item, ast.Constant) and type(item.value) is int and item.value >= 0):
            raise ExprError("`shape(...)` takes one node or input name, e.g. `shape(input)[0]`", "syntax")
        shapes = getattr(self.scope, "shapes", None)
        if shapes is None:
            _shape_unavailable()
        return list(shapes(node.args[0].id if item is None else f"{node.args[0].id}:{item.value}"))

    def visit_List(self, node: ast.List) -> Value:
        if len(node.elts) > 16:
            raise ExprError("lists in expressions are limited to 16 items")
        return [self.visit(e) for e in node.elts]

    visit_Tuple = visit_List

    def visit_Subscript(self, node: ast.Subscript) -> Value:
        # `layers[0]`: one item of a list param; no slices.
        if isinstance(node.slice, ast.Slice):
            raise ExprError("slices are not supported; index one item, e.g. `layers[0]`", "syntax")
        value, index = self.visit(node.value), self.visit(node.slice)
        if not isinstance(value, (list, tuple)):
            raise ExprError(f"only lists can be indexed, not {type(value).__name__} `{value!r}`")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ExprError(f"a list index must be an integer, got `{index!r}`")
        if not -len(value) <= index < len(value):
            raise ExprError(f"index {index} is out of range for a list of {len(value)} items",
                            help=f"use an index from 0 to {len(value) - 1}, or from -1 to -{len(value)} from the end")
        return value[index]

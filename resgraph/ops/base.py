"""The op protocol: one class per op holds its attributes, shape rule, counts, torch lowering and label.

Attribute types here accept either a literal value or an expression string; expressions are
checked for syntax when a spec is parsed and evaluated when a block is instantiated.
"""

# No `from __future__ import annotations` here: the fields of `Op` are inherited by every op class, and
# pydantic evaluates string annotations again for each subclass (a tenth of import time).

import math
import re
from collections.abc import Iterator, MutableMapping
from importlib import import_module
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Iterable, Sequence, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..expr import ExprError, evaluate, parse_expression

if TYPE_CHECKING:  # pragma: no cover
    from ..lower import Builder

Shape = tuple[int, ...]  # per-sample shape: the batch dimension is implicit

EXPRESSION_SCHEMA = {"type": "string", "description": "an expression over params, e.g. `planes * 4`"}
MAX_DIM = 2**31 - 1


class ShapeError(Exception):
    """Raised by a shape rule; becomes a diagnostic located at `attr` (or the node)."""

    def __init__(self, message: str, help: str | None = None, attr: str | None = None, code: str = "RG052"):
        super().__init__(message)
        self.message, self.help, self.attr, self.code = message, help, attr, code


def fail(message: str, help: str | None = None, code: str = "RG012") -> PydanticCustomError:
    return PydanticCustomError("resgraph", "{message}", {"message": message, "help": help, "code": code})


def _has_string(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value))


def _resolve_expressions(value: Any, info: ValidationInfo, literals: frozenset[str] = frozenset()
                         ) -> tuple[Any, bool]:
    """Evaluate expression strings in `value`; returns (value, deferred)."""
    scope = (info.context or {}).get("scope") if info.context else None
    strings = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
    try:
        for text in strings:
            parse_expression(text)
        if scope is None:
            return value, True
        if isinstance(value, str):
            return evaluate(value, scope), False
        return [evaluate(v, scope) if isinstance(v, str) else v for v in value], False
    except ExprError as exc:
        if exc.kind == "name" and literals and value == exc.name:
            # A misspelt word (`shortcut: projection`) rather than a param name.
            from ..diagnostics import did_you_mean

            listed = ", ".join(f"`{option}`" for option in sorted(literals))
            raise fail(f"expected one of {listed} (or a param name), got `{value}`",
                       did_you_mean(value, literals) or exc.help, "RG012") from None
        code = {"syntax": "RG020", "name": "RG021"}.get(exc.kind, "RG022")
        raise fail(exc.message, exc.help, code) from None


def attribute(check: Callable[[Any], Any], schema: dict, literals: Iterable[str] = (),
              not_expressions: Callable[[str], None] | None = None) -> Any:
    """An attribute type: a literal checked by `check`, or an expression evaluated first.

    `not_expressions` may reject strings that look like values, before they are read as names.
    """
    literals = frozenset(literals)

    def validate(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value in literals:
            return value
        if isinstance(value, str) and not_expressions is not None:
            not_expressions(value)
        if _has_string(value):
            written = value
            value, deferred = _resolve_expressions(value, info, literals)
            if deferred:
                return value
            try:
                return check(value)
            except PydanticCustomError as exc:
                raise _true_division(exc, written, value) from None
        return check(value)

    return Annotated[Any, PlainValidator(validate), WithJsonSchema({"anyOf": [schema, EXPRESSION_SCHEMA]})]


_SLASH = re.compile(r"(?<!/)/(?!/)")


def _true_division(exc: PydanticCustomError, written: Any, value: Any) -> PydanticCustomError:
    """An integer attribute given `planes / 2`: say that `/` made the float, and offer `//`."""
    texts = [written] if isinstance(written, str) else [v for v in written if isinstance(v, str)]
    values = value if isinstance(value, (list, tuple)) else [value]
    slashed = [text for text in texts if _SLASH.search(text)]
    if exc.type != "resgraph" or not slashed or not any(isinstance(v, float) for v in values):
        return exc
    text = slashed[0]
    fixed = _SLASH.sub("//", text)
    ctx = dict(exc.context or {})
    whole = all(v.is_integer() for v in values if isinstance(v, float))
    ctx["help"] = f"`/` always gives a float (`{text}` is {value!r}); `//` divides to an integer: `{fixed}`" + \
        ("" if whole else f" (rounding down; `round({text})` rounds to the nearest)")
    ctx["fix"] = (text, fixed)
    return PydanticCustomError("resgraph", "{message}", ctx)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, float):
        return f"float `{value!r}`"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return f"list `{list(value)}`"
    return f"{type(value).__name__} `{value}`"


def _as_int(value: Any, minimum: int | None, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = None
        if isinstance(value, float) and value.is_integer():
            hint = f"write `{int(value)}` without a decimal point or exponent"
        elif isinstance(value, float):
            hint = "sizes are whole numbers: in an expression, `//` divides to an integer, `round(...)` rounds"
        raise fail(f"expected an integer, got {_describe(value)}", hint)
    if minimum is not None and value < minimum:
        raise fail(f"must be at least {minimum}, got {value}",
                   "sizes, counts and strides are positive" if minimum >= 1 else "use a value that is not negative")
    if maximum is not None and value > maximum:
        raise fail(f"must be at most {maximum:,}, got {value:,}",
                   "for depth, nest blocks that repeat" if maximum == 10_000 else None)
    return value


def Int(minimum: int | None = None, maximum: int | None = MAX_DIM) -> Any:
    schema: dict = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    return attribute(lambda v: _as_int(v, minimum, maximum), schema)


def Float(minimum: float | None = None, maximum: float | None = None, positive: bool = False) -> Any:
    """A finite number in [minimum, maximum]; `positive` also excludes 0."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(f"expected a number, got {_describe(value)}")
        if positive and value <= 0:
            raise fail(f"must be greater than 0, got {value}")
        if minimum is not None and value < minimum:
            raise fail(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise fail(f"must be at most {maximum}, got {value}")
        return float(value)

    schema: dict = {"type": "number"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    if positive:
        schema["exclusiveMinimum"] = 0
    return attribute(check, schema)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        hint = "use `true` or `false`" if isinstance(value, (str, int)) else None
        raise fail(f"expected `true` or `false`, got {_describe(value)}", hint)
    return value


def _yaml11_boolean(text: str) -> None:
    if text.lower() in ("yes", "no", "on", "off", "y", "n"):
        meaning = "true" if text.lower() in ("yes", "on", "y") else "false"
        raise fail(f"`{text}` is not a boolean in resgraph specs", f"write `{meaning}` (specs follow YAML 1.2, "
                   "where only true and false are booleans)")


Bool = attribute(_as_bool, {"type": "boolean"}, not_expressions=_yaml11_boolean)


def Ints(minimum: int = 0, literals: Sequence[str] = ()) -> Any:
    """An integer, or a list of integers (one per spatial dimension); or one of `literals`."""

    def check(value: Any) -> int | tuple[int, ...]:
        if isinstance(value, str) and value in literals:
            return value  # the value of an expression, e.g. a block param holding `same`
        if isinstance(value, (list, tuple)):
            if not 1 <= len(value) <= 3:
                raise fail(f"expected 1 to 3 integers, got {len(value)}",
                           "give one value per spatial dimension, e.g. `[3, 3]`, or a single number for all")
            return tuple(_as_int(v, minimum, MAX_DIM) for v in value)
        if isinstance(value, str):
            options = " or ".join(f"`{lit}`" for lit in literals)
            raise fail(f"expected an integer, a list of integers{' or ' + options if options else ''}, "
                       f"got `{value}`")
        return _as_int(value, minimum, MAX_DIM)

    int_schema = {"type": "integer", "minimum": minimum}
    item_schema = {"anyOf": [int_schema, EXPRESSION_SCHEMA]}
    schema: dict = {"anyOf": [int_schema, {"type": "array", "items": item_schema, "minItems": 1, "maxItems": 3}]}
    if literals:
        schema["anyOf"].append({"enum": list(literals)})
    return attribute(check, schema, literals)


def Choice(*options: str) -> Any:
    def check(value: Any) -> str:
        from ..diagnostics import did_you_mean

        if isinstance(value, str) and value in options:
            return value  # the value of an expression, e.g. a block param

        listed = ", ".join(f"`{o}`" for o in options)
        hint = did_you_mean(value, options) if isinstance(value, str) else None
        raise fail(f"expected one of {listed}, got {_describe(value)}", hint)

    return attribute(check, {"enum": list(options)}, options)


def spatial(value: int | tuple[int, ...], ndim: int, attr: str) -> tuple[int, ...]:
    """Broadcast an int-or-tuple attribute over `ndim` spatial dimensions."""
    if isinstance(value, int):
        return (value,) * ndim
    if len(value) != ndim:
        raise ShapeError(f"`{attr}` has {len(value)} values but the input has {ndim} spatial "
                         f"dimension{'s' if ndim != 1 else ''}", attr=attr)
    return tuple(value)


# A receptive field per spatial dimension: (size in input pixels, jump between neighbouring outputs). A size of
# GLOBAL (None) says that every output sees the whole input along that dimension (after a global pool, a reduction
# or attention); it stays so through every op that reads it, since a window over it cannot see more than all.
ReceptiveField = tuple[tuple[int | None, ...], tuple[int, ...]]
GLOBAL = None


def grown(size: int | None, by: int) -> int | None:
    """A field size widened by `by` input pixels; a global one stays global."""
    return GLOBAL if size is GLOBAL else size + by


def window_field(field: "ReceptiveField | None", kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int]) -> "ReceptiveField | None":
    """A sliding window's output field: r' = r + (k - 1) * d * j, j' = j * s (Araujo et al. 2019)."""
    if field is None:
        return None
    size, jump = field
    return (tuple(grown(r, (k - 1) * d * j) for r, k, d, j in zip(size, kernel, dilation, jump)),
            tuple(j * s for j, s in zip(jump, stride)))


def fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def prod(values: Iterable[int]) -> int:
    return math.prod(values)


def _allowable(code: Any) -> str:
    from ..diagnostics import ALLOWABLE, CODES

    if not isinstance(code, str) or code not in CODES:
        raise fail(f"`{code}` is not a resgraph diagnostic code", "give warning codes, e.g. `allow: [RG043]`; "
                   "docs/errors.md lists them")
    if code not in ALLOWABLE:
        listed = ", ".join(f"`{c}`" for c in ALLOWABLE)
        raise fail(f"`{code}` cannot be allowed: only these warnings about a node can: {listed}",
                   "an error must be fixed, not silenced")
    return code


ALLOW = "warnings this node (or every node of this block call) may raise unreported, e.g. `[RG043]` for an " \
        "auxiliary head that no output uses; see docs/spec.md"
Allow = list[Annotated[str, PlainValidator(_allowable), WithJsonSchema({"type": "string", "pattern": "^RG[0-9]{3}$"})]]

WHEN = "a condition (an expression over the params): where false, the node is left out"
OTHERWISE = "where `when` is false, the node that stands for this one; default: its first input"
KEY = ("the node's module path in the state_dict, where it differs from its name, relative to its block instance "
       "(`block.0`, `encoder.pos_embedding`, `block1-0`); `{expression}` parts are evaluated in the node's scope "
       "(`{start + 2}`); default: the node's name")
TIE = ("parameters this node shares with another node of its scope, as `{weight: wte.weight}`: this node's "
       "parameter -> `node.parameter`, the two of one shape (an LM head tied to the token embedding); the "
       "tensor is counted once and the compiled modules hold the same `nn.Parameter`")
TIE_REFERENCE = r"^[A-Za-z0-9_]+\.[A-Za-z_][A-Za-z0-9_]*$"


def _tie(value: Any) -> dict[str, str]:
    """`tie: {weight: wte.weight}`: parameter name -> `node.parameter` (RG048 for any other form)."""
    example = "e.g. `tie: {weight: wte.weight}` (this node's `weight` is node `wte`'s `weight`)"
    if not isinstance(value, dict) or not value:
        raise fail("`tie` maps parameters of this node to parameters of another node", example, "RG048")
    for name, reference in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise fail(f"`{name}` is not a parameter name", example, "RG048")
        if not isinstance(reference, str) or not re.fullmatch(TIE_REFERENCE, reference):
            raise fail(f"`{name}: {reference}` does not name a parameter of a node: write `node.parameter`",
                       example, "RG048")
    return dict(value)


Tie = Annotated[Any, PlainValidator(_tie), WithJsonSchema({
    "type": "object", "additionalProperties": {"type": "string", "pattern": TIE_REFERENCE}})]

KEY_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
# An op node's key may compute parts of its path: `{expression}` (no braces inside) stands for a number or a name
_KEY_PART = r"(?:[A-Za-z0-9_-]|\{[^{}]+\})+"
KEY_TEMPLATE_PATTERN = rf"^{_KEY_PART}(\.{_KEY_PART})*$"


def empty_list() -> list:
    """`default_factory` for list fields: pydantic inspects a factory's signature when it builds a
    validator, which costs about 30 times more for the builtin `list` than for a function."""
    return []


def empty_dict() -> dict:
    """`default_factory` for mapping fields (see `empty_list`)."""
    return {}


_OP_NAMES: dict[type, str] = {}


class Op(BaseModel):
    """Base of every op. Subclasses declare `op: Literal[...]` and their attributes."""

    # `defer_build`: an op's validator is built when it is first used, not when its class is defined, so
    # that start-up (`resgraph validate` in a pre-commit hook) pays only for the ops a spec uses. Every
    # subclass, plugins' included, inherits it.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    op: str
    inputs: str | list[str] | None = Field(default=None, description="names of the nodes this node reads")
    when: bool | str | None = Field(default=None, description=WHEN)
    otherwise: str | None = Field(default=None, description=OTHERWISE)
    allow: Allow = Field(default_factory=empty_list, description=ALLOW)
    key: str | None = Field(default=None, pattern=KEY_TEMPLATE_PATTERN, description=KEY)
    tie: Tie | None = Field(default=None, description=TIE)

    # How many inputs the op takes (None: any number from min_inputs).
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    # True when the output is a fresh tensor that no backward pass needs: a single consumer
    # may then overwrite it in place (relu_, +=), as torchvision's hand-written blocks do.
    fresh_output: ClassVar[bool] = False
    # True when the output is a map over spatial dimensions (convolution, pooling, resampling): a `linear`
    # reading it before a `flatten` or a pooling to a vector is warned about (RG054).
    makes_map: ClassVar[bool] = False
    # Shown in diagrams next to the op name.
    label_attrs: ClassVar[tuple[str, ...]] = ()
    # A "weight layer" in the ResNet paper's sense (convolutions and fully-connected layers):
    # what depth counts, along the paths `resgraph analyze` enumerates.
    weight_layer: ClassVar[bool] = False
    # True for ops with several outputs (chunk, split): `infer_shape` returns the first and leaves all of
    # them in `meta["outputs"]`; other nodes read output k as `name:k` (an `OutputItem` node).
    multiple_outputs: ClassVar[bool] = False

    @classmethod
    def op_name(cls) -> str:
        name = _OP_NAMES.get(cls)
        if name is None:   # once per class: passes ask per node, and pydantic's field lookup is not free
            name = _OP_NAMES[cls] = get_args(cls.model_fields["op"].annotation)[0]
        return name

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        raise NotImplementedError

    def infer_dtype(self, dtypes: list[str]) -> str:
        """The output's dtype from the inputs' (`float`: the dtype the network is compiled in; `int64`:
        integer ids, e.g. tokens). Most ops compute on floats and refuse integer inputs; ops that read
        indices (`embedding`) or pass any tensor through override this."""
        if "int64" in dtypes:
            raise ShapeError(f"`{self.op_name()}` computes on floats but its input holds `int64` values",
                             help="integer inputs are indices (e.g. token ids): map them to vectors with an "
                                  "`embedding` first", code="RG090")
        return "float"

    def index_bound(self, position: int) -> int | None:
        """For an op that reads integer indices at input `position`: the values it accepts are
        0 .. bound - 1 (an embedding's table size). Check passes draw random ids below it."""
        return None

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return 0

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return 0

    def parameter_shapes(self, inputs: list[Shape], output: Shape, meta: dict) -> dict[str, Shape] | None:
        """The shape of each parameter of the lowered module, by its attribute name (`weight`, `bias`), as
        torch stores it; what a `tie` checks. None: the op does not say (it cannot be tied)."""
        return None

    def lower(self, b: "Builder", args: list, inputs: list[Shape], output: Shape, meta: dict) -> Any:
        raise NotImplementedError

    def receptive_field(self, fields: list["ReceptiveField | None"], inputs: list[Shape], output: Shape,
                        meta: dict) -> "ReceptiveField | None":
        """The receptive field of the output, from those of the inputs (None: not spatial).

        Element-wise ops and merges keep the widest input field (global if any input's is); ops that change
        the rank end it. The jump is that of the inputs the output steps through: an input broadcast along a
        dimension (extent 1, as a squeeze-and-excitation gate) has one value there, and no say in the jump.
        Windowed ops (convolution, pooling) override this with `window_field`."""
        known = [(f, shape) for f, shape in zip(fields, inputs) if f is not None]
        if not known or any(len(s) != len(output) for s in inputs):
            return None
        sizes = tuple(GLOBAL if GLOBAL in values else max(values) for values in zip(*(f[0] for f, _ in known)))
        jumps = []
        for d, extent in enumerate(output[1:]):
            stepped = [f[1][d] for f, shape in known if shape[d + 1] == extent]
            jumps.append(max(stepped or [f[1][d] for f, _ in known]))
        return sizes, tuple(jumps)

    def label(self) -> str:
        parts = []
        for attr in self.label_attrs:
            value = getattr(self, attr)
            if value is None or value is False:
                continue
            if isinstance(value, tuple):
                value = "x".join(str(v) for v in value)
            parts.append(f"{attr}={value}")
        return self.op_name() + (" " + " ".join(parts) if parts else "")

    def shaped_label(self, meta: dict) -> str:
        """The label once shapes are inferred (`meta` holds what inference decided); by default `label()`, and
        the parameters it ties (`weight tied to wte.weight`)."""
        return self.label() + self.tie_label()

    def tie_label(self) -> str:
        """`, weight tied to wte.weight` for a node with a `tie`, else nothing: what labels add to the op's."""
        if not self.tie:
            return ""
        return ", " + ", ".join(f"{name} tied to {reference}" for name, reference in self.tie.items())


class Registry(MutableMapping):
    """Op name -> op class. The built-in ops' modules are imported when first asked for: a spec that uses
    `conv2d` and `relu` imports ops/conv.py and ops/activation.py, not the other fourteen (creating the op
    classes is most of resgraph's import time, and `resgraph validate` runs once per file in editors' and
    CI's hooks). `BUILTIN_MODULES` in ops/__init__.py says which module defines each built-in op; a name it
    does not list, and iterating or counting the registry, import every built-in module first, so the table
    only saves time: a forgotten entry makes a lookup slower, never wrong (tests/test_ops.py checks it)."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Op]] = {}
        self._modules: dict[str, str] = {}   # built-in op name -> module, until that module is imported
        self._package = ""
        self._all_loaded = True
        self._order: dict[str, int] = {}      # op name -> when it registered
        self._declared: dict[str, int] = {}   # built-in op name -> its place in `BUILTIN_MODULES`

    def declare_builtin(self, package: str, modules: dict[str, str]) -> None:
        """The built-in ops and their modules (relative to `package`), imported on first use."""
        self._package, self._modules, self._all_loaded = package, dict(modules), False
        self._declared = {name: position for position, name in enumerate(modules)}

    def load_all(self) -> None:
        """Import every built-in op module (each registers its ops): every module of the package, so that
        one `BUILTIN_MODULES` does not list yet still registers its ops."""
        if not self._all_loaded:
            import pkgutil

            package = import_module(self._package)
            modules = set(self._modules.values()) | {info.name for info in pkgutil.iter_modules(package.__path__)}
            for module in sorted(modules):
                import_module(f"{self._package}.{module}")
            self._all_loaded = True

    def registered(self) -> dict[str, type[Op]]:
        """The ops registered so far, importing nothing."""
        return self._classes

    def _load(self, name: str) -> bool:
        module = self._modules.get(name)
        if module is not None:
            import_module(f"{self._package}.{module}")
            if name in self._classes:
                return True
        self.load_all()
        return name in self._classes

    def __getitem__(self, name: str) -> type[Op]:
        try:
            return self._classes[name]
        except KeyError:
            if self._load(name):
                return self._classes[name]
            raise

    def __contains__(self, name: object) -> bool:
        return name in self._classes or (isinstance(name, str) and self._load(name))

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def __setitem__(self, name: str, cls: type[Op]) -> None:
        self._classes[name] = cls
        self._order.setdefault(name, len(self._order))

    def __delitem__(self, name: str) -> None:
        del self._classes[name]

    def __iter__(self) -> Iterator[str]:
        # The same order whichever spec imported which module first: the built-in ops in the order of
        # `BUILTIN_MODULES`, then any other in the order it registered (plugins' ops).
        self.load_all()
        declared, order = self._declared, self._order
        return iter(sorted(self._classes, key=lambda name: (declared.get(name, len(declared)), order[name])))

    def __len__(self) -> int:
        self.load_all()
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({sorted(self)})"


REGISTRY = Registry()


def register(cls: type[Op]) -> type[Op]:
    """Add an op class to the registry (built-in ops, and plugins: see docs/plugins.md)."""
    name = cls.op_name()
    other = REGISTRY.registered().get(name)   # importing nothing: this runs while an op module is imported
    if other is not None and other is not cls:
        raise RuntimeError(f"op `{name}` registered twice: by `{other.__module__}.{other.__qualname__}` and "
                           f"`{cls.__module__}.{cls.__qualname__}`")
    if not is_builtin(cls):
        # A plugin's op is built now, while its module is imported, so that a field pydantic cannot
        # validate fails the plugin's loading (a diagnostic) as it did before `defer_build`. Built-in
        # ops are built when a spec first uses them (`defer_build` on `Op`).
        cls.model_rebuild(raise_errors=False)
    REGISTRY[name] = cls
    return cls


def is_builtin(cls: type[Op]) -> bool:
    """True for resgraph's own ops; False for ops a plugin registered."""
    return cls.__module__.startswith("resgraph.ops.")

"""Pass 2 of the pipeline: positioned tree -> pydantic models of the spec language.

The models check structure and literal values; expressions are checked for syntax here and
evaluated during expansion. Every pydantic error is translated into a located diagnostic.
"""


import functools
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StringConstraints, Tag,
                      ValidationError, create_model)

from .diagnostics import Diagnostic, Diagnostics, Edit, Note, Span, did_you_mean, nearest, replacing, text_at
from .ops import REGISTRY
from .ops.base import (ALLOW, KEY_PATTERN, KEY_TEMPLATE_PATTERN, OTHERWISE, WHEN, Allow, Int, empty_dict, empty_list,
                       is_builtin)
from .source import KeyPath, SourceFile, value_at

VERSION = 1
NODE_NAME = r"^[A-Za-z0-9_]+$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_REPEAT = 10_000
NAMES_PATTERN = r"^[A-Za-z0-9_-]*\{i\}[A-Za-z0-9_-]*$"

OUTPUT_PATH = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*(:[0-9]+)?$"
# a block's output: a node of the block, or `call:k`, output k of a block call with several outputs
BLOCK_OUTPUT = r"^[A-Za-z0-9_]+(:[0-9]+)?$"

NodeName = Annotated[str, StringConstraints(pattern=NODE_NAME)]
# `layer1.0.relu2`: a node inside a block instance, by its dotted path (intermediate features); `backbone:1`:
# output 1 of a block call with several outputs
OutputPath = Annotated[str, StringConstraints(pattern=OUTPUT_PATH)]
BlockOutput = Annotated[str, StringConstraints(pattern=BLOCK_OUTPUT)]
ParamName = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
Scalar = Union[bool, int, float, str, None]
ParamValue = Union[Scalar, list[Scalar]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BlockCall(_Model):
    """A node that instantiates a block, optionally `repeat` times in sequence."""

    block: str = Field(description="name of the block to instantiate")
    repeat: Int(1, MAX_REPEAT) | None = Field(None, description="instantiate the block this many times in sequence")
    with_: dict[ParamName, ParamValue] = Field(default_factory=empty_dict, alias="with",
                                               description="values of the block's params")
    first: dict[ParamName, ParamValue] = Field(default_factory=empty_dict,
                                               description="param values that override `with` for repetition 0")
    first_block: str | None = Field(None, description="another block for repetition 0 (e.g. the unit that "
                                                       "opens a stage with a projection); default: `block`")
    inputs: str | list[str] | None = None
    when: bool | str | None = Field(None, description=WHEN)
    otherwise: str | None = Field(None, description=OTHERWISE)
    allow: Allow = Field(default_factory=empty_list, description=ALLOW)
    key: str | None = Field(None, pattern=KEY_TEMPLATE_PATTERN, description="the call's module path in the "
                            "state_dict, where it differs from its name (`features.1`, `encoder.layers`); "
                            "`{expression}` parts are evaluated in the caller's scope; default: its name")
    names: str | None = Field(None, pattern=NAMES_PATTERN,
                              description="how repetitions are named, `{i}` standing for the number: "
                                          "`denselayer{i}`, `encoder_layer_{i}`, `block1-{i}`; default `{i}`")
    start: Int(0) = Field(0, description="the number of the first repetition (`features.1` ...): `{i}` counts from "
                                         "it; `index` inside the block still counts from 0")


def _node_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return "block" if "block" in value else value.get("op") if isinstance(value.get("op"), str) else None
    return "block" if isinstance(value, BlockCall) else getattr(value, "op", None)


def _shorthand(value: Any) -> Any:
    # `relu: relu` is short for `relu: {op: relu}`.
    return {"op": value} if isinstance(value, str) else value


def _node_union(names: Any = None) -> Any:
    """The node kinds: a block call or one of the ops `names` (default: the built-in ops)."""
    names = sorted(name for name, cls in REGISTRY.items() if is_builtin(cls)) if names is None else sorted(names)
    members = [Annotated[BlockCall, Tag("block")]]
    members += [Annotated[REGISTRY[name], Tag(name)] for name in names]
    return Annotated[Union[tuple(members)], Discriminator(_node_tag), BeforeValidator(_shorthand)]


# The node kinds of `SpecFile` and `BlockDef` below are left open (`Any`): each file is validated by models
# made for the ops it uses (`_models_with`), and the JSON Schema by those made for every op (`_full_models`),
# so that importing this module creates no op class (ops/__init__.py imports an op's module when it is used).


class Requirement(_Model):
    """A condition on the params, with what to do when it fails."""

    check: str = Field(description="an expression over the params that must be true, e.g. `(depth - 4) % 6 == 0`")
    help: str | None = Field(None, description="shown with the error when the check fails")


Requirements = list[Union[str, Requirement]]
WarningCode = Annotated[str, StringConstraints(pattern=r"^RG[0-9]{3}$")]
_ALLOW = "warning codes not to report here, e.g. `[RG100]` (errors cannot be allowed)"
_REQUIRE = "conditions on the params, checked before anything is built: expressions that must be true, " \
           "or {check: expression, help: text}"


class BlockDef(_Model):
    """A reusable, parameterised subgraph."""

    # Built when first used (the JSON Schema): validation uses `_models_with` the ops a file names.
    model_config = ConfigDict(defer_build=True)

    doc: str | None = None
    params: dict[ParamName, ParamValue] = Field(default_factory=empty_dict,
                                                description="param names with defaults; null marks a required param")
    let: dict[ParamName, ParamValue] = Field(default_factory=empty_dict,
                                             description="derived values: expressions over params, in order")
    require: Requirements = Field(default_factory=empty_list, description=_REQUIRE)
    inputs: list[ParamName] = Field(default_factory=lambda: ["input"], min_length=1)
    nodes: dict[NodeName, Any] = Field(min_length=1)   # every kind of node: see `_models_with`
    output: BlockOutput | Annotated[list[BlockOutput], Field(min_length=1)] | None = Field(
        None, description="the node whose result is the call's result (default: the last node); a list of nodes "
                          "gives the block several outputs, which a caller reads as `call:0`, `call:1`, ...")
    allow: list[WarningCode] = Field(default_factory=empty_list, description=_ALLOW + "; for warnings in this block")


class InputDecl(_Model):
    """An input with a dtype: `{shape: [16], dtype: int64}` for token ids."""

    shape: list[Int(1)] = Field(description="per-sample shape (the batch dimension is implicit)")
    dtype: Literal["float", "int64"] = Field("float", description="`float` (the dtype the network is compiled "
                                             "in) or `int64` (integer ids, e.g. tokens, read by `embedding`)")


def _input_tag(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("shape"), list) and set(value) <= {"shape", "dtype"}:
        return "declared"
    return "named" if isinstance(value, dict) else "shape"


InputShape = Annotated[Union[Annotated[list[Int(1)], Tag("shape")], Annotated[InputDecl, Tag("declared")]],
                       Discriminator(lambda v: "declared" if isinstance(v, (dict, InputDecl)) else "shape")]
InputField = Annotated[Union[Annotated[list[Int(1)], Tag("shape")], Annotated[InputDecl, Tag("declared")],
                             Annotated[dict[ParamName, InputShape], Tag("named")]],
                       Discriminator(lambda v: _input_tag(v) if not isinstance(v, InputDecl) else "declared")]


def input_declarations(value: Any) -> list[tuple[str, Any, str, tuple]]:
    """(name, shape, dtype, path of the shape in the spec) of each input of `SpecFile.input`."""
    if value is None:
        return []
    if isinstance(value, InputDecl):
        return [("input", value.shape, value.dtype, ("input", "shape"))]
    if isinstance(value, list):
        return [("input", value, "float", ("input",))]
    found = []
    for name, item in value.items():
        if isinstance(item, InputDecl):
            found.append((name, item.shape, item.dtype, ("input", name, "shape")))
        else:
            found.append((name, item, "float", ("input", name)))
    return found


class SpecFile(_Model):
    """A spec file: a network (input, nodes, outputs), a library of blocks, or both."""

    # Built when first used (the JSON Schema): validation uses `_models_with` the ops a file names.
    model_config = ConfigDict(defer_build=True)

    resgraph: int = Field(description="the spec language version; 1")
    name: str | None = None
    doc: str | None = None
    extends: str | None = Field(None, description="a spec file whose network this one reuses, changing only "
                                                 "`name`, `doc` and `params`")
    include: list[str] = Field(default_factory=empty_list, description="files whose blocks this spec uses")
    plugins: list[str] = Field(default_factory=empty_list, description="Python modules that define ops this file uses "
                               "(docs/plugins.md); loading one runs its code: name only plugins you trust")
    params: dict[ParamName, ParamValue] = Field(default_factory=empty_dict)
    require: Requirements = Field(default_factory=empty_list, description=_REQUIRE)
    input: InputField | None = Field(
        None, description="per-sample input shape (the batch dimension is implicit), `{shape: [...], dtype: "
                          "int64}` for integer ids, or a mapping of named inputs (each a shape or a `{shape, dtype}`)")
    blocks: dict[ParamName, BlockDef] = Field(default_factory=empty_dict)
    nodes: dict[NodeName, Any] = Field(default_factory=empty_dict)   # every kind of node: see `_models_with`
    outputs: OutputPath | list[OutputPath] | dict[str, OutputPath] | None = Field(
        None, description="the nodes the network returns (default: its last node); a node inside a block by its "
                          "dotted path, e.g. `layer1.0.relu2`. A list returns a tuple; a mapping of names to nodes "
                          "(`{out: classifier, aux: aux_classifier}`) returns a dict with those keys, in that order")
    allow: list[WarningCode] = Field(default_factory=empty_list, description=_ALLOW)
    training_outputs: NodeName | list[NodeName] | None = Field(
        None, description="nodes returned only in training, after `outputs` (auxiliary heads, as GoogLeNet's and "
                          "Inception's): in training the network returns a named tuple of all outputs, in eval "
                          "`outputs` alone; the nodes only they read run in training only")


@functools.lru_cache(maxsize=None)
def _models_with(ops: frozenset[tuple[str, type]]) -> type[SpecFile]:
    """SpecFile (and BlockDef) whose nodes are block calls or the ops `ops` ((name, class) pairs: a plugin
    module imported afresh gives new classes, and new models).

    Validation builds these for the ops a file uses (`_used_ops`) rather than one union over every op:
    building a pydantic validator costs about a millisecond an op, and a spec uses a handful of the
    hundred. A node whose op is not among them fails its tag exactly as with the whole union (the tag is
    unknown, or the op is a plugin's that the file does not load), and each member's errors are its own,
    so the diagnostics are the same."""
    for _, cls in ops:
        if not cls.__pydantic_complete__:
            cls.model_rebuild()  # first the op's own validator, which the union below reuses
    union = _node_union({name for name, _ in ops})
    block = create_model("BlockDef", __base__=BlockDef, __doc__=BlockDef.__doc__,
                         nodes=(dict[NodeName, union], Field(min_length=1)))
    return create_model("SpecFile", __base__=SpecFile, __doc__=SpecFile.__doc__,
                        blocks=(dict[ParamName, block], Field(default_factory=empty_dict)),
                        nodes=(dict[NodeName, union], Field(default_factory=empty_dict)))


def _full_models() -> type[SpecFile]:
    """SpecFile (and BlockDef) whose nodes are block calls or any built-in op: the language's JSON Schema."""
    return _models_with(frozenset((name, cls) for name, cls in REGISTRY.items() if is_builtin(cls)))


def _used_ops(data: dict, enabled: frozenset[str]) -> frozenset[tuple[str, type]]:
    """(name, class) of the ops that the nodes of `data` (a spec file's mapping) and of its blocks name,
    among the built-in ops and the plugin ops `enabled`."""
    entries: list = []
    nodes = data.get("nodes")
    if isinstance(nodes, dict):
        entries += nodes.values()
    blocks = data.get("blocks")
    if isinstance(blocks, dict):
        for block in blocks.values():
            if isinstance(block, dict) and isinstance(block.get("nodes"), dict):
                entries += block["nodes"].values()
    used = set()
    for entry in entries:
        tag = _node_tag(_shorthand(entry))
        if isinstance(tag, str) and tag != "block":
            cls = REGISTRY.get(tag)
            if cls is not None and (is_builtin(cls) or tag in enabled):
                used.add((tag, cls))
    return frozenset(used)


PLUGINS_TRUST = ("a plugin is Python code that runs when it is loaded: load only plugins you trust")


def _plugin_ops(source: SourceFile, diagnostics: Diagnostics, allow_plugins: bool) -> frozenset[str] | None:
    """The plugin ops this file may use: those of installed plugins and of the modules its `plugins` names
    (loading them). None when a named plugin cannot be loaded or plugins are refused (reported)."""
    from .plugins import installed_plugins, load_plugin

    ops: set[str] = set()
    ok = True
    if allow_plugins:
        for entry_point, module in installed_plugins():
            loaded = load_plugin(module)
            if loaded.error:
                diagnostics.warning("RG091", f"installed plugin `{entry_point}` (`{module}`) cannot be loaded: "
                                    f"{loaded.error}", help="fix or uninstall the package that installs it, or "
                                    "run with `--no-plugins`")
            ops.update(loaded.ops)
    names = source.data.get("plugins")
    if not isinstance(names, list) or not names:
        return frozenset(ops)
    if not allow_plugins:
        diagnostics.error("RG092", "this spec loads plugins, and plugins are refused (`--no-plugins`)",
                          source.span(("plugins",), key=True),
                          help="run without `--no-plugins` to load "
                               + ", ".join(f"`{n}`" for n in names if isinstance(n, str)) + "; " + PLUGINS_TRUST)
        return None
    for position, name in enumerate(names):
        if not isinstance(name, str):
            continue  # the model reports it
        loaded = load_plugin(name)
        if loaded.error:
            missing = loaded.error.startswith("ModuleNotFoundError")
            diagnostics.error("RG091", f"cannot load plugin `{name}`: {loaded.error}",
                              source.span(("plugins", position)),
                              help="install the package that provides it, or put it on PYTHONPATH" if missing
                              else "fix the plugin, or remove it from `plugins`")
            ok = False
        ops.update(loaded.ops)
    return frozenset(ops) if ok else None


def parse_spec(source: SourceFile, diagnostics: Diagnostics, allow_plugins: bool = True) -> SpecFile | None:
    """Validate a loaded file against the language; record located diagnostics on failure.

    First loads the plugins the file names (and the installed ones), unless `allow_plugins` is False."""
    data = source.data
    if not isinstance(data, dict):
        diagnostics.error("RG012", "a spec must be a mapping of fields", source.span(()),
                          help="start the file with `resgraph: 1`; see docs/spec.md")
        return None
    version = data.get("resgraph")
    if isinstance(version, str):
        diagnostics.error("RG014", f"the spec version must be a number, not the string `{version}`",
                          source.span(("resgraph",)), help=f"write `resgraph: {VERSION}` without quotes")
        return None
    if "resgraph" in data and version != VERSION:
        diagnostics.error("RG014", f"unsupported spec version `{version}`", source.span(("resgraph",)),
                          help=f"this resgraph reads version {VERSION}: write `resgraph: {VERSION}`")
        return None
    plugin_ops = _plugin_ops(source, diagnostics, allow_plugins)
    if plugin_ops is None:
        return None
    model = _models_with(_used_ops(data, plugin_ops))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        report_validation_error(exc, source, (), diagnostics, enabled=plugin_ops)
        return None


# ---- translating pydantic errors --------------------------------------------------------------

_MODEL_FOR_SECTION = {"blocks": BlockDef}


def _data_path(data: Any, loc: tuple) -> tuple[KeyPath, bool]:
    """Map a pydantic `loc` onto a path in the data, dropping union tags; flags a key error."""
    path: list = []
    current = data
    for position, segment in enumerate(loc):
        if segment == "[key]":
            return tuple(path), True
        following = loc[position + 1] if position + 1 < len(loc) else None
        if (isinstance(current, dict) and segment in current and following is not None and following != "[key]"
                and following in current and not isinstance(current[segment], (dict, list))):
            continue  # a union tag that is also a key (`block`), followed by a sibling field
        if isinstance(current, dict) and segment in current:
            current = current[segment]
            path.append(segment)
        elif isinstance(current, list) and isinstance(segment, int) and 0 <= segment < len(current):
            current = current[segment]
            path.append(segment)
        elif isinstance(current, str) and segment == "op":
            continue  # node shorthand `relu: relu`
        # anything else is a union tag or a model name that is not in the YAML: skip it
    return tuple(path), False


def _model_for(data: Any, parent_path: KeyPath, root_model: type[BaseModel]) -> type[BaseModel] | None:
    """The model that validates the mapping at `parent_path`, for listing its fields."""
    value = value_at(data, parent_path) if parent_path is not None else None
    if isinstance(value, dict):
        if "block" in value:
            return BlockCall
        if isinstance(value.get("op"), str):
            return REGISTRY.get(value["op"])
    if not parent_path:
        return root_model
    if len(parent_path) == 2 and parent_path[0] == "blocks":
        return BlockDef
    return None


def _fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _owner(model: type[BaseModel] | None, path: KeyPath) -> str:
    """How a diagnostic names the mapping a field belongs to."""
    if model is None:
        return "this entry"
    if hasattr(model, "op_name"):
        return f"op `{model.op_name()}`"
    if model is SpecFile:
        return "the spec file"
    name = next((p for p in reversed(path) if isinstance(p, str)), None)
    if model is BlockDef:
        return f"block `{name}`" if name else "the block"
    if model is BlockCall:
        return f"the block call `{name}`" if name else "the block call"
    return "this entry"


def _display(rel: KeyPath, field: str | None) -> str:
    """`input[1]` for an item of a list, else the key: how a field is named in a message."""
    indices = []
    for segment in reversed(rel):
        if isinstance(segment, int):
            indices.insert(0, segment)
        else:
            return segment + "".join(f"[{i}]" for i in indices)
    return field or "value"


_TYPE_WORDS = {"bool_type": "`true` or `false`", "int_type": "an integer", "int_parsing": "an integer",
               "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
               "none_required": "null", "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
               "model_attributes_type": "a mapping", "bool_parsing": "`true` or `false`",
               "int_from_float": "an integer", "string_sub_type": "a string", "string_unicode": "a string",
               "dataclass_type": "a mapping", "tuple_type": "a list", "set_type": "a list", "iterable_type": "a list",
               "float_finite_number": "a number"}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "null"
    return f"`{value}`"


def report_validation_error(exc: ValidationError, source: SourceFile, base: KeyPath, diagnostics: Diagnostics,
                            notes: tuple[Note, ...] = (), root_model: type[BaseModel] = SpecFile,
                            enabled: frozenset[str] = frozenset()) -> None:
    """Translate each pydantic error into a diagnostic located in `source` (under `base`).

    Errors of the union alternatives that do not apply are dropped: a failure deeper in one
    alternative (`input[1]` of a list) is the real one; the same value failing every
    alternative (a mapping where a param value goes) becomes one message listing them."""
    base_value = value_at(source.data, base)
    located = []
    for error in exc.errors():
        rel, key_error = _data_path(base_value, error["loc"])
        located.append((rel, key_error, error))
    paths = [rel for rel, _, _ in located]
    type_failures: dict[KeyPath, list[str]] = {}
    for rel, key_error, error in located:
        if error["type"] in _TYPE_WORDS and not key_error:
            if any(len(other) > len(rel) and other[:len(rel)] == rel for other in paths):
                continue  # another alternative got further: its error is the one to report
            type_failures.setdefault(rel, []).append(error["type"])
    reported_types: set[KeyPath] = set()
    splits = {}   # an entry that YAML split at a comma: its second half's path -> (diagnostic, first half's path)
    for rel, key_error, error in located:
        if error["type"] in ("extra_forbidden", "string_pattern_mismatch"):
            split = _split_at_comma(source, base + rel, notes)
            if split is not None:
                splits[base + rel] = split
    halves = {first for _, first in splits.values()}
    for rel, key_error, error in located:
        path = base + rel
        if path in halves:
            continue  # `max(1` is the first half of a split expression: reported with the second
        kind = error["type"]
        ctx = error.get("ctx") or {}
        field = next((s for s in reversed(error["loc"]) if isinstance(s, str) and s != "[key]"), None)
        span = source.span(path, key=key_error)
        name = _display(rel, field)
        if kind in _TYPE_WORDS and not key_error:
            if rel not in type_failures or rel in reported_types:
                continue
            reported_types.add(rel)
            words = list(dict.fromkeys(_TYPE_WORDS[k] for k in type_failures[rel]))
            expected = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
            got = value_at(source.data, path)
            help_text, fixes = _type_help(got, words, span, source)
            diagnostics.error("RG012", f"invalid value for `{name}`: expected {expected}, got {_describe(got)}",
                              span, help=help_text, notes=notes, fixes=fixes)
        elif kind == "resgraph":
            fixes = ()
            if ctx.get("fix") is not None and span is not None:
                old_text, new_text = ctx["fix"]
                written = text_at(source.text, span)
                if old_text in written:
                    fixes = (Edit(span, written.replace(old_text, new_text)),)
            diagnostics.error(ctx.get("code", "RG012"), f"invalid value for `{name}`: {ctx['message']}", span,
                              help=ctx.get("help"), notes=notes, fixes=fixes)
        elif kind == "missing":
            model = _model_for(source.data, path, root_model)
            missing = error["loc"][-1]
            if model is SpecFile and missing == "resgraph":
                diagnostics.error("RG010", "the spec file has no `resgraph` version field", span,
                                  help=f"start the file with `resgraph: {VERSION}`", notes=notes)
                continue
            diagnostics.error("RG010", f"missing field `{missing}` for {_owner(model, path)}", span,
                              help=f"add `{missing}: ...`", notes=notes)
        elif path in splits:
            diagnostics.add(splits[path][0])
        elif kind == "extra_forbidden":
            unknown = rel[-1] if rel else field
            model = _model_for(source.data, path[:-1], root_model)
            known = _fields(model) if model is not None else []
            listed = ", ".join(f"`{k}`" for k in known if k not in ("op",))
            diagnostics.error("RG011", f"unknown field `{unknown}` for {_owner(model, path[:-1])}",
                              source.span(path, key=True),
                              help=did_you_mean(str(unknown), known) or (f"known fields: {listed}" if listed else None),
                              notes=notes)
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            value = value_at(source.data, path)
            op = value.get("op") if isinstance(value, dict) else value
            if isinstance(value, dict) and "op" not in value:
                diagnostics.error("RG010", "a node needs an `op` (or a `block`)", span,
                                  help="e.g. `{op: conv2d, out: 64, kernel: 3}`; see docs/spec.md for the ops",
                                  notes=notes)
            elif not isinstance(op, str):
                diagnostics.error("RG012", "`op` must be the name of an op", source.span(path + ("op",)), notes=notes)
            elif op in REGISTRY and not is_builtin(REGISTRY[op]) and op not in enabled:
                module = REGISTRY[op].__module__
                diagnostics.error("RG013", f"unknown op `{op}`: it is an op of plugin `{module}`, which this file does "
                                  "not load", source.span(path + ("op",)),
                                  help=f"name the plugin in the file that uses it: `plugins: [{module}]`", notes=notes)
            else:
                op_span = source.span(path + ("op",))
                known = [name for name, cls in REGISTRY.items() if is_builtin(cls) or name in enabled]
                diagnostics.error("RG013", f"unknown op `{op}`", op_span,
                                  help=did_you_mean(op, known) or "known ops: " + ", ".join(sorted(known)),
                                  notes=notes, fixes=replacing(source.text, op_span, op, nearest(op, known)))
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") in (KEY_PATTERN, KEY_TEMPLATE_PATTERN,
                                                                           NAMES_PATTERN):
            value = error["input"]
            braces = "{" in str(value) or "}" in str(value)
            if ctx.get("pattern") == KEY_PATTERN or ctx.get("pattern") == KEY_TEMPLATE_PATTERN and not braces:
                diagnostics.error("RG045", f"invalid key `{value}`: a module path is names of letters, digits, `_` "
                                  "and `-`, joined by dots", span, help="e.g. `block.0` or `trunk_output.block1`",
                                  notes=notes)
            elif ctx.get("pattern") == KEY_TEMPLATE_PATTERN:
                diagnostics.error("RG045", f"invalid key `{value}`: a module path is names of letters, digits, `_` "
                                  "and `-`, and `{expression}` parts, joined by dots", span,
                                  help="e.g. `block.0`, `trunk_output.block1` or `{start + 2}`", notes=notes)
            else:
                diagnostics.error("RG045", f"invalid `names: {value}`: a pattern is letters, digits, `_` and `-` "
                                  "with one `{i}` for the number", span, help="e.g. `denselayer{i}` or `block1-{i}`",
                                  notes=notes)
        elif kind == "string_pattern_mismatch":
            value = error["input"]
            rule = "letters, digits and `_`" if ctx.get("pattern") in (NODE_NAME, BLOCK_OUTPUT) else \
                "a letter or `_` followed by letters, digits and `_`"
            if ctx.get("pattern") == OUTPUT_PATH:
                parts = [re.sub(r"\W", "_", part) for part in value.split(".") if part]
                diagnostics.error("RG045", f"invalid output `{value}`: an output is a node name, or names joined by "
                                  "dots for a node inside a block (`layer1.0.relu2`); each name is letters, digits "
                                  "and `_`", span, help=f"e.g. `{'.'.join(parts) or 'fc'}`", notes=notes)
                continue
            if "." in value:
                hint = "dots are not allowed in names: nesting makes dotted paths"
            else:
                suggestion = re.sub(r"\W", "_", value)
                suggestion = suggestion if re.match(IDENTIFIER, suggestion) else "_" + suggestion
                hint = f"use letters, digits and `_` only, e.g. `{suggestion}`"
            diagnostics.error("RG045", f"invalid name `{value}`: names are made of {rule}", span, help=hint,
                              notes=notes)
        elif kind in ("too_short", "too_long"):
            if kind == "too_short" and ctx.get("actual_length") == 0:
                diagnostics.error("RG012", f"`{name}` must not be empty", span,
                                  help="a block needs at least one node" if name == "nodes" else
                                  "a block needs at least one input" if name == "inputs" else None, notes=notes)
            else:
                bound = f"at least {ctx.get('min_length')}" if kind == "too_short" else \
                    f"at most {ctx.get('max_length')}"
                diagnostics.error("RG012", f"`{name}` takes {bound} items, got {ctx.get('actual_length')}", span,
                                  notes=notes)
        else:
            got = value_at(source.data, path) if path != base or rel else error.get("input")
            expected = _expected_type(kind)
            # pydantic's own words name its internal types: never show them
            message = f"invalid value for `{name}`" + (f": expected {expected}" if expected else "")
            message += f", got {_describe(got)}" if expected else f": {_describe(got)} is not allowed here"
            diagnostics.error("RG012", message, span, notes=notes,
                              help=None if expected else "see docs/spec.md for the values this field takes")


def _type_help(got: Any, words: list[str], span: Span | None, source: SourceFile) -> tuple[str | None, tuple]:
    """A list written without brackets (`input: 3, 32, 32`) reads as one string: show the list."""
    if "a list" in words and isinstance(got, str) and "," in got and span is not None:
        items = [item.strip() for item in got.split(",")]
        if all(items):
            shown = "[" + ", ".join(items) + "]"
            return f"a list is written in brackets: `{shown}`", (Edit(span, shown),)
    return None, ()


def _open_brackets(text: str) -> int:
    return sum(text.count(c) for c in "([") - sum(text.count(c) for c in ")]")


def _split_at_comma(source: SourceFile, path: KeyPath, notes: tuple[Note, ...]) -> tuple[Diagnostic, KeyPath] | None:
    """An unquoted comma inside a `{...}` mapping ends the entry: `{squeeze: max(1, c // 4)}` reads as the
    entries `squeeze: max(1` and `c // 4)`. The key that closes a bracket opened by the entry before it is
    that case; returns the diagnostic and the path of the first half (None where it is not the case)."""
    if not path or not isinstance(path[-1], str):
        return None
    parent_path, key = path[:-1], path[-1]
    parent = value_at(source.data, parent_path)
    if not isinstance(parent, dict) or key not in parent or _open_brackets(key) >= 0 or parent[key] is not None:
        return None
    keys = list(parent)
    position = keys.index(key)
    if position == 0:
        return None
    before = keys[position - 1]
    value = parent[before]
    if not isinstance(value, str) or _open_brackets(value) + _open_brackets(key) != 0:
        return None
    start, end = source.span(parent_path + (before,)), source.span(parent_path + (key,), key=True)
    if start is None or end is None or (start.line, start.col) >= (end.line, end.col):
        return None
    whole = Span(start.file, start.line, start.col, end.end_line, end.end_col)
    written = text_at(source.text, whole)
    if not written.startswith(value) or "\n" in written or '"' in written:
        return None
    return Diagnostic("RG020", f"YAML split the expression `{written}` at its comma: inside `{{...}}` an unquoted "
                      "comma ends the entry", whole, help=f"quote the expression: `{before}: \"{written}\"`",
                      notes=notes, fixes=(Edit(whole, f'"{written}"'),)), parent_path + (before,)


def _expected_type(kind: str) -> str | None:
    return {"dict_type": "a mapping", "list_type": "a list", "string_type": "a string", "int_type": "an integer",
            "bool_type": "`true` or `false`", "float_type": "a number", "model_type": "a mapping",
            "model_attributes_type": "a mapping", "int_parsing": "an integer", "literal_error": None,
            "union_type": None}.get(kind, None) if kind.endswith("_type") or kind.endswith("_parsing") else None


def _node_unions(value: Any):
    """Every `oneOf` of the schema that lists the node kinds (it includes BlockCall)."""
    if isinstance(value, dict):
        options = value.get("oneOf")
        if isinstance(options, list) and {"$ref": "#/$defs/BlockCall"} in options:
            yield value
        for child in value.values():
            yield from _node_unions(child)
    elif isinstance(value, list):
        for child in value:
            yield from _node_unions(child)


def json_schema() -> dict:
    """The JSON Schema of a spec file, from the pydantic models."""
    schema = _full_models().model_json_schema()
    # The `relu: relu` shorthand is a plain op name where a node mapping is expected.
    builtin = sorted(name for name, cls in REGISTRY.items() if is_builtin(cls))
    shorthand = {"type": "string", "enum": builtin, "description": "an op with default attributes"}
    for holder in _node_unions(schema):
        holder["oneOf"].append(shorthand)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "resgraph spec"
    return schema

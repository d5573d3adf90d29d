"""Eject: the shaped graph IR -> one standalone Python file that imports only torch.

Every op lowers itself once more, through a `SourceBuilder` that records statements instead of
fx nodes. Instances of one block definition become one `nn.Module` class: constructor arguments
that differ between instances become parameters of the class, named after the block's own
params where their values agree (`planes`, `stride`), so the file reads like torchvision's.
"""

from __future__ import annotations

import copy
import functools
import inspect
import keyword
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from .expr import ExprError, evaluate, names_in, parse_expression
from .graph import Graph, Instance
from .lower import Builder
from .modules import DropPath, ZeroPadShortcut

LINE_LENGTH = 88  # black's default


class EjectError(Exception):
    """The network uses something the ejector cannot write out."""


# ---- recording statements ----------------------------------------------------------------------

@dataclass(eq=False)
class Temp:
    """A value made by a statement (IR nodes are referred to by name)."""

    hint: str


@dataclass(eq=False)
class Statement:
    kind: str                        # module | shortcut | function | iadd | binary | subscript | call
    output: Temp
    args: list[Any]                  # references: IR node names or Temps, or lists of them (torch.cat);
                                     # or literals (None, numbers, booleans), see `_is_literal`
    slot: str | None = None          # the attribute of the module called, relative to the scope
    module: nn.Module | None = None
    function: Callable | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    position: int = 0                # where it goes in topological order


class SourceBuilder(Builder):
    """Records what each op's `lower` does, per scope (the network, or one block instance)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph)
        self.statements: dict[str, list[Statement]] = {}

    def _emit(self, statement: Statement) -> Temp:
        statement.position = self.position
        self.statements.setdefault(self.node.prefix[:-1], []).append(statement)
        return statement.output

    def call_module(self, module: nn.Module, args: Sequence[Any], name: str | None = None,
                    kwargs: dict | None = None) -> Temp:
        slot = name or self.node.local_name
        return self._emit(Statement("module", Temp(slot), list(args), slot=slot, module=module,
                                    kwargs=dict(kwargs or {})))

    def shortcut(self, module: nn.Module | None, arg: Any, name: str) -> Temp:
        return self._emit(Statement("shortcut", Temp("identity"), [arg], slot=name, module=module))

    def call_function(self, function: Callable, args: Sequence[Any], kwargs: dict | None = None) -> Temp:
        hint = self.node.local_name
        if function is operator.iadd:
            return self._emit(Statement("iadd", Temp(hint), list(args)))
        if function in BINARY_SYMBOLS:
            return self._emit(Statement("binary", Temp(hint), list(args), function=function))
        if function is operator.getitem:  # `result[0]`: an item of a module's tuple result
            return self._emit(Statement("subscript", Temp(hint), list(args), function=function))
        return self._emit(Statement("function", Temp(hint), list(args), function=function, kwargs=dict(kwargs or {})))

    def call_method(self, method: str, args: Sequence[Any], kwargs: dict | None = None) -> Temp:
        return self._emit(Statement("method", Temp(self.node.local_name), list(args), function=method,
                                    kwargs=dict(kwargs or {})))


BINARY_SYMBOLS = {operator.add: "+", operator.mul: "*", operator.sub: "-"}


# ---- module constructors as expression trees ------------------------------------------------------

@dataclass
class Call:
    """`func(arg, ..., key=value, ...)`: args are (keyword or None, value or Call)."""

    func: str
    args: list[tuple[str | None, Any]]


def _same(values: Sequence[Any]) -> Any:
    """`(3, 3)` -> `3`: how a hand-written module states a square kernel."""
    values = tuple(values)
    return values[0] if values and all(v == values[0] for v in values) else values


def constructor(module: nn.Module) -> Call:
    """The call that rebuilds `module` (its structure; weights come from a state_dict)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        cls = f"nn.{type(module).__name__}"
        padding = module.padding if isinstance(module.padding, str) else _same(module.padding)
        return Call(cls, [(None, module.in_channels), (None, module.out_channels),
                          ("kernel_size", _same(module.kernel_size)), ("stride", _same(module.stride)),
                          ("padding", padding), ("dilation", _same(module.dilation)), ("groups", module.groups),
                          ("bias", module.bias is not None), ("padding_mode", module.padding_mode)])
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
                           nn.InstanceNorm3d)):
        cls = f"nn.{type(module).__name__}"
        return Call(cls, [(None, module.num_features), ("eps", module.eps), ("momentum", module.momentum),
                          ("affine", module.affine), ("track_running_stats", module.track_running_stats)])
    if isinstance(module, nn.LayerNorm):
        shape = module.normalized_shape
        return Call("nn.LayerNorm", [(None, shape[0] if len(shape) == 1 else list(shape)), ("eps", module.eps),
                                     ("elementwise_affine", module.elementwise_affine),
                                     ("bias", getattr(module, "bias", None) is not None or not module.elementwise_affine)])
    if isinstance(module, nn.GroupNorm):
        return Call("nn.GroupNorm", [(None, module.num_groups), (None, module.num_channels), ("eps", module.eps),
                                     ("affine", module.affine)])
    if isinstance(module, nn.Linear):
        return Call("nn.Linear", [(None, module.in_features), (None, module.out_features),
                                  ("bias", module.bias is not None)])
    if isinstance(module, nn.Dropout):
        return Call("nn.Dropout", [("p", module.p)])
    if isinstance(module, DropPath):
        return Call("DropPath", [(None, module.p)])
    if isinstance(module, nn.PReLU):
        return Call("nn.PReLU", [(None, module.num_parameters), ("init", module.init)])
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return Call(f"nn.{type(module).__name__}", [
            (None, module.in_channels), (None, module.out_channels), ("kernel_size", _same(module.kernel_size)),
            ("stride", _same(module.stride)), ("padding", _same(module.padding)),
            ("output_padding", _same(module.output_padding)), ("groups", module.groups),
            ("bias", module.bias is not None), ("dilation", _same(module.dilation))])
    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise EjectError("can write out self-attention modules (one embedding size, no extra bias) only")
        return Call("nn.MultiheadAttention", [
            (None, module.embed_dim), (None, module.num_heads), ("dropout", module.dropout),
            ("bias", module.in_proj_bias is not None), ("batch_first", module.batch_first)])
    if isinstance(module, nn.Sequential):
        return Call("nn.Sequential", [(None, constructor(child)) for child in module])
    if isinstance(module, ZeroPadShortcut):
        if len(module.stride) != 2 or module.stride[0] != module.stride[1]:
            raise EjectError("can write out zero-padding shortcuts of 2-d inputs with a square stride only")
        return Call("ZeroPadShortcut", [(None, _same(module.stride)), (None, module.in_channels),
                                        (None, module.out_channels)])
    raise EjectError(f"cannot write out a `{type(module).__name__}` module")


DEFAULTS = {  # keyword arguments left out when they equal torch's default
    "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, "padding_mode": "zeros",
    "eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True, "elementwise_affine": True,
    "p": 0.5, "output_padding": 0, "dropout": 0.0,
}
# Classes whose defaults differ from DEFAULTS (instance norms have neither affine weights nor running stats).
CLASS_DEFAULTS = {
    **{f"nn.InstanceNorm{n}d": {**DEFAULTS, "affine": False, "track_running_stats": False} for n in (1, 2, 3)},
    "nn.PReLU": {"init": 0.25},
}


def _leaves(call: Call, path: tuple = ()) -> list[tuple[tuple, Any]]:
    found = []
    for position, (key, value) in enumerate(call.args):
        if isinstance(value, Call):
            found += _leaves(value, path + (position,))
        else:
            found.append((path + (position,), value))
    return found


def _shape_of(call: Call) -> Any:
    return (call.func, tuple((key, _shape_of(v) if isinstance(v, Call) else None) for key, v in call.args))


@dataclass(frozen=True)
class Name:
    """A reference to a constructor parameter (or a local of `__init__`) in generated code."""

    text: str


def _substitute(call: Call, replacements: dict[tuple, Any], path: tuple = (),
                class_defaults: dict[str, dict[str, Any]] | None = None) -> Call:
    """`call` with the leaves at `replacements` replaced, and keyword arguments that equal their
    default left out (torch's, or those of the ejected classes in `class_defaults`)."""
    defaults = (class_defaults or {}).get(call.func) or CLASS_DEFAULTS.get(call.func, DEFAULTS)
    args = []
    for position, (key, value) in enumerate(call.args):
        here = path + (position,)
        if isinstance(value, Call):
            value = _substitute(value, replacements, here, class_defaults)
        elif here in replacements:
            value = replacements[here]
        if key is not None and not isinstance(value, (Call, Name)) and key in defaults \
                and _equal(defaults[key], value):
            continue
        args.append((key, value))
    return Call(call.func, args)


# ---- rendering Python source, formatted as black would -------------------------------------------

def _literal(value: Any) -> str:
    if isinstance(value, Name):
        return value.text
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _arg_text(key: str | None, value: Any, indent: int) -> list[str]:
    if isinstance(value, Call):
        lines = format_call(value, indent, prefix=f"{key}=" if key else "")
        return lines
    return [" " * indent + (f"{key}=" if key else "") + _literal(value)]


def _flat(call: Call) -> str:
    parts = []
    for key, value in call.args:
        text = _flat(value) if isinstance(value, Call) else _literal(value)
        parts.append(f"{key}={text}" if key else text)
    return f"{call.func}(" + ", ".join(parts) + ")"


def _module_attribute(slot: str) -> str:
    """How a forward reads submodule `slot`: `self.conv1`, or `getattr(self, "0")` for a name that is not a
    Python identifier (torchvision's Sequential indices, `features.0`)."""
    return f"self.{slot}" if slot.isidentifier() and not keyword.iskeyword(slot) else f"getattr(self, {slot!r})"


def _assign_module(slot: str, call: Call, indent: int) -> list[str]:
    """`self.slot = call`, or `self.add_module("0", call)` for a name that is not an identifier."""
    if slot.isidentifier() and not keyword.iskeyword(slot):
        return format_call(call, indent, prefix=f"self.{slot} = ")
    return format_call(call, indent, prefix=f"self.add_module({slot!r}, ", suffix=")")


def _assign_text(slot: str, value: str) -> str:
    """`self.slot = value` (a name or `None`), or `self.add_module("0", value)`."""
    if slot.isidentifier() and not keyword.iskeyword(slot):
        return f"self.{slot} = {value}"
    return f"self.add_module({slot!r}, {value})"


def format_call(call: Call, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines for `prefix + call + suffix`, split the way black splits a call that is too long."""
    pad = " " * indent
    one = pad + prefix + _flat(call) + suffix
    if len(one) <= LINE_LENGTH or not call.args:
        return [one]
    head = pad + prefix + call.func + "("
    inner = ", ".join((f"{k}=" if k else "") + (_flat(v) if isinstance(v, Call) else _literal(v))
                      for k, v in call.args)
    if len(pad) + 4 + len(inner) <= LINE_LENGTH:
        return [head, pad + "    " + inner, pad + ")" + suffix]
    lines = [head]
    for key, value in call.args:
        arg_lines = _arg_text(key, value, indent + 4)
        arg_lines[-1] += ","
        lines += arg_lines
    return lines + [pad + ")" + suffix]


def _identifier(text: str, taken: set[str] | frozenset = frozenset()) -> str:
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or name in ("self", "nn", "F", "torch", "super"):
        name += "_"
    base, suffix = name, 1
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    return name


def class_name(name: str, taken: set[str]) -> str:
    words = re.split(r"[^A-Za-z0-9]+", name)
    text = "".join(w[:1].upper() + w[1:] for w in words if w) or "Block"
    text = text if text[0].isalpha() else "Block" + text
    return _identifier(text, taken)


_FUNCTION_NAMES = {torch.flatten: "torch.flatten", torch.cat: "torch.cat", torch.sigmoid: "torch.sigmoid",
                   torch.tanh: "torch.tanh"}


def _function_text(function: Callable) -> str:
    if function in _FUNCTION_NAMES:
        return _FUNCTION_NAMES[function]
    module = getattr(function, "__module__", "") or ""
    name = function.__name__
    if module.startswith("torch.nn.functional") or getattr(torch.nn.functional, name, None) is function:
        return f"F.{name}"
    if getattr(torch, name, None) is function:
        return f"torch.{name}"
    raise EjectError(f"cannot write out a call of `{module}.{name}`")




# ---- scopes: the network, and each block instance ------------------------------------------------

@dataclass
class Scope:
    """One function body: the statements of a scope, their inputs and outputs, in order."""

    name: str                                   # "" for the network, else the instance path
    params: list[str]                           # forward's parameters (variable names)
    statements: list[Statement]
    outputs: list[Any]                          # references
    aliases: dict[str, Any]                     # IR node name -> reference that holds its value


class Ejector:
    """Plans and writes the classes. Requires a shaped graph."""

    def __init__(self, graph: Graph, source_name: str = "", doc: str | None = None) -> None:
        self.graph, self.source_name, self.doc = graph, source_name, doc
        order = graph.topological_order()
        position = {node.name: index for index, node in enumerate(order)}
        builder = SourceBuilder(graph)
        self.results: dict[str, Any] = {}
        for node in order:
            if node.is_input:
                continue
            builder.node, builder.position = node, position[node.name]
            shapes = [graph.nodes[name].shape for name in node.inputs]
            self.results[node.name] = node.op.lower(builder, list(node.inputs), shapes, node.shape, node.meta)
        self.own = builder.statements
        self.calls = graph.block_calls()
        self.first_position = graph.scope_starts(order)
        self.helpers: set[str] = set()   # resgraph's own modules the file defines (HELPER_SOURCES)
        self.uses_math = False

    def scope(self, name: str) -> Scope:
        if name:
            instance = self.graph.instances[name]
            definition_inputs = list(self.definitions[instance.block].inputs)
            params = [_identifier("x" if p == "input" and len(definition_inputs) == 1 else p)
                      for p in definition_inputs]
            aliases = {}
            for param, ref in zip(params, instance.inputs):
                aliases.setdefault(ref, param)
            outputs = [instance.output]
        else:
            names = self.graph.inputs
            params = [_identifier("x" if names == ["input"] else n) for n in names]
            aliases = dict(zip(names, params))
            outputs = list(self.graph.outputs)
        statements = list(self.own.get(name, []))
        for call, instances in self.calls.get(name, {}).items():
            local = call.rpartition(".")[2]
            statement = Statement("call", Temp(local), list(instances[0].inputs), slot=local,
                                  position=self.first_position[call])
            statement.instances = instances  # type: ignore[attr-defined]
            aliases[instances[-1].output] = statement.output
            statements.append(statement)
        statements.sort(key=lambda s: s.position)
        for node_name, result in self.results.items():
            if self.graph.nodes[node_name].prefix[:-1] == name:
                aliases.setdefault(node_name, result)
        return Scope(name, params, statements, outputs, aliases)

    # ---- planning classes

    def write(self, blocks: dict[str, Any]) -> str:
        """`blocks`: block name -> its definition (for inputs, params, let and attribute expressions)."""
        self.definitions = blocks
        taken: set[str] = set(HELPER_SOURCES)
        by_block: dict[str, list[str]] = {}
        depth: dict[str, int] = {}
        for instance in self.graph.instances.values():
            by_block.setdefault(instance.block, []).append(instance.name)
            depth[instance.block] = max(depth.get(instance.block, 0), instance.name.count("."))
        self.class_of: dict[str, str] = {}
        self.arguments: dict[str, list[tuple[str, Any]]] = {}   # instance -> (parameter, value) in order
        self.class_defaults: dict[str, dict[str, Any]] = {}     # class -> keyword parameter -> default
        self.parameters: dict[str, list[tuple[str, Any]]] = {}  # class -> (parameter, default or REQUIRED)
        sections = []
        for block in sorted(by_block, key=lambda b: -depth[b]):
            groups = self._structural_groups(by_block[block])
            for group in groups:
                name = class_name(block + (self._variant(block, group[0]) if len(groups) > 1 else ""), taken)
                taken.add(name)
                sections.append(self._block_class(name, block, group))
        network_class = class_name(self.graph.name, taken)
        sections.append(self._network_class(network_class))
        header = [f'"""{self.graph.name}, ejected by resgraph{" from " + self.source_name if self.source_name else ""}.',
                  "", "A standalone PyTorch module: it imports only torch, and its state_dict keys are those of the",
                  'compiled spec."""', ""]
        imports = (["import math", ""] if self.uses_math else []) + \
            ["import torch", "import torch.nn as nn", "import torch.nn.functional as F"]
        parts = ["\n".join(header + imports)]
        parts += [HELPER_SOURCES[helper] for helper in sorted(self.helpers)]
        parts += sections
        return "\n\n\n".join(parts) + "\n"

    def _signature(self, scope: Scope) -> tuple:
        """What must agree for instances to share a class: statements, their wiring and module shapes."""
        index = {}
        for position, param in enumerate(scope.params):
            index[param] = ("param", position)
        items = []
        for position, statement in enumerate(scope.statements):
            args = tuple(self._ref_key(a, scope, index) for a in statement.args)
            structure = None
            if statement.kind == "call":
                structure = tuple(i.block for i in statement.instances) if statement.instances[0].index is not None \
                    else statement.instances[0].block
                structure = (structure, statement.instances[0].index is not None)
            items.append((statement.kind, statement.slot, statement.function, tuple(sorted(statement.kwargs)), args,
                          structure))
            index[id(statement.output)] = ("statement", position)
        outputs = tuple(self._ref_key(o, scope, index) for o in scope.outputs)
        return tuple(items), outputs

    def _ref_key(self, ref: Any, scope: Scope, index: dict) -> Any:
        if _is_literal(ref):
            return ("literal", type(ref), ref)
        if isinstance(ref, list):
            return tuple(self._ref_key(r, scope, index) for r in ref)
        resolved = self._resolve(ref, scope)
        return index.get(resolved if isinstance(resolved, str) else id(resolved), ("?",))

    def _resolve(self, ref: Any, scope: Scope) -> Any:
        seen = 0
        while isinstance(ref, str) and ref in scope.aliases and scope.aliases[ref] is not ref:
            ref = scope.aliases[ref]
            seen += 1
            if seen > 10_000:  # pragma: no cover
                raise EjectError("alias loop")
        return ref

    def _variant(self, block: str, instance: str) -> str:
        """`_with_shortcut` for the instances of `block` that have its conditional node `shortcut` (`when:`),
        so that the variants of one block read apart (`PreactBasic`, `PreactBasicWithShortcut`)."""
        def exists(path: str) -> bool:   # an op node, or a block call (repeated or not) that was made
            instances = self.graph.instances
            return path in self.graph.nodes or path in instances or f"{path}.0" in instances

        present = [name for name, entry in self.definitions[block].nodes.items()
                   if entry.when is not None and exists(f"{instance}.{name}")]
        return "_with_" + "_".join(present) if present else ""

    def _structural_groups(self, instances: list[str]) -> list[list[str]]:
        groups: dict[tuple, list[str]] = {}
        for name in instances:
            groups.setdefault(self._signature(self.scope(name)), []).append(name)
        return list(groups.values())

    # ---- one class

    def _candidates(self, instance: Instance, definition: Any) -> dict[str, Any]:
        """Names a varying constructor argument may be written as, with their values in `instance`."""
        found: dict[str, Any] = {}
        first_input = self.graph.nodes[instance.inputs[0]].shape if instance.inputs else None
        if first_input:
            found["in_channels"] = first_input[0]
        for key in definition.params:
            found[key] = instance.values[key]
        for key in definition.let:
            found[key] = instance.values[key]
        found["index"] = instance.values["index"]
        for node_name, entry in definition.nodes.items():  # attribute expressions, e.g. `planes * expansion`
            for attr in ("out",):
                text = getattr(entry, attr, None)
                if isinstance(text, str) and text not in found and _python_expression(text) is not None:
                    try:
                        found[text] = evaluate(text, instance.values)
                    except ExprError:
                        pass
        return found

    def _block_class(self, name: str, block: str | None, group: list[str]) -> str:
        definition = self.definitions[block] if block else None
        scopes = [self.scope(i) for i in group]
        candidates = [self._candidates(self.graph.instances[i], definition) for i in group] if definition else \
            [{} for _ in group]
        slots: dict[str, list[Call | None]] = {}
        shortcuts: dict[str, list[Call | None]] = {}   # kept apart: an identity shortcut has no module
        kwargs: dict[tuple[int, str], list[Any]] = {}
        for scope in scopes:
            for position, statement in enumerate(scope.statements):
                if statement.kind in ("module", "shortcut"):
                    call = constructor(statement.module) if statement.module is not None else None
                    if type(statement.module).__name__ in HELPER_SOURCES:
                        self.helpers.add(type(statement.module).__name__)
                    (shortcuts if statement.kind == "shortcut" else slots).setdefault(statement.slot, []).append(call)
                elif statement.kind == "call":
                    slots.setdefault(statement.slot, []).append(self._child_call(statement))
                for key, value in statement.kwargs.items():
                    kwargs.setdefault((position, key), []).append(value)
        for slot, calls in shortcuts.items():
            if any(call is not None for call in calls):
                slots[slot] = calls

        used: list[str] = []            # candidate names written in the class
        fallbacks: list[tuple[str, list[Any]]] = []   # new parameters: (name, value per instance)
        module_params: list[tuple[str, list[Call]]] = []
        flags: list[tuple[str, list[bool]]] = []
        taken = {"self"} | set(candidates[0])

        def writable(text: str, seen: frozenset = frozenset()) -> str | None:
            """`text` in Python, where it and the `let` values it reads have a Python spelling in a constructor
            (see `_python_expression`); else None."""
            code = _python_expression(text, definition.inputs[0] if definition is not None else None)
            lets = definition.let if definition is not None else {}
            for name in _names(text) if code is not None else ():
                if name in lets and name not in seen and writable(lets[name], seen | {name}) is None:
                    return None
            return code

        def express(values: list[Any], present: list[int], fallback: str, written: Any = None) -> Any:
            """How to write a constructor argument: as the spec wrote it (`written`), as a literal
            when every instance agrees, or as the param whose value it follows."""
            if isinstance(written, str):
                code = writable(written)
                if code is not None and all(_equal(_spec_value(written, candidates[i]), v)
                                            for i, v in zip(present, values)):
                    used.append(written)
                    return Name(code)
            if all(_equal(v, values[0]) for v in values):
                return values[0]
            # Names already written come first, so that `bn1` follows `conv1` (`width`, not `planes`).
            for candidate in list(dict.fromkeys(used)) + list(candidates[present[0]]):
                if all(_equal(candidates[i].get(candidate, _MISSING), v) for i, v in zip(present, values)):
                    code = writable(candidate)
                    if code is None:
                        continue
                    used.append(candidate)
                    return Name(code)
            parameter = _identifier(fallback, taken)
            taken.add(parameter)
            fallbacks.append((parameter, [None] * len(group)))
            for i, v in zip(present, values):
                fallbacks[-1][1][i] = v
            return Name(parameter)

        init: list[str] = []
        attributes: list[str] = []
        for slot, calls in slots.items():
            present = [i for i, c in enumerate(calls) if c is not None]
            if not present:
                continue
            shapes = {repr(_shape_of(calls[i])) for i in present}
            if len(shapes) > 1:  # different structures: the caller builds it
                parameter = _identifier(slot, taken)
                taken.add(parameter)
                module_params.append((parameter, [calls[i] for i in range(len(group))]))
                init.append("        " + _assign_text(slot, parameter))
                continue
            replacements = {}
            entry = definition.nodes.get(slot) if definition is not None else None
            for path, _ in _leaves(calls[present[0]]):
                values = [_leaf(calls[i], path) for i in present]
                argument = _arg_name(calls[present[0]], path)
                attr_name = ATTRIBUTE_OF.get(argument) if len(path) == 1 else None
                written = getattr(entry, attr_name, None) if entry is not None and attr_name else None
                replacements[path] = express(values, present, f"{slot}_{argument}", written)
            call = _substitute(calls[present[0]], replacements, class_defaults=self.class_defaults)
            if len(present) == len(group):
                init += _assign_module(slot, call, 8)
            else:
                flag = _identifier(slot, taken)
                taken.add(flag)
                flags.append((flag, [calls[i] is not None for i in range(len(group))]))
                init += ["        " + _assign_text(slot, "None"), f"        if {flag}:"]
                init += _assign_module(slot, call, 12)
        kwarg_code: dict[tuple[int, str], Any] = {}
        for (position, key), values in kwargs.items():
            value = express(values, list(range(len(group))), f"{scopes[0].statements[position].output.hint}_{key}")
            if isinstance(value, Name):
                attribute_name = _identifier(f"{scopes[0].statements[position].output.hint}_{key}", set())
                attributes.append(f"        self.{attribute_name} = {value.text}")
                value = Name(f"self.{attribute_name}")
            kwarg_code[(position, key)] = value

        # Parameters: the candidates used (and what their let expressions need), then new ones.
        lets: list[str] = []
        if definition is not None:
            needed = set()
            for candidate in used:
                needed |= _names(candidate)
            changed = True
            while changed:
                changed = False
                for key, text in definition.let.items():
                    if key in needed and not _names(text) <= needed:
                        needed |= _names(text)
                        changed = True
            for key, text in definition.let.items():
                if key in needed:
                    code = writable(text)
                    if code is None:
                        raise EjectError(f"the `let` expression `{text}` of block `{block}` cannot be written in Python")
                    needed |= _names(code)   # `in_channels`, for a let of the input's channels
                    lets.append(f"        {key} = {code}")
                    if "math." in code:
                        self.uses_math = True
            base = ["in_channels"] + list(definition.params) + ["index"]
            parameters = [b for b in base if b in needed]
        else:
            parameters = []
        required, optional = [], []
        for parameter in parameters:
            default = definition.params.get(parameter, None)
            values = [c[parameter] for c in candidates]
            if default is None:
                required.append((parameter, REQUIRED, values))
            else:
                optional.append((parameter, default, values))
        for parameter, values in fallbacks:
            # A value that only some instances have (an optional module's) defaults to None.
            (optional if any(v is None for v in values) else required).append(
                (parameter, None if any(v is None for v in values) else REQUIRED, values))
        for parameter, values in module_params:
            required.append((parameter, REQUIRED, values))
        for parameter, values in flags:
            optional.append((parameter, False, values))
        signature = required + optional
        # Every argument is kept here, defaults included, so that calls of this class have one
        # shape across instances; `_substitute` leaves out the defaults when it writes them.
        self.class_defaults[name] = {p: _normalised(d) for p, d, _ in signature if d is not REQUIRED}
        for index, instance in enumerate(group):
            self.class_of[instance] = name
            self.arguments[instance] = [(None if default is REQUIRED else parameter, _normalised(values[index]))
                                        for parameter, default, values in signature]

        lines = [f"class {name}(nn.Module):"]
        doc = getattr(definition, "doc", None) if definition is not None else self.doc
        if doc:
            lines.append(f'    """{_docstring(doc)}"""')
            lines.append("")
        params = [(None, Name("self"))] + [
            (None, Name(f"{p}{_annotation(None if d is REQUIRED else d, v)}"
                        + ("" if d is REQUIRED else f" = {_literal(_normalised(d))}")))
            for p, d, v in signature]
        lines += format_call(Call("def __init__", params), 4, suffix=" -> None:")
        lines.append("        super().__init__()")
        lines += lets + attributes + init
        lines.append("")
        lines += self._forward(scopes[0], shortcuts, kwarg_code)
        return "\n".join(lines)

    def _child_call(self, statement: Statement) -> Call:
        instances = statement.instances
        calls = [Call(self.class_of[i.name], list(self.arguments[i.name])) for i in instances]
        if instances[0].index is None:
            return calls[0]
        return Call("nn.Sequential", [(None, c) for c in calls])

    def _network_class(self, name: str) -> str:
        return self._block_class(name, None, [""])

    # ---- forward

    def _forward(self, scope: Scope, shortcuts: dict[str, list[Call | None]], kwarg_code: dict) -> list[str]:
        """The forward method of a class, from its first instance's statements."""
        statements = scope.statements
        resolve = functools.partial(self._resolve, scope=scope)

        def keys(arg: Any) -> list[Any]:
            return [resolve(a) for a in arg] if isinstance(arg, list) else [resolve(arg)]

        def key_of(value: Any) -> Any:
            return value if isinstance(value, str) else id(value)

        presence = {slot: ("all" if all(c is not None for c in calls) else
                           "none" if all(c is None for c in calls) else "optional")
                    for slot, calls in shortcuts.items()}
        last_use: dict[Any, int] = {}
        for position, statement in enumerate(statements):
            for arg in statement.args:
                if _is_literal(arg):
                    continue
                for value in keys(arg):
                    last_use[key_of(value)] = position
        for output in scope.outputs:
            last_use[key_of(resolve(output))] = len(statements)
        names: dict[Any, str] = {p: p for p in scope.params}
        for p in scope.params:
            names[p] = p

        def live(position: int) -> set[str]:
            return {names[k] for k, last in last_use.items() if k in names and last > position}

        def var(value: Any) -> str:
            return names[key_of(value)]

        body = []
        fused: dict[int, str] = {}   # position of a subscript written onto the module call before it -> its text
        for position, statement in enumerate(statements):
            if position in fused:
                names[key_of(statement.output)] = fused[position]
                continue
            args = [a if _is_literal(a) else keys(a) if isinstance(a, list) else keys(a)[0] for a in statement.args]
            out = key_of(statement.output)
            if statement.kind == "shortcut" and presence.get(statement.slot, "none") == "none":
                names[out] = var(args[0])
                continue
            if statement.kind == "iadd":
                names[out] = var(args[0])
                body.append(f"{var(args[0])} += {var(args[1])}")
                continue
            busy = live(position)
            name = None
            if statement.kind != "shortcut":
                for arg in args:
                    if not isinstance(arg, list) and not _is_literal(arg) and \
                            last_use.get(key_of(arg)) == position and sum(1 for a in args if a is arg) == 1:
                        name = var(arg)
                        break
            if name is None:
                for choice in (["identity"] if statement.kind == "shortcut" else ["out"]) + \
                        [_identifier(statement.output.hint)]:
                    if choice not in busy and choice not in scope.params:
                        name = choice
                        break
                else:
                    name = _identifier(statement.output.hint, busy | set(scope.params))
            names[out] = name
            rendered = [Name(_literal(a)) if _is_literal(a) else
                        Name(f"[{', '.join(var(v) for v in a)}]") if isinstance(a, list) else Name(var(a))
                        for a in args]
            if statement.kind == "module" and statement.module is not None:
                arguments = _module_arguments(statement.module, args, rendered)
                arguments += [(key, kwarg_code.get((position, key), value)) for key, value in statement.kwargs.items()]
                call = _flat(Call(f"{name} = {_module_attribute(statement.slot)}", arguments))
                following = statements[position + 1] if position + 1 < len(statements) else None
                if following is not None and following.kind == "subscript" and \
                        resolve(following.args[0]) is statement.output and last_use.get(out) == position + 1:
                    # `out = self.attn(x, x, x, need_weights=False)[0]`, as torch's own layers write it
                    call += f"[{_literal(following.args[1])}]"
                    fused[position + 1] = name
                body.append(call)
            elif statement.kind in ("module", "call") or (statement.kind == "shortcut" and
                                                           presence.get(statement.slot) == "all"):
                body.append(_flat(Call(f"{name} = {_module_attribute(statement.slot)}", [(None, r) for r in rendered])))
            elif statement.kind == "shortcut":
                a = rendered[0].text
                module = _module_attribute(statement.slot)
                body.append(f"{name} = {module}({a}) if {module} is not None else {a}")
            elif statement.kind == "binary":
                symbol = BINARY_SYMBOLS[statement.function]
                body.append(f"{name} = {rendered[0].text} {symbol} {rendered[1].text}")
            elif statement.kind == "subscript":
                body.append(f"{name} = {rendered[0].text}[{rendered[1].text}]")
            elif statement.kind == "method":
                kwargs = [(key, kwarg_code.get((position, key), value)) for key, value in statement.kwargs.items()]
                body.append(Call(f"{name} = {rendered[0].text}.{statement.function}",
                                 [(None, r) for r in rendered[1:]] + kwargs))
            else:
                kwargs = [(key, kwarg_code.get((position, key), value)) for key, value in statement.kwargs.items()]
                body.append(Call(f"{name} = {_function_text(statement.function)}",
                                 [(None, r) for r in rendered] + kwargs))
        outputs = [var(resolve(o)) for o in scope.outputs]
        tensor = "torch.Tensor"
        returns = tensor if len(outputs) == 1 else f"tuple[{', '.join([tensor] * len(outputs))}]"
        params = [(None, Name("self"))] + [(None, Name(f"{p}: {tensor}")) for p in scope.params]
        lines = format_call(Call("def forward", params), 4, suffix=f" -> {returns}:")
        for item in body:
            if isinstance(item, Call):
                lines += format_call(item, 8)
            else:
                lines.append(" " * 8 + item)
        lines.append("        return " + ", ".join(outputs))
        return lines


_MISSING = object()
REQUIRED = object()  # a constructor parameter without a default


def _is_literal(value: Any) -> bool:
    """A constant argument of a statement (references are node names, Temps or lists of them)."""
    return value is None or isinstance(value, (bool, int, float))


def _module_arguments(module: nn.Module, args: list[Any], rendered: list[Name]) -> list[tuple[str | None, Name]]:
    """A module call's arguments: the tensors positionally; constants after them (the builder passes every
    argument positionally) as keywords of the module's `forward`, left out where they are its defaults."""
    import inspect

    parameters = list(inspect.signature(module.forward).parameters.values())
    arguments: list[tuple[str | None, Name]] = []
    for position, (arg, text) in enumerate(zip(args, rendered)):
        if _is_literal(arg) and all(_is_literal(a) for a in args[position:]) and position < len(parameters):
            default = parameters[position].default
            if default is not inspect.Parameter.empty and type(default) is type(arg) and default == arg:
                continue
            arguments.append((parameters[position].name, text))
        else:
            arguments.append((None, text))
    return arguments

PAD_SOURCE = '''class ZeroPadShortcut(nn.Module):
    """The ResNet paper's option A: subsample by striding, then zero-pad the new channels."""

    def __init__(self, stride: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.before = (out_channels - in_channels) // 2
        self.after = out_channels - in_channels - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))'''

# resgraph's own modules, written into an ejected file that uses them (it imports only torch).
HELPER_SOURCES = {"DropPath": inspect.getsource(DropPath).rstrip(), "ZeroPadShortcut": PAD_SOURCE}


# Module constructor arguments that an op attribute sets directly, so the spec's expression for
# the attribute can be written in their place.
ATTRIBUTE_OF = {"1": "out", "out_channels": "out", "kernel_size": "kernel", "stride": "stride", "padding": "padding",
                "dilation": "dilation", "groups": "groups", "bias": "bias", "p": "p", "eps": "eps",
                "momentum": "momentum", "output_padding": "output_padding", "dropout": "dropout"}


def _spec_value(text: str, scope: dict[str, Any]) -> Any:
    try:
        return _same(evaluate(text, scope)) if isinstance(evaluate(text, scope), (list, tuple)) else \
            evaluate(text, scope)
    except ExprError:
        return _MISSING


def _normalised(value: Any) -> Any:
    """Lists as tuples, so that a list param and a module's tuple argument compare equal."""
    return tuple(value) if isinstance(value, list) else value


def _equal(a: Any, b: Any) -> bool:
    a, b = _normalised(a), _normalised(b)
    return type(a) is type(b) and a == b


def _leaf(call: Call, path: tuple) -> Any:
    value: Any = call
    for position in path:
        value = value.args[position][1]
    return value


def _arg_name(call: Call, path: tuple) -> str:
    parts = []
    value: Any = call
    for position in path:
        key, value = value.args[position]
        parts.append(key or str(position))
    return "_".join(parts)


def _names(text: str) -> set[str]:
    try:
        return names_in(text) | ({text} if text.isidentifier() else set())
    except ExprError:
        return set()


def _python_expression(text: str, first_input: str | None = None) -> str | None:
    """The Python source of a spec expression (already whitelisted), or None if it has no equivalent.
    In a block whose first input is `first_input`, `shape(first_input)[0]` is the constructor's
    `in_channels`; any other `shape(...)` has no spelling in a constructor (there is no tensor yet)."""
    import ast

    try:
        tree = parse_expression(text)
    except ExprError:
        return None

    class Rewrite(ast.NodeTransformer):
        def visit_Subscript(self, node: ast.Subscript) -> Any:
            value, index = node.value, node.slice
            if (first_input is not None and isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                    and value.func.id == "shape" and len(value.args) == 1 and isinstance(value.args[0], ast.Name)
                    and value.args[0].id == first_input and isinstance(index, ast.Constant)
                    and type(index.value) is int and index.value == 0):
                return ast.Name("in_channels", ast.Load())
            self.generic_visit(node)
            return node

        def visit_Call(self, node: ast.Call) -> Any:
            self.generic_visit(node)
            if isinstance(node.func, ast.Name) and node.func.id in ("floor", "ceil"):
                node.func = ast.Attribute(ast.Name("math", ast.Load()), node.func.id, ast.Load())
            elif isinstance(node.func, ast.Name) and node.func.id in ("make_divisible", "shape"):
                raise EjectError(node.func.id)   # no Python spelling in a constructor: written as a value
            return node

    try:
        return ast.unparse(Rewrite().visit(copy.deepcopy(tree)))
    except EjectError:
        return None


def _annotation(default: Any, values: list[Any]) -> str:
    sample = default if default is not None else next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return ": bool"
    if isinstance(sample, int):
        return ": int"
    if isinstance(sample, float):
        return ": float"
    if isinstance(sample, str):
        return ": str"
    if isinstance(sample, Call):
        return ": nn.Module"
    return ""


def _docstring(text: str) -> str:
    text = " ".join(text.split())
    return text.replace('"""', "'''")


def eject(graph: Graph, blocks: dict[str, Any], source_name: str = "", doc: str | None = None) -> str:
    """The Python source of a standalone module equivalent to `lower_to_fx(graph)`: same module
    tree and state_dict keys, same computation."""
    return Ejector(graph, source_name, doc).write(blocks)


def eject_network(network: Any) -> str:
    """`eject` for a loaded `resgraph.Network`."""
    blocks = {name: block.definition for name, block in network.program.blocks.items()}
    return eject(network.graph, blocks, source_name=network.program.source.path, doc=network.spec.doc)

"""Eject: the shaped graph IR -> one standalone Python file that imports only torch.

Every op lowers itself once more, through a `SourceBuilder` that records statements instead of
fx nodes. Instances of one block definition become one `nn.Module` class: constructor arguments
that differ between instances become parameters of the class, named after the block's own
params where their values agree (`planes`, `stride`), so the file reads like torchvision's.
Module constructors and their formatting are in constructors.py; every text from the spec goes
through python_text.py.
"""

from __future__ import annotations

import copy
import functools
import keyword
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from .constructors import (
    arg_name,
    helpers_called,
    tensor_constructor,
    ATTRIBUTE_OF,
    Call,
    constructor,
    EjectError,
    equal,
    flat_call,
    format_call,
    has_init,
    HELPER_NEEDS,
    HELPER_SOURCES,
    HELPERS_USING_MATH,
    leaf,
    leaves,
    literal,
    Name,
    normalised,
    same,
    shape_of,
    substitute,
)
from .expr import YAML_CONSTANTS, ExprError, evaluate, parse_expression
from .graph import Graph, Instance
from .lower import Builder, _module_attributes
from .module_names import module_attribute
from .python_text import escape_text, python_docstring, python_name, python_string

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
    node: str | None = None          # the spec node it belongs to, in its scope (its slot may be a `key`)


class SourceBuilder(Builder):
    """Records what each op's `lower` does, per scope (the network, or one block instance)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph)
        self.statements: dict[str, list[Statement]] = {}
        self._names: dict[str, frozenset[str]] = {}

    def _scope_names(self, prefix: str) -> frozenset[str]:
        """The spec's names in the scope of `prefix` (its nodes and block calls), which a renamed module avoids."""
        if prefix not in self._names:
            calls = {name[len(prefix):].split(".")[0] for name in self.ir.instances if name.startswith(prefix)}
            self._names[prefix] = frozenset({n.local_name for n in self.ir if n.prefix == prefix} | calls)
        return self._names[prefix]

    def _emit(self, statement: Statement) -> Temp:
        statement.position = self.position
        statement.node = self.node.local_name
        self.statements.setdefault(self.node.prefix[:-1], []).append(statement)
        return statement.output

    def call_module(self, module: nn.Module, args: Sequence[Any], name: str | None = None,
                    kwargs: dict | None = None) -> Temp:
        slot = name or self.node.module_name
        if "." not in slot:   # a `key` is a path the user chose (`block.0`), placed as compile places it
            slot = module_attribute(slot, self._scope_names(self.node.prefix), _module_attributes())
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

    def resize_like(self, x: Any, ref: Any, kwargs: dict) -> Temp:
        """`F.interpolate(x, size=ref.shape[2:], ...)`: `ref` is the statement's second argument, written as
        that keyword (see `_forward`)."""
        import torch.nn.functional as F

        statement = Statement("function", Temp(self.node.local_name), [x, ref], function=F.interpolate,
                              kwargs=dict(kwargs))
        statement.size_of = True  # type: ignore[attr-defined]
        return self._emit(statement)

    def get_attr(self, tensor: Any, persistent: bool = True, recompute: Callable[[], Any] | None = None) -> Temp:
        """A `parameter` or `buffer` node: its tensor becomes an attribute of the class, made as compile makes it
        (`recompute` is for compiled networks materialised from the meta device; the class's `__init__` is
        what computes it here)."""
        slot = self.node.module_name
        statement = Statement("tensor", Temp(self.node.local_name), [], slot=slot)
        statement.tensor = tensor_constructor(self.node.op, self.node.shape)  # type: ignore[attr-defined]
        statement.persistent = persistent  # type: ignore[attr-defined]
        return self._emit(statement)

    def call_method(self, method: str, args: Sequence[Any], kwargs: dict | None = None) -> Temp:
        return self._emit(Statement("method", Temp(self.node.local_name), list(args), function=method,
                                    kwargs=dict(kwargs or {})))


_identifier = python_name


BINARY_SYMBOLS = {operator.add: "+", operator.mul: "*", operator.sub: "-"}


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
    param_values: list[Temp]                    # the values they hold
    statements: list[Statement]
    outputs: list[Any]                          # references
    aliases: dict[str, Any]                     # IR node name -> reference that holds its value


@dataclass
class NetworkDefinition:
    """The top level of a spec, read as a block definition is: its params (with the values the graph was
    built with), its nodes, and the other expressions of the top level (input dims, requirements)."""

    params: dict[str, Any]
    nodes: dict[str, Any]
    doc: str | None = None
    texts: list[str] = field(default_factory=list)
    let: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=lambda: ["input"])

    def shaping(self, written_through: set[tuple[str, str]]) -> set[str]:
        """The params read anywhere but in attributes written through as the spec's expressions."""
        found: set[str] = set()
        texts = list(self.texts)
        for node, entry in self.nodes.items():
            for attribute in type(entry).model_fields if hasattr(type(entry), "model_fields") else ():
                if (node, attribute) not in written_through:
                    texts += _strings(getattr(entry, attribute, None))
        for text in texts:
            found |= _names(text)
        return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return []


class Ejector:
    """Plans and writes the classes. Requires a shaped graph."""

    def __init__(self, graph: Graph, source_name: str = "", doc: str | None = None,
                 network: "NetworkDefinition | None" = None) -> None:
        self.graph, self.source_name, self.doc = graph, source_name, doc
        self.network = network or NetworkDefinition(dict(graph.params), {}, doc)
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
        self.uses_ordered_dict = False   # repetitions named by `names` or `start`

    def scope(self, name: str) -> Scope:
        if name:
            instance = self.graph.instances[name]
            definition_inputs = list(self.definitions[instance.block].inputs)
            spec_names = ["x"] if definition_inputs == ["input"] else definition_inputs
            refs = list(instance.inputs)
            outputs = list(instance.outputs or [instance.output])
        else:
            refs = list(self.graph.inputs)
            spec_names = ["x"] if refs == ["input"] else refs
            outputs = list(self.graph.outputs) + list(self.graph.training_outputs)
        params: list[str] = []
        for spec_name in spec_names:   # IR names and Python names are kept apart: a node may be named `x`
            params.append(_identifier(spec_name, set(params)))
        values = [Temp(param) for param in params]
        aliases: dict[str, Any] = {}
        for value, ref in zip(values, refs):
            aliases.setdefault(ref, value)
        statements = list(self.own.get(name, []))
        for call, instances in self.calls.get(name, {}).items():
            local = call.rpartition(".")[2]
            statement = Statement("call", Temp(local), list(instances[0].inputs), slot=instances[0].key or local,
                                  position=self.first_position[call], node=local)
            statement.instances = instances  # type: ignore[attr-defined]
            statements.append(statement)
            if instances[-1].outputs is None:
                aliases[instances[-1].output] = statement.output
                continue
            # a block with several outputs returns a tuple; `call:k` reads `backbone_1 = backbone[1]`
            for index, output in enumerate(instances[-1].outputs):
                item = Statement("subscript", Temp(f"{local}_{index}"), [statement.output, index],
                                 function=operator.getitem, position=statement.position, node=local)
                item.item_of_call = True  # type: ignore[attr-defined]
                aliases.setdefault(output, item.output)
                statements.append(item)
        statements.sort(key=lambda s: s.position)
        for node_name, result in self.results.items():
            if self.graph.nodes[node_name].prefix[:-1] == name:
                aliases.setdefault(node_name, result)
        return Scope(name, params, values, statements, outputs, aliases)

    # ---- planning classes

    def write(self, blocks: dict[str, Any]) -> str:
        """`blocks`: block name -> its definition (for inputs, params, let and attribute expressions)."""
        self.definitions = blocks
        self.plugin_imports: set[tuple[str, str]] = set()
        taken: set[str] = set(HELPER_SOURCES) | {"OrderedDict"}
        # Class names are read in `__init__`s, where params and lets are locals: no class may share a name with one.
        for definition in list(blocks.values()) + [self.network]:
            for key in list(definition.params) + list(definition.let):
                taken.add(_identifier(key))
                taken.add(key)
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
        taken.add(network_class)
        typing_imports = []
        if self.graph.training_outputs:   # what the network returns in training, as torchvision's GoogLeNetOutputs
            self.outputs_class = class_name(self.graph.name + "_outputs", taken)
            fields = [_identifier(name) for name in self.graph.outputs + self.graph.training_outputs]
            sections.append("\n".join([f"class {self.outputs_class}(NamedTuple):",
                                       '    """`outputs`, then `training_outputs`: what the network returns in '
                                       'training."""', ""] + [f"    {field}: torch.Tensor" for field in fields]))
            typing_imports = ["from typing import NamedTuple"]
        sections.append(self._network_class(network_class))
        origin = f"{self.graph.name}, ejected by resgraph" + (f" from {self.source_name}" if self.source_name else "")
        header = ['"""' + escape_text(" ".join(origin.split())) + ".",
                  "", "A standalone PyTorch module: it imports only torch, and its state_dict keys are those of the",
                  'compiled spec."""', ""]
        if self.plugin_imports:
            header[2:4] = ["A standalone PyTorch module: it imports only torch and the plugins whose modules it uses, "
                           "and its", 'state_dict keys are those of the compiled spec."""']
        imports = (["import math"] if self.uses_math or self.helpers & HELPERS_USING_MATH else []) + \
            (["from collections import OrderedDict"] if self.uses_ordered_dict else []) + typing_imports
        imports = (imports + [""] if imports else []) + \
            ["import torch", "import torch.nn as nn", "import torch.nn.functional as F"]
        if self.plugin_imports:   # the modules of plugin ops: the file needs those plugins installed
            imports += [""] + [f"from {module} import {name}" for module, name in sorted(self.plugin_imports)]
        parts = ["\n".join(header + imports)]
        parts += [HELPER_SOURCES[helper] for helper in sorted(self.helpers)]
        parts += sections
        return "\n\n\n".join(parts) + "\n"

    def _signature(self, scope: Scope) -> tuple:
        """What must agree for instances to share a class: statements, their wiring and module shapes."""
        index = {}
        for position, value in enumerate(scope.param_values):
            index[id(value)] = ("param", position)
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
            return path in self.graph.nodes or path in instances or any(i.call == path for i in instances.values())

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
        if first_input:   # written `in_channels` (see `_python_expression`)
            found[f"shape({definition.inputs[0]})[0]"] = first_input[0]
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
        definition = self.definitions[block] if block else self.network
        scopes = [self.scope(i) for i in group]
        candidates = [self._candidates(self.graph.instances[i], definition) for i in group] if block else \
            [dict(self.network.params)]
        written_through: set[tuple[str, str]] = set()   # (node, attribute) written as the spec's expression
        slots: dict[str, list[Call | None]] = {}      # attribute -> its constructor in each instance
        first: dict[str, int] = {}                     # attribute -> the position of its first statement
        presence: dict[int, list[bool]] = {}            # a shortcut's position -> has it a module, per instance
        declared_by: dict[str, str] = {}                # attribute -> the spec node (or call) that makes it
        kwargs: dict[tuple[int, str], list[Any]] = {}
        tensors: set[str] = set()                       # the slots of `parameter` and `buffer` nodes
        buffers: dict[str, bool] = {}                   # a buffer's slot -> is it persistent
        node_of: dict[str, str] = {}                    # slot -> the spec node it holds
        for index, scope in enumerate(scopes):
            for position, statement in enumerate(scope.statements):
                if statement.kind in ("module", "shortcut"):
                    call = constructor(statement.module) if statement.module is not None else None
                    if type(statement.module).__name__ in HELPER_SOURCES:
                        self.helpers.add(type(statement.module).__name__)
                        self.helpers |= HELPER_NEEDS.get(type(statement.module).__name__, set())
                    elif statement.module is not None and \
                            type(statement.module).__module__.split(".")[0] not in ("torch", "resgraph"):
                        self.plugin_imports.add((type(statement.module).__module__, type(statement.module).__name__))
                    if call is not None and has_init(call):
                        self.helpers.add("init_conv")
                    if statement.kind == "shortcut":   # several identity shortcuts (no module) share a name
                        presence.setdefault(position, []).append(call is not None)
                        if call is None:
                            continue
                elif statement.kind == "call":
                    call = self._child_call(statement)
                elif statement.kind == "tensor":
                    call = statement.tensor  # type: ignore[attr-defined]
                    self.helpers |= helpers_called(call)
                    self.uses_math = self.uses_math or "sinusoidal_positions" in self.helpers
                    if not isinstance(statement.tensor, Call) or statement.tensor.func != "nn.Parameter":
                        buffers[statement.slot] = statement.persistent  # type: ignore[attr-defined]
                    tensors.add(statement.slot)
                else:
                    call = None
                if call is not None:
                    _check_attribute(statement.slot)
                    calls = slots.setdefault(statement.slot, [None] * len(group))
                    if calls[index] is not None or first.get(statement.slot, position) != position:
                        raise EjectError(f"two modules would be named `{statement.slot}` in one class "
                                         f"(`{block or self.graph.name}`): give their nodes other `shortcut_name`s")
                    calls[index] = call
                    first[statement.slot] = position
                    declared_by[statement.slot] = statement.node or statement.slot
                    node_of[statement.slot] = statement.node if "." in statement.slot and statement.node \
                        else statement.slot
                for key, value in statement.kwargs.items():
                    kwargs.setdefault((position, key), []).append(value)
        # Modules are made in the order the compiler makes them (that of the statements), so that both draw
        # the same initial weights from one seed.
        slots = dict(sorted(slots.items(), key=lambda item: first[item[0]]))
        if not self.graph.in_declaration_order():
            # The compiled module lists its modules as their nodes are declared (see lower.py): so does the class.
            # Only modules moved past others make their weights in another order than the compiler: where they
            # draw random initial weights, the same seed gives other ones (their state_dicts load either way).
            declared = {node: rank for rank, node in enumerate(definition.nodes)}
            slots = dict(sorted(slots.items(), key=lambda item: declared.get(declared_by[item[0]], len(declared))))
        shortcuts = {position: ("all" if all(flags) else "none" if not any(flags) else "optional")
                     for position, flags in presence.items()}

        used: list[str] = []            # candidate names written in the class
        fallbacks: list[tuple[str, list[Any]]] = []   # new parameters: (name, value per instance)
        module_params: list[tuple[str, list[Call]]] = []
        flags: list[tuple[str, list[bool]]] = []
        # Spec names as Python names: a param may be called `self`, `nn` or `len` (see `python_name`).
        rename = {IN_CHANNELS: "in_channels", "index": "index"}
        if definition is not None:
            for key in list(definition.params) + list(definition.let):
                rename.setdefault(key, _identifier(key, set(rename.values())))
        taken = {"self"} | set(rename.values())

        def writable(text: str, seen: frozenset = frozenset()) -> str | None:
            """`text` in Python, where it and the `let` values it reads have a Python spelling in a constructor
            (see `_python_expression`); else None."""
            code = _python_expression(text, definition.inputs[0] if block else None, rename)
            lets = definition.let if definition is not None else {}
            for name in _names(text) if code is not None else ():
                if name in lets and name not in seen and writable(lets[name], seen | {name}) is None:
                    return None
            return code

        def express(values: list[Any], present: list[int], fallback: str, written: Any = None,
                    where: tuple[str, str] | None = None) -> Any:
            """How to write a constructor argument: as the spec wrote it (`written`, at `where`), as a literal
            when every instance agrees, or as the param whose value it follows."""
            if isinstance(written, str):
                code = writable(written)
                if code is not None and all(equal(_spec_value(written, candidates[i]), v)
                                            for i, v in zip(present, values)):
                    used.append(written)
                    if where is not None:
                        written_through.add(where)
                    return Name(code)
            if all(equal(v, values[0]) for v in values):
                return values[0]
            # Names already written come first, so that `bn1` follows `conv1` (`width`, not `planes`).
            for candidate in list(dict.fromkeys(used)) + list(candidates[present[0]]):
                if all(equal(candidates[i].get(candidate, _MISSING), v) for i, v in zip(present, values)):
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
        containers = _container_kinds(list(slots), tensors)
        made: set[str] = set()
        for slot, calls in slots.items():
            present = [i for i, c in enumerate(calls) if c is not None]
            if not present:
                continue
            parts = slot.split(".")
            for depth in range(1, len(parts)):   # `self.block = nn.ModuleDict()` before `self.block["0"] = ...`
                path = ".".join(parts[:depth])
                if path not in made:
                    made.add(path)
                    kind = "nn.ModuleDict()" if containers[path] == "dict" else "nn.Module()"
                    init.append(f"        {_assignment(path, kind, containers)}")
            shapes = {repr(shape_of(calls[i])) for i in present}
            if len(shapes) > 1:  # different structures: the caller builds it
                parameter = _identifier(node_of[slot], taken)
                taken.add(parameter)
                module_params.append((parameter, [calls[i] for i in range(len(group))]))
                init += _assignment_lines(slot, Name(parameter), containers, buffers.get(slot))
                continue
            replacements = {}
            entry = definition.nodes.get(node_of[slot]) if definition is not None else None
            for path, _ in leaves(calls[present[0]]):
                values = [leaf(calls[i], path) for i in present]
                argument = arg_name(calls[present[0]], path)
                attr_name = ATTRIBUTE_OF.get(argument) if len(path) == 1 else None
                written = getattr(entry, attr_name, None) if entry is not None and attr_name else None
                replacements[path] = express(values, present, f"{node_of[slot]}_{argument}", written,
                                             (node_of[slot], attr_name))
            call = substitute(calls[present[0]], replacements, class_defaults=self.class_defaults)
            if len(present) == len(group):
                init += _assignment_lines(slot, call, containers, buffers.get(slot))
            else:
                flag = _identifier(node_of[slot], taken)
                taken.add(flag)
                flags.append((flag, [calls[i] is not None for i in range(len(group))]))
                init += [f"        {_assignment(slot, 'None', containers)}", f"        if {flag}:"]
                init += _assignment_lines(slot, call, containers, None, indent=12)
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
                if "in_channels" in _names(writable(candidate) or ""):
                    needed.add(IN_CHANNELS)
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
                    if "in_channels" in _names(code):   # a let of the input's channels
                        needed.add(IN_CHANNELS)
                    lets.append(f"        {rename[key]} = {code}")
                    if "math." in code:
                        self.uses_math = True
            base = [IN_CHANNELS] + list(definition.params) + ["index"] if block else list(definition.params)
            parameters = [b for b in base if b in needed]
        else:
            parameters = []
        required, optional = [], []
        checks: list[str] = []
        if not block:
            # The network takes every top-level param, with the value it was exported with as the default.
            # Those that reach only attributes written as the spec's expressions (`nn.Linear(64, num_classes)`)
            # may take any value; the others shaped the structure written here, and are checked.
            shaping = self.network.shaping(written_through)
            for parameter, value in definition.params.items():
                python = rename[parameter]
                optional.append((python, value, [value]))
                if parameter not in parameters or parameter in shaping:
                    checks += self._param_check(python, parameter, value)
            parameters = []
        for parameter in parameters:
            default = definition.params.get(parameter, None)
            values = [c[f"shape({definition.inputs[0]})[0]" if parameter is IN_CHANNELS else parameter]
                      for c in candidates]
            if default is None:
                required.append((rename[parameter], REQUIRED, values))
            else:
                optional.append((rename[parameter], default, values))
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
        # shape across instances; `substitute` leaves out the defaults when it writes them.
        self.class_defaults[name] = {p: normalised(d) for p, d, _ in signature if d is not REQUIRED}
        for index, instance in enumerate(group):
            self.class_of[instance] = name
            self.arguments[instance] = [(None if default is REQUIRED else parameter, normalised(values[index]))
                                        for parameter, default, values in signature]

        lines = [f"class {name}(nn.Module):"]
        doc = getattr(definition, "doc", None)
        if doc:
            lines.append("    " + python_docstring(doc))
            lines.append("")
        params = [(None, Name("self"))]
        for p, d, v in signature:
            annotation = _annotation(None if d is REQUIRED else d, v)
            default = "" if d is REQUIRED else (" = " if annotation else "=") + literal(normalised(d))
            params.append((None, Name(p + annotation + default)))
        lines += format_call(Call("def __init__", params), 4, suffix=" -> None:")
        lines.append("        super().__init__()")
        lines += checks + lets + attributes + init + (self._ties(containers) if not block else [])
        lines.append("")
        lines += self._forward(scopes[0], shortcuts, kwarg_code, containers)
        return "\n".join(lines)

    def _ties(self, containers: Containers) -> list[str]:
        """`self.lm_head.weight = self.transformer.wte.weight`: each `tie` of the network, written at the end of
        the network's `__init__` (once every module is made, the tied ones with weights drawn as the compiler
        draws them), so the two modules hold one `nn.Parameter`, as in the compiled module."""
        lines = []
        for node in self.graph:
            for name, (source, parameter) in node.meta.get("tied", {}).items():
                target = _attribute(self.graph.module_path(node), containers)
                owner = _attribute(self.graph.module_path(self.graph.nodes[source]), containers)
                lines.append(f"        {target}.{name} = {owner}.{parameter}   # tied")
        return lines

    def _child_call(self, statement: Statement) -> Call:
        instances = statement.instances
        calls = [Call(self.class_of[i.name], list(self.arguments[i.name])) for i in instances]
        if instances[0].index is None:
            return calls[0]
        names = [i.name.rpartition(".")[2] for i in instances]
        if names == [str(k) for k in range(len(instances))]:
            return Call("nn.Sequential", [(None, c) for c in calls])
        # `names: "encoder_layer_{i}"` or `start: 1`: the repetitions keep their names in the state_dict
        self.uses_ordered_dict = True
        return Call("nn.Sequential", [(None, Call("OrderedDict", [(None, Call("[]", [
            (None, Call("()", [(None, name), (None, c)])) for name, c in zip(names, calls)]))]))])

    def _param_check(self, python: str, parameter: str, value: Any) -> list[str]:
        """`if n != 3: raise ValueError(...)`: the network param `parameter` (`python` in the file) shaped the
        structure written out, which holds for its exported `value` only."""
        if isinstance(value, float) and value != value:
            self.uses_math = True
            test = f"not (isinstance({python}, float) and math.isnan({python}))"
        elif isinstance(value, (list, tuple)):
            test = f"list({python}) != {literal(list(value))}"
        elif value is None or isinstance(value, bool):
            test = f"{python} is not {literal(value)}"
        else:
            test = f"{python} != {literal(value)}"
        shown = f"{parameter}={value}"
        message = (f"`{parameter}` shapes this network, which was exported with `{shown}`: export the spec again "
                   f"with `--set {parameter}=...` for another value")
        return [f"        if {test}:"] + format_call(Call("raise ValueError", [(None, Name(python_string(message)))]), 12)

    def _network_class(self, name: str) -> str:
        return self._block_class(name, None, [""])

    # ---- forward

    def _forward(self, scope: Scope, presence: dict[int, str], kwarg_code: dict,
                 containers: Containers | None = None) -> list[str]:
        """The forward method of a class, from its first instance's statements."""
        statements = scope.statements
        resolve = functools.partial(self._resolve, scope=scope)

        def keys(arg: Any) -> list[Any]:
            return [resolve(a) for a in arg] if isinstance(arg, list) else [resolve(arg)]

        def key_of(value: Any) -> Any:
            if not isinstance(value, Temp):  # every reference resolves to a value of this scope
                raise EjectError(f"the reference `{value}` has no value in scope `{scope.name}`")
            return id(value)

        last_use: dict[Any, int] = {}
        for position, statement in enumerate(statements):
            for arg in statement.args:
                if _is_literal(arg):
                    continue
                for value in keys(arg):
                    last_use[key_of(value)] = position
        for output in scope.outputs:
            last_use[key_of(resolve(output))] = len(statements)
        names: dict[Any, str] = {id(v): p for v, p in zip(scope.param_values, scope.params)}

        def live(position: int) -> set[str]:
            """The variables that hold a value read after `position`. Several values can share one variable
            (an identity shortcut is its input), so a variable is free only when none of them is read later."""
            return {names[k] for k, last in last_use.items() if k in names and last > position}

        def var(value: Any) -> str:
            return names[key_of(value)]

        # `training_outputs`: what only they read runs under `if self.training:`, where it is (the compiled
        # network's order, so that dropout draws the same numbers), as torchvision's GoogLeNet writes its heads
        main_count = len(self.graph.outputs)
        train_only: set[int] = set()
        if not scope.name and self.graph.training_outputs:
            needed = {key_of(resolve(o)) for o in scope.outputs[:main_count]}
            for position in range(len(statements) - 1, -1, -1):
                statement = statements[position]
                if key_of(statement.output) in needed:
                    for arg in statement.args:
                        if not _is_literal(arg):
                            needed.update(key_of(value) for value in keys(arg))
                else:
                    train_only.add(position)
        guarded: list[bool] = []   # per body item: does it run in training only

        body = []
        attributes_read: set[str] = set()   # `self.pos_embedding`: a value, but no variable to assign
        fused: dict[int, str] = {}   # position of a subscript written onto the module call before it -> its text
        for position, statement in enumerate(statements):
            guarded += [position - 1 in train_only] * (len(body) - len(guarded))
            if position in fused:
                names[key_of(statement.output)] = fused[position]
                continue
            args = [a if _is_literal(a) else keys(a) if isinstance(a, list) else keys(a)[0] for a in statement.args]
            out = key_of(statement.output)
            if statement.kind == "tensor":   # read where it is used: `self.class_token.expand(...)`
                names[out] = _attribute(statement.slot, containers)
                attributes_read.add(names[out])
                continue
            if statement.kind == "shortcut" and presence.get(position, "none") == "none":
                names[out] = var(args[0])
                continue
            if statement.kind == "iadd":
                names[out] = var(args[0])
                body.append(f"{var(args[0])} += {var(args[1])}")
                continue
            busy = live(position)
            name = None
            if getattr(statement, "item_of_call", False) or statement.kind == "call" and \
                    statement.instances[-1].outputs is not None:   # `backbone = self.backbone(x)`, `backbone[1]`
                name = _identifier(statement.output.hint, busy | set(scope.params))
            elif statement.kind != "shortcut":
                for arg in args:   # `x = f(x)` where nothing reads x (by any of its values) afterwards
                    if not isinstance(arg, list) and not _is_literal(arg) and var(arg) not in busy \
                            and var(arg) not in attributes_read:
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
            rendered = [Name(literal(a)) if _is_literal(a) else
                        Name(f"[{', '.join(var(v) for v in a)}]") if isinstance(a, list) else Name(var(a))
                        for a in args]
            if statement.kind == "module" and statement.module is not None:
                arguments = _module_arguments(statement.module, args, rendered)
                arguments += [(key, kwarg_code.get((position, key), value)) for key, value in statement.kwargs.items()]
                call = flat_call(Call(f"{name} = {_attribute(statement.slot, containers)}", arguments))
                following = statements[position + 1] if position + 1 < len(statements) else None
                if following is not None and following.kind == "subscript" and \
                        resolve(following.args[0]) is statement.output and last_use.get(out) == position + 1:
                    # `out = self.attn(x, x, x, need_weights=False)[0]`, as torch's own layers write it
                    call += f"[{literal(following.args[1])}]"
                    fused[position + 1] = name
                body.append(call)
            elif statement.kind == "call" and statement.instances[0].index is not None and len(rendered) > 1:
                # a repeated block with several inputs: the chain runs through the first, the others are shared
                # by every instance, as a Transformer's layers share the attention mask
                step = _identifier("layer", busy | set(scope.params) | {name} | {r.text for r in rendered})
                if name != rendered[0].text:
                    body.append(f"{name} = {rendered[0].text}")
                body.append(f"for {step} in {_attribute(statement.slot, containers)}:")
                body.append(flat_call(Call(f"    {name} = {step}", [(None, Name(name))] +
                                           [(None, r) for r in rendered[1:]])))
            elif statement.kind in ("module", "call") or (statement.kind == "shortcut" and
                                                           presence.get(position) == "all"):
                body.append(flat_call(Call(f"{name} = {_attribute(statement.slot, containers)}", [(None, r) for r in rendered])))
            elif statement.kind == "shortcut":
                a = rendered[0].text
                module = _attribute(statement.slot, containers)
                body.append(f"{name} = {module}({a}) if {module} is not None else {a}")
            elif statement.kind == "binary":
                symbol = BINARY_SYMBOLS[statement.function]
                body.append(f"{name} = {rendered[0].text} {symbol} {rendered[1].text}")
            elif statement.kind == "subscript":
                index = args[1]
                if isinstance(index, tuple) and all(isinstance(i, slice) for i in index):
                    text = ", ".join(_slice_text(i) for i in index)   # `x[:, :, 0:5]`, as one writes it
                else:
                    text = rendered[1].text
                body.append(f"{name} = {rendered[0].text}[{text}]")
            elif statement.kind == "method":
                kwargs = [(key, kwarg_code.get((position, key), value)) for key, value in statement.kwargs.items()]
                body.append(Call(f"{name} = {rendered[0].text}.{statement.function}",
                                 [(None, r) for r in rendered[1:]] + kwargs))
            else:
                kwargs = [(key, kwarg_code.get((position, key), value)) for key, value in statement.kwargs.items()]
                if getattr(statement, "size_of", False):   # `F.interpolate(x, size=ref.shape[2:], ...)`
                    kwargs.insert(0, ("size", Name(f"{rendered.pop().text}.shape[2:]")))
                body.append(Call(f"{name} = {_function_text(statement.function)}",
                                 [(None, r) for r in rendered] + kwargs))
        guarded += [len(statements) - 1 in train_only] * (len(body) - len(guarded))
        outputs = [var(resolve(o)) for o in scope.outputs]
        tensor = "torch.Tensor"
        training_return = None
        if not scope.name and self.graph.training_outputs:
            # in training, the named tuple of `outputs` then `training_outputs`; in eval, `outputs`
            training_return = f"{self.outputs_class}({', '.join(outputs)})"
            outputs = outputs[:main_count]
        returns = tensor if len(outputs) == 1 else f"tuple[{', '.join([tensor] * len(outputs))}]"
        if training_return is not None:
            returns = f"{self.outputs_class} | {returns}"
        output_keys = self.graph.output_keys if not scope.name else []
        if output_keys:   # a mapping `outputs`: the network returns a dict, keys in the spec's order
            returns = f"dict[str, {tensor}]"
            outputs = ["{" + ", ".join(f"{python_string(key)}: {value}" for key, value in zip(output_keys, outputs))
                       + "}"]
        params = [(None, Name("self"))] + [(None, Name(f"{p}: {tensor}")) for p in scope.params]
        lines = format_call(Call("def forward", params), 4, suffix=f" -> {returns}:")
        previous = False
        for item, training in zip(body, guarded):
            if training and not previous:
                lines.append("        if self.training:")
            previous = training
            indent = 12 if training else 8
            if isinstance(item, Call):
                lines += format_call(item, indent)
            else:
                lines.append(" " * indent + item)
        if training_return is not None:
            lines += ["        if self.training:", "            return " + training_return]
        lines.append("        return " + ", ".join(outputs))
        return lines


_MISSING = object()
REQUIRED = object()  # a constructor parameter without a default


def _slice_text(index: slice) -> str:
    text = "".join(str(v) if v is not None else "" for v in (index.start,)) + ":" + \
        (str(index.stop) if index.stop is not None else "")
    return text + (f":{index.step}" if index.step is not None else "")


_MODULE_ATTRIBUTES = frozenset(dir(nn.Module()))   # an instance's: `training` and `_modules` too


def _check_attribute(slot: str) -> None:
    """A module's name may be no attribute or method that `nn.Module` has (`forward`, `to`, `training`),
    which the compiler cannot build either; nor may a part of a `key`'s path."""
    for part in slot.split("."):
        if part in _MODULE_ATTRIBUTES:
            raise EjectError(f"the module name `{slot}` is an attribute of every `nn.Module`: rename the node")


def _plain_attribute(slot: str) -> bool:
    return slot.isidentifier() and not keyword.iskeyword(slot)


Containers = dict[str, str]   # the container paths of a class (a `key`'s `block` of `block.0`) -> "module" or "dict"


def _container_kinds(slots: Sequence[str], tensors: set[str]) -> Containers:
    """The containers that `key` paths make, as lower.py's `_place` makes them: an `nn.ModuleDict` where every
    name in it is a number and holds a module (`self.block["0"]`), else a plain `nn.Module`."""
    children: dict[str, list[str]] = {}
    for slot in slots:
        parts = slot.split(".")
        for depth in range(1, len(parts)):
            children.setdefault(".".join(parts[:depth]), []).append(".".join(parts[:depth + 1]))
    kinds: Containers = {}
    for path, inner in children.items():
        if path in slots:
            raise EjectError(f"`{path}` is both a module and the container of `{inner[0]}`: give one of them "
                             "another `key`")
        numbered = all(c.rpartition(".")[2].isdigit() and c not in tensors for c in inner)
        kinds[path] = "dict" if numbered else "module"
    return kinds


def _attribute(slot: str, containers: Containers | None = None) -> str:
    """`self.conv1`, `self.encoder.ln`, `self.block["0"]`, or `getattr(self, "0a")` for a module name that is no
    Python identifier (as fx writes it)."""
    text, path = "self", ""
    for part in slot.split("."):
        if (containers or {}).get(path) == "dict":
            text += f"[{python_string(part)}]"
        elif _plain_attribute(part):
            text += f".{part}"
        else:
            text = f"getattr({text}, {python_string(part)})"
        path = f"{path}.{part}" if path else part
    return text


def _assignment_call(slot: str, value: Any, containers: Containers | None = None, buffer: bool | None = None
                     ) -> tuple[str, Any]:
    """(prefix, call) that assign `value` (a Call or a Name) to `slot` in `__init__`: `self.conv1 = ...`,
    `self.block["0"] = ...`, `setattr(self, "0a", ...)`; `buffer`: `self.register_buffer("positions", ...)`
    (False: `persistent=False`, a buffer left out of the state_dict)."""
    parent, _, name = slot.rpartition(".")
    owner = _attribute(parent, containers) if parent else "self"
    if buffer is not None:
        return "", Call(f"{owner}.register_buffer", [(None, name), (None, value)] +
                        ([] if buffer else [("persistent", False)]))
    if (containers or {}).get(parent) == "dict":
        return f"{owner}[{python_string(name)}] = ", value
    if _plain_attribute(name):
        return f"{owner}.{name} = ", value
    return "", Call("setattr", [(None, Name(owner)), (None, name), (None, value)])


def _assignment_lines(slot: str, value: Any, containers: Containers | None = None, buffer: bool | None = None,
                      indent: int = 8) -> list[str]:
    prefix, call = _assignment_call(slot, value, containers, buffer)
    if isinstance(call, Call):
        return format_call(call, indent, prefix)
    return [" " * indent + prefix + literal(call)]


def _assignment(slot: str, value: str, containers: Containers | None = None) -> str:
    return _assignment_lines(slot, Name(value), containers, indent=0)[0]


def _is_literal(value: Any) -> bool:
    """A constant argument of a statement (references are node names, Temps or lists of them): a number,
    a slice, or a tuple or list of constants (`split`'s sizes, `slice`'s index)."""
    if isinstance(value, (tuple, list)):
        return all(_is_literal(v) for v in value) and (isinstance(value, tuple) or bool(value))
    return value is None or isinstance(value, (bool, int, float, slice))


def _module_arguments(module: nn.Module, args: list[Any], rendered: list[Name]) -> list[tuple[str | None, Name]]:
    """A module call's arguments: the tensors positionally; constants after them (the builder passes every
    argument positionally) as keywords of the module's `forward`, left out where they are its defaults."""
    import inspect

    parameters = list(inspect.signature(module.forward).parameters.values())
    arguments: list[tuple[str | None, Name]] = []
    by_keyword = False   # from the first constant on, every argument is named (`attn_mask=mask` after constants)
    for position, (arg, text) in enumerate(zip(args, rendered)):
        by_keyword = by_keyword or (_is_literal(arg) and position < len(parameters))
        if by_keyword and position < len(parameters):
            default = parameters[position].default
            if _is_literal(arg) and default is not inspect.Parameter.empty and type(default) is type(arg) \
                    and default == arg:
                continue
            arguments.append((parameters[position].name, text))
        else:
            arguments.append((None, text))
    return arguments

def _spec_value(text: str, scope: dict[str, Any]) -> Any:
    try:
        return same(evaluate(text, scope)) if isinstance(evaluate(text, scope), (list, tuple)) else \
            evaluate(text, scope)
    except ExprError:
        return _MISSING


def _names(text: str) -> set[str]:
    """The names `text` reads, functions' names aside (a param may be called `int` or `max`)."""
    import ast

    try:
        tree = parse_expression(text)
    except ExprError:
        return {text} if text.isidentifier() else set()
    functions = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in functions}


IN_CHANNELS = "shape(input)[0]"   # the block's input channels, a constructor parameter written `in_channels`


def _python_expression(text: str, first_input: str | None = None, rename: dict[str, str] | None = None) -> str | None:
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

        def visit_Name(self, node: ast.Name) -> Any:
            if node.id in YAML_CONSTANTS:   # YAML's `true`, `false` and `null`, which expressions accept
                return ast.Constant(YAML_CONSTANTS[node.id])
            if rename is not None:
                if node.id not in rename:   # a name of the spec that is not a param: no Python spelling
                    raise EjectError(node.id)
                node.id = rename[node.id]
            return node

        def visit_Call(self, node: ast.Call) -> Any:
            node.args = [self.visit(arg) for arg in node.args]   # not `func`: a function's name, not a param's
            for item in node.keywords:
                item.value = self.visit(item.value)
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




def eject(graph: Graph, blocks: dict[str, Any], source_name: str = "", doc: str | None = None,
          network: NetworkDefinition | None = None) -> str:
    """The Python source of a standalone module equivalent to `lower_to_fx(graph)`: same module
    tree and state_dict keys, same computation, same initial weights from one seed."""
    return Ejector(graph, source_name, doc, network).write(blocks)


def eject_network(network: Any) -> str:
    """`eject` for a loaded `resgraph.Network`."""
    graph = network.graph
    inner = [name for instance in graph.instances for name in graph.exposed_outputs(instance)]
    if inner:
        raise EjectError(f"cannot write Python source for an output inside a block (`{inner[0]}`): its class "
                         "returns only the block's output; export to .pt2 or .onnx, or compile the spec")
    blocks = {name: block.definition for name, block in network.program.blocks.items()}
    spec = network.spec
    texts = _strings(spec.input) + [r if isinstance(r, str) else r.check for r in spec.require]
    definition = NetworkDefinition(dict(network.graph.params), dict(spec.nodes), spec.doc, texts)
    return eject(network.graph, blocks, source_name=network.program.source.path, doc=spec.doc, network=definition)

"""Pass 3 of the pipeline: a parsed spec (and the files it includes) -> one flat graph IR.

Includes are loaded, block definitions are checked once statically (references, block names,
params, recursion), then every block call is instantiated with its params evaluated, giving
dotted names such as `layer2.0.conv1`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import graphlib
from pydantic import TypeAdapter, ValidationError

from .diagnostics import Diagnostics, Note, Span, did_you_mean
from .expr import ExprError, Names, evaluate, names_in
from .graph import Graph, Instance, Node
from .ops.base import Int, Op, ShapeError
from .source import KeyPath, SourceFile, load_source
from .spec import BlockCall, BlockDef, Requirement, SpecFile, parse_spec, report_validation_error

MAX_NODES = 250_000
MAX_INCLUDE_DEPTH = 32
RESERVED = frozenset({"index"})

_DIMS = TypeAdapter(list[Int(1)])


class _Abort(Exception):
    """Stops expansion after a limit error; the diagnostic is already recorded."""


@dataclass(frozen=True)
class BlockSource:
    """A block definition and the file it came from."""

    name: str
    definition: BlockDef
    source: SourceFile

    @property
    def path(self) -> KeyPath:
        return ("blocks", self.name)


@dataclass
class Program:
    """A parsed spec file with every block it can use (its own and included ones)."""

    spec: SpecFile
    source: SourceFile
    blocks: dict[str, BlockSource] = field(default_factory=dict)
    incomplete: bool = False   # an included file had errors: its blocks are unknown, not missing


EXTENDS_FIELDS = frozenset({"resgraph", "name", "doc", "extends", "params"})


def load_program(path: str | Path, diagnostics: Diagnostics, text: str | None = None,
                 _stack: tuple[str, ...] = ()) -> Program | None:
    """Load and parse a spec file and, recursively, the files it includes or extends."""
    source = load_source(path, diagnostics, text)
    if source is None:
        return None
    spec = parse_spec(source, diagnostics)
    if spec is None:
        return None
    stack = _stack + (_identity(source.path),)
    if spec.extends is not None:
        return _extend(spec, source, diagnostics, stack)
    program = Program(spec, source)
    _collect_blocks(program, spec, source, diagnostics, stack=stack, loaded={})
    return program


def _extend(spec: SpecFile, source: SourceFile, diagnostics: Diagnostics, stack: tuple[str, ...]) -> Program | None:
    """A spec that `extends` another is that network with another name and other param values."""
    extra = [key for key in source.data if key not in EXTENDS_FIELDS]
    for key in extra:
        diagnostics.error("RG011", f"a spec that `extends` another cannot set `{key}`", source.span((key,), key=True),
                          help="it may only set `name`, `doc` and `params`; to change the structure, copy the "
                               "network or give its base file a param for it")
    span = source.span(("extends",))
    target = Path(source.path).parent / spec.extends
    if _identity(str(target)) in stack:
        chain = " -> ".join(f"`{Path(p).name}`" for p in stack[stack.index(_identity(str(target))):])
        diagnostics.error("RG031", f"`extends` cycle: {chain} -> `{target.name}`", span,
                          help="a spec cannot extend itself, directly or through other files")
        return None
    if extra:
        return None
    errors_before = diagnostics.error_count
    base = load_program(target, diagnostics, _stack=stack)
    if base is None:
        _point_at(diagnostics, errors_before, span, f"cannot extend `{spec.extends}`")
        return None
    for key in spec.params:
        if key not in base.spec.params:
            diagnostics.error("RG033", f"`{spec.extends}` has no parameter `{key}`",
                              source.span(("params", key), key=True),
                              help=did_you_mean(key, base.spec.params) or
                              "its parameters: " + ", ".join(f"`{p}`" for p in base.spec.params))
    merged = base.spec.model_copy(update={
        "name": spec.name or Path(source.path).stem, "doc": spec.doc or base.spec.doc,
        "params": {**base.spec.params, **spec.params}, "extends": None})
    return Program(merged, base.source, base.blocks)


def _point_at(diagnostics: Diagnostics, errors_before: int, span: Span | None, what: str) -> None:
    """When a referenced file could not be read at all, report it at the line that names it."""
    if diagnostics.error_count == errors_before + 1 and not diagnostics.items[-1].span:
        failed = diagnostics.items.pop()
        diagnostics.error("RG031", f"{what}: {failed.message}", span, help=failed.help)


def _identity(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return path


def _collect_blocks(program: Program, spec: SpecFile, source: SourceFile, diagnostics: Diagnostics,
                    stack: tuple[str, ...], loaded: dict[str, tuple[SpecFile, SourceFile] | None]) -> None:
    for name, definition in spec.blocks.items():
        previous = program.blocks.get(name)
        if previous is not None:
            if previous.source is not source:
                diagnostics.error("RG042", f"block `{name}` is defined twice", source.span(("blocks", name), key=True),
                                  help="rename one of the blocks",
                                  notes=[Note("first defined here", previous.source.span(previous.path, key=True))])
            continue
        program.blocks[name] = BlockSource(name, definition, source)
    for position, include in enumerate(spec.include):
        span = source.span(("include", position))
        target = Path(source.path).parent / include
        key = _identity(str(target))
        if key in stack:
            chain = " -> ".join(f"`{Path(p).name}`" for p in stack[stack.index(key):]) + f" -> `{Path(key).name}`"
            diagnostics.error("RG031", f"include cycle: {chain}", span,
                              help="a file cannot include itself, directly or through other files")
            continue
        if len(stack) >= MAX_INCLUDE_DEPTH:
            diagnostics.error("RG031", f"includes are nested more than {MAX_INCLUDE_DEPTH} deep", span)
            continue
        if key not in loaded:
            errors_before, items_before = diagnostics.error_count, len(diagnostics.items)
            included_source = load_source(target, diagnostics)
            included = parse_spec(included_source, diagnostics) if included_source is not None else None
            loaded[key] = (included, included_source) if included is not None else None
            if included is None:
                program.incomplete = True
                _point_at(diagnostics, errors_before, span, f"cannot include `{include}`")
                diagnostics.add_note(items_before, Note("in the file included here", span))
            if included is not None:
                if included.nodes:
                    diagnostics.warning("RG031", f"the nodes of included file `{include}` are ignored", span,
                                        help="an include brings in blocks only; move shared nodes into a block")
                _collect_blocks(program, included, included_source, diagnostics, stack + (key,), loaded)


# ---- static checks of every definition ---------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    """One `nodes` mapping: the top level of the spec, or the body of a block definition."""

    source: SourceFile
    base: KeyPath                      # path of the mapping holding `nodes`
    nodes: Mapping[str, Any]
    input_names: tuple[str, ...]
    output: str | None
    what: str                          # "the network" or "block `basic`"


def _check_block_params(block: BlockSource, diagnostics: Diagnostics) -> None:
    for section in ("params", "let"):
        for name in getattr(block.definition, section):
            if name in RESERVED:
                diagnostics.error("RG042", f"`{name}` is reserved: inside a block it is the repetition number",
                                  block.source.span(block.path + (section, name), key=True),
                                  help=f"rename the {'parameter' if section == 'params' else 'value'}")


def _scopes(program: Program) -> list[_Scope]:
    spec = program.spec
    scopes = []
    for block in program.blocks.values():
        d = block.definition
        scopes.append(_Scope(block.source, block.path, d.nodes, tuple(d.inputs), d.output, f"block `{block.name}`"))
    if spec.nodes:
        inputs = ("input",) if isinstance(spec.input, list) else tuple(spec.input or ())
        scopes.append(_Scope(program.source, (), spec.nodes, inputs, None, "the network"))
    return scopes


def _references(entry: Any) -> list[str] | None:
    refs = entry.inputs
    if refs is None:
        return None
    return [refs] if isinstance(refs, str) else list(refs)


def _check_scope(scope: _Scope, program: Program, diagnostics: Diagnostics) -> None:
    known = set(scope.nodes) | set(scope.input_names)
    for name in scope.nodes:
        if name in scope.input_names or name in RESERVED:
            role = "an input" if name in scope.input_names else "a reserved name"
            diagnostics.error("RG042", f"node name `{name}` is {role} of {scope.what}",
                              scope.source.span(scope.base + ("nodes", name), key=True), help="rename the node")
    shortcut_modules: dict[str, str] = {}  # module name -> the add that owns it
    for position, (name, entry) in enumerate(scope.nodes.items()):
        path = scope.base + ("nodes", name)
        refs = _references(entry)
        if refs is None and position == 0 and len(scope.input_names) != 1 and \
                not (scope.what == "the network" and not scope.input_names):  # no `input`: reported once, later
            what = "has no inputs" if not scope.input_names else "has several inputs"
            diagnostics.error("RG044", f"`{name}` does not name its inputs and {scope.what} {what}",
                              scope.source.span(path, key=True),
                              help="name them, e.g. `inputs: [" + ", ".join(scope.input_names[:2]) + "]`"
                              if scope.input_names else "declare an `input:` shape for the network")
        for index, ref in enumerate(refs or ()):
            if ref not in known:
                span = scope.source.span(path + (("inputs", index) if isinstance(entry.inputs, list) else ("inputs",)))
                _unknown_reference(ref, known, scope, span, diagnostics, program)
        if entry.otherwise is not None and entry.otherwise not in known:
            _unknown_reference(entry.otherwise, known, scope, scope.source.span(path + ("otherwise",)), diagnostics,
                               program)
        if isinstance(entry, BlockCall):
            _check_call(name, entry, path, scope, program, diagnostics)
        elif entry.op_name() == "add" and entry.shortcut != "identity":
            module = entry.shortcut_name
            if module in scope.nodes or module in shortcut_modules:
                clash = f"like a node of {scope.what}" if module in scope.nodes else \
                    f"like the shortcut of `{shortcut_modules[module]}`"
                other = module if module in scope.nodes else shortcut_modules[module]
                diagnostics.error("RG042", f"the shortcut module of `{name}` would be named `{module}`, {clash}",
                                  scope.source.span(path, key=True),
                                  help="give it another name with `shortcut_name:`",
                                  notes=[Note(f"`{other}` is here",
                                              scope.source.span(scope.base + ("nodes", other), key=True))])
            shortcut_modules.setdefault(module, name)
    if scope.output is not None and scope.output not in known:
        _unknown_reference(scope.output, known, scope, scope.source.span(scope.base + ("output",)), diagnostics)


def _unknown_reference(ref: str, known: set[str], scope: _Scope, span: Span | None, diagnostics: Diagnostics,
                       program: Program | None = None) -> None:
    owners = [name for name, block in (program.blocks.items() if program else ()) if ref in block.definition.nodes]
    if owners and "." not in ref and not did_you_mean(ref, known):
        help_text = (f"`{ref}` is a node of block `{owners[0]}`: the nodes inside a block are private to it; "
                     "refer to the block call by its name (its output), or make the node the block's `output`")
        diagnostics.error("RG040", f"unknown reference `{ref}` in {scope.what}", span, help=help_text)
        return
    if "." in ref:
        help_text = ("the nodes inside a block are private to it: refer to the block call by its name (its output), "
                     "or make the node the block's `output`")
    else:
        help_text = did_you_mean(ref, known) or ("known names: " + ", ".join(f"`{k}`" for k in sorted(known))
                                                 if len(known) <= 12 else None)
    diagnostics.error("RG040", f"unknown reference `{ref}` in {scope.what}", span, help=help_text)


def _check_call(name: str, call: BlockCall, path: KeyPath, scope: _Scope, program: Program,
                diagnostics: Diagnostics) -> None:
    uses = {"block": call.block} | ({"first_block": call.first_block} if call.first_block else {})
    blocks: dict[str, BlockSource] = {}
    for field_name, block_name in uses.items():
        if block_name in program.blocks:
            blocks[field_name] = program.blocks[block_name]
        elif not program.incomplete:  # else it may be defined in the included file that has errors
            diagnostics.error("RG030", f"unknown block `{block_name}`", scope.source.span(path + (field_name,)),
                              help=did_you_mean(block_name, program.blocks) or
                              ("known blocks: " + ", ".join(f"`{b}`" for b in sorted(program.blocks))
                               if program.blocks else "define it under `blocks:` or include a file that does"))
    if len(blocks) != len(uses):
        return
    main, opening = blocks["block"], blocks.get("first_block", blocks["block"])

    def defined_here(block: BlockSource) -> list[Note]:
        return [Note(f"block `{block.name}` is defined here", block.source.span(block.path, key=True))]

    # `with` applies to every repetition, so to both blocks; `first` to repetition 0 only.
    misspelt = False
    for section, values, targets in (("with", call.with_, {id(main): main, id(opening): opening}.values()),
                                     ("first", call.first, [opening])):
        for key in values:
            for block in targets:
                params = block.definition.params
                if key not in params:
                    misspelt = True
                    diagnostics.error("RG033", f"block `{block.name}` has no parameter `{key}`",
                                      scope.source.span(path + (section, key), key=True),
                                      help=did_you_mean(key, params) or
                                      ("its parameters: " + ", ".join(f"`{p}`" for p in params) if params
                                       else "it takes no parameters"), notes=defined_here(block))
                    break
    later_repetitions = call.repeat is not None and call.repeat != 1
    needs = [(opening, {**call.with_, **call.first})] + ([(main, call.with_)] if later_repetitions else [])
    for block, given in needs:
        missing = [p for p, default in block.definition.params.items() if default is None and p not in given]
        if missing and not misspelt:  # a misspelt name is one fault, already reported
            listed = ", ".join(f"`{p}`" for p in missing)
            where = "under `with:`" if block is main and later_repetitions else "under `with:` or `first:`"
            diagnostics.error("RG034", f"block `{block.name}` needs {listed}", scope.source.span(path, key=True),
                              help="give " + ", ".join(f"`{p}: ...`" for p in missing) + " " + where,
                              notes=defined_here(block))
            break
    if later_repetitions and len(main.definition.inputs) != 1:
        diagnostics.error("RG044", f"block `{main.name}` has {len(main.definition.inputs)} inputs and cannot be "
                          "repeated", scope.source.span(path + ("repeat",)),
                          help="only single-input blocks chain; write the calls one by one")
    refs = _references(call)
    count = 1 if refs is None else len(refs)
    if count != len(opening.definition.inputs):
        diagnostics.error("RG044", f"block `{opening.name}` takes {len(opening.definition.inputs)} input(s) "
                          f"({', '.join(opening.definition.inputs)}), got {count}",
                          scope.source.span(path + ("inputs",)), notes=defined_here(opening))


def _check_recursion(program: Program, diagnostics: Diagnostics) -> None:
    # graphlib (the standard library) finds the cycle without the import cost of networkx,
    # which `resgraph validate` pays only for graphs with forward references.
    calls: dict[str, list[str]] = {}
    sites: dict[tuple[str, str], tuple[SourceFile, KeyPath]] = {}
    for block in program.blocks.values():
        callees = calls.setdefault(block.name, [])
        for name, entry in block.definition.nodes.items():
            if not isinstance(entry, BlockCall):
                continue
            for field_name in ("block", "first_block"):
                callee = getattr(entry, field_name)
                if callee in program.blocks:
                    callees.append(callee)
                    sites.setdefault((block.name, callee), (block.source, block.path + ("nodes", name, field_name)))
    try:
        graphlib.TopologicalSorter(calls).prepare()
        return
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))  # graphlib lists it callee-first; callers read better
    edges = list(zip(cycle, cycle[1:]))
    chain = " -> ".join(f"`{name}`" for name in cycle)
    source, path = sites[edges[0]]
    diagnostics.error("RG032", f"block `{cycle[0]}` instantiates itself: {chain}", source.span(path),
                      help="a block cannot contain itself, directly or through other blocks; use `repeat` for depth",
                      notes=[Note(f"`{u}` calls `{v}`", sites[u, v][0].span(sites[u, v][1])) for u, v in edges[1:]])


# ---- instantiation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Frame:
    """One instance of a scope: where its names go and what its expressions see."""

    prefix: str
    refs: dict[str, str]          # scope input name -> qualified reference
    values: dict[str, Any]        # the expression scope
    source: SourceFile
    base: KeyPath
    notes: tuple[Note, ...]
    scopes: tuple[str, ...]


def _has_expression(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    for key, value in raw.items():
        if key in ("op", "inputs", "when", "otherwise"):
            continue
        if isinstance(value, str) or (isinstance(value, list) and any(isinstance(v, str) for v in value)):
            return True
    return False


def _value_at(data: Any, path: KeyPath) -> Any:
    for segment in path:
        data = data[segment]
    return data


def _shown(value: Any) -> str:
    """A value as the spec would write it: `30`, `true`, `'pad'`, `[1, 2]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return "null" if value is None else repr(value)


def _too_large(value: Any) -> bool:
    """An integer a spec could not hold (see source.py), given as a param from Python."""
    from .expr import MAX_INT

    if isinstance(value, (list, tuple)):
        return any(_too_large(item) for item in value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT


def _literal(value: Any) -> Any:
    """Normalise a literal param value (lists become tuples so that they stay immutable)."""
    return tuple(value) if isinstance(value, list) else value


def _counted(node: Node, shapes: list) -> list:
    """`shapes`, where the node's op takes that many inputs (the graph check reports it later, with its place)."""
    op = type(node.op)
    if len(shapes) < op.min_inputs or (op.max_inputs is not None and len(shapes) > op.max_inputs):
        most = "" if op.max_inputs == op.min_inputs else " or more" if op.max_inputs is None else f" to {op.max_inputs}"
        raise ShapeError(f"`{op.op_name()}` takes {op.min_inputs}{most} input{'s' * (op.max_inputs != 1)}, "
                         f"got {len(shapes)}")
    return shapes


class _ShapeLookup:
    """`shape(name)` in one scope instance (one per block instance, so it keeps no __dict__)."""

    __slots__ = ("expander", "prefix", "refs", "nodes")

    def __init__(self, expander: "_Expander", prefix: str, refs: Mapping[str, str], nodes: Mapping[str, Any]):
        self.expander, self.prefix, self.refs, self.nodes = expander, prefix, refs, nodes

    def __call__(self, name: str) -> tuple[int, ...]:
        expander, refs = self.expander, self.refs
        if name not in refs and name not in self.nodes:
            known = list(refs) + list(self.nodes)
            raise ExprError(f"`shape({name})`: no node or input `{name}` here", "name", name=name,
                            help=did_you_mean(name, known) or "names here: " + ", ".join(f"`{k}`" for k in known))
        ref = expander.resolve(refs.get(name, self.prefix + name))
        shape = expander.shape_so_far(ref)
        if shape is not None:
            return shape
        if expander.diagnostics.has_errors:
            raise _Abort  # an error already reported is the cause; one message per fault
        cause = expander.shape_causes.get(ref)
        if cause is not None:
            raise ExprError(f"the shape of `{name}` cannot be worked out: `{cause[0]}`: {cause[1]}")
        raise ExprError(f"the shape of `{name}` is not known here", help="`shape(name)` reads a node or "
                        "input of this scope whose inputs are declared before the expression")


class _Expander:
    def __init__(self, program: Program, graph: Graph, diagnostics: Diagnostics) -> None:
        self.program, self.graph, self.diagnostics = program, graph, diagnostics
        self.aliases: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.failed_requirements: set[tuple[str, KeyPath]] = set()
        self.shapes: dict[str, tuple[int, ...] | None] = {}   # for `shape(...)`: None where it cannot be known
        self.left_out: dict[str, tuple[SourceFile, KeyPath, tuple[Note, ...]]] = {}   # `when` false: where
        self.shape_causes: dict[str, tuple[str, str]] = {}     # a None shape's cause: the node whose rule failed

    def names(self, values: Mapping[str, Any], prefix: str, refs: Mapping[str, str], nodes: Mapping[str, Any]
              ) -> Names:
        """An expression scope whose `shape(name)` reads the nodes and inputs of the scope at `prefix`."""
        return Names(values, _ShapeLookup(self, prefix, refs, nodes))

    def shape_so_far(self, ref: str) -> tuple[int, ...] | None:
        """The shape of `ref` from the nodes expanded so far, by the ops' own shape rules, computed on demand
        (nothing is spent where no expression asks) without recursion; None where it cannot be known yet:
        a node not yet expanded, a failed node or a shape rule that rejects its inputs (reported later)."""
        pending, busy = [ref], set()
        while pending:
            name = pending[-1]
            if name in self.shapes:
                pending.pop()
                continue
            node = self.graph.nodes.get(name)
            if node is None or node.is_input or node.op is None:
                self.shapes[name] = node.shape if node is not None and node.is_input else None
                pending.pop()
                continue
            inputs = [self.resolve(i) for i in node.inputs]
            missing = [i for i in inputs if i not in self.shapes and i not in busy]
            if missing and name not in busy:
                busy.add(name)
                pending.extend(missing)
                continue
            shapes = [self.shapes.get(i) for i in inputs]
            failed = [i for i, shape in zip(inputs, shapes) if shape is None]
            if failed:
                self.shapes[name] = None
                if failed[0] in self.shape_causes:
                    self.shape_causes[name] = self.shape_causes[failed[0]]
            else:
                try:
                    self.shapes[name] = tuple(node.op.infer_shape(_counted(node, shapes), {}))
                except ShapeError as exc:
                    self.shapes[name] = None
                    self.shape_causes[name] = (name, exc.message)
            pending.pop()
        return self.shapes[ref]

    # The expression errors of `with`, `first` and `let` values, located at the value.
    def _evaluate(self, value: Any, scope: Mapping[str, Any], source: SourceFile, path: KeyPath,
                  notes: tuple[Note, ...], what: str | None = None) -> Any:
        try:
            if isinstance(value, str):
                return evaluate(value, scope)
            if isinstance(value, list):
                return tuple(evaluate(v, scope) if isinstance(v, str) else v for v in value)
            return value
        except ExprError as exc:
            code = {"syntax": "RG020", "name": "RG021"}.get(exc.kind, "RG022")
            help_text = exc.help
            if exc.kind == "name" and isinstance(value, str) and value == exc.name:
                quote = f"to pass the text `{value}`, quote it inside the expression: \"'{value}'\""
                help_text = quote if not help_text or "names in scope here: none" in help_text else \
                    f"{help_text}; {quote}"
            what = what or f"value for `{path[-1]}`"
            self.diagnostics.error(code, f"invalid {what}: {exc.message}", source.span(path),
                                   help=help_text, notes=notes)
            raise _Abort from None

    def check_requirements(self, requirements: Sequence[str | Requirement], values: Mapping[str, Any],
                           source: SourceFile, base: KeyPath, notes: tuple[Note, ...]) -> None:
        """Each `require` entry must evaluate to True in the scope; a failure is reported once per entry (not
        once per instance of a repeated block), with the values of the names it reads."""
        for position, requirement in enumerate(requirements):
            path = base + ("require", position)
            if isinstance(requirement, Requirement):
                text, help_text, path = requirement.check, requirement.help, path + ("check",)
            else:
                text, help_text = requirement, None
            key = (source.path, path)
            if key in self.failed_requirements:
                continue
            result = self._evaluate(text, values, source, path, notes, what="requirement")
            if result is True:
                continue
            self.failed_requirements.add(key)
            if result is False:
                read = ", ".join(f"`{name}` = {_shown(values[name])}" for name in sorted(names_in(text))
                                 if name in values)
                self.diagnostics.error("RG023", f"requirement `{text}` is false" + (f" ({read})" if read else ""),
                                       source.span(path), notes=notes,
                                       help=help_text or "change the param values so that it holds")
            else:
                self.diagnostics.error("RG022", f"a requirement must be true or false; `{text}` is {_shown(result)}",
                                       source.span(path), notes=notes,
                                       help="write a comparison, e.g. `depth % 6 == 4`")

    def enabled(self, entry: Any, path: KeyPath, frame: _Frame) -> bool:
        """The node's `when`, evaluated in its scope; it must be a boolean (RG022)."""
        value = self._evaluate(entry.when, frame.values, frame.source, path + ("when",), frame.notes,
                               what="condition `when`")
        if not isinstance(value, bool):
            self.diagnostics.error("RG022", f"`when` must be true or false; `{entry.when}` is {_shown(value)}",
                                   frame.source.span(path + ("when",)), notes=frame.notes,
                                   help="write a comparison or a boolean param, e.g. `when: stride != 1`")
            raise _Abort
        return value

    def expand_nodes(self, nodes: Mapping[str, Any], frame: _Frame, first_input: str | None) -> str | None:
        """Instantiate one scope's nodes; returns the qualified reference of its last node."""
        previous = first_input
        for name, entry in nodes.items():
            path = frame.base + ("nodes", name)
            refs = _references(entry)
            if refs is None:
                inputs = [previous] if previous is not None else []
            else:
                inputs = [frame.refs.get(ref, frame.prefix + ref) for ref in refs]
            qualified = frame.prefix + name
            if entry.when is not None and not self.enabled(entry, path, frame):
                # Left out: whoever reads it reads what stands for it.
                self.left_out[qualified] = (frame.source, path + ("when",), frame.notes)
                if entry.otherwise is not None:
                    self.aliases[qualified] = frame.refs.get(entry.otherwise, frame.prefix + entry.otherwise)
                elif inputs:
                    self.aliases[qualified] = inputs[0]
                else:
                    self.diagnostics.error("RG044", f"`{qualified}` is left out (`when` is false) but reads no input "
                                           "that could stand for it", frame.source.span(path + ("when",)),
                                           notes=frame.notes, help="name the node that stands for it: `otherwise: ...`")
                    raise _Abort
                previous = qualified
                continue
            if isinstance(entry, BlockCall):
                self.aliases[qualified] = self.expand_call(name, entry, path, frame, inputs)
            else:
                self.add_op(qualified, entry, path, frame, inputs)
            previous = qualified
        return previous

    def add_op(self, qualified: str, entry: Op, path: KeyPath, frame: _Frame, inputs: list[str]) -> None:
        if len(self.graph) >= MAX_NODES:
            self.diagnostics.error("RG035", f"the network expands to more than {MAX_NODES:,} nodes",
                                   frame.source.span(path, key=True), notes=frame.notes,
                                   help="check `repeat` counts; resgraph refuses nets this large")
            raise _Abort
        op = entry
        raw = _value_at(frame.source.data, path)
        failed = False
        if _has_expression(raw):
            try:
                op = type(entry).model_validate(raw, context={"scope": frame.values})
            except ValidationError as exc:
                report_validation_error(exc, frame.source, path, self.diagnostics, frame.notes,
                                        root_model=type(entry))
                op, failed = None, True
        self.graph.add(Node(qualified, op, inputs, frame.source, path, frame.notes, frame.prefix, frame.scopes,
                            failed=failed))

    def expand_call(self, name: str, call: BlockCall, path: KeyPath, frame: _Frame, inputs: list[str]) -> str:
        main = self.program.blocks[call.block]
        opening = self.program.blocks[call.first_block] if call.first_block else main
        call_span = frame.source.span(path, key=True)
        repeat = call.repeat
        if isinstance(repeat, str):
            try:
                repeat = BlockCall.model_validate(_value_at(frame.source.data, path),
                                                  context={"scope": frame.values}).repeat
            except ValidationError as exc:
                report_validation_error(exc, frame.source, path, self.diagnostics, frame.notes,
                                        root_model=BlockCall)
                raise _Abort from None
        count = repeat or 1
        estimate = (len(self.graph) + self.minimum_size(opening.name)
                    + (count - 1) * self.minimum_size(main.name))
        if estimate > MAX_NODES:
            self.diagnostics.error("RG035", f"`{frame.prefix + name}` expands to at least {estimate:,} nodes, more "
                                   f"than the limit of {MAX_NODES:,}", frame.source.span(path + ("repeat",)),
                                   notes=frame.notes, help="check `repeat` counts; resgraph refuses nets this large")
            raise _Abort
        with_values = {key: self._evaluate(value, frame.values, frame.source, path + ("with", key), frame.notes)
                       for key, value in call.with_.items()}
        first_values = {key: self._evaluate(value, frame.values, frame.source, path + ("first", key), frame.notes)
                        for key, value in call.first.items()}
        output = None
        for index in range(count):
            block = opening if index == 0 else main
            definition = block.definition
            instance = frame.prefix + name + (f".{index}" if repeat is not None else "")
            notes = frame.notes + (Note(f"in `{instance}`, an instance of block `{block.name}` made here", call_span),)
            refs = dict(zip(definition.inputs, inputs))
            values = self.names({key: _literal(value) for key, value in definition.params.items()}, instance + ".",
                                refs, definition.nodes)
            values |= with_values | (first_values if index == 0 else {}) | {"index": index}
            for key, expression in definition.let.items():
                values[key] = self._evaluate(expression, values, block.source, block.path + ("let", key), notes)
            self.check_requirements(definition.require, values, block.source, block.path, notes)
            scopes = frame.scopes + ((frame.prefix + name,) if repeat is not None else ()) + (instance,)
            child = _Frame(instance + ".", refs, values, block.source, block.path, notes, scopes)
            last = self.expand_nodes(definition.nodes, child, refs[definition.inputs[0]])
            output = child.prefix + definition.output if definition.output else last
            self.graph.instances[instance] = Instance(instance, block.name, frame.prefix + name,
                                                      index if repeat is not None else None, values, list(inputs),
                                                      output)
            inputs = [output]
        return output

    def minimum_size(self, block: str) -> int:
        """A lower bound of the nodes one instance of `block` adds (repeats given as expressions count once),
        so that an absurd `repeat` is refused before anything is built. Blocks are known not to recurse."""
        if block not in self.sizes:
            total = 0
            for entry in self.program.blocks[block].definition.nodes.values():
                if entry.when not in (None, True):
                    continue  # may be left out
                if isinstance(entry, BlockCall):
                    times = entry.repeat if isinstance(entry.repeat, int) else 1
                    total += self.minimum_size(entry.first_block or entry.block)
                    total += (times - 1) * self.minimum_size(entry.block)
                else:
                    total += 1
            self.sizes[block] = total
        return self.sizes[block]

    def resolve(self, ref: str) -> str:
        """What a reference finally names: through block calls (to their output) and left-out nodes (to what
        stands for them). Only left-out nodes can close a cycle (`otherwise` naming each other): RG041."""
        chain: list[str] | None = None
        while ref in self.aliases:
            if ref in self.left_out:
                chain = chain if chain is not None else []
                if ref in chain:
                    self._stand_in_cycle(chain[chain.index(ref):])
                chain.append(ref)
            ref = self.aliases[ref]
        return ref

    def _stand_in_cycle(self, cycle: list[str]) -> None:
        source, path, notes = self.left_out[cycle[0]]
        shown = " -> ".join(f"`{name}`" for name in cycle + cycle[:1])
        self.diagnostics.error("RG041", f"left-out nodes stand for each other in a cycle: {shown}",
                               source.span(path), notes=notes,
                               help="let one of them stand for a node outside the cycle (`otherwise: ...`)")
        raise _Abort


def expand_blocks(program: Program, diagnostics: Diagnostics, params: Mapping[str, Any] | None = None) -> Graph | None:
    """Check every definition, then instantiate the network into a flat graph.

    Requires a parsed program; ensures every node input names an existing node. Returns None
    (with diagnostics) when the spec has errors, or when the file is a block library only.
    """
    for block in program.blocks.values():
        _check_block_params(block, diagnostics)
    for scope in _scopes(program):
        _check_scope(scope, program, diagnostics)
    _check_recursion(program, diagnostics)
    spec, source = program.spec, program.source
    values = {key: _literal(value) for key, value in spec.params.items()}
    for key, value in (params or {}).items():
        if key not in spec.params:
            known = ", ".join(f"`{p}`" for p in spec.params) or "none"
            diagnostics.error("RG033", f"the spec has no parameter `{key}` to set",
                              source.span(("params",), key=True) if "params" in source.data else None,
                              help=did_you_mean(key, spec.params) or f"its parameters: {known}")
        elif _too_large(value):
            diagnostics.error("RG038", f"the value given for parameter `{key}` is too large: integers are limited "
                              "to 2**62", source.span(("params", key), key=True),
                              help="sizes and counts this large cannot be allocated; check the value")
        else:
            values[key] = _literal(value)
    graph = Graph(spec.name or Path(source.path).stem)
    expander = _Expander(program, graph, diagnostics)
    if spec.nodes and spec.input is None:
        diagnostics.error("RG010", "the network has nodes but no `input`", source.span(("nodes",), key=True),
                          help="declare the per-sample input shape, e.g. `input: [3, 224, 224]`")
    if spec.outputs is not None and not spec.nodes:
        diagnostics.error("RG010", "`outputs` names nodes but the spec has no `nodes`",
                          source.span(("outputs",), key=True))
    if diagnostics.has_errors or not spec.nodes:
        return None

    named = isinstance(spec.input, dict)
    for name, dims in (spec.input.items() if named else [("input", spec.input)]):
        path = ("input", name) if named else ("input",)
        try:
            shape = tuple(_DIMS.validate_python(dims, context={"scope": values}))
        except ValidationError as exc:
            report_validation_error(exc, source, path, diagnostics, root_model=SpecFile)
            continue
        graph.add(Node(name, None, [], source, path, shape=shape))
        graph.inputs.append(name)
    if diagnostics.has_errors:
        return None

    refs = {name: name for name in graph.inputs}
    values = expander.names(values, "", refs, spec.nodes)
    frame = _Frame("", refs, values, source, (), (), ())
    try:
        expander.check_requirements(spec.require, values, source, (), ())
        if diagnostics.has_errors:
            return None
        last = expander.expand_nodes(spec.nodes, frame, graph.inputs[0] if len(graph.inputs) == 1 else None)
    except _Abort:
        return None
    if diagnostics.has_errors:
        return None

    try:
        for node in graph:
            node.inputs = [expander.resolve(ref) for ref in node.inputs]
        for instance in graph.instances.values():
            instance.inputs = [expander.resolve(ref) for ref in instance.inputs]
            instance.output = expander.resolve(instance.output)
    except _Abort:
        return None
    outputs = spec.outputs if spec.outputs is not None else last
    names = [outputs] if isinstance(outputs, str) else list(outputs)
    known = set(spec.nodes) | set(graph.inputs)
    for position, name in enumerate(names):
        span = source.span(("outputs", position) if isinstance(spec.outputs, list) else ("outputs",))
        if name not in known:
            diagnostics.error("RG040", f"unknown output `{name}`", span,
                              help=did_you_mean(name, known) or "outputs name top-level nodes or block calls")
            continue
        try:
            graph.outputs.append(expander.resolve(name))
        except _Abort:
            return None
        graph.output_spans.append(span)
    return None if diagnostics.has_errors else graph

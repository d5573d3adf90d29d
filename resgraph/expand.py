"""Pass 3 of the pipeline: a parsed spec (and the files it includes) -> one flat graph IR.

Includes are loaded, block definitions are checked once statically (references, block names,
params, recursion), then every block call is instantiated with its params evaluated, giving
dotted names such as `layer2.0.conv1`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import graphlib
import weakref
from pydantic import TypeAdapter, ValidationError

from .diagnostics import Diagnostics, Edit, Note, Span, did_you_mean, nearest, replacing
from .expr import ExprError, Names, evaluate, names_in
from .graph import Graph, Instance, Node
from .ops.base import KEY_PATTERN, Int, Op, ShapeError
from .source import FileProblem, KeyPath, SourceFile, check_regular_file, load_source, value_at
from .spec import (BlockCall, BlockDef, Requirement, SpecFile, input_declarations, parse_spec,
                   report_validation_error)

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
    # Where each top-level param got its value: the file and key path of the last spec in the
    # `extends` chain that set it (for `explain`, `expand --origins` and the editor's hover).
    param_origins: dict[str, tuple[SourceFile, KeyPath]] = field(default_factory=dict)
    extended_by: list[SourceFile] = field(default_factory=list)   # the specs that extend `source`, outermost last


class FileCache:
    """Loaded and parsed files by path, for a long-lived process (the language server).

    An entry is used again while the file's modification time and size are unchanged, or,
    for a file open in the editor (`overlay`), while its text is; its diagnostics are replayed."""

    def __init__(self) -> None:
        self.overlays: dict[str, str] = {}   # resolved path -> unsaved text
        self._entries: dict[tuple[str, Span | None], tuple[Any, SourceFile | None, SpecFile | None, list,
                                                           dict[str, str]]] = {}
        self.reads = 0                       # files read and parsed (not served from the cache)

    def load(self, path: Path, diagnostics: Diagnostics, included_at: Span | None = None,
             allow_plugins: bool = True) -> tuple[SourceFile | None, SpecFile | None]:
        key = (_identity(str(path)), included_at)   # diagnostics about a file point at the line that named it
        text = self.overlays.get(key[0])
        if text is not None:
            stamp: Any = ("text", text)
        else:
            try:
                info = path.stat()
                stamp = (info.st_mtime_ns, info.st_size)
            except OSError:
                stamp = None
        entry = self._entries.get(key)
        if entry is not None and stamp is not None and entry[0] == stamp:
            for item in entry[3]:
                diagnostics.add(item)
            diagnostics.sources.update(entry[4])
            return entry[1], entry[2]
        self.reads += 1
        own = Diagnostics()
        source = load_source(path, own, text, included_at=included_at)
        spec = parse_spec(source, own, allow_plugins) if source is not None else None
        if stamp is not None:
            self._entries[key] = (stamp, source, spec, list(own.items), dict(own.sources))
        for item in own.items:
            diagnostics.add(item)
        diagnostics.sources.update(own.sources)
        return source, spec


def _load_file(path: Path, diagnostics: Diagnostics, cache: FileCache | None, included_at: Span | None = None,
               allow_plugins: bool = True) -> tuple[SourceFile | None, SpecFile | None]:
    if cache is not None:
        return cache.load(path, diagnostics, included_at, allow_plugins)
    source = load_source(path, diagnostics, included_at=included_at)
    return source, parse_spec(source, diagnostics, allow_plugins) if source is not None else None


EXTENDS_FIELDS = frozenset({"resgraph", "name", "doc", "extends", "params", "allow"})
INCLUDE_PATH_VARIABLE = "RESGRAPH_PATH"


@dataclass(frozen=True)
class ProjectRoots:
    """Where `include` and `extends` may read: the directory tree of the top-level spec, and the
    directories the user names (`--include-path`, `include_path=`, $RESGRAPH_PATH), all with links resolved.

    A relative name is looked up beside the including file, then in each named directory in order; whatever
    it resolves to (through symbolic links) must lie inside one of these trees."""

    trees: tuple[str, ...]
    search: tuple[str, ...]

    @classmethod
    def of(cls, spec: str | Path, include_path: Sequence[str | os.PathLike] = ()) -> "ProjectRoots":
        named = [str(p) for p in include_path]
        named += [p for p in os.environ.get(INCLUDE_PATH_VARIABLE, "").split(os.pathsep) if p]
        search = tuple(dict.fromkeys(os.path.realpath(p) for p in named if "\0" not in p))
        spec = str(spec)
        own = [os.path.realpath(os.path.dirname(spec) or ".")]
        if "\0" not in spec:
            own.append(os.path.dirname(os.path.realpath(spec)))
        return cls(tuple(dict.fromkeys(own + list(search))), search)

    def contains(self, path: str) -> bool:
        return any(path == tree or path.startswith(tree.rstrip(os.sep) + os.sep) for tree in self.trees)

    def resolve(self, name: str, including_file: str) -> Path:
        """The file that `name`, written in `including_file`, names. Raises FileProblem (RG004, RG006, RG007)."""
        if "\0" in name:
            raise FileProblem("RG004", "the path contains a NUL character", "remove the NUL (`\\0`) from the path")
        beside = Path(including_file).parent / name
        target = beside
        if not Path(name).is_absolute() and not os.path.lexists(beside):
            target = next((Path(d) / name for d in self.search if os.path.lexists(Path(d) / name)), beside)
        real = os.path.realpath(target)
        if not self.contains(real):
            trees = ", ".join(f"`{_as_written(tree)}`" for tree in self.trees)
            raise FileProblem("RG006", f"`{target}` is outside the project: specs read files under {trees} only",
                              "copy the file into the spec's directory tree, or name its directory with "
                              f"`--include-path DIR` (Python: `include_path=[DIR]`; or ${INCLUDE_PATH_VARIABLE})")
        check_regular_file(target)
        return target


def _as_written(directory: str) -> str:
    """A directory as a user would write it: relative to the working directory when it is below it."""
    relative = os.path.relpath(directory)
    return directory if relative == ".." or relative.startswith(".." + os.sep) else relative


def load_program(path: str | Path, diagnostics: Diagnostics, text: str | None = None,
                 _stack: tuple[str, ...] = (), *, include_path: Sequence[str | os.PathLike] = (),
                 _roots: ProjectRoots | None = None, _named_at: Span | None = None,
                 cache: FileCache | None = None, allow_plugins: bool = True) -> Program | None:
    """Load and parse a spec file and, recursively, the files it includes or extends.

    Included and extended files must lie under the project roots (see `ProjectRoots`). With a
    `cache`, included and extended files that have not changed are not read again (the file at
    `path` itself is, unless `text` is given). Each file may load the plugins it names
    (docs/plugins.md), unless `allow_plugins` is False."""
    roots = _roots or ProjectRoots.of(path, include_path)
    if text is None and _stack and cache is not None:
        source, spec = cache.load(Path(path), diagnostics, _named_at, allow_plugins)
        if source is None or spec is None:
            return None
        return _program(spec, source, diagnostics, _stack, roots, cache, allow_plugins)
    source = load_source(path, diagnostics, text, included_at=_named_at)
    if source is None:
        return None
    if _named_at is None and not _looks_like_spec(source.data):
        diagnostics.sources.pop(source.path, None)   # no excerpt: the content of a file that is not a spec stays out
        why = "it has none of a spec's fields" if isinstance(source.data, dict) else "it is not a mapping"
        diagnostics.error("RG008", f"`{source.path}` is not a resgraph spec: {why}", Span(source.path, 1, 1, 1, 1),
                          help="a spec is a YAML mapping that starts with `resgraph: 1`; see docs/spec.md")
        return None
    spec = parse_spec(source, diagnostics, allow_plugins)
    if spec is None:
        return None
    return _program(spec, source, diagnostics, _stack, roots, cache, allow_plugins)


def _program(spec: SpecFile, source: SourceFile, diagnostics: Diagnostics, stack: tuple[str, ...],
             roots: ProjectRoots, cache: FileCache | None, allow_plugins: bool) -> Program | None:
    stack = stack + (_identity(source.path),)
    if spec.extends is not None:
        return _extend(spec, source, diagnostics, stack, roots, cache, allow_plugins)
    program = Program(spec, source, param_origins={key: (source, ("params", key)) for key in spec.params})
    _collect_blocks(program, spec, source, diagnostics, stack=stack, loaded={}, roots=roots, cache=cache,
                    allow_plugins=allow_plugins)
    return program


def _looks_like_spec(data: Any) -> bool:
    """A mapping with at least one of a spec's fields (a spec with mistakes), or a list (reported as RG012)."""
    if isinstance(data, list):
        return True
    return isinstance(data, dict) and any(key in SpecFile.model_fields for key in data)


def _resolve(roots: ProjectRoots, name: str, source: SourceFile, span: Span | None,
             diagnostics: Diagnostics, what: str) -> Path | None:
    """The file named by `include` or `extends`, or None with a diagnostic at the line that names it."""
    try:
        return roots.resolve(name, source.path)
    except FileProblem as problem:
        shown = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in name)
        shown = shown.replace("\\x00", "\\0")   # control characters never reach the terminal raw
        code = problem.code if problem.code != "RG004" else "RG031"   # RG004 names the top-level file only
        message = problem.about_it(Path(source.path).parent / name)
        diagnostics.error(code, f"cannot {what} `{shown}`: {message}", span, help=problem.help)
        return None


def _extend(spec: SpecFile, source: SourceFile, diagnostics: Diagnostics, stack: tuple[str, ...],
            roots: ProjectRoots, cache: FileCache | None = None, allow_plugins: bool = True) -> Program | None:
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
    target = _resolve(roots, spec.extends, source, span, diagnostics, "extend")
    if target is None:
        return None
    errors_before = diagnostics.error_count
    base = load_program(target, diagnostics, _stack=stack, _roots=roots, _named_at=span, cache=cache,
                        allow_plugins=allow_plugins)
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
        "params": {**base.spec.params, **spec.params}, "extends": None,
        "allow": list(dict.fromkeys(base.spec.allow + spec.allow))})
    origins = {**base.param_origins, **{key: (source, ("params", key)) for key in spec.params}}
    return Program(merged, base.source, base.blocks, base.incomplete, origins, base.extended_by + [source])


def _point_at(diagnostics: Diagnostics, errors_before: int, span: Span | None, what: str) -> None:
    """When a referenced file could not be read at all, report it at the line that names it."""
    if diagnostics.error_count == errors_before + 1 and not diagnostics.items[-1].span:
        failed = diagnostics.items.pop()
        diagnostics.error("RG031", f"{what}: {failed.message}", span, help=failed.help)


def _identity(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


def _collect_blocks(program: Program, spec: SpecFile, source: SourceFile, diagnostics: Diagnostics,
                    stack: tuple[str, ...], loaded: dict[str, tuple[SpecFile, SourceFile] | None],
                    roots: ProjectRoots, cache: FileCache | None = None, allow_plugins: bool = True) -> None:
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
        if len(stack) >= MAX_INCLUDE_DEPTH:
            diagnostics.error("RG031", f"includes are nested more than {MAX_INCLUDE_DEPTH} deep", span)
            continue
        target = _resolve(roots, include, source, span, diagnostics, "include")
        if target is None:
            program.incomplete = True
            continue
        key = _identity(str(target))
        if key in stack:
            chain = " -> ".join(f"`{Path(p).name}`" for p in stack[stack.index(key):]) + f" -> `{Path(key).name}`"
            diagnostics.error("RG031", f"include cycle: {chain}", span,
                              help="a file cannot include itself, directly or through other files")
            continue
        if key not in loaded:
            errors_before, items_before = diagnostics.error_count, len(diagnostics.items)
            included_source, included = _load_file(target, diagnostics, cache, included_at=span,
                                                   allow_plugins=allow_plugins)
            loaded[key] = (included, included_source) if included is not None else None
            if included is None:
                program.incomplete = True
                _point_at(diagnostics, errors_before, span, f"cannot include `{include}`")
                diagnostics.add_note(items_before, Note("in the file included here", span))
            if included is not None:
                if included.nodes:
                    diagnostics.warning("RG031", f"the nodes of included file `{include}` are ignored", span,
                                        help="an include brings in blocks only; move shared nodes into a block")
                _collect_blocks(program, included, included_source, diagnostics, stack + (key,), loaded, roots, cache,
                                allow_plugins)


# ---- static checks of every definition ---------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    """One `nodes` mapping: the top level of the spec, or the body of a block definition."""

    source: SourceFile
    base: KeyPath                      # path of the mapping holding `nodes`
    nodes: Mapping[str, Any]
    input_names: tuple[str, ...]
    output: str | list[str] | None
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
        inputs = tuple(name for name, _, _, _ in input_declarations(spec.input))
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
            base, item = split_item(ref)
            if item is not None:
                ref = base
            if ref not in known:
                span = scope.source.span(path + (("inputs", index) if isinstance(entry.inputs, list) else ("inputs",)))
                _unknown_reference(ref, known, scope, span, diagnostics, program,
                                   is_inputs=isinstance(entry.inputs, str))
        if entry.otherwise is not None and entry.otherwise not in known:
            _unknown_reference(entry.otherwise, known, scope, scope.source.span(path + ("otherwise",)), diagnostics,
                               program)
        if isinstance(entry, BlockCall):
            _check_call(name, entry, path, scope, program, diagnostics)
        elif entry.op_name() == "add" and entry.shortcut != "identity":
            module = entry.shortcut_name
            parts = module.split(".")
            inside = next((p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in scope.nodes), None)
            if module in scope.nodes or module in shortcut_modules or inside is not None:
                clash = f"like a node of {scope.what}" if module in scope.nodes else \
                    f"inside the module of node `{inside}`" if inside is not None else \
                    f"like the shortcut of `{shortcut_modules[module]}`"
                other = module if module in scope.nodes else inside if inside is not None else shortcut_modules[module]
                diagnostics.error("RG042", f"the shortcut module of `{name}` would be named `{module}`, {clash}",
                                  scope.source.span(path, key=True),
                                  help="give it another name with `shortcut_name:`",
                                  notes=[Note(f"`{other}` is here",
                                              scope.source.span(scope.base + ("nodes", other), key=True))])
            shortcut_modules.setdefault(module, name)
    listed = isinstance(scope.output, list)
    for position, output in enumerate(scope.output if listed else [scope.output] if scope.output else []):
        base, _ = split_item(output)   # `call:k` is checked once the call is expanded (its outputs are known then)
        if base not in known:
            _unknown_reference(base, known, scope,
                               scope.source.span(scope.base + (("output", position) if listed else ("output",))),
                               diagnostics)
    _check_keys(scope, diagnostics)


def _deferred_key(entry: Any) -> bool:
    """A key known only once the node is expanded: computed (`{expression}` parts) or on a conditional node
    (two nodes that are never there together may share a path). `_check_expanded_keys` checks those."""
    return entry.key is not None and ("{" in entry.key or entry.when not in (None, True))


def _check_keys(scope: _Scope, diagnostics: Diagnostics) -> None:
    """Two `key`s of one scope may not name the same module path, nor one a path inside the other
    (`block` holds `block.0`), nor pass through the name of a node without a key (RG086): a block call,
    or an op whose module would sit there (`attention` beside `key: attention.self.query`). Computed keys
    and the keys of nodes with a `when` are known once expanded: `_check_expanded_keys` checks those."""
    claimed: dict[str, str] = {name: name for name, entry in scope.nodes.items() if entry.key is None}
    for name, entry in scope.nodes.items():
        key = entry.key
        if key is None or _deferred_key(entry):
            continue
        for path, owner in claimed.items():
            if key == path or key.startswith(path + ".") or path.startswith(key + "."):
                diagnostics.error("RG086", f"`key: {key}` of `{name}` clashes with the module path `{path}` of "
                                  f"`{owner}`", scope.source.span(scope.base + ("nodes", name, "key")),
                                  help="give each node its own module path; a path cannot both hold a module "
                                       "and be another's container",
                                  notes=[Note(f"`{owner}` is here", scope.source.span(scope.base + ("nodes", owner),
                                                                                     key=True))])
                break
        else:
            claimed[key] = name


def _unknown_reference(ref: str, known: set[str], scope: _Scope, span: Span | None, diagnostics: Diagnostics,
                       program: Program | None = None, is_inputs: bool = False) -> None:
    names = [part.strip() for part in ref.split(",")]
    if is_inputs and len(names) > 1 and all(names):
        shown = "[" + ", ".join(names) + "]"
        diagnostics.error("RG040", f"unknown reference `{ref}` in {scope.what}: several inputs are a list, not one "
                          "text with commas", span, help=f"write the inputs as a list: `inputs: {shown}`",
                          fixes=(Edit(span, shown),) if span is not None else ())
        return
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
    fixes = replacing(scope.source.text, span, ref, nearest(ref, known)) if "." not in ref else ()
    diagnostics.error("RG040", f"unknown reference `{ref}` in {scope.what}", span, help=help_text, fixes=fixes)


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
    # Repetitions chain through the first input; the others reach every instance unchanged (a Transformer
    # layer's attention mask), so every repetition takes as many inputs as the first.
    if later_repetitions and len(main.definition.inputs) != len(opening.definition.inputs):
        later, first = len(main.definition.inputs), len(opening.definition.inputs)
        diagnostics.error("RG044", f"block `{main.name}` takes {later} input{'s' * (later != 1)} but its "
                          f"`first_block` `{opening.name}` takes {first}: repetitions take the inputs of the first",
                          scope.source.span(path + ("repeat",)),
                          help="repetitions chain through their first input and share the others: give both "
                               "blocks the same inputs", notes=defined_here(main))
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
    allow: frozenset[str] = frozenset()   # the `allow` of the block calls around it


def split_item(ref: str) -> tuple[str, int | None]:
    """`parts:1` -> (`parts`, 1), output 1 of the node `parts`; any other reference -> (ref, None)."""
    base, sep, item = ref.rpartition(":")
    if sep and base and item.isdigit():
        return base, int(item)
    return ref, None


def _qualify(ref: str, frame: "_Frame") -> str:
    """A reference as written in a scope -> its qualified name (`parts:1` keeps its output number)."""
    if ":" not in ref:   # the common case, per node: no output number
        qualified = frame.refs.get(ref)
        return qualified if qualified is not None else frame.prefix + ref
    base, item = split_item(ref)
    qualified = frame.refs.get(base, frame.prefix + base)
    return qualified if item is None else f"{qualified}:{item}"


def _has_expression(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    for key, value in raw.items():
        if key in ("op", "inputs", "when", "otherwise", "key"):
            continue
        if isinstance(value, str) or (isinstance(value, list) and any(isinstance(v, str) for v in value)):
            return True
    return False


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
        base = split_item(name)[0] if ":" in name else name   # `shape(parts:1)`, `shape(backbone:1)`
        if base not in refs and base not in self.nodes:
            known = list(refs) + list(self.nodes)
            raise ExprError(f"`shape({name})`: no node or input `{name}` here", "name", name=name,
                            help=did_you_mean(name, known) or "names here: " + ", ".join(f"`{k}`" for k in known))
        qualified = refs.get(base, self.prefix + base)
        ref = qualified if base is name else f"{qualified}:{name.rpartition(':')[2]}"
        outputs = expander.several.get(qualified)
        if outputs is not None and base is name:
            raise ExprError(f"`shape({name})`: `{name}` is a block call with {len(outputs)} outputs",
                            help=f"read one of them: `shape({name}:0)` to `shape({name}:{len(outputs) - 1})`")
        if outputs is not None and int(name.rpartition(':')[2]) >= len(outputs):
            raise ExprError(f"`shape({name})`: `{base}` has {len(outputs)} outputs",
                            help=f"outputs are numbered from 0 to {len(outputs) - 1}")
        ref = expander._resolve_item(ref)
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
        self.several_outputs: dict[str, list] = {}           # the outputs of chunk and split nodes, by name
        self.left_out: dict[str, tuple[SourceFile, KeyPath, tuple[Note, ...]]] = {}   # `when` false: where
        self.computed_keys: set[str] = set()   # op nodes whose `key` had `{expression}` parts
        self.conditional_keys: set[str] = set()   # op nodes with a `key` and a `when` that may be false
        # per node entry of a definition (by id): the entry, its source, its raw mapping, and whether that has
        # expressions; the same for every instance of the definition
        self.entries: dict[int, tuple[Any, SourceFile, Any, bool]] = {}
        self.deferred_calls: set[str] = set()   # expanded block calls whose `key` is computed or conditional
        self.call_spans: dict[str, tuple[Span | None, tuple[Note, ...]]] = {}   # each expanded call: where
        self.shape_causes: dict[str, tuple[str, str]] = {}     # a None shape's cause: the node whose rule failed
        # the block calls with several outputs (`output: [c3, c4, c5]`): call -> its outputs' references, read as
        # `call:k` (each also in `aliases`); a reference to the call alone is RG085
        self.several: dict[str, list[str]] = {}
        self.call_sites: dict[str, tuple[SourceFile, KeyPath, tuple[Note, ...]]] = {}   # each expanded call

    def names(self, values: Mapping[str, Any], prefix: str, refs: Mapping[str, str], nodes: Mapping[str, Any]
              ) -> Names:
        """An expression scope whose `shape(name)` reads the nodes and inputs of the scope at `prefix`."""
        return Names(values, _ShapeLookup(self, prefix, refs, nodes))

    def _resolve_item(self, ref: str) -> str:
        if ref in self.aliases:   # a block call's output, `call:k` included
            return self.resolve(ref)
        base, item = split_item(ref)
        return self.resolve(ref) if item is None else f"{self._resolve_item(base)}:{item}"

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
            base, item = split_item(name)
            if item is not None:   # output `item` of a node with several outputs
                if base not in self.shapes and name not in busy:
                    busy.add(name)
                    pending.append(base)
                    continue
                outputs = self.several_outputs.get(base)
                self.shapes[name] = outputs[item] if outputs is not None and item < len(outputs) else None
                pending.pop()
                continue
            node = self.graph.nodes.get(name)
            if node is None or node.is_input or node.op is None:
                self.shapes[name] = node.shape if node is not None and node.is_input else None
                pending.pop()
                continue
            inputs = [self._resolve_item(i) for i in node.inputs]
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
                    meta: dict = {}
                    self.shapes[name] = tuple(node.op.infer_shape(_counted(node, shapes), meta))
                    if "outputs" in meta:
                        self.several_outputs[name] = meta["outputs"]
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
            if what is None and exc.kind == "name" and isinstance(value, str) and value.strip() == exc.name \
                    and nearest(exc.name, scope) is None:
                # A bare word (`with: {shortcut: pad}`) that is no name here, nor close to one, is that text,
                # as a YAML value is; where it is used, the attribute checks it (`shortcut` lists its choices)
                return exc.name
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
        base, prefix = frame.base, frame.prefix
        for name, entry in nodes.items():
            path = base + ("nodes", name)
            refs = entry.inputs
            if refs is None:
                takes_inputs = getattr(type(entry), "max_inputs", 1) != 0   # a `parameter` reads nothing
                inputs = [previous] if previous is not None and takes_inputs else []
            else:
                inputs = [_qualify(ref, frame) for ref in ((refs,) if isinstance(refs, str) else refs)]
            qualified = prefix + name
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
            if type(entry) is BlockCall:   # `type`: isinstance of a pydantic class is slower, and this is per node
                if _deferred_key(entry):
                    self.deferred_calls.add(qualified)
                self.aliases[qualified] = self.expand_call(name, entry, path, frame, inputs)
            else:
                self.add_op(qualified, entry, path, frame, inputs)
            previous = qualified
        return previous

    def add_op(self, qualified: str, entry: Op, path: KeyPath, frame: _Frame, inputs: list[str]) -> None:
        graph = self.graph
        if len(graph.nodes) >= MAX_NODES:
            self.diagnostics.error("RG035", f"the network expands to more than {MAX_NODES:,} nodes",
                                   frame.source.span(path, key=True), notes=frame.notes,
                                   help="check `repeat` counts; resgraph refuses nets this large")
            raise _Abort
        op = entry
        known = self.entries.get(id(entry))
        if known is None or known[0] is not entry or known[1] is not frame.source:
            raw = value_at(frame.source.data, path)
            known = self.entries[id(entry)] = (entry, frame.source, raw, _has_expression(raw))
        failed = False
        if known[3]:
            raw = known[2]
            try:
                op = type(entry).model_validate(raw, context={"scope": frame.values})
            except ValidationError as exc:
                report_validation_error(exc, frame.source, path, self.diagnostics, frame.notes,
                                        root_model=type(entry))
                op, failed = None, True
        if op is not None and op.key is not None:
            if "{" in op.key:
                op = op.model_copy(update={"key": self.evaluate_key(op.key, frame, path)})
                self.computed_keys.add(qualified)
            if op.when not in (None, True):
                self.conditional_keys.add(qualified)
        graph.add(Node(qualified, op, inputs, frame.source, path, frame.notes, frame.prefix, frame.scopes,
                       failed=failed, allow=frame.allow | frozenset(entry.allow) if entry.allow else frame.allow))

    def expand_call(self, name: str, call: BlockCall, path: KeyPath, frame: _Frame, inputs: list[str]) -> str:
        main = self.program.blocks[call.block]
        opening = self.program.blocks[call.first_block] if call.first_block else main
        call_span = frame.source.span(path, key=True)
        self.call_spans[frame.prefix + name] = (call_span, frame.notes)
        self.call_sites[frame.prefix + name] = (frame.source, path, frame.notes)
        module_key = self.evaluate_key(call.key, frame, path) if call.key is not None and "{" in call.key \
            else call.key
        repeat, start = call.repeat, call.start
        if isinstance(repeat, str) or isinstance(start, str):   # expressions over the caller's params
            try:
                evaluated = BlockCall.model_validate(value_at(frame.source.data, path),
                                                     context={"scope": frame.values})
            except ValidationError as exc:
                report_validation_error(exc, frame.source, path, self.diagnostics, frame.notes,
                                        root_model=BlockCall)
                raise _Abort from None
            repeat, start = evaluated.repeat, evaluated.start
        count = repeat or 1
        several = next((block for block in (opening, main) if isinstance(block.definition.output, list)), None)
        if count > 1 and several is not None:
            outputs = len(several.definition.output)
            self.diagnostics.error("RG055", f"`{frame.prefix + name}` repeats block `{several.name}`, which has "
                                   f"{outputs} output{'s' * (outputs != 1)}: a chain of repetitions has one",
                                   frame.source.span(path + ("repeat",)), notes=frame.notes +
                                   (Note(f"block `{several.name}` lists its outputs here",
                                         several.source.span(several.path + ("output",))),),
                                   help="call a block with several outputs once (no `repeat`, or `repeat: 1`); "
                                        "to chain it, call it several times under other names, each reading "
                                        "one output of the one before (`inputs: previous:0`)")
            raise _Abort
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
        # What every instance shares, worked out once per call: the blocks' literal params, the call's path
        # and scopes, its `allow`
        literals = {id(block): {key: _literal(value) for key, value in block.definition.params.items()}
                    for block in (opening, main)}
        called = frame.prefix + name
        outer_scopes = frame.scopes + ((called,) if repeat is not None else ())
        allow = frame.allow | frozenset(call.allow) if call.allow else frame.allow
        instances = self.graph.instances
        for index in range(count):
            block = opening if index == 0 else main
            definition = block.definition
            if repeat is None:
                instance = called
            else:
                number = call.names.replace("{i}", str(start + index)) if call.names else str(start + index)
                instance = f"{called}.{number}"
            notes = frame.notes + (Note(f"in `{instance}`, an instance of block `{block.name}` made here", call_span),)
            refs = dict(zip(definition.inputs, inputs))
            values = self.names(literals[id(block)], instance + ".", refs, definition.nodes)
            values.update(with_values)
            if index == 0:
                values.update(first_values)
            values["index"] = index
            for key, expression in definition.let.items():
                values[key] = self._evaluate(expression, values, block.source, block.path + ("let", key), notes)
            if definition.require:
                self.check_requirements(definition.require, values, block.source, block.path, notes)
            child = _Frame(instance + ".", refs, values, block.source, block.path, notes, outer_scopes + (instance,),
                           allow)
            last = self.expand_nodes(definition.nodes, child, refs[definition.inputs[0]])
            outputs = None
            if isinstance(definition.output, list):
                outputs = [self.block_output(entry, position, block, child) for position, entry
                           in enumerate(definition.output)]
                output = outputs[0]
            elif definition.output:
                output = self.block_output(definition.output, None, block, child)
            else:
                output = last
            instances[instance] = Instance(instance, block.name, called, index if repeat is not None else None,
                                           values, list(inputs), output, module_key, outputs)
            inputs = [output] + inputs[1:]   # the chain, and the inputs every instance shares
        if outputs is not None:   # read as `call:k`; never repeated (RG055), so these are its one instance's
            self.several[called] = outputs
            for position, reference in enumerate(outputs):
                self.aliases[f"{called}:{position}"] = reference
        return output

    def block_output(self, entry: str, position: int | None, block: BlockSource, frame: _Frame) -> str:
        """The qualified reference of one entry of a block's `output` in an instance: a node or input of the
        block, or `call:k`, output k of one of its block calls with several outputs (RG056, RG084, RG085)."""
        base, item = split_item(entry)
        qualified = _qualify(entry, frame)
        if item is None and qualified not in self.several:
            return qualified
        span = block.source.span(block.path + (("output",) if position is None else ("output", position)))
        if item is None:
            count = len(self.several[qualified])
            self.diagnostics.error("RG085", f"block `{block.name}` returns `{entry}`, which has {count} outputs",
                                   span, notes=frame.notes, help=f"return one of them: `{entry}:0` to "
                                   f"`{entry}:{count - 1}`, or list several: `output: [{entry}:0, {entry}:1]`")
            raise _Abort
        outputs = self.several.get(_qualify(base, frame))
        if outputs is None:
            self.diagnostics.error("RG056", f"block `{block.name}` returns `{entry}`, but `{base}` is not a block "
                                   "call with several outputs", span, notes=frame.notes,
                                   help=f"a block returns its nodes, and `call:k` of its calls with several outputs; "
                                        f"to return an output of another node, list a node that reads it, e.g. "
                                        f"`{base}_{item}: {{op: identity, inputs: \"{entry}\"}}`")
            raise _Abort
        if item >= len(outputs):
            self.diagnostics.error("RG084", f"block `{block.name}` returns `{entry}`, but `{base}` has "
                                   f"{len(outputs)} output{'s' * (len(outputs) != 1)}", span, notes=frame.notes,
                                   help=f"outputs are numbered from 0 to {len(outputs) - 1}")
            raise _Abort
        return qualified

    def evaluate_key(self, template: str, frame: _Frame, path: KeyPath) -> str:
        """A computed key (`{start + 2}`, `stage{index}.conv`): each `{expression}` evaluated in the node's scope
        to a whole number >= 0 or a name, the result a module path (RG047)."""
        span = frame.source.span(path + ("key",))

        def part(match: re.Match) -> str:
            value = self._evaluate(match.group(1), frame.values, frame.source, path + ("key",), frame.notes,
                                   what=f"part `{{{match.group(1)}}}` of `key`")
            if isinstance(value, bool) or not (isinstance(value, int) and value >= 0 or isinstance(value, str)):
                self.diagnostics.error("RG047", f"`{{{match.group(1)}}}` in `key: {template}` is {_shown(value)}, "
                                       "not a whole number >= 0 or a name", span, notes=frame.notes,
                                       help="compute a module index, e.g. `key: \"{start + 2 * index}\"`")
                raise _Abort
            return str(value)

        key = re.sub(r"\{([^{}]+)\}", part, template)
        if not re.fullmatch(KEY_PATTERN, key):
            self.diagnostics.error("RG047", f"`key: {template}` gives `{key}`, which is not a module path", span,
                                   notes=frame.notes, help="a module path is names of letters, digits, `_` and "
                                   "`-`, joined by dots: make each `{expression}` a number or such a name")
            raise _Abort
        return key

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

    def resolve_reference(self, ref: str, consumer: Node, position: int, items: dict[str, list[Node]]) -> str:
        """`resolve`, and for a reference `name:k` to output k of a node, the `OutputItem` node that reads it
        (made once per scope and reference, and placed before its first reader)."""
        base, item = split_item(ref)
        if base in self.several:   # a block call with several outputs: `call:k` is a node of its instance
            raw = value_at(consumer.source.data, consumer.path) if consumer.source is not None else None
            self.check_item(ref, consumer.prefix, consumer.input_span(position), consumer.notes,
                            f"`{consumer.name}`", implicit=not (isinstance(raw, dict) and "inputs" in raw))
            return self.resolve(ref)
        if item is None:
            return self.resolve(ref)
        producer = self.resolve_reference(base, consumer, position, items)
        local = producer[len(consumer.prefix):] if producer.startswith(consumer.prefix) else producer
        name = f"{consumer.prefix}{local}:{item}"
        if name not in self.graph.nodes and not any(n.name == name for made in items.values() for n in made):
            from .ops.layout import OutputItem

            raw = value_at(consumer.source.data, consumer.path) if consumer.source is not None else None
            listed = isinstance(raw, dict) and isinstance(raw.get("inputs"), list)
            path = consumer.path + (("inputs", position) if listed else ("inputs",))
            items.setdefault(consumer.name, []).append(
                Node(name, OutputItem(op="output_item", index=item), [producer], consumer.source, path,
                     consumer.notes, consumer.prefix, consumer.scopes))
        return name

    def check_item(self, ref: str, prefix: str, span: Span | None, notes: tuple[Note, ...], reader: str,
                   implicit: bool = False) -> None:
        """A reference to a block call with several outputs reads one of them, `call:k` with k in range (RG084,
        RG085); `reader` is who reads it, for the message."""
        base, item = split_item(ref)
        count = len(self.several[base])
        local = base[len(prefix):] if base.startswith(prefix) else base
        if item is None:
            self.diagnostics.error("RG085", f"{reader} reads block call `{base}`, which has {count} outputs", span,
                                   notes=notes, help=f"read one of them: `{local}:0` to `{local}:{count - 1}`" +
                                   (", named in `inputs` (a node does not read one implicitly)" if implicit else ""))
            raise _Abort
        if item >= count:
            self.diagnostics.error("RG084", f"`{local}:{item}` reads output {item}, but block call `{base}` has "
                                   f"{count} output{'s' * (count != 1)}", span, notes=notes,
                                   help=f"outputs are numbered from 0 to {count - 1}")
            raise _Abort

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


def _given(key: str, value: Any, default: Any, source: SourceFile, diagnostics: Diagnostics) -> Any:
    """A param value set from outside the spec (`--set`, `params=`): for a list param, `2,2,2` is the list
    `[2, 2, 2]`, as `[2,2,2]` is; any other value that is not a list is refused here, not where it is indexed."""
    if not isinstance(default, list) or isinstance(value, (list, tuple)):
        return value
    if isinstance(value, str) and "," in value and all(item.strip() for item in value.split(",")):
        from .source import parse_value

        try:
            return [parse_value(item) for item in value.split(",")]
        except ValueError:
            pass
    shown = "[" + ", ".join(_shown(v) for v in default) + "]"
    diagnostics.error("RG012", f"`{key}` is set to {_shown(value)} from outside the spec (`--set` or `params=`), but "
                      f"it is a list (its default is `{shown}`)", source.span(("params", key)),
                      help=f"give a list: `--set {key}=[{','.join(_shown(v) for v in default)}]` on the command line, "
                           f"`params={{'{key}': [...]}}` in Python")
    return value


def _output_item(name: str, span: Span | None, source: SourceFile, path: KeyPath, graph: Graph,
                 expander: _Expander) -> str:
    """A network output `name:k`: output k of a block call with several outputs (its node), or of a node with
    several outputs (an output-item node, made here once, after every other node)."""
    base, item = split_item(name)
    if base in expander.several:
        expander.check_item(name, "", span, (), f"output `{name}`")
        return expander.resolve(name)
    if name in graph.nodes:   # already made for another reader at the top level
        return name
    from .ops.layout import OutputItem

    graph.add(Node(name, OutputItem(op="output_item", index=item), [expander.resolve(base)], source, path))
    return name


def _inner_output(path: str, graph: Graph, expander: _Expander) -> str | None:
    """The node a dotted output path names: a node (`layer1.0.relu2`), a block instance (`layer1.0`, its output)
    or a nested call; None where there is none."""
    try:
        if path in graph.nodes and not graph.nodes[path].is_input:
            return path
        if path in expander.aliases:
            return expander.resolve(path)
    except _Abort:
        return None
    if path in graph.instances:
        return graph.instances[path].output
    return None


def _inner_output_help(path: str, graph: Graph, top_level: set[str]) -> tuple[str, str | None]:
    """Where a dotted path stops matching, what there is at that level; and the likely path, if any."""
    parts = path.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        scope = ".".join(parts[:depth])
        if scope not in graph.instances and not any(i.call == scope for i in graph.instances.values()):
            if scope in graph.nodes:
                return f"`{scope}` is a node, not a block call: there is nothing inside it", None
            continue
        prefix = scope + "."
        children = list(dict.fromkeys(name[len(prefix):].split(".")[0]
                                      for name in list(graph.instances) + list(graph.nodes) if name.startswith(prefix)))
        what = f"block instance `{scope}` (block `{graph.instances[scope].block}`)" if scope in graph.instances \
            else f"`{scope}` (a repeated call: its instances are numbered)"
        guess = nearest(parts[depth], children)
        listed = ", ".join(f"`{c}`" for c in children[:12]) + (", ..." if len(children) > 12 else "")
        fixed = ".".join(parts[:depth] + [guess] + parts[depth + 1:]) if guess else None
        return (f"did you mean `{fixed}`? " if fixed else "") + f"{what} has {listed}", fixed
    guess = nearest(parts[0], top_level)
    fixed = ".".join([guess] + parts[1:]) if guess else None
    return (f"did you mean `{fixed}`? " if fixed else "") + \
        f"a dotted path starts at a top-level block call; `{parts[0]}` is not one", fixed


def _check_expanded_keys(graph: Graph, expander: _Expander, diagnostics: Diagnostics) -> None:
    """`_check_keys` for the keys it leaves to expansion (computed, or on conditional nodes): among the nodes
    and block calls that are there, two module paths of one scope may not clash (RG086)."""
    deferred = expander.computed_keys | expander.conditional_keys | expander.deferred_calls
    if not deferred:
        return
    scopes: dict[str, list[tuple[str, str, Span | None, tuple[Note, ...]]]] = {}   # scope -> (path, owner, ...)
    for node in graph:
        if node.op is not None and node.op.key is not None:
            scopes.setdefault(node.prefix, []).append((node.module_name, node.name, node.attr_span("key"), node.notes))
    calls: dict[str, Instance] = {}
    for instance in graph.instances.values():
        calls.setdefault(instance.call, instance)
    for call, instance in calls.items():
        scope, _, local = call.rpartition(".")
        span, notes = expander.call_spans.get(call, (None, ()))
        scopes.setdefault(scope + "." if scope else "", []).append((instance.key or local, call, span, notes))
    for claims in scopes.values():   # in O(paths x depth): a scope may hold thousands of keyed nodes
        taken: dict[str, tuple[str, str]] = {}    # a module path -> (its path, its owner)
        inside: dict[str, tuple[str, str]] = {}   # each container of a taken path -> (that path, its owner)
        for path, owner, span, notes in claims:
            parts = path.split(".")
            containers = [".".join(parts[:i]) for i in range(1, len(parts))]
            clash = taken.get(path) or inside.get(path) or next((taken[c] for c in containers if c in taken), None)
            if clash is not None and (owner in deferred or clash[1] in deferred):   # two fixed keys: said already
                diagnostics.error("RG086", f"the module path `{path}` of `{owner}` clashes with the module path "
                                  f"`{clash[0]}` of `{clash[1]}`", span, notes=notes,
                                  help="give each node its own module path; a path cannot both hold a module "
                                       "and be another's container (nodes with a `when` may share one only if "
                                       "they are never there together)")
                continue
            taken.setdefault(path, (path, owner))
            for container in containers:
                inside.setdefault(container, (path, owner))


def _insert_items(graph: Graph, items: dict[str, list[Node]]) -> None:
    """Put each output-item node just before the node whose reference made it, and renumber."""
    nodes = list(graph.nodes.values())
    graph.nodes = {}
    for node in nodes:
        for made in items.get(node.name, ()):
            graph.add(made)
        graph.add(node)


def _input_overrides(declared: list, shapes: Mapping[str, Sequence[int]], source: SourceFile,
                     diagnostics: Diagnostics) -> dict[str, tuple[int, ...]]:
    """Check `--input` shapes against the declared inputs (RG077): each names an input, with as many dims."""
    found: dict[str, tuple[int, ...]] = {}
    names = [name for name, _, _, _ in declared]
    listed = ", ".join(f"`{name}`" for name in names)
    for name, shape in shapes.items():
        given = ",".join(str(d) for d in shape)
        if not name and len(declared) != 1:
            diagnostics.error("RG077", f"`--input {given}` gives one shape, but the network has {len(declared)} "
                              f"inputs ({listed})", source.span(("input",), key=True),
                              help="name the input each shape is for, e.g. " +
                                   " ".join(f"`--input {n}={given}`" for n in names[:2]))
            continue
        target = name or names[0]
        if target not in names:
            diagnostics.error("RG077", f"`--input {name}={given}`: the network has no input `{name}`",
                              source.span(("input",), key=True),
                              help=did_you_mean(name, names) or f"its inputs: {listed}")
            continue
        _, dims, _, path = declared[names.index(target)]
        if isinstance(dims, list) and len(dims) != len(shape):
            diagnostics.error("RG077", f"`--input {given}` gives {len(shape)} dimension{'s' * (len(shape) != 1)} "
                              f"for `{target}`, but the spec declares {len(dims)}", source.span(path),
                              help="give one size per declared dimension (the batch is implicit), e.g. `--input " +
                                   ",".join(str(d) for d in dims) + "`")
            continue
        found[target] = tuple(int(d) for d in shape)
    return found


def expand_blocks(program: Program, diagnostics: Diagnostics, params: Mapping[str, Any] | None = None,
                  input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph | None:
    """Check every definition, then instantiate the network into a flat graph.

    Requires a parsed program; ensures every node input names an existing node. Returns None
    (with diagnostics) when the spec has errors, or when the file is a block library only.
    `input_shapes` replaces declared input shapes (`--input`): input name -> shape, `""` for the one input.
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
            values[key] = _literal(_given(key, value, spec.params[key], source, diagnostics))
    graph = Graph(spec.name or Path(source.path).stem, params=dict(values))
    expander = _Expander(program, graph, diagnostics)
    if spec.nodes and spec.input is None:
        diagnostics.error("RG010", "the network has nodes but no `input`", source.span(("nodes",), key=True),
                          help="declare the per-sample input shape, e.g. `input: [3, 224, 224]`")
    if spec.outputs is not None and not spec.nodes:
        diagnostics.error("RG010", "`outputs` names nodes but the spec has no `nodes`",
                          source.span(("outputs",), key=True))
    if diagnostics.has_errors or not spec.nodes:
        return None

    declared = input_declarations(spec.input)
    overrides = _input_overrides(declared, input_shapes or {}, source, diagnostics)
    for name, dims, dtype, path in declared:
        if name in overrides:
            graph.add(Node(name, None, [], source, path, shape=overrides[name], dtype=dtype))
            graph.inputs.append(name)
            continue
        try:
            shape = tuple(_DIMS.validate_python(dims, context={"scope": values}))
        except ValidationError as exc:
            report_validation_error(exc, source, path, diagnostics, root_model=SpecFile)
            continue
        graph.add(Node(name, None, [], source, path, shape=shape, dtype=dtype))
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
        items: dict[str, list[Node]] = {}   # consumer -> the output-item nodes made for its references
        aliases = expander.aliases
        several = expander.several
        for name, (source, path, notes) in expander.left_out.items() if several else ():
            target = aliases[name] if name in aliases else None
            if target in several:   # what stands for a left-out node is one tensor
                given = "otherwise" in value_at(source.data, path[:-1])
                diagnostics.error("RG085", f"`{name}` is left out (`when` is false) and block call `{target}`, "
                                  f"which has {len(several[target])} outputs, stands for it",
                                  source.span(path[:-1] + ("otherwise",) if given else path), notes=notes,
                                  help="let a node with one output stand for it, e.g. one that reads "
                                       f"`{target.rpartition('.')[2]}:0`")
                return None
        for instance in graph.instances.values() if several else ():   # checked at the call, not inside it
            for position, ref in enumerate(instance.inputs):
                if split_item(ref)[0] in several:
                    source, path, notes = expander.call_sites[instance.call]
                    raw = value_at(source.data, path)
                    listed = isinstance(raw, dict) and raw.get("inputs")
                    span = source.span(path + (("inputs", position) if isinstance(listed, list) else ("inputs",))) \
                        if listed else source.span(path, key=True)
                    expander.check_item(ref, instance.call.rpartition(".")[0] + "." if "." in instance.call else "",
                                        span, notes, f"block call `{instance.call}`", implicit=not listed)
        for node in graph:
            for ref in node.inputs:
                if ref in aliases or ":" in ref:
                    break
            else:
                continue   # the common case: every input already names a node
            node.inputs = [expander.resolve_reference(ref, node, position, items)
                           for position, ref in enumerate(node.inputs)]
        for instance in graph.instances.values():
            instance.inputs = [expander.resolve(ref) for ref in instance.inputs]
            instance.output = expander.resolve(instance.output)
            if instance.outputs is not None:
                instance.outputs = [expander.resolve(ref) for ref in instance.outputs]
    except _Abort:
        return None
    if items:
        _insert_items(graph, items)
    _check_expanded_keys(graph, expander, diagnostics)
    outputs = spec.outputs if spec.outputs is not None else last
    names = [outputs] if isinstance(outputs, str) else list(outputs.values()) if isinstance(outputs, dict) \
        else list(outputs)
    keys = list(outputs) if isinstance(outputs, dict) else []
    if isinstance(outputs, dict) and not _output_keys_valid(spec, source, diagnostics):
        return None
    known = set(spec.nodes) | set(graph.inputs)
    for position, name in enumerate(names):
        out_path = ("outputs", keys[position]) if keys else ("outputs", position) \
            if isinstance(spec.outputs, list) else ("outputs",)
        span = source.span(out_path)
        base, item = split_item(name)
        if item is not None and base in known:
            try:
                graph.outputs.append(_output_item(name, span, source, out_path, graph, expander))
            except _Abort:
                return None
            graph.output_spans.append(span)
            continue
        if name in expander.several or (name in graph.instances and graph.instances[name].outputs is not None):
            count = len(expander.several[name] if name in expander.several else graph.instances[name].outputs)
            diagnostics.error("RG085", f"output `{name}` is a block call with {count} outputs", span,
                              help=f"return one of them: `{name}:0` to `{name}:{count - 1}`, or list several")
            continue
        if name not in known and "." in name:
            inner = _inner_output(name, graph, expander)
            if inner is None:
                help_text, fixed = _inner_output_help(name, graph, known)
                diagnostics.error("RG040", f"unknown output `{name}`: the network has no node at that path", span,
                                  help=help_text, fixes=replacing(source.text, span, name, fixed))
            else:
                graph.outputs.append(inner)
                graph.output_spans.append(span)
            continue
        if name not in known:
            diagnostics.error("RG040", f"unknown output `{name}`", span,
                              help=did_you_mean(name, known) or "outputs name top-level nodes or block calls, or "
                              "nodes inside them by their dotted path (`layer1.0.relu2`)",
                              fixes=replacing(source.text, span, name, nearest(name, known)))
            continue
        try:
            graph.outputs.append(expander.resolve(name))
        except _Abort:
            return None
        graph.output_spans.append(span)
    training = spec.training_outputs
    for position, name in enumerate([training] if isinstance(training, str) else list(training or ())):
        span = source.span(("training_outputs", position) if isinstance(training, list) else ("training_outputs",))
        if name not in known:
            diagnostics.error("RG040", f"unknown training output `{name}`", span,
                              help=did_you_mean(name, known) or "training outputs name top-level nodes or block calls")
            continue
        if name in expander.left_out:   # an auxiliary head switched off (`when`): not returned, as torchvision's
            continue                    # Inception v3 with aux_logits=False returns the logits alone
        if name in expander.several:
            count = len(expander.several[name])
            diagnostics.error("RG085", f"training output `{name}` is a block call with {count} outputs", span,
                              help="return its outputs in `outputs` (`outputs: {name}:0`), or return a node that "
                                   "reads one of them")
            continue
        try:
            resolved = expander.resolve(name)
        except _Abort:
            return None
        if resolved in graph.outputs or resolved in graph.training_outputs:
            diagnostics.error("RG094", f"`{name}` is returned twice: it is already "
                              + ("an output" if resolved in graph.outputs else "a training output"), span,
                              help="a node is either returned always (`outputs`) or in training only "
                                   "(`training_outputs`), once")
            continue
        graph.training_outputs.append(resolved)
    graph.output_keys = keys
    # The instances' `shape(name)` lookups keep the expander, which kept the graph: a cycle, so a dropped graph
    # waited for the cyclic garbage collector (a traversal of all of it). Held weakly, it is freed at once.
    expander.graph = weakref.proxy(graph)
    return None if diagnostics.has_errors else graph


# a name, or a number as torchvision's detection backbones key their feature maps ('0' ... '3', 'pool')
OUTPUT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


def _output_keys_valid(spec, source, diagnostics: Diagnostics) -> bool:
    """A mapping `outputs` (the forward returns a dict): at least one entry, each key a name (it is the dict's
    key, the output's name in ONNX and in the summary), and no `training_outputs` beside it (RG095)."""
    ok = True
    if not spec.outputs:
        diagnostics.error("RG095", "`outputs` is an empty mapping: the network would return nothing",
                          source.span(("outputs",)),
                          help="map each returned name to a node, e.g. `outputs: {out: classifier, aux: aux_classifier}`")
        return False
    for key in spec.outputs:
        if not OUTPUT_KEY.fullmatch(key):
            fixed = re.sub(r"\W", "_", key)
            fixed = fixed if OUTPUT_KEY.fullmatch(fixed) else "_" + fixed
            span = source.span(("outputs", key), key=True)
            diagnostics.error("RG095", f"output key `{key}` is not a name", span,
                              help=f"keys of `outputs` are letters, digits and `_`, not starting with a digit, "
                                   f"or numbers, e.g. `{fixed}`", fixes=replacing(source.text, span, key, fixed))
            ok = False
    if spec.training_outputs is not None:
        diagnostics.error("RG095", "`training_outputs` cannot be used with a mapping `outputs`",
                          source.span(("training_outputs",), key=True),
                          help="return the auxiliary heads in the mapping itself (`aux: aux_classifier`, as "
                               "torchvision's segmentation models do), or list `outputs` as names")
        ok = False
    return ok

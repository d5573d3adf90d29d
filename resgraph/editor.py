"""What an editor asks of an analysed spec: what is at a position, hovers, definitions, references,
completions, the symbol tree and quick fixes, in resgraph's own terms (spans, markdown, names).

`resgraph.lsp` speaks the protocol; this module knows the language. It reads the results of the
static passes (`resgraph.run_passes`) and never re-reads a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .diagnostics import Span
from .expand import BlockSource, Program, _identity, split_item
from .graph import Graph, Instance, Node
from .ops.base import fmt_shape
from .source import KeyPath, SourceFile, value_at
from .spec import BlockCall

MAX_ROWS = 8   # instances listed in a hover before "and N more"


@dataclass(frozen=True)
class Target:
    """What sits at a position: the key path in `source.data`, and whether the cursor is on a key."""

    source: SourceFile
    path: KeyPath
    on_key: bool


@dataclass
class Completion:
    label: str
    kind: str            # "op", "attribute", "block", "node", "param", "field"
    detail: str = ""
    documentation: str = ""
    insert: str | None = None


@dataclass
class Symbol:
    name: str
    kind: str            # "node", "block", "call", "param", "section"
    detail: str
    span: Span
    selection: Span
    children: list["Symbol"] = field(default_factory=list)


def _contains(span: Span, line: int, col: int) -> bool:
    """1-based line and column; the end is exclusive but a cursor just after a word still counts."""
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)


def locate(source: SourceFile, line: int, col: int) -> Target | None:
    """The innermost key or value at 1-based (line, col)."""
    for path, span in source.key_spans.items():
        if span.line == line and span.col <= col <= span.end_col:
            return Target(source, path, True)
    best: tuple | None = None
    for path, span in source.spans.items():
        if path and _contains(span, line, col):
            rank = (span.line, span.col, len(path))
            if best is None or rank > best[0]:
                best = (rank, path)
    return Target(source, best[1], False) if best else None


def node_path(path: KeyPath) -> KeyPath | None:
    """The path of the node mapping that `path` is inside (`nodes.x` or `blocks.b.nodes.x`)."""
    for position in range(len(path) - 1):
        if path[position] == "nodes" and (position == 0 or (position == 2 and path[0] == "blocks")):
            return path[:position + 2]
    return None


def scope_base(path: KeyPath) -> KeyPath:
    """The mapping that holds the `nodes` this path is in: () for the network, `blocks.b` for a block."""
    return tuple(path[:2]) if len(path) >= 2 and path[0] == "blocks" else ()


def _fmt(shape: Any) -> str:
    return "?" if shape is None else fmt_shape(shape)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def _where(source: SourceFile, path: KeyPath, key: bool = True) -> str:
    span = source.span(path, key=key)
    return f"{Path(source.path).name}:{span.line}" if span else Path(source.path).name


class SpecIndex:
    """An analysed spec, indexed by source location: graph nodes and block instances per definition."""

    def __init__(self, program: Program, graph: Graph | None) -> None:
        self.program, self.graph = program, graph
        self.nodes: dict[tuple[str, KeyPath], list[Node]] = {}
        self.calls: dict[tuple[str, KeyPath], list[Instance]] = {}
        self.sources: dict[str, SourceFile] = {program.source.path: program.source}
        for block in program.blocks.values():
            self.sources.setdefault(block.source.path, block.source)
        for extending in program.extended_by:   # a spec that `extends` another: the file being edited
            self.sources[extending.path] = extending
        if graph is None:
            return
        for node in graph:
            if node.source is not None:
                self.nodes.setdefault((node.source.path, tuple(node.path)), []).append(node)
        for instance in graph.instances.values():
            where = self.call_site(instance)
            if where is not None:
                self.calls.setdefault(where, []).append(instance)

    def call_site(self, instance: Instance) -> tuple[str, KeyPath] | None:
        parent, _, local = instance.call.rpartition(".")
        if not parent:
            return self.program.source.path, ("nodes", local)
        owner = self.graph.instances.get(parent) if self.graph else None
        block = self.program.blocks.get(owner.block) if owner else None
        return (block.source.path, block.path + ("nodes", local)) if block else None

    def source_for(self, path: str) -> SourceFile | None:
        return self.sources.get(path) or next(
            (s for p, s in self.sources.items() if _identity(p) == _identity(path)), None)

    # ---- hover --------------------------------------------------------------------------------

    def hover(self, target: Target) -> str | None:
        path, data = target.path, target.source.data
        if len(path) >= 2 and path[-2] == "params" and scope_base(path) == path[:-2]:
            return self._hover_param(target, path[-1])
        if len(path) >= 3 and path[-3] == "params" and scope_base(path) == path[:-3]:
            return self._hover_param(target, path[-2])
        ref = self.reference_at(target)
        if ref is not None:
            found = self.definition_of_reference(target, ref)
            if found is not None and found[0] is target.source and node_path(found[1]) == found[1]:
                return self._hover_node(target.source, found[1])
            return None
        if path and path[-1] in ("block", "first_block") and isinstance(value_at(data, path), str):
            block = self.program.blocks.get(value_at(data, path))
            return self._hover_block(block) if block else None
        if len(path) == 2 and path[0] == "blocks" and target.on_key:
            return self._hover_block(self.program.blocks.get(path[1]))
        entry = node_path(path)
        if entry is not None and len(path) == len(entry) + 1 and not target.on_key and path[-1] not in (
                "op", "block", "first_block", "inputs", "otherwise", "when"):
            found = self._hover_value(target.source, entry, path[-1])
            if found is not None:
                return found
        if entry is not None:
            return self._hover_node(target.source, entry)
        return None

    def _hover_value(self, source: SourceFile, entry: KeyPath, attr: str) -> str | None:
        """An attribute's value in each instance, and where it came from (as `resgraph explain`)."""
        from .provenance import Provenance, yaml_value

        nodes = [n for n in self.nodes.get((source.path, entry), []) if n.op is not None]
        if not nodes or attr not in type(nodes[0].op).model_fields:
            return None
        provenance = Provenance(self.program, self.graph)
        lines = [f"**`{attr}`** of `{entry[-1]}`", ""]
        groups: dict[str, tuple[Node, list[str], int]] = {}   # same value, same origin: one entry
        for node in nodes:
            origin = provenance.attribute(node, attr)
            key = yaml_value(getattr(node.op, attr)) + "\n".join(origin)
            first, _, count = groups.get(key, (node, origin, 0))
            groups[key] = (first, origin, count + 1)
        for position, (node, origin, count) in enumerate(groups.values()):
            if position == MAX_ROWS:
                lines.append(f"- … {len(groups) - MAX_ROWS} more")
                break
            alike = f" (and {count - 1} more alike)" if count > 1 else ""
            lines.append(f"- `{node.name}`{alike}: {yaml_value(getattr(node.op, attr))} — {origin[0]}")
            lines += ["  " * (1 + (len(line) - len(line.lstrip())) // 2) + "- " + line.strip() for line in origin[1:]]
        return "\n".join(lines)

    def _hover_block(self, block: BlockSource | None) -> str | None:
        if block is None:
            return None
        d = block.definition
        params = ", ".join(f"`{k}`" + (f" = {_shown(v)}" if v is not None else " (required)")
                           for k, v in d.params.items()) or "none"
        uses = [i for i in (self.graph.instances.values() if self.graph else ()) if i.block == block.name]
        lines = [f"**block `{block.name}`** ({_where(block.source, block.path)})", "",
                 (d.doc + "\n") if d.doc else "", f"params: {params}  ", f"{len(d.nodes)} nodes; "
                 f"{len(uses)} instance{'s' * (len(uses) != 1)} in this network"]
        return "\n".join(line for line in lines if line is not None)

    def _hover_param(self, target: Target, name: str) -> str:
        base = scope_base(target.path)
        if base:
            block = self.program.blocks.get(base[1])
            default = value_at(target.source.data, base + ("params", name))
            lines = [f"**param `{name}`** of block `{base[1]}`: default {_shown(default)}"
                     + (" (required)" if default is None else "")]
            if self.graph is not None and block is not None:
                values: dict[str, list[str]] = {}
                for instance in self.graph.instances.values():
                    if instance.block == block.name and name in instance.values:
                        values.setdefault(_shown(instance.values[name]), []).append(instance.name)
                for value, names in values.items():
                    shown = ", ".join(f"`{n}`" for n in names[:4]) + (f" and {len(names) - 4} more"
                                                                      if len(names) > 4 else "")
                    lines.append(f"- {value} in {shown}")
            return "\n".join(lines)
        value = self.program.spec.params.get(name)
        lines = [f"**param `{name}`** = {_shown(value)}"]
        origin = self.program.param_origins.get(name)
        if origin is not None:
            lines.append(f"set at {_where(origin[0], origin[1])}"
                         + (" (by `extends`)" if origin[0] is not self.program.source else ""))
            if origin[0].path != target.source.path:
                lines.append("this file's value is overridden there")
        return "\n\n".join(lines)

    def _hover_node(self, source: SourceFile, entry: KeyPath) -> str | None:
        raw = value_at(source.data, entry)
        name = entry[-1]
        if isinstance(raw, dict) and "block" in raw:
            instances = self.calls.get((source.path, entry), [])
            lines = [f"**`{name}`**: block `{raw['block']}`" + (f" × {raw['repeat']}" if "repeat" in raw else ""), ""]
            if instances:
                lines += ["| instance | block | output | params |", "|---|---|---|---|"]
                for instance in instances[:MAX_ROWS]:
                    params = sum(n.meta.get("params", 0) for n in self.graph
                                 if n.name.startswith(instance.name + "."))
                    shown = [self.graph.nodes.get(o) for o in instance.outputs or [instance.output]]
                    # a block with several outputs: each, as the caller reads it (`body:1 512x9x9`)
                    text = _fmt(shown[0].shape if shown[0] else None) if instance.outputs is None else ", ".join(
                        f"`{name}:{k}` {_fmt(out.shape if out else None)}" for k, out in enumerate(shown))
                    lines.append(f"| `{instance.name}` | `{instance.block}` | {text} | {params:,} |")
                if len(instances) > MAX_ROWS:
                    lines.append(f"\n… and {len(instances) - MAX_ROWS} more instances")
            else:
                lines.append("not instantiated (the spec has errors, or a `when` leaves it out)")
            return "\n".join(lines)
        nodes = self.nodes.get((source.path, entry), [])
        op = raw.get("op") if isinstance(raw, dict) else raw if isinstance(raw, str) else None
        if not nodes:
            if self.graph is None and not self.program.spec.nodes:
                return f"**`{name}`**: `{op}`\n\na block library: shapes are known in a spec that uses the block"
            if self.graph is None:
                return f"**`{name}`**: `{op}`" + "\n\nno shapes yet: the spec has errors"
            return f"**`{name}`**: `{op}`\n\nnot instantiated (a `when` leaves it out, or its block is unused)"
        first = nodes[0]
        label = first.op.label() if first.op is not None else str(op)
        lines = [f"**`{name}`**: `{label}`", ""]
        if len(nodes) == 1:
            node = first
            lines.append(f"`{node.name}`: output {_fmt(node.shape)}, {node.meta.get('params', 0):,} params, "
                         f"{node.meta.get('macs', 0):,} MACs")
            lines.append("\ninputs: " + ", ".join(f"`{i}`" for i in node.inputs))
        else:
            lines += ["| node | output | params | MACs |", "|---|---|---|---|"]
            for node in nodes[:MAX_ROWS]:
                lines.append(f"| `{node.name}` | {_fmt(node.shape)} | {node.meta.get('params', 0):,} | "
                             f"{node.meta.get('macs', 0):,} |")
            if len(nodes) > MAX_ROWS:
                lines.append(f"\n… and {len(nodes) - MAX_ROWS} more instances")
            total = sum(n.meta.get("params", 0) for n in nodes)
            lines.append(f"\n{len(nodes)} instances, {total:,} params in all")
        return "\n".join(lines)

    # ---- definitions and references -----------------------------------------------------------

    def reference_at(self, target: Target) -> str | None:
        """The node name a position refers to (in `inputs`, `otherwise`, `output`, `outputs`), if any."""
        if target.on_key:
            return None
        path = target.path
        value = value_at(target.source.data, path)
        if not isinstance(value, str):
            return None
        if path[-1] == "otherwise" or path[-1] == "inputs" or (len(path) >= 2 and path[-2] == "inputs"
                                                              and isinstance(path[-1], int)):
            return value if node_path(path) is not None else None
        if path == ("outputs",) or (len(path) == 2 and path[0] == "outputs"):
            return value
        if len(path) >= 3 and path[0] == "blocks" and path[2] == "output" and len(path) <= 4:
            return value   # `output: c5`, or an entry of `output: [c3, c4, c5]`
        return None

    def definition_of_reference(self, target: Target, ref: str) -> tuple[SourceFile, KeyPath] | None:
        ref = split_item(ref)[0]   # `body:1`, output 1 of `body`, is defined where `body` is
        base = scope_base(target.path)
        data = target.source.data
        if isinstance(value_at(data, base + ("nodes",)), dict) and ref in value_at(data, base + ("nodes",)):
            return target.source, base + ("nodes", ref)
        if base:
            inputs = value_at(data, base + ("inputs",))
            if isinstance(inputs, list) and ref in inputs:
                return target.source, base + ("inputs", inputs.index(ref))
            if ref == "input":
                return target.source, base
        elif ref == "input" or isinstance(value_at(data, ("input", ref)), list):
            return target.source, ("input",) if ref == "input" else ("input", ref)
        return None

    def definition(self, target: Target) -> Span | str | None:
        """A span to jump to, or a file path (for `include` and `extends`)."""
        path, data = target.path, target.source.data
        value = value_at(data, path)
        if (path == ("extends",) or (len(path) == 2 and path[0] == "include")) and isinstance(value, str):
            return str(Path(target.source.path).parent / value)
        if path and path[-1] in ("block", "first_block") and isinstance(value, str):
            block = self.program.blocks.get(value)
            return block.source.span(block.path, key=True) if block else None
        ref = self.reference_at(target)
        if ref is not None:
            found = self.definition_of_reference(target, ref)
            return found[0].span(found[1], key=True) if found else None
        return None

    def references(self, target: Target) -> list[Span]:
        """Uses of the node or block at `target` (its name under `nodes`/`blocks`, or a reference to it)."""
        path, data = target.path, target.source.data
        value = value_at(data, path)
        block_name = None
        if len(path) == 2 and path[0] == "blocks":
            block_name = path[1]
        elif path and path[-1] in ("block", "first_block") and isinstance(value, str):
            block_name = value
        if block_name is not None:
            found = []
            for source in self.sources.values():
                for key, span in source.spans.items():
                    if key and key[-1] in ("block", "first_block") and value_at(source.data, key) == block_name \
                            and node_path(key) is not None:
                        found.append(span)
            return found
        ref = self.reference_at(target)
        if ref is not None:
            where = self.definition_of_reference(target, ref)
            if where is None:
                return []
            base, name = scope_base(where[1]), split_item(ref)[0]
        elif node_path(path) == path and target.on_key:
            base, name = scope_base(path), path[-1]
        else:
            return []
        source = target.source
        found = []
        for key, span in source.spans.items():   # `body:1` is a use of `body`
            value = value_at(source.data, key) if key else None
            if not key or scope_base(key) != base or not isinstance(value, str) or split_item(value)[0] != name:
                continue
            probe = Target(source, key, False)
            if split_item(self.reference_at(probe) or "")[0] == name:
                found.append(span)
        return found

    # ---- symbols ------------------------------------------------------------------------------

    def symbols(self, source: SourceFile) -> list[Symbol]:
        data = source.data if isinstance(source.data, dict) else {}
        result = []
        for name in data.get("params", {}) if isinstance(data.get("params"), dict) else {}:
            path = ("params", name)
            result.append(Symbol(name, "param", _shown(data["params"][name]), source.span(path),
                                 source.span(path, key=True)))
        for name, definition in (data.get("blocks") or {}).items() if isinstance(data.get("blocks"), dict) else ():
            path = ("blocks", name)
            children = self._node_symbols(source, path)
            result.append(Symbol(name, "block", "block", self._full(source, path), source.span(path, key=True),
                                 children))
        result += self._node_symbols(source, ())
        return result

    def _full(self, source: SourceFile, path: KeyPath) -> Span:
        key, value = source.span(path, key=True), source.span(path)
        return Span(key.file, key.line, key.col, value.end_line, value.end_col)

    def _node_symbols(self, source: SourceFile, base: KeyPath) -> list[Symbol]:
        nodes = value_at(source.data, base + ("nodes",))
        if not isinstance(nodes, dict):
            return []
        result = []
        for name, raw in nodes.items():
            path = base + ("nodes", name)
            if isinstance(raw, dict) and "block" in raw:
                kind, detail = "call", f"block {raw['block']}" + (f" × {raw['repeat']}" if "repeat" in raw else "")
                children = []
                for instance in self.calls.get((source.path, path), []):
                    out = self.graph.nodes.get(instance.output) if self.graph else None
                    children.append(Symbol(instance.name, "instance", _fmt(out.shape if out else None),
                                           self._full(source, path), source.span(path, key=True)))
            else:
                op = raw.get("op") if isinstance(raw, dict) else raw
                nodes_here = self.nodes.get((source.path, path), [])
                shape = _fmt(nodes_here[0].shape) if len(nodes_here) == 1 else ""
                kind, detail, children = "node", f"{op} {shape}".strip(), []
            result.append(Symbol(name, kind, detail, self._full(source, path), source.span(path, key=True), children))
        return result


# ---- completion (text-based: the buffer is often not valid YAML while typing) ---------------------

_OP_VALUE = re.compile(r"(?:^|[\s{,])op:\s*([\w]*)$")
_BLOCK_VALUE = re.compile(r"(?:^|[\s{,])(?:block|first_block):\s*(\w*)$")
_REF_LIST = re.compile(r"(?:^|[\s{,])inputs:\s*(?:\[[^\]]*)?(\w*)$")
_REF_VALUE = re.compile(r"(?:^|[\s{,])(?:otherwise|output|outputs):\s*(?:\[[^\]]*)?(\w*)$")
# a node of a mapping `outputs`: `outputs: {out: cla` on one line, or `  out: cla` below `outputs:`
_REF_MAPPING = re.compile(r"^outputs:\s*\{(?:[^}]*,)?\s*\w+:\s*(\w*)$")
_MAPPING_ENTRY = re.compile(r"^\s+\w+:\s*(\w*)$")
_WITH_KEY = re.compile(r"(?:with|first):\s*\{[^}]*?(?:\{|,)\s*(\w*)$|(?:with|first):\s*\{\s*(\w*)$")
_FLOW_KEY = re.compile(r"\{[^}]*(?:\{|,)\s*(\w*)$|\{\s*(\w*)$")
_BLOCK_KEY = re.compile(r"^\s+(\w*)$")
_VALUE = re.compile(r":\s*[^,{}\[\]:]*?(\w*)$|[\[,]\s*(\w*)$")


def _op_help(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _attribute_completions(model: type, exclude: Iterable[str] = ()) -> list[Completion]:
    items = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in ("op", *exclude):
            continue
        if info.is_required():
            detail = "required"
        elif info.default_factory is not None:
            detail = "optional"
        else:
            detail = f"default: {_shown(info.default)}"
        items.append(Completion(key, "attribute", detail, info.description or "", f"{key}: "))
    return items


def complete(line_text: str, target: Target | None, index: SpecIndex | None) -> list[Completion]:
    """Completions for the text of the line up to the cursor; `target` locates the enclosing node
    in the last analysis that parsed, `index` is that analysis."""
    from .ops import REGISTRY

    program = index.program if index else None
    path = target.path if target else ()
    base = scope_base(path)
    data = target.source.data if target else None
    if _OP_VALUE.search(line_text):
        return [Completion(name, "op", _op_help(cls), (cls.__doc__ or "").strip()) for name, cls in
                sorted(REGISTRY.items())]
    if _BLOCK_VALUE.search(line_text):
        return [Completion(name, "block", f"params: {', '.join(b.definition.params) or 'none'}",
                           b.definition.doc or "") for name, b in sorted((program.blocks if program else {}).items())]
    if _REF_LIST.search(line_text) or _REF_VALUE.search(line_text) or _REF_MAPPING.search(line_text) or (
            path[:1] == ("outputs",) and _MAPPING_ENTRY.search(line_text)):
        entry = node_path(path)
        typed = re.match(r"^\s*(\w+):\s*\{", line_text)   # a one-line node being written
        current = typed.group(1) if typed else entry[-1] if entry is not None else None
        names: list[str] = []
        nodes = value_at(data, base + ("nodes",)) if data is not None else None
        for name in nodes if isinstance(nodes, dict) else ():
            if name == current:
                break   # a node reads what is declared before it
            raw = nodes[name]
            called = program.blocks.get(raw.get("block")) if program is not None and isinstance(raw, dict) and \
                isinstance(raw.get("block"), str) else None
            several = called.definition.output if called is not None else None
            if isinstance(several, list):   # a call of a block with several outputs is read as `call:k`
                names += [f"{name}:{k}" for k in range(len(several))]
            else:
                names.append(name)
        inputs = value_at(data, base + ("inputs",)) if base else (
            list(value_at(data, ("input",))) if isinstance(value_at(data, ("input",)), dict) else ["input"])
        names = [n for n in (inputs if isinstance(inputs, list) else ["input"])] + names
        return [Completion(n, "node", "node") for n in dict.fromkeys(names)]
    match = _WITH_KEY.search(line_text)
    if match and program is not None:
        called = re.search(r"block:\s*(\w+)", line_text)
        block = program.blocks.get(called.group(1)) if called else None
        if block is not None:
            return [Completion(k, "param", "required" if v is None else f"default: {_shown(v)}", "", f"{k}: ")
                    for k, v in block.definition.params.items()]
    op_match = re.search(r"(?:^|[\s{,])op:\s*(\w+)", line_text)
    entry = node_path(path)
    raw = value_at(data, entry) if entry is not None and data is not None else None
    in_flow = bool(_FLOW_KEY.search(line_text))
    in_block = False
    if not in_flow and _BLOCK_KEY.search(line_text) and entry is not None:
        # a key indented below the node's name: an attribute of that node
        key = target.source.span(entry, key=True)
        in_block = key is not None and len(line_text) - len(line_text.lstrip()) > key.col - 1
    if in_flow or in_block:
        present = set(re.findall(r"(\w+):", line_text[line_text.rfind("{"):])) if in_flow else \
            set(raw) if isinstance(raw, dict) else set()
        calls_block = re.search(r"(?:^|[\s{,])block:\s*\w+", line_text) if in_flow else \
            isinstance(raw, dict) and "block" in raw
        if calls_block:
            return [c for c in _attribute_completions(BlockCall) if c.label not in present]
        op = op_match.group(1) if in_flow and op_match else (raw.get("op") if isinstance(raw, dict) else None)
        if op in REGISTRY:
            return [c for c in _attribute_completions(REGISTRY[op]) if c.label not in present]
        return []
    if _VALUE.search(line_text) and entry is not None:
        return _param_completions(program, base)
    return []


def _param_completions(program: Program | None, base: KeyPath) -> list[Completion]:
    if program is None:
        return []
    if base:
        block = program.blocks.get(base[1])
        if block is None:
            return []
        items = [Completion(k, "param", "required" if v is None else f"default: {_shown(v)}", "block param")
                 for k, v in block.definition.params.items()]
        items += [Completion(k, "param", f"= {v}", "let") for k, v in block.definition.let.items()]
        return items + [Completion("index", "param", "the repetition number", "")]
    return [Completion(k, "param", f"= {_shown(v)}", "network param") for k, v in program.spec.params.items()]


# ---- quick fixes ------------------------------------------------------------------------------------

_SHORTCUT_FIX = re.compile(r"`shortcut: (\w+)`")


def shortcut_fixes(code: str, message: str) -> list[str]:
    """The `shortcut:` values that the help of a shortcut error proposes, in its order; for an identity
    shortcut, `auto` first: it projects only where the shape changes, so it also fits a block that is
    used both where the shape changes and where it does not (project there would be RG053)."""
    if code != "RG050":
        return []
    proposed = _SHORTCUT_FIX.findall(message)
    if "project" in proposed and "identity shortcut" in message:
        proposed.insert(0, "auto")
    return list(dict.fromkeys(proposed))

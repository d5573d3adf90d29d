"""After expansion: where each value of the expanded network came from (`resgraph explain`), and the
network written back as one flat spec with every block unrolled and every expression evaluated
(`resgraph expand`, optionally `--origins`). Reads the program and graph; re-reads no file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from .expand import Program
from .expr import ExprError, names_in
from .graph import Graph, Instance, Node
from .module_names import module_paths
from .source import KeyPath, SourceFile, value_at

SKIPPED = ("op", "inputs", "when", "otherwise")
MAX_DEPTH = 8


def _where(source: SourceFile, path: KeyPath) -> str:
    span = source.span(path)
    return f"{source.path}:{span.line}" if span else source.path


def yaml_value(value: Any) -> str:
    """A value as YAML flow text: strings double-quoted (JSON's escapes are YAML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return ".nan" if math.isnan(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if _PLAIN.match(str(value)) and not _KEYWORD.match(str(value)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYWORD = re.compile(r"^(?:true|false|null|yes|no|on|off|y|n)$", re.IGNORECASE)   # quoted for any YAML reader


def call_site(program: Program, graph: Graph, instance: Instance) -> tuple[SourceFile, KeyPath] | None:
    """The source and key path of the block call that made `instance`."""
    parent, _, local = instance.call.rpartition(".")
    if not parent:
        return program.source, ("nodes", local)
    owner = graph.instances.get(parent)
    block = program.blocks.get(owner.block) if owner else None
    return (block.source, block.path + ("nodes", local)) if block else None


class Provenance:
    """Explains values of an expanded network: `sets` are the `--set` / `params=` overrides."""

    def __init__(self, program: Program, graph: Graph, sets: Mapping[str, Any] | None = None) -> None:
        self.program, self.graph, self.sets = program, graph, dict(sets or {})

    def _instance(self, prefix: str) -> Instance | None:
        return self.graph.instances.get(prefix[:-1]) if prefix else None

    def _scope_names(self, prefix: str) -> Mapping[str, Any]:
        instance = self._instance(prefix)
        if instance is not None:
            return instance.values
        return {**self.program.spec.params, **self.sets}

    def _expression_names(self, text: Any, prefix: str) -> list[str] | None:
        """The scope names an attribute text reads, or None when it is a literal (`auto`, `same`)."""
        texts = [text] if isinstance(text, str) else [t for t in text if isinstance(t, str)] \
            if isinstance(text, list) else []
        if not texts:
            return None
        names: list[str] = []
        scope = self._scope_names(prefix)
        for item in texts:
            try:
                found = sorted(names_in(item))
            except ExprError:
                return None
            if not found and isinstance(text, str):
                continue   # a constant expression: `2 * 3`
            if any(name not in scope and name != "shape" for name in found):
                return None
            names += found
        return list(dict.fromkeys(names))

    def attribute(self, node: Node, attr: str) -> list[str]:
        """Lines saying where `attr` of `node` came from, outermost first; nested lines are indented."""
        raw = value_at(node.source.data, node.path)
        if not isinstance(raw, dict) or attr not in raw:
            return ["the op's default"]
        text = raw[attr]
        where = _where(node.source, node.path + (attr,))
        if attr == "key" and isinstance(text, str) and "{" in text:   # a computed key: its `{expression}` parts
            parts = [self._expression_names(part, node.prefix) for part in re.findall(r"\{([^{}]+)\}", text)]
            names = None if any(p is None for p in parts) else list(dict.fromkeys(n for p in parts for n in p))
        else:
            names = self._expression_names(text, node.prefix)
        if names is None:
            return [f"literal at {where}"]
        lines = [f"`{yaml_value(text) if not isinstance(text, str) else text}` at {where}"]
        for name in names:
            lines += ["  " + line for line in self.name(name, node.prefix)]
        return lines

    def name(self, name: str, prefix: str, depth: int = 0) -> list[str]:
        """Where the value of `name` in the scope at `prefix` came from."""
        if depth > MAX_DEPTH:
            return [f"`{name}`: ..."]
        instance = self._instance(prefix)
        if instance is None:
            value = self.sets.get(name, self.program.spec.params.get(name))
            head = f"{name} = {yaml_value(value)}: "
            if name in self.sets:
                return [head + f"`--set {name}={yaml_value(value)}`"]
            origin = self.program.param_origins.get(name)
            if origin is None:
                return [head + "a network param"]
            source, path = origin
            base, chain = Path(self.program.source.path).name, self.program.extended_by
            if not chain:
                by = ""
            elif source is self.program.source:
                by = f" (in the base spec, which `{Path(chain[-1].path).name}` extends)"
            else:
                by = f" (`{Path(source.path).name}` extends `{base}` and sets it)"
            return [head + f"param at {_where(source, path)}{by}"]
        value = instance.values.get(name)
        head = f"{name} = {yaml_value(value)}: "
        block = self.program.blocks[instance.block]
        definition = block.definition
        if name == "index":
            return [head + f"the repetition number of `{instance.name}`"]
        if name in definition.let:
            text = definition.let[name]
            where = _where(block.source, block.path + ("let", name))
            lines = [head + f"let `{text}` of block `{block.name}` at {where}"]
            for inner in self._expression_names(text, prefix) or []:
                lines += ["  " + line for line in self.name(inner, prefix, depth + 1)]
            return lines
        site = call_site(self.program, self.graph, instance)
        call = value_at(site[0].data, site[1]) if site else None
        caller = instance.call.rpartition(".")[0]
        caller_prefix = caller + "." if caller else ""
        for section in (("first", "with") if instance.index in (None, 0) else ("with",)):
            given = call.get(section) if isinstance(call, dict) else None
            if isinstance(given, dict) and name in given and (section == "with" or instance.index == 0):
                text = given[name]
                lines = [head + f"`{section}` of `{instance.call}` at {_where(site[0], site[1] + (section, name))}"
                         + (f": `{text}`" if isinstance(text, str) else "")]
                for inner in self._expression_names(text, caller_prefix) or []:
                    lines += ["  " + line for line in self.name(inner, caller_prefix, depth + 1)]
                return lines
        if name in definition.params:
            return [head + f"default of param `{name}` of block `{block.name}` at "
                           f"{_where(block.source, block.path + ('params', name))}"]
        return [head + "?"]

    def explain(self, node: Node) -> str:
        """A node, its shape and counts, and each of its attributes with where it came from."""
        lines = [f"{node.name}: {node.op.label()}  ({_where(node.source, node.path)})"]
        for note in reversed(node.notes):
            if note.span is not None:
                lines.append(f"  {note.message} at {note.span.file}:{note.span.line}")
        lines.append(f"  inputs: {', '.join(node.inputs)}")
        lines.append(f"  output: {list(node.shape) if node.shape else '?'}; {node.meta.get('params', 0):,} params; "
                     f"{node.meta.get('macs', 0):,} MACs")
        for attr in type(node.op).model_fields:
            if attr in SKIPPED:
                continue
            value = getattr(node.op, attr)
            origin = self.attribute(node, attr)
            lines.append(f"  {attr} = {yaml_value(value)}: {origin[0]}")
            lines += ["    " + line for line in origin[1:]]
        return "\n".join(lines)


_FLAT = re.compile(r"[^A-Za-z0-9_]")


def _is_output_item(node: Node) -> bool:
    return node.op is not None and node.op.op_name() == "output_item"


def _allowed(program: Program, graph: Graph, node: Node) -> list[str]:
    """The warnings the flat node may raise unreported: its own `allow` and its block calls' (`node.allow`), and
    the `allow` of the block it is written in (which silences warnings located in that block), less the spec's
    own `allow`, which the flat spec keeps."""
    from .diagnostics import ALLOWABLE

    codes = set(node.allow)
    if node.prefix:
        block = program.blocks.get(graph.instances[node.prefix[:-1]].block)
        if block is not None:
            codes |= set(block.definition.allow) & set(ALLOWABLE)
    return sorted(codes - set(program.spec.allow))


def expanded_spec(program: Program, graph: Graph, sets: Mapping[str, Any] | None = None,
                  origins: bool = False, source_name: str = "") -> str:
    """The network as one flat spec: node `layer3.0.conv2` becomes `layer3_0_conv2` (its dotted name in
    a comment), every attribute the spec gave is evaluated, every `inputs` explicit. Each node whose module
    path differs from its flat name gets that path as its `key` (`key: layer3.0.conv2`, `key: trunk_output.
    block1.block1-0.f.a.0` for a keyed node of a keyed call), and each shortcut module its path as its
    `shortcut_name`: the flat spec validates and compiles to the same state_dict keys."""
    provenance = Provenance(program, graph, sets)
    paths, shortcut_paths = module_paths(graph)
    names: dict[str, str] = {}
    taken: set[str] = set()
    for node in graph:
        if _is_output_item(node):   # made by a reference `halves:1`: the flat spec writes that reference again
            names[node.name] = f"{names[node.inputs[0]]}:{node.op.index}"
            continue
        flat = _FLAT.sub("_", node.name)
        candidate, number = flat, 2
        while candidate in taken:
            candidate, number = f"{flat}_{number}", number + 1
        taken.add(candidate)
        names[node.name] = candidate
    lines = [f"# {graph.name}, expanded by `resgraph expand` from {source_name}: blocks and repeats unrolled, "
             "expressions evaluated" + ("; `#` comments say where each value came from" if origins else ""),
             "resgraph: 1", f"name: {yaml_value(graph.name)}"]
    if program.spec.allow:
        lines.append(f"allow: {yaml_value(program.spec.allow)}")
    def declared(name: str) -> str:   # an input's shape, and its dtype where it is not the float default
        node = graph.nodes[name]
        shape = yaml_value(node.shape)
        return shape if node.dtype == "float" else f"{{shape: {shape}, dtype: {node.dtype}}}"

    if graph.inputs == ["input"] and not isinstance(program.spec.input, dict):   # one input: a shape, or {shape, dtype}
        lines.append(f"input: {declared('input')}")
    else:
        lines.append("input:")
        lines += [f"  {names[name]}: {declared(name)}" for name in graph.inputs]
    if origins:
        for name in program.spec.params:
            lines.append("# param " + "; ".join(line.strip() for line in provenance.name(name, "")))
    lines.append("nodes:")
    for node in graph:
        if node.is_input or _is_output_item(node):
            continue
        fields = [("op", node.op.op_name())]
        if paths[node.name] != names[node.name]:   # where its module sits in the compiled network
            fields.append(("key", paths[node.name]))
        for attr in type(node.op).model_fields:
            if attr in SKIPPED or attr in ("key", "shortcut_name", "allow", "tie") or \
                    attr not in node.op.model_fields_set:
                continue
            fields.append((attr, getattr(node.op, attr)))
        allowed = _allowed(program, graph, node)
        if allowed:
            fields.append(("allow", allowed))
        if "shortcut_name" in type(node.op).model_fields and getattr(node.op, "shortcut", "identity") != "identity" \
                and (node.prefix or "shortcut_name" in node.op.model_fields_set):
            # one flat scope: each shortcut module keeps its path in its block instance
            fields.append(("shortcut_name", shortcut_paths[node.name]))
        if node.meta.get("tied"):   # a node reference, as `inputs`: to the flat name of the tensor's owner
            fields.append(("tie", {name: f"{names[source]}.{parameter}"
                                   for name, (source, parameter) in node.meta["tied"].items()}))
        fields.append(("inputs", [names[i] for i in node.inputs]))
        if not origins:
            body = ", ".join(f"{key}: {yaml_value(value) if key != 'op' else value}" for key, value in fields)
            lines.append(f"  {names[node.name]}: {{{body}}}" + (f"  # {node.name}" if names[node.name] != node.name
                                                                 else ""))
            continue
        lines.append(f"  {names[node.name]}:  # {node.name}, at {_where(node.source, node.path)}")
        for key, value in fields:
            shown = value if key == "op" else yaml_value(value)
            comment = ""
            if key == "key":
                comment = "  # its module path" + (
                    "; its own `key`: " + "; ".join(line.strip() for line in provenance.attribute(node, key))
                    if node.op.key is not None else "")
            elif key == "allow":
                comment = "  # its own `allow`, its block calls' and its block's"
            elif key not in ("op", "inputs", "shortcut_name", "tie"):
                comment = "  # " + "; ".join(line.strip() for line in provenance.attribute(node, key))
            lines.append(f"    {key}: {shown}{comment}")
    outputs = [names[name] for name in graph.outputs]
    if graph.output_keys:   # a mapping: the forward returns a dict with these keys
        pairs = (f"{yaml_value(key)}: {name}" for key, name in zip(graph.output_keys, outputs))
        lines.append("outputs: {" + ", ".join(pairs) + "}")
    else:
        lines.append(f"outputs: {yaml_value(outputs[0] if len(outputs) == 1 else outputs)}")
    if graph.training_outputs:
        lines.append(f"training_outputs: {yaml_value([names[name] for name in graph.training_outputs])}")
    return "\n".join(lines) + "\n"

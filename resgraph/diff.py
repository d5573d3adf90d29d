"""Architecture diff: two shaped graphs -> their block-level differences, as plain text, JSON or one drawing.

Nodes are matched by their dotted names. Whole block instances (and runs of them) added or removed are reported
once, as are identical changes to the same node of several instances of a call (`conv2` in `layer1.0` ..
`layer1.2`); every change is filed under the top-level node or block call it belongs to.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .graph import Graph, Node
from .report import block_totals, op_text, shape_text

SCHEMA = "resgraph-diff/1"


@dataclass
class Change:
    """One reported difference: `added`, `removed` or `changed`, of a node, of block instances or of a call."""

    change: str                    # added | removed | changed
    what: str                      # node | instances | call
    names: list[str]               # the nodes or instances it is about
    scope: str                     # the top-level node or call it is filed under
    details: list[dict[str, Any]] = field(default_factory=list)   # {field, a, b}
    summary: str = ""              # what the text output says after the name

    def to_json(self) -> dict[str, Any]:
        return {"change": self.change, "what": self.what, "names": self.names, "scope": self.scope,
                "details": self.details, "summary": self.summary}


@dataclass
class NetworkDiff:
    a: Graph
    b: Graph
    a_source: str
    b_source: str
    changes: list[Change]

    @property
    def same(self) -> bool:
        return not self.changes and self.a.total_params == self.b.total_params and \
            self.a.total_macs == self.b.total_macs

    def status(self) -> dict[str, str]:
        """Node or scope name -> added | removed | changed: what the drawing colours."""
        found: dict[str, str] = {}
        for change in self.changes:
            for name in change.names:
                found[name] = change.change
            if change.names and change.scope and (change.what == "call" or change.scope != change.names[0]):
                found.setdefault(change.scope, "changed")
        return found


def _attributes(node: Node) -> dict[str, Any]:
    if node.op is None:
        return {}
    dump = getattr(node.op, "model_dump", None)
    if dump is None:   # an op that is not a pydantic model (a test's stand-in): its label says what it is
        return {"label": node.op.label()}
    return dump(exclude={"inputs", "when", "otherwise", "allow", "op"})


def _shortcuts(node: Node) -> str:
    """What the shortcuts of an add became (`projection`), as shapes decided; "" for other nodes."""
    from .ops.merge import SHORTCUT_NAMES

    return ", ".join(SHORTCUT_NAMES[plan.kind.value] for plan in node.meta.get("shortcuts", ()))


def _same_producer(a_graph: Graph, a_name: str, b_graph: Graph, b_name: str) -> bool:
    """The same name, or the output of the last instance of the same call: reading `layer3.5.relu3` in one
    network and `layer3.22.relu3` in the other is no change of the reader's own when the count changed."""
    if a_name == b_name:
        return True

    def role(graph: Graph, name: str):
        node = graph.nodes.get(name)
        instance = _instance_of(graph, node) if node is not None else None
        if instance is None:
            return None
        made = graph.instances[instance]
        last = f"{made.call}.{made.index + 1}" not in graph.instances
        return (made.call, name[len(instance) + 1:]) if last else None

    first = role(a_graph, a_name)
    return first is not None and first == role(b_graph, b_name)


def _node_details(a: Node, b: Node, a_graph: Graph, b_graph: Graph) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = []
    op_a = "input" if a.is_input else a.op.op_name() if a.op is not None else None
    op_b = "input" if b.is_input else b.op.op_name() if b.op is not None else None
    if op_a != op_b:
        details.append({"field": "op", "a": op_a, "b": op_b})
    else:
        attrs_a, attrs_b = _attributes(a), _attributes(b)
        for key in dict.fromkeys(list(attrs_a) + list(attrs_b)):
            if attrs_a.get(key) != attrs_b.get(key):
                details.append({"field": key, "a": attrs_a.get(key), "b": attrs_b.get(key)})
    if _shortcuts(a) != _shortcuts(b):
        details.append({"field": "shortcut kind", "a": _shortcuts(a) or None, "b": _shortcuts(b) or None})
    if len(a.inputs) != len(b.inputs) or not all(_same_producer(a_graph, p, b_graph, q)
                                                 for p, q in zip(a.inputs, b.inputs)):
        details.append({"field": "inputs", "a": list(a.inputs), "b": list(b.inputs)})
    if a.shape != b.shape:
        details.append({"field": "shape", "a": list(a.shape or ()), "b": list(b.shape or ())})
    for key in ("params", "macs"):
        if a.meta.get(key, 0) != b.meta.get(key, 0):
            details.append({"field": key, "a": a.meta.get(key, 0), "b": b.meta.get(key, 0)})
    return details


def _value(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, int) for v in value) and value:
        return shape_text(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _describe(details: list[dict[str, Any]]) -> str:
    return "; ".join(f"{d['field']}: {_value(d['a'])} -> {_value(d['b'])}" for d in details)


def _top(node: Node) -> str:
    return node.scopes[0] if node.scopes else node.name


def _instance_of(graph: Graph, node: Node) -> str | None:
    """The outermost instance `node` sits in that belongs to a repeated call (`layer3.7`), else None."""
    for scope in node.scopes:
        instance = graph.instances.get(scope)
        if instance is not None and instance.index is not None:
            return scope
    return None


def _localise(value: Any, name: str) -> Any:
    """Names inside the instance of `name` written locally (`layer1.0.bn2` -> `bn2`), to compare instances."""
    prefix = name.rpartition(".")[0] + "."
    if isinstance(value, list):
        return [_localise(v, name) for v in value]
    return value[len(prefix):] if isinstance(value, str) and value.startswith(prefix) else value


def _group(grouped: dict, graph: Graph, node: Node, change: str, summary: str | None, details: list) -> None:
    """File a node's change under (change, call, name within its instance, what changed), so that the same change
    in every instance of a call is one entry."""
    instance = _instance_of(graph, node)
    local = node.name[len(instance) + 1:] if instance else node.name
    call = graph.instances[instance].call if instance else ""
    key_details = [{**d, "a": _localise(d["a"], node.name), "b": _localise(d["b"], node.name)} for d in details]
    key = (change, call, local, json.dumps(key_details + [summary], sort_keys=True, default=str))
    grouped.setdefault(key, []).append(node.name)


def diff_graphs(a: Graph, b: Graph, a_source: str = "a", b_source: str = "b") -> NetworkDiff:
    """Requires two shaped graphs. Deterministic: changes follow b's order, then what only a has."""
    changes: list[Change] = []
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    graph_of = {**a.nodes, **b.nodes}
    only_b = [node for node in b if node.name not in a.nodes]
    only_a = [node for node in a if node.name not in b.nodes]

    # Calls whose block or repeat count differ.
    calls_a = {e["name"]: e for e in block_totals(a)}
    calls_b = {e["name"]: e for e in block_totals(b)}
    reported_calls: set[str] = set()
    for name, entry in list(calls_b.items()) + [(n, e) for n, e in calls_a.items() if n not in calls_b]:
        old, new = calls_a.get(name), calls_b.get(name)
        if old is None or new is None or (old["block"], old["instances"]) == (new["block"], new["instances"]):
            continue
        if old["instances"] <= 1 and new["instances"] <= 1 and old["block"] == new["block"]:
            continue
        made = b.instances.get(name) or a.instances.get(name)
        if made is not None and made.index is not None and made.call in reported_calls:
            continue   # an instance of a call already reported
        def describe(e: dict, block: bool = True) -> str:
            return (f"{e['block']}" if block else "") + (f" ×{e['instances']}" if e["instances"] > 1 else "")

        details = [{"field": "block", "a": old["block"], "b": new["block"]}] if old["block"] != new["block"] else []
        if old["instances"] != new["instances"]:
            details.append({"field": "instances", "a": old["instances"], "b": new["instances"]})
        for key in ("params", "macs"):
            if old[key] != new[key]:
                details.append({"field": key, "a": old[key], "b": new[key]})
        top = next((n.scopes[0] for n in (b if name in calls_b else a) if name in n.scopes), name)
        summary = f"{describe(old)} -> {describe(new, old['block'] != new['block']).strip()}"
        changes.append(Change("changed", "call", [name], top, details, summary))
        reported_calls.add(name)

    # Whole instances added or removed, in runs per call.
    for change, graph, nodes in (("added", b, only_b), ("removed", a, only_a)):
        other = a if change == "added" else b
        runs: dict[str, list[str]] = {}
        for node in nodes:
            instance = _instance_of(graph, node)
            if instance is not None and instance not in other.instances:
                call = graph.instances[instance].call
                if instance not in runs.setdefault(call, []):
                    runs[call].append(instance)
        covered = {name for instances in runs.values() for instance in instances
                   for name in graph.nodes if name.startswith(instance + ".")}
        for call, instances in runs.items():
            members = [graph.nodes[name] for name in covered if any(name.startswith(i + ".") for i in instances)]
            params = sum(n.meta.get("params", 0) for n in members)
            macs = sum(n.meta.get("macs", 0) for n in members)
            block = graph.instances[instances[0]].block
            where = f"`{instances[0]}`" + (f" .. `{instances[-1]}`" if len(instances) > 1 else "")
            count = f"{len(instances)} instance{'s' * (len(instances) != 1)}"
            sign = "+" if change == "added" else "-"
            summary = (f"{count} of `{block}`: {where} ({len(members)} nodes, {sign}{params:,} params, "
                       f"{sign}{macs:,} MACs)")
            top = _top(members[0]) if members else call
            changes.append(Change(change, "instances", instances, top,
                                  [{"field": "params", "a": 0, "b": params} if change == "added" else
                                   {"field": "params", "a": params, "b": 0}], summary))
        for node in nodes:
            if node.name in covered:
                continue
            text = op_text(node) + (f", {node.meta.get('params', 0):,} params" if node.meta.get("params") else "")
            _group(grouped, graph, node, change, f"{text}, {shape_text(node.shape)}", [])
    for (change, call, local, text), names in grouped.items():
        details = json.loads(text)
        summary = details.pop()
        if len(names) > 1:
            summary = f"`{local}` in {len(names)} instances of `{call}` (`{names[0]}` .. `{names[-1]}`): {summary}"
        changes.append(Change(change, "node", names, _top(graph_of[names[0]]), details, summary))
    grouped.clear()

    # Nodes in both that differ; the same change in several instances of a call is reported once.
    for node in b:
        old = a.nodes.get(node.name)
        if old is None:
            continue
        details = _node_details(old, node, a, b)
        if details:
            _group(grouped, b, node, "changed", None, details)
    for (change, call, local, text), names in grouped.items():
        details = json.loads(text)
        details.pop()
        if len(names) > 1:
            summary = f"`{local}` in {len(names)} instances of `{call}` (`{names[0]}` .. `{names[-1]}`), each: "
            details = [{**d, "a": _localise(d["a"], names[0]), "b": _localise(d["b"], names[0])} for d in details]
        else:
            summary = ""
        changes.append(Change(change, "node", names, _top(b.nodes[names[0]]), details, summary + _describe(details)))

    if a.name != b.name:
        changes.append(Change("changed", "network", [], "", [{"field": "name", "a": a.name, "b": b.name}],
                              f"name: {a.name} -> {b.name}"))
    order = {scope: position for position, scope in enumerate(dict.fromkeys(
        [_top(n) for n in b] + [_top(n) for n in a]))}
    order[""] = len(order)   # the network's own changes last
    changes.sort(key=lambda c: (order.get(c.scope, -1), ("call", "instances", "node", "network").index(c.what)))
    return NetworkDiff(a, b, a_source, b_source, changes)


def _delta(a: int, b: int) -> str:
    change = b - a
    percent = f", {change / a * 100:+.1f}%" if a else ""
    return f"{a:,} -> {b:,} ({change:+,}{percent})"


def diff_text(diff: NetworkDiff) -> str:
    """Plain text in the CLI's style: one line per change (`+` added, `-` removed, `~` changed), grouped under
    the top-level node or call they belong to, then parameter and MAC deltas and a count."""
    a, b = diff.a, diff.b
    lines = [f"--- {diff.a_source} (`{a.name}`, {len(a)} nodes)", f"+++ {diff.b_source} (`{b.name}`, {len(b)} nodes)"]
    if diff.same:
        return "\n".join(lines + ["", "no differences: the same nodes, ops, attributes, shapes and counts"])
    marks = {"added": "+", "removed": "-", "changed": "~"}
    current = None
    for change in diff.changes:
        if change.scope != current:
            current = change.scope
            lines += ["", f"`{current}`:" if current else "the network:"]
        name = ", ".join(f"`{n}`" for n in change.names[:1]) if change.what != "instances" else ""
        if change.what == "instances":
            lines.append(f"  {marks[change.change]} {change.change} {change.summary}")
        elif change.what == "network":
            lines.append(f"  ~ {change.summary}")
        elif change.what == "node" and len(change.names) > 1:
            lines.append(f"  {marks[change.change]} {change.change} {change.summary}")
        else:
            lines.append(f"  {marks[change.change]} {change.change} {name}: {change.summary}")
    counts = {kind: sum(1 for c in diff.changes if c.change == kind) for kind in ("added", "removed", "changed")}
    lines += ["", f"params: {_delta(a.total_params, b.total_params)}", f"MACs:   {_delta(a.total_macs, b.total_macs)}",
              ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)]
    return "\n".join(lines)


def diff_data(diff: NetworkDiff) -> dict[str, Any]:
    def side(graph: Graph, source: str) -> dict[str, Any]:
        return {"source": source, "network": graph.name, "nodes": len(graph), "params": graph.total_params,
                "macs": graph.total_macs}

    return {"schema": SCHEMA, "same": diff.same, "a": side(diff.a, diff.a_source), "b": side(diff.b, diff.b_source),
            "params": {"a": diff.a.total_params, "b": diff.b.total_params,
                       "delta": diff.b.total_params - diff.a.total_params},
            "macs": {"a": diff.a.total_macs, "b": diff.b.total_macs, "delta": diff.b.total_macs - diff.a.total_macs},
            "changes": [change.to_json() for change in diff.changes]}


def diff_json(diff: NetworkDiff) -> str:
    return json.dumps(diff_data(diff), indent=2, ensure_ascii=False, default=str)


def merged_graph(diff: NetworkDiff) -> Graph:
    """b's graph with what only a has added back (copies; neither graph is changed): what the drawing shows.
    A node of both keeps b's inputs and also reads the removed nodes that fed it in a."""
    a, b = diff.a, diff.b
    merged = Graph(b.name if a.name == b.name else f"{a.name} -> {b.name}", params=dict(b.params))
    for node in b:
        extra = [p for p in a.nodes[node.name].inputs if p not in b.nodes] if node.name in a.nodes else []
        merged.add(dataclasses.replace(node, inputs=list(node.inputs) + extra, meta=node.meta))
    for node in a:
        if node.name not in b.nodes:
            merged.add(dataclasses.replace(node, inputs=list(node.inputs), meta=node.meta))
    merged.inputs = list(dict.fromkeys(b.inputs + [n for n in a.inputs if n not in b.nodes]))
    merged.outputs = list(dict.fromkeys(b.outputs + [n for n in a.outputs if n not in b.nodes]))
    merged.instances = {**{k: v for k, v in a.instances.items() if k not in b.instances}, **b.instances}
    return merged


def diff_drawing(diff: NetworkDiff, depth: int | None = 0):
    """One drawing of both networks: added boxes green, removed red, changed amber; collapsed calls that
    changed say how (`bottleneck ×6 -> ×23`)."""
    from .diagram import build_drawing

    status = diff.status()
    remarks = {c.names[0]: c.summary for c in diff.changes if c.what == "call"}
    # A collapsed box that holds an added or removed instance, or a changed node, is changed.
    drawing = build_drawing(merged_graph(diff), depth, status=status, remarks=remarks)
    drawing.title = f"{diff.a.name} -> {diff.b.name}" if diff.a.name != diff.b.name else diff.b.name
    return drawing


def diff_html(diff: NetworkDiff, svg: str) -> str:
    """A self-contained page: the drawing (its SVG inlined) and the text report, every string escaped for HTML."""
    from html import escape

    body = svg[svg.index("<svg"):] if "<svg" in svg else ""
    title = escape(f"resgraph diff: {diff.a_source} -> {diff.b_source}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title>"
            "<style>body{font-family:Helvetica,Arial,sans-serif;margin:1.5em}"
            "pre{background:#fafafa;border:1px solid #ddd;padding:1em;overflow:auto}"
            "svg{max-width:100%;height:auto}</style></head><body>"
            f"<h1>{title}</h1>\n<div class=\"drawing\">{body}</div>\n<pre>{escape(diff_text(diff))}</pre>"
            "</body></html>\n")


def write_diff(diff: NetworkDiff, output, inputs=(), depth: int | None = 0, rankdir: str = "TB"):
    """Write the drawing atomically: .html (a page with the SVG and the report), or any diagram format."""
    from .atomic import write_atomically
    from .diagram import _run_dot, check_output_or_fail, render_drawing, to_dot

    drawing = diff_drawing(diff, depth)
    if output.suffix.lower() == ".html":
        check_output_or_fail(output, inputs)
        svg = _run_dot(to_dot(drawing, rankdir=rankdir).source, "svg").decode("utf-8")
        write_atomically(output, diff_html(diff, svg).encode("utf-8"), inputs=inputs)
        return output
    return render_drawing(drawing, output, inputs, rankdir=rankdir)

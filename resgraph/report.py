"""The summary of the shaped graph (no torch): every node's output shape, parameters, MACs and activation memory,
subtotals per block call and instance, and totals; as a text table, JSON (schema `resgraph-summary/1`, see
docs/cli.md) and HTML for notebooks."""

from __future__ import annotations

import json
import math
from typing import Any

from .graph import Graph, Node

SCHEMA = "resgraph-summary/1"
ITEMSIZE = {"float": 4, "int64": 8}   # bytes per element of an activation: float32, int64


def shape_text(shape: tuple[int, ...] | None) -> str:
    """`64x56x56`, or `?` for a shape not known."""
    return "x".join(str(d) for d in shape) if shape else "?"


def _si(value: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(value)


def _bytes(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def activation_bytes(node: Node) -> int:
    """Bytes of the node's output for one sample (float32, or int64 for integer ids); 0 without a shape."""
    return math.prod(node.shape) * ITEMSIZE.get(node.dtype, 4) if node.shape is not None else 0


def op_text(node: Node) -> str:
    """The op column: the op's label as shapes decided it (`add (projection)`), `input` for a graph input."""
    if node.is_input:
        return "input" + (" int64" if node.dtype == "int64" else "")
    if node.op is None:
        return "?"
    return node.op.shaped_label(node.meta) if hasattr(node.op, "shaped_label") else node.op.label()


def block_totals(graph: Graph) -> list[dict[str, Any]]:
    """One entry per block call and per instance (a call that is not repeated is its own instance), in order of
    first node: its name, block, instance count, parent scope, node count, params, MACs, activation bytes, and
    the shapes it reads and gives."""
    by_scope: dict[str, dict[str, Any]] = {}
    members: dict[str, list[Node]] = {}
    for node in graph.topological_order():
        parent = None
        for scope in node.scopes:
            entry = by_scope.get(scope)
            if entry is None:
                made = [i for i in graph.instances.values() if i.call == scope] or \
                    [i for i in graph.instances.values() if i.name == scope]
                entry = by_scope[scope] = {
                    "name": scope, "block": " / ".join(dict.fromkeys(i.block for i in made)) or None,
                    "instances": len(made), "parent": parent, "nodes": 0, "params": 0, "macs": 0,
                    "activation_bytes": 0, "input_shapes": [], "output_shape": None, "last": None}
                members[scope] = []
            entry["nodes"] += 1
            entry["params"] += node.meta.get("params", 0)
            entry["macs"] += node.meta.get("macs", 0)
            entry["activation_bytes"] += activation_bytes(node)
            entry["last"] = node.name
            members[scope].append(node)
            parent = scope
    for scope, entry in by_scope.items():
        inside = {node.name for node in members[scope]}
        outside = dict.fromkeys(p for node in members[scope] for p in node.inputs if p not in inside)
        entry["input_shapes"] = [list(graph.nodes[p].shape or ()) for p in outside]
        made = [i for i in graph.instances.values() if i.call == scope] or \
            [i for i in graph.instances.values() if i.name == scope]
        output = made[-1].output if made and made[-1].output in graph.nodes else entry["last"]
        entry["output_shape"] = list(graph.nodes[output].shape or ())
        if made and made[-1].outputs is not None:   # a block with several outputs: the shape of each, in order
            entry["output_shapes"] = [list(graph.nodes[name].shape or ()) for name in made[-1].outputs]
    return list(by_scope.values())


def summary_data(graph: Graph) -> dict[str, Any]:
    """Requires inferred shapes. The summary as plain data (what `--format json` prints; docs/cli.md)."""
    nodes = []
    for node in graph.topological_order():
        nodes.append({"name": node.name, "op": "input" if node.is_input else node.op.op_name(),
                      "label": op_text(node), "inputs": list(node.inputs),
                      "shape": list(node.shape) if node.shape is not None else None, "dtype": node.dtype,
                      "params": node.meta.get("params", 0), "macs": node.meta.get("macs", 0),
                      "activation_bytes": activation_bytes(node), "block": node.scopes[-1] if node.scopes else None})
    blocks = [{key: value for key, value in entry.items() if key != "last"} for entry in block_totals(graph)]
    return {
        "schema": SCHEMA,
        "network": graph.name,
        "inputs": [{"name": name, "shape": list(graph.nodes[name].shape or ()), "dtype": graph.nodes[name].dtype}
                   for name in graph.inputs],
        "outputs": [{"name": name, "shape": list(graph.nodes[name].shape or ())}
                    | ({"key": key} if key is not None else {})   # a mapping `outputs`: the dict's key
                    for name, key in zip(graph.outputs, graph.output_keys or [None] * len(graph.outputs))],
        "nodes": nodes,
        "blocks": blocks,
        "totals": {"nodes": len(graph), "params": graph.total_params, "macs": graph.total_macs,
                   "activation_bytes": sum(n["activation_bytes"] for n in nodes)},
    }


def summary_json(graph: Graph) -> str:
    return json.dumps(summary_data(graph), indent=2, ensure_ascii=False)


def summary_table(graph: Graph) -> str:
    """Requires inferred shapes. Rows in topological order; after the last row of each top-level block call,
    its subtotal (`= layer1`, its block and count); totals at the bottom."""
    header = ("node", "op", "output", "params", "MACs", "activations")
    rows: list[tuple[str, ...] | None] = [header]
    calls = {entry["last"]: entry for entry in block_totals(graph) if entry["parent"] is None}
    for node in graph.topological_order():
        rows.append((node.name, op_text(node), shape_text(node.shape), f"{node.meta.get('params', 0):,}",
                     f"{node.meta.get('macs', 0):,}", _bytes(activation_bytes(node))))
        entry = calls.get(node.name)
        if entry is not None:
            count = f" ×{entry['instances']}" if entry["instances"] > 1 else ""
            what = f"{entry['block']}{count}, {entry['nodes']} nodes" if entry["block"] else f"{entry['nodes']} nodes"
            shapes = entry.get("output_shapes", [entry["output_shape"]])
            rows.append((f"= {entry['name']}", what, ", ".join(shape_text(tuple(s)) for s in shapes), f"{entry['params']:,}",
                         f"{entry['macs']:,}", _bytes(entry["activation_bytes"])))
            rows.append(None)   # a blank line after a subtotal
    while rows and rows[-1] is None:
        rows.pop()
    widths = [max(len(row[i]) for row in rows if row is not None) for i in range(len(header))]
    lines = []
    for position, row in enumerate(rows):
        if row is None:
            lines.append("")
            continue
        cells = [row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i]) for i in range(len(header))]
        lines.append("  ".join(cells).rstrip())
        if position == 0:
            lines.append("  ".join("-" * w for w in widths))
    params, macs = graph.total_params, graph.total_macs
    memory = sum(activation_bytes(node) for node in graph)
    inputs = ", ".join(f"{name} {shape_text(graph.nodes[name].shape)}"
                       + (" int64" if graph.nodes[name].dtype == "int64" else "") for name in graph.inputs)
    shown = [f"{name} {shape_text(graph.nodes[name].shape)}" for name in graph.outputs]
    outputs = ", ".join(shown) if not graph.output_keys else \
        "{" + ", ".join(f"{key}: {text}" for key, text in zip(graph.output_keys, shown)) + "}"
    lines += [
        "",
        f"network: {graph.name} ({len(graph)} nodes)",
        f"inputs:  {inputs} (per sample; the batch dimension is implicit)",
        f"outputs: {outputs}",
        f"params:  {params:,} ({_si(params)})",
        f"MACs:    {macs:,} ({_si(macs)}) per sample, convolutions and linear layers",
        f"activations: {memory:,} bytes ({_bytes(memory)}) per sample in float32, every node's output",
    ]
    return "\n".join(lines)


def summary_html(graph: Graph) -> str:
    """The summary as an HTML table, for notebooks (a compiled model's `_repr_html_`)."""
    from html import escape

    rows = []
    for node in graph.topological_order():
        rows.append(f"<tr><td><code>{escape(node.name)}</code></td><td>{escape(op_text(node))}</td>"
                    f"<td>{shape_text(node.shape)}</td><td style='text-align:right'>{node.meta.get('params', 0):,}</td>"
                    f"<td style='text-align:right'>{node.meta.get('macs', 0):,}</td></tr>")
    params, macs = graph.total_params, graph.total_macs
    return (f"<p><b>{escape(graph.name)}</b>: {len(graph)} nodes, {params:,} parameters ({_si(params)}), "
            f"{macs:,} MACs per sample ({_si(macs)})</p>"
            "<table><thead><tr><th>node</th><th>op</th><th>output</th><th>params</th><th>MACs</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")

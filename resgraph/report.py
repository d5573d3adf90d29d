"""A text table of the shaped graph: every node's output shape, parameters and MACs (no torch)."""

from __future__ import annotations

from .graph import Graph


def _shape(shape: tuple[int, ...] | None) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"


def _si(value: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(value)


def summary_table(graph: Graph) -> str:
    """Requires inferred shapes. Rows in topological order; totals at the bottom."""
    rows = [("node", "op", "output", "params", "MACs")]
    for node in graph.topological_order():
        op = ("input" + (" int64" if node.dtype == "int64" else "")) if node.is_input else node.op.label()
        rows.append((node.name, op, _shape(node.shape), f"{node.meta.get('params', 0):,}",
                     f"{node.meta.get('macs', 0):,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for position, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells).rstrip())
        if position == 0:
            lines.append("  ".join("-" * w for w in widths))
    params, macs = graph.total_params, graph.total_macs
    inputs = ", ".join(f"{name} {_shape(graph.nodes[name].shape)}"
                       + (" int64" if graph.nodes[name].dtype == "int64" else "") for name in graph.inputs)
    outputs = ", ".join(f"{name} {_shape(graph.nodes[name].shape)}" for name in graph.outputs) if not graph.output_keys \
        else "{" + ", ".join(f"{key}: {name} {_shape(graph.nodes[name].shape)}"
                             for key, name in zip(graph.output_keys, graph.outputs)) + "}"
    lines += [
        "",
        f"network: {graph.name} ({len(graph)} nodes)",
        f"inputs:  {inputs} (per sample; the batch dimension is implicit)",
        f"outputs: {outputs}",
        f"params:  {params:,} ({_si(params)})",
        f"MACs:    {macs:,} ({_si(macs)}) per sample, convolutions and linear layers",
    ]
    return "\n".join(lines)


def summary_html(graph: Graph) -> str:
    """The summary as an HTML table, for notebooks (a compiled model's `_repr_html_`)."""
    from html import escape

    rows = []
    for node in graph.topological_order():
        op = "input" if node.is_input else node.op.label()
        rows.append(f"<tr><td><code>{escape(node.name)}</code></td><td>{escape(op)}</td>"
                    f"<td>{_shape(node.shape)}</td><td style='text-align:right'>{node.meta.get('params', 0):,}</td>"
                    f"<td style='text-align:right'>{node.meta.get('macs', 0):,}</td></tr>")
    params, macs = graph.total_params, graph.total_macs
    return (f"<p><b>{escape(graph.name)}</b>: {len(graph)} nodes, {params:,} parameters ({_si(params)}), "
            f"{macs:,} MACs per sample ({_si(macs)})</p>"
            "<table><thead><tr><th>node</th><th>op</th><th>output</th><th>params</th><th>MACs</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")

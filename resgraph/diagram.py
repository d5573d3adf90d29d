"""Pass 6 of the pipeline: the shaped graph IR -> a graphviz diagram (.svg .png .pdf .dot).

Block instances become nested clusters, edges carry the shape they transport, and skip
edges into an `add` are drawn by shortcut kind: identity, projection or zero-padding.
"""

from __future__ import annotations

from pathlib import Path

from .atomic import write_atomically
from .graph import Graph, Node

FORMATS = ("svg", "png", "pdf", "dot")

# Skip-edge styles: one look per shortcut kind, also named by the edge's `class` (kept in SVG).
SKIP_STYLES = {
    "identity": {"style": "dashed", "color": "#2e7d32", "fontcolor": "#2e7d32"},
    "project": {"style": "bold", "color": "#1565c0", "fontcolor": "#1565c0"},
    "pad": {"style": "dotted", "color": "#ef6c00", "fontcolor": "#ef6c00"},
}
SKIP_LABELS = {"identity": "identity", "project": "1x1 conv + bn", "pad": "zero-pad"}
OP_COLORS = {"conv1d": "#e3f2fd", "conv2d": "#e3f2fd", "linear": "#e3f2fd", "add": "#e8f5e9", "concat": "#e8f5e9",
             "mul": "#e8f5e9", "batchnorm1d": "#fff8e1", "batchnorm2d": "#fff8e1", "layernorm": "#fff8e1",
             "groupnorm": "#fff8e1", "conv3d": "#e3f2fd", "conv_transpose1d": "#e3f2fd", "conv_transpose2d": "#e3f2fd",
             "conv_transpose3d": "#e3f2fd", "matmul": "#e3f2fd", "sub": "#e8f5e9", "batchnorm3d": "#fff8e1",
             "instancenorm1d": "#fff8e1", "instancenorm2d": "#fff8e1", "instancenorm3d": "#fff8e1"}


class RenderError(Exception):
    """The diagram could not be produced (unknown suffix, graphviz's `dot` missing or failing)."""


def _dims(shape: tuple[int, ...] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else "?"


def _node_id(name: str) -> str:
    return name  # graphviz quotes ids itself; dotted names stay readable in the DOT text


def _skip_kinds(node: Node) -> dict[int, str]:
    """Input position -> shortcut kind, for every skip input of an add."""
    plans = node.meta.get("shortcuts")
    if plans is None:
        return {}
    return {position: plan.kind.value for position, plan in enumerate(plans, start=1)}


def to_digraph(graph: Graph, depth: int | None = None):
    """Requires inferred shapes. Returns a `graphviz.Digraph`; deterministic for a given graph.

    `depth` limits how many levels of block nesting are drawn: the nodes of a block instance
    below that level become one box (`depth=0`: every top-level block call is one box)."""
    import graphviz

    if depth is not None:
        graph = _collapsed(graph, depth)

    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica", "nodesep": "0.25",
                                                    "ranksep": "0.3", "label": graph.name, "labelloc": "t"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                      "fontsize": "10", "fillcolor": "#f5f5f5", "height": "0.3"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "8", "color": "#616161"})
    # Nodes go into nested clusters following their block instances (`layer2` > `layer2.0`).
    tree: dict[tuple[str, ...], list[Node]] = {}
    for node in graph:
        tree.setdefault(node.scopes, []).append(node)
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for scopes in list(tree):
        for depth in range(len(scopes)):
            parent, child = scopes[:depth], scopes[: depth + 1]
            siblings = children.setdefault(parent, [])
            if child not in siblings:
                siblings.append(child)

    def emit(container, scopes: tuple[str, ...]) -> None:
        for node in tree.get(scopes, []):
            if node.is_input:
                label = f"{node.name}\n{_dims(node.shape)}"
                container.node(_node_id(node.name), label, shape="oval", fillcolor="#eeeeee")
            else:
                op = node.op.op_name()
                container.node(_node_id(node.name), f"{node.local_name}\n{node.op.label()}",
                               fillcolor=OP_COLORS.get(op, "#f5f5f5"), tooltip=node.name)
        for child in children.get(scopes, []):
            with container.subgraph(name="cluster_" + child[-1]) as cluster:
                cluster.attr(label=child[-1], style="rounded", color="#9e9e9e", fontsize="9")
                emit(cluster, child)

    emit(dot, ())
    for node in graph:
        skips = _skip_kinds(node)
        for position, producer in enumerate(node.inputs):
            shape = _dims(graph.nodes[producer].shape)
            kind = skips.get(position)
            if kind is None:
                dot.edge(_node_id(producer), _node_id(node.name), label=shape)
            else:
                label = shape if kind == "identity" else f"{shape}\n{SKIP_LABELS[kind]}"
                dot.edge(_node_id(producer), _node_id(node.name), label=label,
                         **{"class": f"skip {kind}"}, **SKIP_STYLES[kind])
    for output in graph.outputs:
        out_id = f"(output) {output}"  # parentheses never occur in node names
        dot.node(out_id, f"output\n{_dims(graph.nodes[output].shape)}", shape="oval", fillcolor="#eeeeee")
        dot.edge(_node_id(output), out_id)
    return dot


def _collapsed(graph: Graph, depth: int) -> Graph:
    """A drawing-only copy of `graph` in which each scope at nesting level `depth` is one node."""
    group_of = {node.name: node.scopes[depth] if len(node.scopes) > depth else node.name for node in graph}
    order = graph.topological_order()
    output_of = {group_of[node.name]: node for node in order}  # a group's output: its last node
    collapsed = Graph(graph.name)
    for node in graph:
        group = group_of[node.name]
        if group in collapsed.nodes:
            continue
        if group == node.name:  # drawn as it is; inputs keep their positions (for skip-edge styles)
            copy = Node(node.name, node.op, [group_of[p] for p in node.inputs], node.source, node.path,
                        node.notes, node.prefix, node.scopes[:depth], shape=node.shape, meta=node.meta)
        else:
            made = [i for i in graph.instances.values() if group in (i.call, i.name)]
            label = " / ".join(dict.fromkeys(i.block for i in made)) + (f" ×{len(made)}" if len(made) > 1 else "")
            prefix = group.rpartition(".")[0] + "." if "." in group else ""
            copy = Node(group, _GroupOp(label), [], prefix=prefix, scopes=node.scopes[:depth],
                        shape=output_of[group].shape)
        collapsed.add(copy)
    for node in order:
        group = collapsed.nodes[group_of[node.name]]
        if not isinstance(group.op, _GroupOp):
            continue
        for producer in node.inputs:
            source = group_of[producer]
            if source != group.name and source not in group.inputs:
                group.inputs.append(source)
    collapsed.inputs = list(graph.inputs)
    collapsed.outputs = [group_of[name] for name in graph.outputs]
    return collapsed


class _GroupOp:
    """Stands for a collapsed block instance in a drawing."""

    def __init__(self, label: str) -> None:
        self._label = label

    def op_name(self) -> str:
        return "block"

    def label(self) -> str:
        return self._label


def render_to_file(graph: Graph, output: Path, depth: int | None = None) -> Path:
    """Write the diagram atomically: to a temporary file beside `output`, then renamed over it,
    so a failure leaves no partial file."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise RenderError(f"cannot tell the format of `{output}`: use a .svg, .png, .pdf or .dot suffix")
    digraph = to_digraph(graph, depth)
    if suffix == "dot":
        data = digraph.source.encode("utf-8")
    else:
        import graphviz

        try:
            data = digraph.pipe(format=suffix)
        except graphviz.ExecutableNotFound:
            raise RenderError("graphviz's `dot` program is not installed (Debian/Ubuntu: `apt-get install "
                              "graphviz`; macOS: `brew install graphviz`); `-o file.dot` works without it") from None
        except graphviz.CalledProcessError as exc:
            raise RenderError(f"graphviz's `dot` failed: {exc.stderr.decode(errors='replace').strip()}") from None
    try:
        write_atomically(output, data)
    except FileNotFoundError as exc:
        raise RenderError(str(exc)) from None
    return output

"""Pass 6 of the pipeline: the shaped graph IR -> a graphviz diagram (.svg .png .pdf .dot).

Block instances become nested clusters, edges carry the shape they transport, and skip
edges into an `add` are drawn by shortcut kind: identity, projection or zero-padding.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Iterable

from .atomic import check_output, write_atomically
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
    """The diagram could not be produced (unknown suffix, graphviz's `dot` missing, failing or too slow)."""


class DiagramCollapsed(UserWarning):
    """A big network was drawn with its deeper blocks collapsed (see NODE_BUDGET); the message says how."""


# graphviz's layout grows much faster than the number of boxes: 2,800 boxes in clusters took 8 s, 8,400 more than
# 120 s, and 21,000 ran out of memory. Images (not .dot text) of bigger networks collapse their deeper block
# instances until at most NODE_BUDGET boxes are left; where even depth 0 leaves more than MAX_DRAWN, they are
# refused; and `dot` gets DOT_TIMEOUT seconds (RESGRAPH_RENDER_TIMEOUT overrides it).
NODE_BUDGET = 1000
MAX_DRAWN = 5000
DOT_TIMEOUT = 60.0


def automatic_depth(graph: Graph) -> int | None:
    """None where every node fits in NODE_BUDGET boxes; else the deepest nesting level whose collapsed drawing
    fits (0 where none does)."""
    if len(graph) <= NODE_BUDGET:
        return None
    deepest = max((len(node.scopes) for node in graph), default=0)
    for depth in range(deepest - 1, -1, -1):
        if _drawn_count(graph, depth) <= NODE_BUDGET:
            return depth
    return 0


def _drawn_count(graph: Graph, depth: int) -> int:
    return len({node.scopes[depth] if len(node.scopes) > depth else node.name for node in graph})


def check_output_or_fail(output: Path, inputs: Iterable[str]) -> None:
    """Refuse a bad output path before graphviz runs (RG075, RG076; a missing directory as RenderError)."""
    try:
        check_output(output, inputs)
    except FileNotFoundError as exc:
        raise RenderError(str(exc)) from None


def _dims(shape: tuple[int, ...] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else "?"


# Characters a DOT string cannot carry or that would not show as text: C0/C1 controls (NUL included) become
# their visible "control picture" or U+FFFD, line and paragraph separators become line breaks.
_LINE_BREAKS = {"\r\n": "\n", "\r": "\n", "\u2028": "\n", "\u2029": "\n", "\x85": "\n", "\x0b": "\n", "\x0c": "\n"}
_VISIBLE = {code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\n\t\x0b\x0c\r"}
_VISIBLE.update({0x09: " ", 0x7F: "\u2421"})
_VISIBLE.update({code: "\ufffd" for code in range(0x80, 0xA0) if code != 0x85})


_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]+")


def dot_text(*lines: str):
    """The one escaping function for DOT: strings from a spec (names, labels, docs) as a DOT string that
    graphviz shows literally, one line per argument.

    Backslashes are doubled (so `\\N`, `\\G`, `\\l` are text, not escapes), double quotes escaped and `&`
    written `&amp;` (dot reads character entities such as `&lt;` in every label); the
    result is marked as not an HTML-like label (so `<b>...</b>` is text); control characters, which DOT
    and XML cannot carry, become visible symbols (NUL is `␀`), and unpaired surrogates U+FFFD. graphviz
    writes it inside double quotes, and escapes it again for SVG text (`<`, `&`, `--` in comments)."""
    import graphviz

    parts = []
    for line in lines:
        text = str(line)
        for old, new in _LINE_BREAKS.items():
            text = text.replace(old, new)
        text = _SURROGATE.sub("\ufffd", text.translate(_VISIBLE))
        text = text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
        parts.extend(text.split("\n"))
    # Lines are joined with DOT's `\n` escape: a literal line break before a `\"` makes dot join the lines.
    return graphviz.nohtml("\\n".join(parts))


def _node_ids(graph: Graph) -> dict[str, str]:
    """Each node's DOT id: its name where it is a plain dotted name (every name a valid spec can have), so the
    DOT text stays readable; else `(node N)`. graphviz's edge statements split ids at `:` (ports) and write
    the part after a second `:` unquoted, so no other string may become an id; parentheses never occur in
    node names, so the two kinds cannot collide."""
    return {node.name: node.name if _PLAIN_NAME.fullmatch(node.name) else f"(node {index})"
            for index, node in enumerate(graph)}


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

    dot = graphviz.Digraph(dot_text(graph.name),
                           graph_attr={"rankdir": "TB", "fontname": "Helvetica", "nodesep": "0.25",
                                       "ranksep": "0.3", "label": dot_text(graph.name), "labelloc": "t"},
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

    ids = _node_ids(graph)

    def _node_id(name: str):
        return dot_text(ids[name])

    def emit(container, scopes: tuple[str, ...]) -> None:
        for node in tree.get(scopes, []):
            if node.is_input:
                label = dot_text(node.name, _dims(node.shape))
                container.node(_node_id(node.name), label, shape="oval", fillcolor="#eeeeee")
            else:
                op = node.op.op_name()
                container.node(_node_id(node.name), dot_text(node.local_name, node.op.label()),
                               fillcolor=OP_COLORS.get(op, "#f5f5f5"), tooltip=dot_text(node.name))
        for child in children.get(scopes, []):
            with container.subgraph(name=dot_text("cluster_" + child[-1])) as cluster:
                cluster.attr(label=dot_text(child[-1]), style="rounded", color="#9e9e9e", fontsize="9")
                emit(cluster, child)

    emit(dot, ())
    for node in graph:
        skips = _skip_kinds(node)
        for position, producer in enumerate(node.inputs):
            shape = _dims(graph.nodes[producer].shape)
            kind = skips.get(position)
            if kind is None:
                dot.edge(_node_id(producer), _node_id(node.name), label=dot_text(shape))
            else:
                label = dot_text(shape) if kind == "identity" else dot_text(shape, SKIP_LABELS[kind])
                dot.edge(_node_id(producer), _node_id(node.name), label=label,
                         **{"class": f"skip {kind}"}, **SKIP_STYLES[kind])
    keys = graph.output_keys or [None] * len(graph.outputs)
    for output, key in zip(graph.outputs, keys):
        out_id = dot_text(f"(output) {ids[output]}")  # parentheses never occur in node names
        title = "output" if key is None else f"output `{key}`"   # a mapping `outputs`: the dict's key
        dot.node(out_id, dot_text(title, _dims(graph.nodes[output].shape)), shape="oval", fillcolor="#eeeeee")
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
    collapsed.output_keys = list(graph.output_keys)
    return collapsed


class _GroupOp:
    """Stands for a collapsed block instance in a drawing."""

    def __init__(self, label: str) -> None:
        self._label = label

    def op_name(self) -> str:
        return "block"

    def label(self) -> str:
        return self._label


def drawing_depth(graph: Graph, depth: int | None) -> int | None:
    """`depth`, or where none is given and the network is too big to lay out quickly, the automatic one (with a
    DiagramCollapsed warning); raises RenderError where the drawing would still be too big."""
    if depth is None:
        depth = automatic_depth(graph)
        if depth is not None:
            warnings.warn(DiagramCollapsed(
                f"`{graph.name}` has {len(graph):,} nodes, more than graphviz lays out in reasonable time "
                f"({NODE_BUDGET:,}): block instances below nesting level {depth} are drawn as one box each "
                f"({_drawn_count(graph, depth):,} boxes); choose with `--depth`, or write `.dot` for every node"),
                stacklevel=3)
    drawn = len(graph) if depth is None else _drawn_count(graph, depth)
    if drawn > MAX_DRAWN:
        raise RenderError(f"the drawing would have {drawn:,} boxes, more than graphviz can lay out ({MAX_DRAWN:,}); "
                          "use a smaller `--depth` (blocks collapse to one box each), or write `.dot` text")
    return depth


def _run_dot(source: str, suffix: str) -> bytes:
    """graphviz's `dot` on `source`, within DOT_TIMEOUT seconds."""
    program = shutil.which("dot")
    if program is None:
        raise RenderError("graphviz's `dot` program is not installed (Debian/Ubuntu: `apt-get install "
                          "graphviz`; macOS: `brew install graphviz`); `-o file.dot` works without it")
    timeout = float(os.environ.get("RESGRAPH_RENDER_TIMEOUT") or DOT_TIMEOUT)
    try:
        done = subprocess.run([program, f"-T{suffix}"], input=source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"graphviz's `dot` did not finish within {timeout:g} s; draw fewer boxes with `--depth` "
                          "(e.g. `--depth 1`), or write `.dot` text; RESGRAPH_RENDER_TIMEOUT sets the limit") from None
    if done.returncode != 0:
        raise RenderError(f"graphviz's `dot` failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def render_to_file(graph: Graph, output: Path, depth: int | None = None, inputs: Iterable[str] = ()) -> Path:
    """Write the diagram atomically: to a temporary file beside `output`, then renamed over it,
    so a failure leaves no partial file. `inputs`, the files the run read, are never replaced."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise RenderError(f"cannot tell the format of `{output}`: use a .svg, .png, .pdf or .dot suffix")
    check_output_or_fail(output, inputs)
    if suffix != "dot":
        depth = drawing_depth(graph, depth)
    digraph = to_digraph(graph, depth)
    if suffix == "dot":
        data = digraph.source.encode("utf-8")
    else:
        data = _run_dot(digraph.source, suffix)
    try:
        write_atomically(output, data, inputs=inputs)
    except FileNotFoundError as exc:
        raise RenderError(str(exc)) from None
    return output

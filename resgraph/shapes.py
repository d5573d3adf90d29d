"""Pass 4 of the pipeline: the graph IR -> every node's output shape, parameter count and MACs.

Shapes are per sample (the batch dimension is implicit) and come from each op's own shape
rule; nothing here imports torch. A shortcut whose shapes disagree is reported here.
"""

from __future__ import annotations

from .diagnostics import Diagnostics
from .graph import Graph
from .ops.base import ShapeError


def infer_shapes(graph: Graph, diagnostics: Diagnostics) -> bool:
    """Fill `node.shape` and `node.meta['params' | 'macs']` in topological order.

    Requires an acyclic graph with resolved references. A node whose inputs have no shape
    (because an earlier node failed) is skipped, so each fault is reported once.
    Returns True when every node got a shape.
    """
    complete = True
    for node in graph.topological_order():
        if node.is_input:
            continue
        shapes = [graph.nodes[name].shape for name in node.inputs]
        if node.op is None or any(shape is None for shape in shapes):
            complete = False
            continue
        if not _read_outputs(graph, node, diagnostics) or not _batch_of_one(graph, node, diagnostics):
            complete = False
            continue
        try:
            shape = node.op.infer_shape(shapes, node.meta)
        except ShapeError as exc:
            diagnostics.error(exc.code, f"`{node.name}`: {exc.message}", node.attr_span(exc.attr) or node.span,
                              help=exc.help, notes=node.notes)
            complete = False
            continue
        node.shape = tuple(shape)
        node.meta["params"] = node.op.count_params(shapes, node.shape, node.meta)
        node.meta["macs"] = node.op.count_macs(shapes, node.shape, node.meta)
        _warn_needless_projection(node, diagnostics)
        if node.meta["params"] > OVERSIZED:
            gib = node.meta["params"] * 4 / 2**30
            diagnostics.warning("RG037", f"`{node.name}` has {node.meta['params']:,} parameters ({gib:,.0f} GiB in "
                                "float32)", node.span, notes=node.notes,
                                help="check its sizes; `resgraph compile` refuses networks over `--max-memory`")
    return complete


def _read_outputs(graph: Graph, node, diagnostics: Diagnostics) -> bool:
    """Check how `node` reads nodes with several outputs: one output at a time, as `name:k` with k in range
    (RG084, RG085). For an output item, leaves the outputs it picks from in its meta."""
    from .ops.layout import OutputItem

    if isinstance(node.op, OutputItem):
        producer = graph.nodes[node.inputs[0]]
        outputs = producer.meta.get("outputs") if producer.op is not None and producer.op.multiple_outputs else None
        shown = node.local_name
        span = node.source.span(node.path) if node.source is not None else None   # the reference `name:k`
        if outputs is None:
            diagnostics.error("RG084", f"`{shown}` reads output {node.op.index} of `{producer.name}`, which has a "
                              "single output", span, notes=node.notes,
                              help=f"refer to it as `{shown.rpartition(':')[0]}`; `name:k` reads output k of a "
                                   "node with several outputs (chunk, split)")
            return False
        if node.op.index >= len(outputs):
            diagnostics.error("RG084", f"`{shown}` reads output {node.op.index}, but `{producer.name}` has "
                              f"{len(outputs)} output{'s' if len(outputs) != 1 else ''}", span, notes=node.notes,
                              help=f"outputs are numbered from 0 to {len(outputs) - 1}")
            return False
        node.meta["outputs_of_input"] = outputs
        return True
    for position, name in enumerate(node.inputs):
        producer = graph.nodes[name]
        if producer.op is not None and producer.op.multiple_outputs:
            count = len(producer.meta.get("outputs", ()))
            local = name[len(node.prefix):] if name.startswith(node.prefix) else name
            diagnostics.error("RG085", f"`{node.name}` reads `{name}`, which has {count} outputs",
                              node.input_span(position), notes=node.notes,
                              help=f"read one of them: `{local}:0` to `{local}:{count - 1}`")
            return False
    return True


def _batch_of_one(graph: Graph, node, diagnostics: Diagnostics) -> bool:
    """Track tensors with a batch of 1 (a `parameter` or `buffer`, and what is computed from them alone): they
    broadcast in `add` and `mul`, and `expand` with a second input gives them its batch, but `concat` would
    fail at run time (RG087). Leaves `meta["batch_of_one"]` on such nodes."""
    op = node.op
    if op.max_inputs == 0:
        node.meta["batch_of_one"] = True
        return True
    ones = [graph.nodes[name].meta.get("batch_of_one", False) for name in node.inputs]
    if not any(ones):
        return True
    name = op.op_name()
    if name == "expand" and len(node.inputs) == 2 and not ones[1]:
        return True
    if all(ones) or (name == "expand" and len(node.inputs) == 1):
        node.meta["batch_of_one"] = True
        return True
    if name == "concat":
        position = ones.index(True)
        one, other = node.inputs[position], node.inputs[ones.index(False)]
        local = lambda n: n[len(node.prefix):] if n.startswith(node.prefix) else n   # noqa: E731
        diagnostics.error("RG087", f"`{node.name}` concatenates `{one}`, which has a batch of 1 (a parameter or "
                          f"buffer), with the batched `{other}`", node.input_span(position), notes=node.notes,
                          help=f"bring it to the batch first: `{{op: expand, inputs: [{local(one)}, {local(other)}]}}`")
        return False
    return True   # add and mul broadcast; other ops read one input


# More parameters than any real layer has (2^31: more than an int32 can index); almost surely a
# mistake in a size, reported by `validate` before anyone tries to allocate it.
OVERSIZED = 2**31


def _warn_needless_projection(node, diagnostics: Diagnostics) -> None:
    """`shortcut: project` on an add whose shortcut keeps its shape: legitimate (the paper's option C)
    but often meant as option B, and it adds parameters; a warning, once per definition."""
    from .ops.merge import Shortcut

    plans = node.meta.get("shortcuts") or []
    if any(plan.kind is Shortcut.PROJECT and plan.in_shape == plan.out_shape for plan in plans):
        diagnostics.warning("RG053", f"`{node.name}` projects a shortcut whose shape does not change "
                            f"({list(plans[0].in_shape)})", node.attr_span("shortcut"),
                            help="`shortcut: auto` projects only where the shape changes (option B); keep "
                                 "`project` to project every shortcut (option C)", notes=node.notes)

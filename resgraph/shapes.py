"""Pass 4 of the pipeline: the graph IR -> every node's output shape, parameter count and MACs.

Shapes are per sample (the batch dimension is implicit) and come from each op's own shape
rule; nothing here imports torch. A shortcut whose shapes disagree is reported here.
"""

from __future__ import annotations

from .diagnostics import Diagnostics
from .graph import Graph
from .ops.base import ShapeError, fmt_shape


def infer_shapes(graph: Graph, diagnostics: Diagnostics) -> bool:
    """Fill `node.shape` and `node.meta['params' | 'macs']` in topological order.

    Requires an acyclic graph with resolved references. A node whose inputs have no shape
    (because an earlier node failed) is skipped, so each fault is reported once.
    Returns True when every node got a shape.
    """
    complete = True
    for node in graph.topological_order():
        if node.is_input:
            try:
                check_tensor_limits(node.shape or (), 0, "its shape")
            except ShapeError as exc:
                diagnostics.error(exc.code, f"input `{node.name}`: {exc.message}", node.span, notes=node.notes,
                                  help="check the input's dims")
                node.shape, complete = None, False
            continue
        shapes = [graph.nodes[name].shape for name in node.inputs]
        if node.op is None or any(shape is None for shape in shapes):
            complete = False
            continue
        try:
            shape = node.op.infer_shape(shapes, node.meta)
            node.meta["params"] = node.op.count_params(shapes, tuple(shape), node.meta)
            check_tensor_limits(shape, node.meta["params"])
        except ShapeError as exc:
            diagnostics.error(exc.code, f"`{node.name}`: {exc.message}", node.attr_span(exc.attr) or node.span,
                              help=exc.help, notes=node.notes)
            complete = False
            continue
        node.shape = tuple(shape)
        node.meta["macs"] = node.op.count_macs(shapes, node.shape, node.meta)
        _warn_needless_projection(node, diagnostics)
        if node.meta["params"] > OVERSIZED:
            gib = node.meta["params"] * 4 / 2**30
            diagnostics.warning("RG037", f"`{node.name}` has {node.meta['params']:,} parameters ({gib:,.0f} GiB in "
                                "float32)", node.span, notes=node.notes,
                                help="check its sizes; `resgraph compile` refuses networks over `--max-memory`")
    return complete


# torch keeps sizes, element counts and byte counts in int64: a tensor of n elements of 8 bytes (float64, the
# widest dtype `compile` offers) needs 8·n < 2**63. Every output (per sample) and every node's parameters (all its
# tensors together, so each one) stay below this, so that a spec `validate` accepts always compiles.
MAX_ELEMENTS = 2**60 - 1


def check_tensor_limits(shape: "tuple[int, ...]", params: int, what: str = "the output") -> None:
    """Raise ShapeError (RG046) where an output shape or a parameter count is beyond what torch can hold."""
    numel = 1
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ShapeError(f"{what} would have the dimension {dim!r}", code="RG046")
        numel *= dim
        if numel > MAX_ELEMENTS:
            shown = fmt_shape(shape) if sum(len(str(d)) for d in shape) < 120 else f"{len(shape)} dimensions"
            raise ShapeError(f"{what} ({shown}) would have more than 2**60 elements per sample, beyond "
                             "what a torch tensor can hold", code="RG046",
                             help="check the sizes that lead here (input dims, `out`, `scale`, kernel and stride)")
    if params > MAX_ELEMENTS:
        raise ShapeError(f"the parameters ({params:,}) are more than 2**60 elements, beyond what a torch tensor "
                         "can hold", code="RG046", help="check the sizes that lead here (input dims and `out`)")


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

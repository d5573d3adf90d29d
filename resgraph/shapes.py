"""Pass 4 of the pipeline: the graph IR -> every node's output shape, parameter count and MACs.

Shapes are per sample (the batch dimension is implicit) and come from each op's own shape
rule; nothing here imports torch. A shortcut whose shapes disagree is reported here.
"""

from __future__ import annotations

from .diagnostics import Diagnostics
from .graph import Graph
from .ops.base import ShapeError
from .plugins import plugin_of


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
        try:
            node.dtype = node.op.infer_dtype([graph.nodes[name].dtype for name in node.inputs])
            shape = node.op.infer_shape(shapes, node.meta)
            node.shape = tuple(shape)
            node.meta["params"] = node.op.count_params(shapes, node.shape, node.meta)
            node.meta["macs"] = node.op.count_macs(shapes, node.shape, node.meta)
        except ShapeError as exc:
            node.shape = None
            diagnostics.error(exc.code, f"`{node.name}`: {exc.message}", node.attr_span(exc.attr) or node.span,
                              help=exc.help, notes=node.notes)
            complete = False
            continue
        except Exception as exc:
            if plugin_of(node.op) is None:
                raise  # a bug in resgraph: the CLI reports it as an internal error
            node.shape = None
            _report_plugin_failure(node, exc, diagnostics)
            complete = False
            continue
        _warn_needless_projection(node, diagnostics)
        if node.meta["params"] > OVERSIZED:
            gib = node.meta["params"] * 4 / 2**30
            diagnostics.warning("RG037", f"`{node.name}` has {node.meta['params']:,} parameters ({gib:,.0f} GiB in "
                                "float32)", node.span, notes=node.notes,
                                help="check its sizes; `resgraph compile` refuses networks over `--max-memory`")
    return complete


def _report_plugin_failure(node, exc: Exception, diagnostics: Diagnostics) -> None:
    """An exception other than ShapeError in a plugin op's rules: a bug in the plugin, reported at the node."""
    from .plugins import describe_exception, plugin_frame

    module = plugin_of(node.op)
    where = plugin_frame(exc, node.op)
    diagnostics.error("RG093", f"`{node.name}`: plugin `{module}` raised {describe_exception(exc)} in the rules of "
                      f"op `{node.op.op_name()}`" + (f" (at {where})" if where else ""), node.span,
                      help="this is a bug in the plugin: report it to its authors; a shape rule rejects an input by "
                           "raising `ShapeError(message, help=...)`", notes=node.notes)


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

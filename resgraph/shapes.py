"""Pass 4 of the pipeline: the graph IR -> every node's output shape, parameter count and MACs.

Shapes are per sample (the batch dimension is implicit) and come from each op's own shape
rule; nothing here imports torch. A shortcut whose shapes disagree is reported here.
"""

from __future__ import annotations

import math
import sys

from .diagnostics import Diagnostics, Edit, Span
from .graph import Graph
from .ops.base import Op, ShapeError, fmt_shape
from .ops.dense import Linear
from .ops.merge import Shortcut
from .plugins import plugin_of


def infer_shapes(graph: Graph, diagnostics: Diagnostics) -> bool:
    """Fill `node.shape` and `node.meta['params' | 'macs']` in topological order.

    Requires an acyclic graph with resolved references. A node whose inputs have no shape
    (because an earlier node failed) is skipped, so each fault is reported once.
    Returns True when every node got a shape.
    """
    complete = True
    output_item = _output_item_class()
    nodes = graph.nodes
    # What few graphs have, noted as the nodes are reached (producers come first), so that the checks of
    # several outputs, batches of one, integer dtypes and spatial maps run only where they can apply
    several = ones = ints = maps = False
    for node in graph.topological_order():
        if node.is_input:
            try:
                check_tensor_limits(node.shape or (), 0, "its shape")
            except ShapeError as exc:
                diagnostics.error(exc.code, f"input `{node.name}`: {exc.message}", node.span, notes=node.notes,
                                  help="check the input's dims")
                node.shape, complete = None, False
            ints = ints or node.dtype != "float"
            continue
        op = node.op
        shapes = [nodes[name].shape for name in node.inputs]
        if op is None or None in shapes:   # shapes are tuples or None
            complete = False
            continue
        several = several or op.multiple_outputs
        meta = node.meta
        if ((several or type(op) is output_item) and not _read_outputs(graph, node, diagnostics, output_item)) or \
                ((ones or op.max_inputs == 0) and not _batch_of_one(graph, node, diagnostics)):
            complete = False
            continue
        try:
            if ints or type(op).infer_dtype is not _FLOAT_DTYPE:
                node.dtype = op.infer_dtype([nodes[name].dtype for name in node.inputs])
            else:
                node.dtype = "float"   # what Op.infer_dtype gives where no input is `int64`
            shape = op.infer_shape(shapes, meta)
            node.shape = tuple(shape)
            meta["params"] = op.count_params(shapes, node.shape, meta)
            check_tensor_limits(node.shape, meta["params"])
            meta["macs"] = op.count_macs(shapes, node.shape, meta)
        except ShapeError as exc:
            node.shape = None
            if not _reversed_add(node, graph, shapes, diagnostics):
                diagnostics.error(exc.code, f"`{node.name}`: {exc.message}", node.attr_span(exc.attr) or node.span,
                                  help=exc.help, notes=node.notes)
            complete = False
            continue
        except Exception as exc:
            if plugin_of(op) is None:
                raise  # a bug in resgraph: the CLI reports it as an internal error
            node.shape = None
            _report_plugin_failure(node, exc, diagnostics)
            complete = False
            continue
        ints = ints or node.dtype != "float"
        ones = ones or "batch_of_one" in meta
        if meta.get("shortcuts"):
            _warn_needless_projection(node, diagnostics)
        if maps or op.makes_map:
            _follow_map(node, graph, shapes, diagnostics)
            maps = maps or "map_from" in meta
        if meta["params"] > OVERSIZED and "RG037" not in node.allow:
            gib = meta["params"] * 4 / 2**30
            diagnostics.warning("RG037", f"`{node.name}` has {meta['params']:,} parameters ({gib:,.0f} GiB in "
                                "float32)", node.span, notes=node.notes,
                                help="check its sizes; `resgraph compile` refuses networks over `--max-memory`")
    return complete


_FLOAT_DTYPE = Op.infer_dtype


def _report_plugin_failure(node, exc: Exception, diagnostics: Diagnostics) -> None:
    """An exception other than ShapeError in a plugin op's rules: a bug in the plugin, reported at the node."""
    from .plugins import describe_exception, plugin_frame

    module = plugin_of(node.op)
    where = plugin_frame(exc, node.op)
    diagnostics.error("RG093", f"`{node.name}`: plugin `{module}` raised {describe_exception(exc)} in the rules of "
                      f"op `{node.op.op_name()}`" + (f" (at {where})" if where else ""), node.span,
                      help="this is a bug in the plugin: report it to its authors; a shape rule rejects an input by "
                           "raising `ShapeError(message, help=...)`", notes=node.notes)


def _output_item_class() -> type | None:
    """`OutputItem` once ops/layout.py is imported; before, no node is one (expansion imports it to make one),
    and validating a spec that reads no `name:k` does not import the layout ops."""
    layout = sys.modules.get("resgraph.ops.layout")
    return None if layout is None else layout.OutputItem


def _read_outputs(graph: Graph, node, diagnostics: Diagnostics, output_item: type | None) -> bool:
    """Check how `node` reads nodes with several outputs: one output at a time, as `name:k` with k in range
    (RG084, RG085). For an output item, leaves the outputs it picks from in its meta."""
    if type(node.op) is output_item:   # `type`: pydantic classes make isinstance slow, and this runs per node
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
    nodes = graph.nodes
    if not any("batch_of_one" in nodes[name].meta for name in node.inputs):
        return True   # the common case: no parameter or buffer upstream
    ones = [nodes[name].meta.get("batch_of_one", False) for name in node.inputs]
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


# torch keeps sizes, element counts and byte counts in int64: a tensor of n elements of 8 bytes (float64, the
# widest dtype `compile` offers) needs 8·n < 2**63. Every output (per sample) and every node's parameters (all its
# tensors together, so each one) stay below this, so that a spec `validate` accepts always compiles.
MAX_ELEMENTS = 2**60 - 1
_INT = frozenset({int})


def check_tensor_limits(shape: "tuple[int, ...]", params: int, what: str = "the output") -> None:
    """Raise ShapeError (RG046) where an output shape or a parameter count is beyond what torch can hold."""
    if params <= MAX_ELEMENTS and _INT.issuperset(map(type, shape)) and min(shape, default=0) >= 0 and \
            math.prod(shape) <= MAX_ELEMENTS:
        return   # the common case (every dim an int, not a bool, and >= 0), without a Python loop
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
    plans = node.meta.get("shortcuts")
    if not plans or "RG053" in node.allow:
        return
    if any(plan.kind is Shortcut.PROJECT and plan.in_shape == plan.out_shape for plan in plans):
        diagnostics.warning("RG053", f"`{node.name}` projects a shortcut whose shape does not change "
                            f"({list(plans[0].in_shape)})", node.attr_span("shortcut"),
                            help="`shortcut: auto` projects only where the shape changes (option B); keep "
                                 "`project` to project every shortcut (option C)", notes=node.notes)


def _reads(graph: Graph, consumer: str, producer: str) -> bool:
    """True when `consumer` is computed from `producer` (through any path)."""
    pending, seen = [consumer], set()
    while pending:
        name = pending.pop()
        if name == producer:
            return True
        if name not in seen and name in graph.nodes:
            seen.add(name)
            pending.extend(graph.nodes[name].inputs)
    return False


def _reversed_add(node, graph: Graph, shapes: list, diagnostics: Diagnostics) -> bool:
    """An add whose shortcut is listed first: the second input is computed from the first (so it is the
    branch), and the shapes work the other way round. Reports it (with the swap as a fix) and returns True."""
    from .ops.merge import Add

    if not isinstance(node.op, Add) or len(node.inputs) != 2:
        return False
    first, second = node.inputs
    try:
        node.op.infer_shape([shapes[1], shapes[0]], {})
    except ShapeError:
        return False
    if not _reads(graph, second, first):
        return False
    span = node.attr_span("inputs")
    written = node.source.data if node.source is not None else None
    for segment in node.path + ("inputs",):
        written = written[segment] if isinstance(written, (dict, list)) else None
    fixes = ()
    if isinstance(written, list) and len(written) == 2 and all(isinstance(w, str) for w in written):
        first, second = written
        fixes = (Edit(span, f"[{second}, {first}]"),) if span is not None else ()
        order = f"`inputs: [{second}, {first}]`"
    else:
        order = "the branch first"
    diagnostics.error("RG050", f"`{node.name}`: the inputs are reversed: the first input of an add is the branch "
                      f"and the shortcut comes after it, but `{first}` ({fmt_shape(shapes[0])}) is what the branch "
                      f"`{second}` ({fmt_shape(shapes[1])}) is computed from", span or node.span,
                      help=f"list the branch first, then the shortcut: {order}", notes=node.notes, fixes=fixes)
    return True


def _follow_map(node, graph: Graph, shapes: list, diagnostics: Diagnostics) -> None:
    """Track spatial maps, and warn (RG054) at a `linear` that reads one: a forgotten `flatten`.

    A node's output is a map when its op makes one (`makes_map`: convolution, pooling, resampling), or
    when it reads a map and keeps its rank and its trailing (spatial) dimensions: norms, activations,
    merges, dropout. Anything else ends it: `flatten`, `linear`, attention. A `linear` acts on the last
    dimension, so on a map of rank 2 or more it mixes one spatial axis (its output is [C, H, 10]), which is
    what a forgotten `flatten` gives; a `linear` over tokens ([L, D] from a `linear` or an input) is not warned.
    Records `meta['map_from']`: the node that made the map."""
    op = type(node.op)
    source = node.name if op.makes_map else None
    nodes = graph.nodes
    for name, shape in zip(node.inputs, shapes):
        made = nodes[name].meta.get("map_from")
        if made is None:
            continue
        if op is Linear and len(shape) >= 2 and "RG054" not in node.allow:
            diagnostics.warning(
                "RG054", f"`{node.name}`: `linear` is applied to the last dimension of the map {fmt_shape(shape)} "
                f"made by `{made}`, which was never flattened or pooled to a vector: its output is "
                f"{fmt_shape(node.shape)}", node.span, notes=node.notes, fixes=_insert_flatten(node),
                help="insert `flatten` before it (a global pooling first, if the map is larger than 1x1); if the "
                     "last spatial dimension is meant, say so with `allow: [RG054]`")
        if source is None and len(shape) == len(node.shape) and shape[1:] == node.shape[1:]:   # tuples both
            source = made
    if source is not None:
        node.meta["map_from"] = source


def _insert_flatten(node) -> tuple:
    """A `flatten` node written just before the linear, where the linear reads the node before it."""
    source = node.source
    span = node.span
    if source is None or span is None or not node.path:
        return ()
    nodes = source.data
    for segment in node.path[:-1]:
        nodes = nodes[segment]
    entry = nodes.get(node.path[-1]) if isinstance(nodes, dict) else None
    line = source.text.splitlines()[span.line - 1] if span.line <= len(source.text.splitlines()) else ""
    if not isinstance(entry, (dict, str)) or (isinstance(entry, dict) and "inputs" in entry) \
            or line[:span.col - 1].strip():
        return ()
    name = next(n for n in ("flatten", f"{node.path[-1]}_flatten", f"{node.path[-1]}_flatten_") if n not in nodes)
    point = Span(span.file, span.line, span.col, span.line, span.col)
    return (Edit(point, f"{name}: flatten\n" + " " * (span.col - 1)),)

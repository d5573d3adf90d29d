"""Pass 5 of the pipeline (after shapes): warnings a reviewer would make, and the spec's `allow`.

Lints read the shaped graph and only warn; `allow: [RGnnn]` at the top of a spec (or in a block
definition, for warnings located in that block) silences warning codes. Errors cannot be allowed.
"""

from __future__ import annotations

from .diagnostics import CODES, Diagnostic, Diagnostics, did_you_mean
from .expand import Program
from .graph import Graph, Node
from .ops.activation import _Activation
from .ops.merge import Add
from .ops.norm import _BatchNorm


def lint_graph(graph: Graph, diagnostics: Diagnostics) -> None:
    """Requires shapes; adds warnings RG100 (a bias right before batch norm) and RG101 (an activation
    that ends a residual branch right before its `add`), once per definition, in the order of the nodes."""
    nodes = graph.nodes
    adds: list[Node] = []
    biased: dict[str, Node] = {}   # weight layers with a bias that a batch norm reads (usually none)
    for node in nodes.values():
        op = node.op
        if op is None:
            continue
        cls = type(op)   # `type`: a cheap test per node; what a class is, is worked out once per class
        if cls is Add:
            adds.append(node)
            continue
        norm = _BATCH_NORMS.get(cls)
        if norm is None:
            norm = _BATCH_NORMS[cls] = issubclass(cls, _BatchNorm) or cls.op_name().startswith("batchnorm")
        if norm:
            for name in node.inputs:
                producer = nodes.get(name)
                if producer is not None and _has_bias(producer):
                    biased[name] = producer
    if biased:
        readers: dict[str, list[str]] = {name: [] for name in biased}   # one entry per use, as `Graph.users`
        for node in nodes.values():
            for producer in node.inputs:
                if producer in readers:
                    readers[producer].append(node.name)
        warned = [node for node in biased.values() if len(readers[node.name]) == 1
                  and _is_batch_norm(nodes[readers[node.name][0]])]
        adds = sorted(adds + warned, key=lambda node: node.index)
    for node in adds:
        if type(node.op) is Add:
            _activation_before_add(node, graph, diagnostics)
        else:
            _bias_before_norm(node, graph, readers[node.name][0], diagnostics)


def _has_bias(node: Node) -> bool:
    op = node.op
    return op is not None and type(op).weight_layer and getattr(op, "bias", None) is True \
        and "RG100" not in node.allow


def _is_batch_norm(node: Node) -> bool:
    if node.op is None:
        return False
    cls = type(node.op)
    if cls not in _BATCH_NORMS:   # once per op class: op_name() is not free
        _BATCH_NORMS[cls] = issubclass(cls, _BatchNorm) or cls.op_name().startswith("batchnorm")
    return _BATCH_NORMS[cls]


_BATCH_NORMS: dict[type, bool] = {}


def _bias_before_norm(node: Node, graph: Graph, reader: str, diagnostics: Diagnostics) -> None:
    """`node`, a weight layer with a bias, is read by the batch norm `reader` alone."""
    op = node.op
    norm = graph.nodes[reader]
    explicit = "bias" in op.model_fields_set
    diagnostics.warning(
        "RG100", f"`{node.name}` has a bias, but batch norm `{norm.local_name}` right after it subtracts the mean "
        f"and cancels it", node.attr_span("bias") if explicit else node.span,
        help=("set `bias: false`" if explicit else f"add `bias: false` (a `{op.op_name()}` has a bias by default)")
        + "; the norm's own shift (beta) does its job. To keep it, add `allow: [RG100]` to the node or the spec",
        notes=node.notes)


def _activation_before_add(node: Node, graph: Graph, diagnostics: Diagnostics) -> None:
    if len(node.inputs) < 2 or "RG101" in node.allow:   # `node` is an add
        return
    branch = graph.nodes.get(node.inputs[0])
    # `activation` (ops/named_activation.py, imported only by specs that use it) names an activation op
    named = branch is not None and branch.op is not None and branch.op.op_name() == "activation"
    if branch is None or branch.op is None or not (named or isinstance(branch.op, _Activation)):
        return
    if branch.name in node.inputs[1:]:
        return
    name = str(branch.op.function) if named else branch.op.op_name()
    sign = (", so the residual it adds is never negative" if name in ("relu", "relu6", "sigmoid") else "")
    diagnostics.warning(
        "RG101", f"the residual branch of `{node.name}` ends with activation `{branch.local_name}` ({name}) right "
        f"before the `add`{sign}", node.input_span(0),
        help="end the branch with its norm (or convolution) and apply the activation after the `add` (the original "
             "ResNet) or at the start of the next branch (pre-activation; He et al. 2016 found `relu` before the "
             "addition trains worse). If it is intended, add `allow: [RG101]` to the `add` or the spec",
        notes=branch.notes)


def check_allow(program: Program, diagnostics: Diagnostics) -> None:
    """Every `allow` entry names a known code (RG012 otherwise)."""
    sources = [(program.source, (), program.spec.allow)] + [
        (block.source, block.path, block.definition.allow) for block in program.blocks.values()]
    for source_file, base, codes in sources:
        for position, code in enumerate(codes):
            if code not in CODES:
                diagnostics.error("RG012", f"`allow` names an unknown code `{code}`",
                                  source_file.span(base + ("allow", position)),
                                  help=did_you_mean(code, CODES) or "the codes are listed in docs/errors.md")


def allowed(program: Program, warning: Diagnostic) -> bool:
    """Whether `allow` silences this warning: the spec's own list, or that of the block it is located in."""
    if warning.is_error:
        return False
    if warning.code in program.spec.allow:
        return True
    span = warning.span
    if span is None:
        return False
    for block in program.blocks.values():
        if warning.code not in block.definition.allow or block.source.path != span.file:
            continue
        where = block.source.span(block.path)
        if where is not None and where.line <= span.line <= where.end_line:
            return True
    return False

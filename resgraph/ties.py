"""Pass 4b of the pipeline: tied parameters (`tie: {weight: wte.weight}`) resolved, checked and counted once.

A tied tensor belongs to the node it names; the node that ties to it holds the same tensor and counts
it no more, as `sum(p.numel() for p in model.parameters())` does. Nothing here imports torch.
"""

from __future__ import annotations

from .diagnostics import Diagnostics, Note, did_you_mean
from .graph import Graph, Node
from .ops.base import fmt_shape, prod

TIE_HELP = "tie `linear`, `embedding` or convolution weights, e.g. `tie: {weight: wte.weight}`"


def check_ties(graph: Graph, diagnostics: Diagnostics) -> bool:
    """Resolve each `tie` to a node of the same scope and a parameter of the same shape (RG048, RG049); leave
    `node.meta['tied']` (parameter -> (node name, its parameter)) and take the tied tensors out of
    `node.meta['params']`. Requires shapes and counts (`infer_shapes`); returns True when every tie holds."""
    sound = True
    for node in graph:
        tie = getattr(node.op, "tie", None)
        if not tie or node.shape is None:
            continue
        own = _parameters(graph, node)
        tied: dict[str, tuple[str, str]] = {}
        for name, reference in tie.items():
            span = node.source.span(node.path + ("tie", name)) if node.source is not None else node.span
            local, _, parameter = reference.partition(".")
            if own is None or name not in own:
                diagnostics.error("RG048", f"`{node.name}` (`{node.op.op_name()}`) has no parameter `{name}` to tie",
                                  span, notes=node.notes, help=_parameters_help(node, own))
                sound = False
                continue
            source = graph.nodes.get(node.prefix + local)
            if source is None or source.is_input or source.op is None or source is node:
                diagnostics.error("RG048", _missing(graph, node, local), span, notes=node.notes,
                                  help=_missing_help(graph, node, local))
                sound = False
                continue
            if source.shape is None:
                continue   # its own error is reported
            theirs = _parameters(graph, source)
            if theirs is None or parameter not in theirs:
                diagnostics.error("RG048", f"`{source.name}` (`{source.op.op_name()}`) has no parameter "
                                  f"`{parameter}` to tie to", span, notes=node.notes + _defined(source),
                                  help=_parameters_help(source, theirs))
                sound = False
                continue
            chained = (getattr(source.op, "tie", None) or {}).get(parameter)
            if chained is not None:
                diagnostics.error("RG048", f"`{source.name}.{parameter}` is itself tied to `{chained}`", span,
                                  notes=node.notes + _defined(source),
                                  help=f"tie to the tensor's owner: `{name}: {chained}`")
                sound = False
                continue
            if tuple(own[name]) != tuple(theirs[parameter]):
                diagnostics.error("RG049", f"`{node.name}.{name}` is {fmt_shape(own[name])} but `{source.name}."
                                  f"{parameter}`, which it is tied to, is {fmt_shape(theirs[parameter])}", span,
                                  notes=node.notes + _defined(source), help=_shape_help(node, source))
                sound = False
                continue
            tied[name] = (source.name, parameter)
            node.meta["params"] -= prod(own[name])
        if tied:
            node.meta["tied"] = tied
    return sound


def _parameters(graph: Graph, node: Node) -> dict | None:
    shapes = [graph.nodes[name].shape for name in node.inputs]
    return node.op.parameter_shapes(shapes, node.shape, node.meta)


def _parameters_help(node: Node, parameters: dict | None) -> str:
    """What a tie may name of `node`: its parameters, or that its op declares none."""
    listed = ", ".join(f"`{p}`" for p in parameters or ())
    return f"its parameters: {listed}" if listed else \
        f"op `{node.op.op_name()}` declares no parameters that can be tied; {TIE_HELP}"


def _defined(node: Node) -> tuple[Note, ...]:
    return (Note(f"`{node.name}` is here", node.span),) if node.span is not None else ()


def _missing(graph: Graph, node: Node, local: str) -> str:
    where = f"block instance `{node.prefix[:-1]}`" if node.prefix else "the network"
    if node.prefix + local == node.name:
        return f"`{node.name}` ties a parameter to itself"
    if any(name.startswith(node.prefix + local + ".") for name in graph.nodes):
        return f"`{local}` is a block call: a tie names an op node of {where}"
    if node.prefix + local in graph.nodes:
        return f"`{local}` is an input of {where}, which holds no parameters"
    return f"`{node.name}` ties to `{local}`, which is no node of {where}"


def _missing_help(graph: Graph, node: Node, local: str) -> str:
    siblings = [n.local_name for n in graph if n.prefix == node.prefix and n.op is not None and n is not node
                and "." not in n.local_name]
    suggestion = did_you_mean(local, siblings)
    if suggestion:
        return suggestion
    return "a tie names an op node of the same scope (left-out nodes, with a false `when`, hold no parameters) " \
           "and its parameter: `node.weight`"


def _shape_help(node: Node, source: Node) -> str:
    if node.op.op_name() == "linear" and source.op.op_name() == "embedding":
        return (f"a `linear` weight [out, in] ties to an `embedding` weight [num, dim]: give the linear `out: "
                f"{source.op.num}` and an input of {source.op.dim} features")
    return "tied tensors must have one shape"

"""The first half of drawing: the shaped graph IR -> a drawing model (boxes, arrows, groups), no graphviz.

A `Drawing` says what is shown and how it reads (labels, kinds of arrows, which boxes stand for collapsed
block calls, which are marked added, removed, changed or failing); `dot.py` turns it into DOT text. Other
outputs (the interactive viewer, the diff) build on the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..graph import Graph, Node

# Arrow kinds: `data` (the main path), the shortcut kinds of an `add`, a `concat` skip, and the drawing's own.
SKIP_KINDS = ("identity", "project", "pad", "concat")
KIND_NAMES = {"identity": "identity", "project": "projection", "pad": "zero-pad", "concat": "concat"}


@dataclass
class Box:
    """One drawn box: an op, a graph input or output, a collapsed block call or instance, a note or a sum."""

    id: str                               # stable key: a node name, a scope path, or `(...)` for the drawing's own
    lines: tuple[str, ...]                # the label, one entry per line (escaped only when written out)
    kind: str                             # input | output | op | block | sum | note
    op: str = ""                          # the op's name (`conv2d`), `block` for a collapsed call
    group: str | None = None              # the id of the group (cluster) it sits in
    tooltip: str = ""
    status: str = ""                      # "", added, removed, changed, error
    node: str | None = None               # the IR node or scope it stands for
    shape_in: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None  # its output shape
    params: int = 0
    macs: int = 0
    members: list[str] = field(default_factory=list)   # for a collapsed box: the IR nodes it stands for
    part_of: str | None = None            # a box drawn as part of another (the sum after a collapsed box)


@dataclass
class Arrow:
    tail: str
    head: str
    label: tuple[str, ...] = ()
    kind: str = "data"                    # data | identity | project | pad | concat | size | output | note
    status: str = ""
    around: bool = False                  # an arc around its tail (a collapsed box): from the tail's input side


@dataclass
class Group:
    """A cluster: an expanded block call or instance, or a block definition (`--blocks`)."""

    id: str
    label: str
    parent: str | None = None
    status: str = ""


@dataclass
class Drawing:
    title: str
    boxes: dict[str, Box] = field(default_factory=dict)
    arrows: list[Arrow] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)

    def add_box(self, box: Box) -> Box:
        self.boxes.setdefault(box.id, box)
        return self.boxes[box.id]

    def kinds(self) -> list[str]:
        """What the legend explains: the arrow kinds, box kinds and statuses this drawing uses, in a fixed order."""
        used = {a.kind for a in self.arrows} | {"block" for b in self.boxes.values() if b.kind == "block"}
        used |= {b.status for b in self.boxes.values() if b.status} | {a.status for a in self.arrows if a.status}
        order = ("identity", "project", "pad", "concat", "size", "block", "added", "removed", "changed", "error")
        return [kind for kind in order if kind in used]


def dims(shape: Iterable[int] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else "?"


def op_label(node: Node) -> str:
    """The op's label, with what shape inference decided where the op says (`add (projection)`)."""
    shaped = getattr(node.op, "shaped_label", None)
    return shaped(node.meta) if shaped is not None else node.op.label()


def node_lines(node: Node) -> tuple[str, ...]:
    """A node's name and its op's label, once where they say the same (`relu`, not `relu / relu`)."""
    name, label = node.local_name, op_label(node)
    if label == name or label.startswith(name + " ") or label.startswith(name + ","):
        return (label,)
    if name.rstrip("0123456789_") == label:   # `relu1`, `relu_2`: the name says the op
        return (name,)
    return (name, label)


def skip_arrows(graph: Graph, node: Node) -> dict[int, str]:
    """Input position -> skip kind for the inputs of `node` that are skips: the shortcuts of an `add`, and the
    inputs of a `concat` carried around other computation that reaches it (U-Net, DenseNet)."""
    plans = node.meta.get("shortcuts")
    if plans is not None:
        return {position: "project" if _explicit_projection(graph, node, position) is not None else plan.kind.value
                for position, plan in enumerate(plans, start=1)}
    if node.op is not None and node.shape is None and getattr(node.op, "op_name", lambda: "")() == "add":
        declared = getattr(node.op, "shortcut", "identity")   # it failed: drawn as declared
        kind = declared if declared in ("project", "pad") else "identity"
        return {position: kind for position in range(1, len(node.inputs))}
    if node.op is None or getattr(node.op, "op_name", lambda: "")() != "concat" or len(node.inputs) < 2:
        return {}
    import networkx as nx

    g = graph.to_networkx()
    found = {}
    for position, producer in enumerate(node.inputs):
        others = [other for other in node.inputs if other != producer]
        if producer in g and any(other in g and nx.has_path(g, producer, other) for other in others):
            found[position] = "concat"
    return found


def _explicit_projection(graph: Graph, node: Node, position: int) -> tuple[int, ...] | None:
    """The stride of a projection written out in the block (a convolution of the same instance feeding the add's
    skip input, as in the pre-activation blocks), else None."""
    producer = graph.nodes.get(node.inputs[position]) if position < len(node.inputs) else None
    if producer is None or producer.op is None or producer.prefix != node.prefix or \
            not producer.op.op_name().startswith("conv") or position == 0:
        return None
    stride = getattr(producer.op, "stride", 1)
    return tuple(stride) if isinstance(stride, (tuple, list)) else (stride,)


def shortcut_stride(graph: Graph, node: Node, position: int) -> tuple[int, ...]:
    """The stride of the shortcut at input `position` of an add: its plan's, or its explicit projection's."""
    explicit = _explicit_projection(graph, node, position)
    if explicit is not None:
        return explicit
    plans = node.meta.get("shortcuts") or ()
    return plans[position - 1].stride if 0 < position <= len(plans) else ()


def shortcut_text(kind: str, stride: tuple[int, ...] = ()) -> str:
    """`projection: 1x1 conv, stride 2`, `zero-pad, stride 2`, `identity`."""
    from ..ops.conv import stride_text

    strided = stride_text(tuple(stride)) if stride else ""
    if kind == "project":
        return "projection: 1x1 conv" + strided
    if kind == "pad":
        return "zero-pad" + strided
    return KIND_NAMES.get(kind, kind)


class _Scopes:
    """Which scopes of the graph are drawn as one box: those at nesting level >= `depth`, except those in
    `expanded` (and every scope around a node in `expanded`)."""

    def __init__(self, graph: Graph, depth: int | None, expanded: Iterable[str] = ()) -> None:
        self.graph, self.depth = graph, depth
        self.expanded = set(expanded)
        for name in list(self.expanded):
            node = graph.nodes.get(name)
            if node is not None:
                self.expanded.update(node.scopes)

    def key(self, node: Node) -> tuple[str, int]:
        """(the id of the box that shows `node`, the nesting level of that box)."""
        if self.depth is not None:
            for level, scope in enumerate(node.scopes):
                if level >= self.depth and scope not in self.expanded:
                    return scope, level
        return node.name, len(node.scopes)


def build_drawing(graph: Graph, depth: int | None = None, *, expanded: Iterable[str] = (),
                  shown: Callable[[Node], bool] | None = None, errors: dict[str, str] | None = None,
                  status: dict[str, str] | None = None, remarks: dict[str, str] | None = None) -> Drawing:
    """Requires shapes (a node without one is drawn only where `errors` names it). Deterministic.

    `depth`: levels of block nesting drawn in detail; each scope (block call or instance) below is one box
    (`depth=0`: each top-level call is one box, `layer1: bottleneck ×3`), None: every node. `expanded`: scopes
    (or node names) drawn in detail whatever the depth. `shown`: which nodes to draw (default: every node with
    a shape, and the failing ones). `errors`: node name -> message, drawn in red with the message beside it.
    `status`: node name or scope -> added | removed | changed (a diff); a collapsed box holding such nodes is
    changed (added or removed where all of them are). `remarks`: node name or scope -> a last line for its box."""
    errors, status, remarks = errors or {}, status or {}, remarks or {}
    scopes = _Scopes(graph, depth, list(expanded) + list(errors))
    if shown is None:
        def shown(node: Node) -> bool:
            return node.shape is not None or node.name in errors
    drawing = Drawing(graph.name)
    visible = [node for node in graph if shown(node)]
    keys = {node.name: scopes.key(node) for node in visible}

    # Groups (clusters) for the expanded scopes that hold something drawn.
    for node in visible:
        key, level = keys[node.name]
        parent = None
        for scope in node.scopes[:level]:
            if scope not in drawing.groups:
                drawing.groups[scope] = Group(scope, _group_label(graph, scope), parent,
                                              status.get(scope, ""))
            parent = scope
        _add_box(drawing, graph, node, key, parent, errors, status)

    collapsed = {box.id: box for box in drawing.boxes.values() if box.kind == "block"}
    for box in collapsed.values():
        _describe_collapsed(graph, box, status)
        inner = {status.get(name, "") for name in box.members}
        if not box.status and inner != {""}:
            box.status = inner.pop() if len(inner) == 1 else "changed"
    for box_id, remark in remarks.items():
        if box_id in drawing.boxes:
            drawing.boxes[box_id].lines += (remark,)

    # The outputs of collapsed calls of blocks with several outputs: an arrow per output read (`body:1`)
    items: dict[tuple[str, str], int] = {}
    for box in collapsed.values():
        made = _instances_of(graph, box.id)
        if made and made[-1].outputs is not None:
            for k, name in enumerate(made[-1].outputs):
                items.setdefault((box.id, name), k)
    # Arrows, one per pair of boxes, in graph order; a data edge wins over a skip between the same boxes.
    arrows: dict[tuple, Arrow] = {}
    for node in visible:
        head = keys[node.name][0]
        skips = skip_arrows(graph, node) if head == node.name else {}
        for position, producer in enumerate(node.inputs):
            if producer not in keys:
                continue
            tail = keys[producer][0]
            if tail == head:
                continue
            kind = skips.get(position, "data")
            if position == 1 and head == node.name and node.op is not None and node.op.op_name() == "upsample":
                kind = "size"   # an upsample's second input: only its spatial size is read
            if kind == "data" and head in collapsed and node.op is not None and node.op.op_name() == "concat":
                kind = skip_arrows(graph, node).get(position, "data")
            label = _arrow_label(graph, graph.nodes[producer], kind, node, position)
            pair: tuple = (tail, head)
            item = items.get((tail, producer)) if items else None
            if item is not None:
                pair, label = (tail, head, item), (f"{tail.rpartition('.')[2]}:{item}",) + label
            found = arrows.get(pair)
            if found is None:
                arrows[pair] = Arrow(tail, head, label, kind)
            elif found.kind != "data" and kind == "data":
                found.kind, found.label = "data", label
    for arrow in arrows.values():   # an arrow to or from an added or removed box is added or removed too
        ends = {drawing.boxes[arrow.tail].status, drawing.boxes[arrow.head].status}
        arrow.status = "removed" if "removed" in ends else "added" if "added" in ends else ""
    drawing.arrows.extend(arrows.values())
    for box in collapsed.values():
        _add_shortcut_arcs(drawing, graph, box, status)

    output_keys = dict(zip(graph.outputs, graph.output_keys or ()))
    for name in graph.outputs:
        if name not in keys:
            continue
        title = "output" if name not in output_keys else f"output `{output_keys[name]}`"   # a dict's key
        out = drawing.add_box(Box(f"(output) {name}", (title, dims(graph.nodes[name].shape)), "output",
                                  shape=graph.nodes[name].shape))
        drawing.arrows.append(Arrow(keys[name][0], out.id, (), "output"))
    for name, message in errors.items():
        if name in drawing.boxes:
            note = drawing.add_box(Box(f"(error) {name}", tuple(_wrap(message)), "note", status="error",
                                       group=drawing.boxes[name].group))
            drawing.arrows.append(Arrow(name, note.id, (), "note", "error"))
    return drawing


def _wrap(text: str, width: int = 48) -> list[str]:
    lines, current = [], ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return lines + [current]


def _instances_of(graph: Graph, scope: str) -> list:
    """The instances a scope stands for: the instances of a call, or the one instance it names."""
    return [i for i in graph.instances.values() if i.call == scope] or \
        [i for i in graph.instances.values() if i.name == scope]


def _group_label(graph: Graph, scope: str) -> str:
    made = _instances_of(graph, scope)
    blocks = " / ".join(dict.fromkeys(i.block for i in made))
    return f"{scope}: {blocks}" if blocks else scope


def _add_box(drawing: Drawing, graph: Graph, node: Node, key: str, parent: str | None,
             errors: dict[str, str], status: dict[str, str]) -> None:
    """The box that shows `node`: its own, or (a member of) the collapsed scope `key`."""
    if key != node.name:   # a member of a collapsed scope
        box = drawing.boxes.get(key)
        if box is None:
            box = drawing.add_box(Box(key, (key,), "block", "block", parent, tooltip=key,
                                      status=status.get(key, ""), node=key))
        box.members.append(node.name)
        box.params += node.meta.get("params", 0)
        box.macs += node.meta.get("macs", 0)
        return
    if node.is_input:
        drawing.add_box(Box(node.name, (node.name, dims(node.shape)), "input", "", parent, node.name,
                            status.get(node.name, ""), node.name, shape=node.shape))
        return
    failed = node.name in errors
    lines = node_lines(node) if node.op is not None else (node.local_name,)
    drawing.add_box(Box(node.name, lines, "op", node.op.op_name() if node.op is not None else "", parent,
                        tooltip=node.name, status="error" if failed else status.get(node.name, ""), node=node.name,
                        shape=node.shape, params=node.meta.get("params", 0), macs=node.meta.get("macs", 0)))


def _describe_collapsed(graph: Graph, box: Box, status: dict[str, str]) -> None:
    """`layer2: bottleneck ×4` and `256×56×56 → 512×28×28`: its block, count and shapes in and out."""
    made = _instances_of(graph, box.id)
    members = set(box.members)
    first = next(graph.nodes[name] for name in box.members)
    outside = [p for name in box.members for p in graph.nodes[name].inputs if p not in members]
    box.shape_in = graph.nodes[outside[0]].shape if outside else None
    last = made[-1].output if made and made[-1].output in graph.nodes else box.members[-1]
    box.shape = graph.nodes[last].shape
    local = box.id[len(first.scopes[first.scopes.index(box.id) - 1]) + 1:] if first.scopes.index(box.id) else box.id
    name = box.id if local.isdigit() else local
    blocks = " / ".join(dict.fromkeys(i.block for i in made))
    count = f" ×{len(made)}" if len(made) > 1 else ""
    title = f"{name}: {blocks}{count}" if blocks and blocks != name else f"{name}{count}"
    shapes = dims(box.shape) if box.shape_in == box.shape else f"{dims(box.shape_in)} → {dims(box.shape)}"
    box.lines = (title, shapes) if box.shape_in is not None else (title, dims(box.shape))
    if made and made[-1].outputs is not None:   # a block with several outputs: a line for each, `:k` as read
        outputs = made[-1].outputs
        sources = len(dict.fromkeys(outside))
        box.lines = (title, (f"{sources} inputs → " if sources > 1 else f"{dims(box.shape_in)} → " if sources else "") +
                     f"{len(outputs)} outputs") + tuple(f":{k} {dims(graph.nodes[name].shape)}"
                                                        for k, name in enumerate(outputs))
    box.tooltip = f"{box.id}: {len(box.members)} nodes, {box.params:,} params, {box.macs:,} MACs"


def _add_shortcut_arcs(drawing: Drawing, graph: Graph, box: Box, status: dict[str, str]) -> None:
    """A collapsed box keeps the skip arcs of its instances: its output goes through a sum (`+`), and an arc
    per shortcut kind runs from its input to that sum (`identity ×3`, `projection: 1x1 conv, stride 2`)."""
    made = _instances_of(graph, box.id)
    if made and made[-1].outputs is not None:   # several outputs: no single output through a sum to draw
        return
    by_kind: dict[str, list] = {}
    for number, instance in enumerate(made):
        prefix = instance.name + "."
        for name in box.members:
            node = graph.nodes[name]
            if node.prefix != prefix:
                continue
            for position, kind in skip_arrows(graph, node).items():
                if kind == "concat":
                    continue
                by_kind.setdefault((kind, status.get(node.name, "")), []).append(
                    (number, shortcut_stride(graph, node, position)))
    if not by_kind or not any(a.head == box.id and a.kind == "data" for a in drawing.arrows):
        return
    sum_box = drawing.add_box(Box(f"(sum) {box.id}", ("+",), "sum", group=box.group, status=box.status,
                                  tooltip=f"the residual sums of {box.id}", shape=box.shape, part_of=box.id))
    for arrow in drawing.arrows:   # what the box fed now leaves from its sum
        if arrow.tail == box.id:
            arrow.tail = sum_box.id
    drawing.arrows.append(Arrow(box.id, sum_box.id, (dims(box.shape),), "data"))
    for (kind, changed), entries in sorted(by_kind.items(), key=lambda item: (
            ("project", "pad", "identity").index(item[0][0]), item[0][1])):
        strides = {stride for _, stride in entries if stride and set(stride) != {1}}
        text = shortcut_text(kind, next(iter(strides)) if len(strides) == 1 else ())
        if len(made) > 1:
            text += " (first)" if len(entries) == 1 and entries[0][0] == 0 else f" ×{len(entries)}"
        if changed in ("added", "removed"):
            text += f", {changed}"
        drawing.arrows.append(Arrow(box.id, sum_box.id, (text,), kind, changed, around=True))


def _arrow_label(graph: Graph, producer: Node, kind: str, consumer: Node, position: int) -> tuple[str, ...]:
    shape = dims(producer.shape)
    if kind in ("project", "pad"):
        return (shape, shortcut_text(kind, shortcut_stride(graph, consumer, position)))
    if kind == "identity":   # as the paper's figure 2 labels its arc
        return (shape, "identity")
    if kind == "size":
        return (shape, "size")
    return (shape,)


def block_drawing(graph: Graph) -> Drawing:
    """Each block definition once, in detail (the ResNet paper's figure 2): the nodes of one instance of each
    block the network uses, as a group labelled with the block's name, its nested calls as one box each.

    The instance drawn is the first with identity shortcuts only (the generic form), else the first."""
    drawing = Drawing(f"{graph.name}: blocks")
    chosen: dict[str, object] = {}
    for instance in graph.instances.values():
        current = chosen.get(instance.block)
        if current is None or (not _identity_only(graph, current) and _identity_only(graph, instance)):
            chosen[instance.block] = instance
    first: dict[str, int] = {}   # each block's first appearance in the network
    for node in graph:
        for scope in node.scopes:
            made = graph.instances.get(scope)
            if made is not None:
                first.setdefault(made.block, node.index)
    for block, instance in sorted(chosen.items(), key=lambda item: first.get(item[0], 0)):
        prefix = instance.name + "."
        members = [node for node in graph if node.name.startswith(prefix)]
        if not members:
            continue
        level = members[0].scopes.index(instance.name) + 1
        inner = build_drawing(graph, level, shown=lambda n, p=prefix: n.name.startswith(p) and n.shape is not None)
        # the network's outputs are not the block's (a block's own output ovals are added below)
        returned = {box.id for box in inner.boxes.values() if box.kind == "output"}
        inner.boxes = {key: box for key, box in inner.boxes.items() if key not in returned}
        inner.arrows = [arrow for arrow in inner.arrows if arrow.head not in returned]
        group = f"(block) {block}"
        drawing.groups[group] = Group(group, f"block {block} (as drawn in {instance.name})")
        ids = {box_id: f"{block}/{box_id}" for box_id in inner.boxes}
        for box in inner.boxes.values():   # groups around the instance are the block's own group
            inside = box.group is not None and box.group.startswith(prefix)
            box.id, box.group = ids[box.id], f"{block}/{box.group}" if inside else group
            if box.kind == "op" and box.node is not None:
                box.lines = node_lines(graph.nodes[box.node])
            drawing.boxes[box.id] = box
        for group_id, inner_group in inner.groups.items():
            if not group_id.startswith(prefix):
                continue
            parent = inner_group.parent
            drawing.groups[f"{block}/{group_id}"] = Group(
                f"{block}/{group_id}", inner_group.label.removeprefix(prefix),
                f"{block}/{parent}" if parent is not None and parent.startswith(prefix) else group)
        for arrow in inner.arrows:
            drawing.arrows.append(Arrow(ids[arrow.tail], ids[arrow.head], arrow.label, arrow.kind))
        # Where the instance reads and what it gives: an input oval per producer outside it, an output oval.
        for position, producer in enumerate(dict.fromkeys(instance.inputs)):
            name = "input" if len(instance.inputs) == 1 else f"input {position}"
            box = drawing.add_box(Box(f"{block}/(input) {producer}", (name, dims(graph.nodes[producer].shape)),
                                      "input", group=group, shape=graph.nodes[producer].shape))
            for node in members:
                if node.shape is None:
                    continue
                skips = skip_arrows(graph, node)
                for pos, p in enumerate(node.inputs):
                    if p == producer:
                        kind = skips.get(pos, "data")
                        drawing.arrows.append(Arrow(box.id, ids[_box_of(inner, node.name)],
                                                    _arrow_label(graph, graph.nodes[p], kind, node, pos), kind))
        outputs = instance.outputs or [instance.output]
        for k, name in enumerate(outputs):   # a block with several outputs: an oval for each, `output k`
            title = "output" if instance.outputs is None else f"output {k}"
            out = drawing.add_box(Box(f"{block}/(output)" + (f" {k}" if instance.outputs is not None else ""),
                                      (title, dims(graph.nodes[name].shape)), "output", group=group))
            drawing.arrows.append(Arrow(ids[_box_of(inner, name)], out.id, (), "output"))
    return drawing


def _box_of(drawing: Drawing, name: str) -> str:
    if name in drawing.boxes:
        return name
    return next(key for key, box in drawing.boxes.items() if name in box.members)


def _identity_only(graph: Graph, instance) -> bool:
    prefix = instance.name + "."
    plans = [p for node in graph if node.prefix == prefix for p in node.meta.get("shortcuts", ())]
    return bool(plans) and all(p.kind.value == "identity" for p in plans)

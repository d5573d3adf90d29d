"""The second half of drawing: a drawing model -> DOT text (a `graphviz.Digraph`), every string escaped.

Styles follow the ResNet paper's figures: the main path in black, shortcut arcs by kind (identity solid,
zero-padding dashed, projection dotted with its 1x1 conv), a concat skip dashed purple; a diff colours
boxes added (green), removed (red) or changed (amber); a failing node is red with its message beside it.
"""

from __future__ import annotations

import re

from .model import KIND_NAMES, Drawing

RANKDIRS = ("TB", "LR")
FONT = "Helvetica"
NODE_FONTSIZE, EDGE_FONTSIZE, GROUP_FONTSIZE, TITLE_FONTSIZE = "11", "9", "10", "14"

# One look per arrow kind; the edge's `class` (kept in SVG) names it too: `skip identity` ...
ARROW_STYLES = {
    "identity": {"style": "solid", "color": "#2e7d32", "fontcolor": "#2e7d32", "penwidth": "1.4"},
    "pad": {"style": "dashed", "color": "#ef6c00", "fontcolor": "#ef6c00", "penwidth": "1.4"},
    "project": {"style": "dotted", "color": "#1565c0", "fontcolor": "#1565c0", "penwidth": "1.8"},
    "concat": {"style": "dashed", "color": "#6a1b9a", "fontcolor": "#6a1b9a", "penwidth": "1.4"},
    "size": {"style": "dashed", "color": "#757575", "fontcolor": "#757575"},
    "note": {"style": "dashed", "color": "#c62828", "arrowhead": "none"},
    "output": {},
    "data": {},
}
OP_COLORS = {"conv1d": "#e3f2fd", "conv2d": "#e3f2fd", "conv3d": "#e3f2fd", "conv_transpose1d": "#e3f2fd",
             "conv_transpose2d": "#e3f2fd", "conv_transpose3d": "#e3f2fd", "linear": "#e3f2fd", "matmul": "#e3f2fd",
             "add": "#e8f5e9", "concat": "#e8f5e9", "mul": "#e8f5e9", "sub": "#e8f5e9",
             "batchnorm1d": "#fff8e1", "batchnorm2d": "#fff8e1", "batchnorm3d": "#fff8e1", "layernorm": "#fff8e1",
             "groupnorm": "#fff8e1", "instancenorm1d": "#fff8e1", "instancenorm2d": "#fff8e1",
             "instancenorm3d": "#fff8e1", "block": "#ede7f6"}
STATUS_STYLES = {
    "added": {"fillcolor": "#c8e6c9", "color": "#2e7d32", "penwidth": "2.5"},
    "removed": {"fillcolor": "#ffcdd2", "color": "#c62828", "penwidth": "2.5", "style": "rounded,filled,dashed"},
    "changed": {"fillcolor": "#ffe0b2", "color": "#ef6c00", "penwidth": "2.5"},
    "error": {"fillcolor": "#ffcdd2", "color": "#c62828", "penwidth": "2.5", "fontcolor": "#b71c1c"},
}
LEGEND_TEXT = {
    "identity": "identity shortcut",
    "project": "projection shortcut (1x1 conv + norm)",
    "pad": "zero-padding shortcut (option A)",
    "concat": "concat skip",
    "size": "only the size is read (upsample)",
    "block": "block call drawn as one box (×n: repeats)",
    "added": "added",
    "removed": "removed",
    "changed": "changed",
    "error": "where it fails (the message beside it)",
}


# Characters a DOT string cannot carry or that would not show as text: C0/C1 controls (NUL included) become
# their visible "control picture" or U+FFFD, line and paragraph separators become line breaks.
_LINE_BREAKS = {"\r\n": "\n", "\r": "\n", "\u2028": "\n", "\u2029": "\n", "\x85": "\n", "\x0b": "\n", "\x0c": "\n"}
_VISIBLE = {code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\n\t\x0b\x0c\r"}
_VISIBLE.update({0x09: " ", 0x7F: "\u2421"})
_VISIBLE.update({code: "\ufffd" for code in range(0x80, 0xA0) if code != 0x85})
_SURROGATE = re.compile("[\ud800-\udfff]")
# Ids written as they are: node names, and the drawing's own ids made of one (`(sum) layer2`, `bottleneck/conv1`).
_PLAIN_NAME = re.compile(r"(\((sum|output|error|input)\) )?[A-Za-z0-9_.]+(/[A-Za-z0-9_.]+|/\((sum|output|input)\)"
                         r"( [A-Za-z0-9_.]+)?)?")


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


def dot_ids(drawing: Drawing) -> dict[str, str]:
    """Each box's DOT id: its own id where it is a plain dotted name (every node name a valid spec can have, and
    the drawing's own ids made of one), so the DOT text stays readable; else `(box N)`. graphviz's edge statements split ids at `:` (ports) and write
    the part after a second `:` unquoted, so no other string may become an id; parentheses never occur in
    node names, so the two kinds cannot collide."""
    return {box_id: box_id if _PLAIN_NAME.fullmatch(box_id) else f"(box {index})"
            for index, box_id in enumerate(drawing.boxes)}


def _columns(drawing: Drawing, rankdir: str) -> dict[str, int]:
    """Long drawings wrap into columns (rows for LR), as text wraps into lines: top-level boxes and groups are
    laid out by longest path; where the drawing would be much longer than wide, it is cut between them into
    columns of about equal length. Returns the column of each box."""
    units = {box_id: box.group or box_id for box_id, box in drawing.boxes.items()}
    for box_id in units:   # a box's unit: its outermost group, else itself (or the box it is part of)
        box = drawing.boxes[box_id]
        group = box.group
        if group is None and box.part_of in drawing.boxes:
            group = drawing.boxes[box.part_of].group or box.part_of
            if group == box.part_of:
                units[box_id] = group
                continue
        while group is not None and drawing.groups.get(group) is not None and drawing.groups[group].parent:
            group = drawing.groups[group].parent
        units[box_id] = group or box_id
    rank: dict[str, int] = {box_id: 0 for box_id in drawing.boxes}
    arrows = [a for a in drawing.arrows if a.kind != "note" and a.tail != a.head]
    heads: dict[str, list[str]] = {box_id: [] for box_id in drawing.boxes}
    waiting = {box_id: 0 for box_id in drawing.boxes}
    for arrow in arrows:
        heads[arrow.tail].append(arrow.head)
        waiting[arrow.head] += 1
    ready = [box_id for box_id, count in waiting.items() if count == 0]
    while ready:   # longest path, in topological order (the drawing is acyclic)
        box_id = ready.pop()
        for head in heads[box_id]:
            rank[head] = max(rank[head], rank[box_id] + 1)
            waiting[head] -= 1
            if waiting[head] == 0:
                ready.append(head)
    rows = max(rank.values(), default=0) + 1
    start: dict[str, int] = {}
    for box_id, unit in units.items():
        start[unit] = min(start.get(unit, rows), rank[box_id])
    longest = max((max(map(len, box.lines)) if box.lines else 1 for box in drawing.boxes.values()), default=10)
    arcs = 2.2 if any(a.around or a.kind in KIND_NAMES for a in arrows) else 0.5
    across = 0.3 + 0.085 * longest + arcs     # inches across a column: its widest label and its skip arcs
    beside = 3.0 if drawing.kinds() else 0.0  # the legend
    along = 0.8                               # inches per rank
    if rankdir == "LR":
        across, along = 0.9, 0.4 + 0.085 * longest
    length = rows * along
    count = 1
    # TB: about as tall as 3 times the width at most; LR: a strip is what was asked for, wrapped only when long.
    limit = 3.0 if rankdir == "TB" else 8.0
    while length / count > limit * (count * across + beside) and count < 8 and rows / (count + 1) >= 4:
        count += 1
    if count == 1:
        return {box_id: 0 for box_id in drawing.boxes}
    # Cut only where the arrows from one column to the next all leave one box (the main path), nearest the
    # even split, and never leaving a stub of a column.
    tails: list[set[str]] = [set() for _ in range(rows + 1)]
    for arrow in arrows:
        for r in range(rank[arrow.tail] + 1, rank[arrow.head] + 1):
            tails[r].add(arrow.tail)
    starts = sorted({r for r in start.values() if 3 <= r <= rows - 3 and len(tails[r]) == 1})
    cuts: list[int] = []
    for k in range(1, count):
        ideal = rows * k / count
        near = [r for r in starts if abs(r - ideal) <= rows / (2 * count) and (not cuts or r >= cuts[-1] + 3)]
        if near:
            cuts.append(min(near, key=lambda r: abs(r - ideal)))
    return {box_id: sum(1 for cut in cuts if start[units[box_id]] >= cut) for box_id in drawing.boxes}


def to_dot(drawing: Drawing, rankdir: str = "TB", dpi: float | None = None, legend: bool = True):
    """Returns a `graphviz.Digraph`; deterministic for a given drawing."""
    import graphviz

    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, got `{rankdir}`")
    graph_attr = {"rankdir": rankdir, "fontname": FONT, "fontsize": TITLE_FONTSIZE, "nodesep": "0.3",
                  "ranksep": "0.3", "label": dot_text(drawing.title), "labelloc": "t", "newrank": "true"}
    if dpi is not None:
        graph_attr["dpi"] = f"{dpi:g}"
    dot = graphviz.Digraph(dot_text(drawing.title), graph_attr=graph_attr,
                           node_attr={"shape": "box", "style": "rounded,filled", "fontname": FONT,
                                      "fontsize": NODE_FONTSIZE, "fillcolor": "#f5f5f5", "height": "0.3"},
                           edge_attr={"fontname": FONT, "fontsize": EDGE_FONTSIZE, "color": "#424242"})
    ids = dot_ids(drawing)
    column = _columns(drawing, rankdir)
    children: dict[str | None, list[str]] = {}
    for group in drawing.groups.values():
        children.setdefault(group.parent, []).append(group.id)
    members: dict[str | None, list[str]] = {}
    for box in drawing.boxes.values():
        members.setdefault(box.group if box.group in drawing.groups else None, []).append(box.id)
    notes = {a.tail: a.head for a in drawing.arrows if a.kind == "note"}

    def emit(container, group: str | None) -> None:
        for box_id in members.get(group, []):
            _emit_box(container, drawing, box_id, ids)
            if box_id in notes:
                with container.subgraph() as same:
                    same.attr(rank="same")
                    same.node(dot_text(ids[box_id]))
                    same.node(dot_text(ids[notes[box_id]]))
        for child in children.get(group, []):
            info = drawing.groups[child]
            with container.subgraph(name=dot_text("cluster_" + child)) as cluster:
                attrs = {"label": dot_text(info.label), "style": "rounded", "color": "#9e9e9e",
                         "fontsize": GROUP_FONTSIZE}
                if info.status in STATUS_STYLES:
                    attrs.update(color=STATUS_STYLES[info.status]["color"], penwidth="2")
                cluster.attr(**attrs)
                emit(cluster, child)

    emit(dot, None)
    for arrow in drawing.arrows:
        attrs = dict(ARROW_STYLES.get(arrow.kind, {}))
        if arrow.kind in KIND_NAMES:
            attrs["class"] = f"skip {arrow.kind}"
            attrs["weight"] = "0"
        if arrow.status in STATUS_STYLES and arrow.kind not in ("note",):
            attrs["color"] = STATUS_STYLES[arrow.status]["color"]
        if arrow.around:
            attrs["tailport"] = "n" if rankdir == "TB" else "w"
        if column[arrow.tail] != column[arrow.head]:
            attrs["constraint"] = "false"
        elif arrow.kind in ("data", "output"):
            attrs["weight"] = "4"
        label = dot_text(*arrow.label) if arrow.label else None
        dot.edge(dot_text(ids[arrow.tail]), dot_text(ids[arrow.head]), label=label, **attrs)
    if legend:
        _legend(dot, drawing.kinds(), rankdir)
    return dot


def _emit_box(container, drawing: Drawing, box_id: str, ids: dict[str, str]) -> None:
    box = drawing.boxes[box_id]
    attrs = {"fillcolor": OP_COLORS.get(box.op, "#f5f5f5")}
    if box.kind in ("input", "output"):
        attrs.update(shape="oval", fillcolor="#eeeeee")
    elif box.kind == "sum":
        attrs.update(shape="circle", width="0.3", fixedsize="true", fontsize="14", fillcolor="#ffffff")
    elif box.kind == "note":
        attrs.update(shape="note", fillcolor="#fff3f3", color="#c62828", fontcolor="#b71c1c")
    elif box.kind == "block":
        attrs.update(penwidth="1.5")
    if box.status in STATUS_STYLES and box.kind != "note":
        attrs.update(STATUS_STYLES[box.status])
    if box.tooltip:
        attrs["tooltip"] = dot_text(box.tooltip)
    attrs["class"] = " ".join(filter(None, [box.kind, box.status]))
    container.node(dot_text(ids[box_id]), dot_text(*box.lines), **attrs)


def _legend(dot, kinds: list[str], rankdir: str = "TB") -> None:
    """A cluster explaining each arrow kind, box kind and colour the drawing uses (nothing where it uses none):
    one row per entry, a sample arrow or box and its meaning, stacked."""
    if not kinds:
        return
    with dot.subgraph(name="cluster_(legend)") as legend:
        legend.attr(label="legend", style="rounded", color="#bdbdbd", fontsize=GROUP_FONTSIZE)
        firsts = []
        for kind in kinds:
            text = f"(legend) {kind}"
            if kind in ARROW_STYLES:
                start = f"(legend) {kind} from"
                sample = {"shape": "point", "width": "0.05", "color": "#ffffff"}
                if rankdir == "TB":   # the sample and its meaning side by side on one rank
                    with legend.subgraph() as row:
                        row.attr(rank="same")
                        row.node(dot_text(start), "", **sample)
                        row.node(dot_text(text), dot_text(LEGEND_TEXT[kind]), shape="plaintext",
                                 fillcolor="#ffffff")
                else:                 # LR: consecutive ranks are side by side already
                    legend.node(dot_text(start), "", **sample)
                    legend.node(dot_text(text), dot_text(LEGEND_TEXT[kind]), shape="plaintext",
                                 fillcolor="#ffffff")
                legend.edge(dot_text(start), dot_text(text), minlen="3" if rankdir == "TB" else "1",
                            **ARROW_STYLES[kind])
                firsts.append(start)
            else:
                attrs = dict(STATUS_STYLES.get(kind, {"fillcolor": OP_COLORS["block"], "penwidth": "1.5"}))
                legend.node(dot_text(text), dot_text(LEGEND_TEXT[kind]), **attrs)
                firsts.append(text)
        if rankdir == "TB":   # rows stacked by invisible edges
            for previous, first in zip(firsts, firsts[1:]):
                legend.edge(dot_text(previous), dot_text(first), style="invis")
        else:                 # LR: the rows' first columns on one rank, which is vertical here
            with legend.subgraph() as column:
                column.attr(rank="same")
                for first in firsts:
                    column.node(dot_text(first))

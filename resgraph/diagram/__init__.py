"""Pass 6 of the pipeline: the shaped graph IR -> a diagram (.svg .png .pdf .dot), in two steps.

`model.build_drawing` makes a drawing model (boxes, arrows, groups: what is shown, collapsed block calls with
their shortcut arcs, errors and diff colours) and `dot.to_dot` writes it as DOT text for graphviz; this module
picks what to draw and runs graphviz's `dot`, writing files atomically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Iterable

from ..atomic import check_output, write_atomically
from ..graph import Graph
from .dot import ARROW_STYLES, RANKDIRS, dot_text, to_dot
from .model import Arrow, Box, Drawing, Group, block_drawing, build_drawing, dims, node_lines

__all__ = ["FORMATS", "RANKDIRS", "DEFAULT_DEPTH", "RenderError", "DiagramCollapsed", "Drawing", "Box", "Arrow",
           "Group", "build_drawing", "block_drawing", "to_dot", "to_digraph", "dot_text", "render_to_file",
           "render_drawing", "drawing_depth", "automatic_depth", "dims", "node_lines", "ARROW_STYLES"]

FORMATS = ("svg", "png", "pdf", "dot")
# What `render` draws without `--depth`: each top-level block call as one box, with its shortcut arcs.
DEFAULT_DEPTH = 0

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


def to_digraph(graph: Graph, depth: int | None = None, *, rankdir: str = "TB", dpi: float | None = None,
               legend: bool = True):
    """Requires inferred shapes. Returns a `graphviz.Digraph`; deterministic for a given graph.

    `depth` limits how many levels of block nesting are drawn: each block call or instance below that level
    is one box, with its shortcut arcs (`depth=0`: every top-level call is one box); None: every node."""
    return to_dot(build_drawing(graph, depth), rankdir=rankdir, dpi=dpi, legend=legend)


def render_drawing(drawing: Drawing, output: Path, inputs: Iterable[str] = (), *, rankdir: str = "TB",
                   dpi: float | None = None, legend: bool = True) -> Path:
    """Write a drawing atomically in the format of `output`'s suffix (.svg .png .pdf .dot)."""
    suffix = _format_of(output)
    check_output_or_fail(output, inputs)
    # `dpi` is the resolution of a bitmap (and kept in DOT text for one); SVG and PDF sizes stay in points
    source = to_dot(drawing, rankdir=rankdir, dpi=dpi if suffix in ("png", "dot") else None, legend=legend).source
    data = source.encode("utf-8") if suffix == "dot" else _run_dot(source, suffix)
    try:
        write_atomically(output, data, inputs=inputs)
    except FileNotFoundError as exc:
        raise RenderError(str(exc)) from None
    return output


def _format_of(output: Path) -> str:
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise RenderError(f"cannot tell the format of `{output}`: use a .svg, .png, .pdf or .dot suffix")
    return suffix


def render_to_file(graph: Graph, output: Path, depth: int | None = None, inputs: Iterable[str] = (), *,
                   rankdir: str = "TB", dpi: float | None = None, blocks: bool = False,
                   errors: dict[str, str] | None = None) -> Path:
    """Write the diagram atomically: to a temporary file beside `output`, then renamed over it,
    so a failure leaves no partial file. `inputs`, the files the run read, are never replaced.

    `depth` as for `to_digraph` (None: every node, collapsed past NODE_BUDGET for images); `blocks`: each block
    definition once, in detail, instead of the network; `errors`: node -> message, for a spec that failed
    (drawn up to its failing nodes, which are red)."""
    suffix = _format_of(output)
    check_output_or_fail(output, inputs)
    if blocks:
        if not graph.instances:
            raise RenderError(f"`{graph.name}` calls no blocks: `--blocks` draws block definitions; draw the "
                              "network without it")
        drawing = block_drawing(graph)
    else:
        if suffix != "dot" and not errors:
            depth = drawing_depth(graph, depth)
        drawing = build_drawing(graph, depth, errors=errors)
    return render_drawing(drawing, output, inputs, rankdir=rankdir, dpi=dpi)


def svg_of(graph: Graph, depth: int | None = DEFAULT_DEPTH) -> str | None:
    """The diagram as SVG text (a notebook's `_repr_svg_`); None where graphviz's `dot` is missing."""
    try:
        depth = drawing_depth(graph, depth)
        return _run_dot(to_digraph(graph, depth).source, "svg").decode("utf-8")
    except RenderError:
        return None

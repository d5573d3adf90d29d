"""The interactive viewer: the shaped graph IR -> one self-contained HTML page (`render -o net.html`), which the
playground (`resgraph serve`, resgraph/serve.py) also serves and updates.

The page carries the graph as data (JSON in a `<script type="application/json">`), and its own script lays it
out and draws it as SVG in the browser, so that every block instance and repeat can be expanded and collapsed
without graphviz. Nothing is fetched when the file is opened: the script and the styles are inlined, and a
Content-Security-Policy forbids any request. Every string from a spec reaches the page only through
`json_for_html`, and the script shows it only as text (`textContent`, never `innerHTML`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from ..graph import Graph, Node

# Above EXPANDED_LIMIT nodes the page opens with its deeper blocks collapsed, at the deepest nesting level that
# leaves at most OPENING_BOXES boxes (resnet152: one box per unit), as a drawing of hundreds of boxes is no
# overview and takes longer to lay out; `--depth` chooses the level.
EXPANDED_LIMIT = 250
OPENING_BOXES = 200


def json_for_html(value: Any) -> str:
    """The one escaping function for data in an HTML page: `value` as JSON that can stand inside a
    `<script type="application/json">` element. Non-ASCII is written as `\\uXXXX` (so U+2028, U+2029 and
    unpaired surrogates too), and `<`, `>`, `&` as `\\u003c`, `\\u003e`, `\\u0026`, so no `</script>`,
    `<!--` or character reference can appear; `JSON.parse` gives the strings back unchanged."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _asset(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _skip_kinds(node: Node) -> list[str | None]:
    """Per input position: the shortcut kind of a skip input of an `add` (identity, project, pad), else None."""
    kinds: list[str | None] = [None] * len(node.inputs)
    for position, plan in enumerate(node.meta.get("shortcuts") or (), start=1):
        if position < len(kinds):
            kinds[position] = plan.kind.value
    return kinds


def _label(node: Node) -> str:
    """The op's label without a repeat of the node's name (`relu` named `relu` is shown once)."""
    label = node.op.label() + node.op.tie_label()
    op = node.op.op_name()
    if node.local_name == op and label == op:
        return ""
    return label


def _opening_depth(graph: Graph) -> int:
    """The deepest nesting level at which the collapsed drawing has at most OPENING_BOXES boxes (else 0)."""
    deepest = max((len(node.scopes) for node in graph), default=0)
    for depth in range(deepest - 1, 0, -1):
        if len({node.scopes[depth] if len(node.scopes) > depth else node.name for node in graph}) <= OPENING_BOXES:
            return depth
    return 0


def graph_data(graph: Graph, sources: dict[str, str], doc: str | None = None, depth: int | None = None) -> dict:
    """Requires inferred shapes. What the page draws: nodes in topological order with their producers (by
    position), shapes, counts and source locations; the block scopes (calls and instances) they sit in;
    and the source files their locations point into."""
    order = graph.topological_order()
    position = {node.name: index for index, node in enumerate(order)}
    scope_index: dict[str, int] = {}
    scopes: list[dict] = []
    calls: dict[str, list] = {}
    for instance in graph.instances.values():
        calls.setdefault(instance.call, []).append(instance)

    def scope_of(name: str, parent: int, level: int) -> int:
        if name not in scope_index:
            instance = graph.instances.get(name)
            made = calls.get(name, [])
            if instance is not None:   # one instance: a call without `repeat`, or one repetition
                blocks, count, output, several = [instance.block], 1, instance.output, instance.outputs
            else:
                blocks = list(dict.fromkeys(i.block for i in made))
                count, output = len(made), made[-1].output if made else None
                several = made[-1].outputs if made else None
            scope_index[name] = len(scopes)
            scopes.append({"name": name, "parent": parent, "level": level,
                           "block": " / ".join(blocks), "count": count, "repeat": instance is None,
                           "output": position.get(output, -1) if output else -1})
            if several is not None:   # a block with several outputs: each, in order (`call:k`)
                scopes[-1]["outputs"] = [position.get(name, -1) for name in several]
        return scope_index[name]

    nodes = []
    files: dict[str, int] = {}

    def file_of(span) -> list | None:
        if span is None or span.file not in sources:
            return None
        files.setdefault(span.file, len(files))
        return [files[span.file], span.line, span.col]

    outputs = set(graph.outputs)
    for node in order:
        parent = -1
        for level, name in enumerate(node.scopes):
            parent = scope_of(name, parent, level)
        record: dict[str, Any] = {
            "name": node.name, "local": node.local_name, "scope": parent,
            "inputs": [position[p] for p in node.inputs if p in position],
            "shape": list(node.shape) if node.shape is not None else None,
        }
        if node.is_input:
            record["op"] = "input"
            record["label"] = "input" + (" int64" if node.dtype == "int64" else "")
        else:
            record["op"] = node.op.op_name()
            record["label"] = _label(node)
            record["params"] = int(node.meta.get("params", 0))
            record["macs"] = int(node.meta.get("macs", 0))
            kinds = _skip_kinds(node)
            if any(kinds):
                record["skips"] = kinds
        record["src"] = file_of(node.span)
        via = [[note.message, file_of(note.span)] for note in node.notes if note.span is not None]
        if via:
            record["via"] = via
        if node.name in outputs:
            record["output"] = True
        nodes.append(record)
    if depth is None and len(graph) > EXPANDED_LIMIT:
        depth = _opening_depth(graph)
    return {
        "name": graph.name, "doc": doc or "", "nodes": nodes, "scopes": scopes,
        "outputs": [position[name] for name in graph.outputs if name in position],
        # a mapping `outputs`: the dict key of each output, in the same order (else empty)
        "output_keys": [key for name, key in zip(graph.outputs, graph.output_keys or ()) if name in position],
        "params": int(graph.total_params), "macs": int(graph.total_macs), "depth": depth,
        "files": [{"path": path, "text": sources[path]} for path in files],
    }


def diagnostics_data(diagnostics: Iterable, sources: dict[str, str]) -> list[dict]:
    """Diagnostics for the page: where, the code, the message, the quoted source line with its caret (as
    `resgraph validate` prints it), the notes with their locations, and `help`."""
    from ..diagnostics import render_text

    shown = []
    for d in diagnostics:
        lines = render_text([d], sources).split("\n")
        excerpt = [line for line in lines[1:] if not line.startswith("  = ")]
        shown.append({"code": d.code, "severity": d.severity.value, "message": d.message, "help": d.help or "",
                      "where": str(d.span) if d.span else "", "file": d.span.file if d.span else "",
                      "line": d.span.line if d.span else 0, "col": d.span.col if d.span else 0,
                      "excerpt": "\n".join(excerpt),
                      "notes": [[note.message, str(note.span) if note.span else ""] for note in d.notes]})
    return shown


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def page(state: dict, config: dict) -> str:
    """The HTML page for `state` (`{"graph": graph_data | None, "diagnostics": [...], ...}`); `config` says how it
    runs (`{"mode": "file"}`, or the playground's `serve` with its token). Only JSON from `json_for_html`
    carries spec text into the page."""
    script = _asset("viewer.js")
    # The page may run only its own script, and fetch nothing, except the playground's own API.
    connect = "'self'" if config.get("mode") == "serve" else "'none'"
    policy = (f"default-src 'none'; script-src '{_script_hash(script)}'; style-src 'unsafe-inline'; "
              f"img-src data:; connect-src {connect}; base-uri 'none'; form-action 'none'")
    replacements = {"policy": policy, "style": _asset("viewer.css"), "state": json_for_html(state),
                    "config": json_for_html(config), "script": script}
    # One pass over the template: text put in is never searched again for `{{...}}`.
    return re.sub(r"\{\{(\w+)\}\}", lambda match: replacements[match.group(1)], _asset("page.html"))


def write_viewer(graph: Graph, sources: dict[str, str], output: Path, *, doc: str | None = None,
                 depth: int | None = None, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write the self-contained viewer page atomically (resgraph/atomic.py's rules: never over an input)."""
    from ..atomic import write_atomically

    state = {"ok": True, "graph": graph_data(graph, sources, doc, depth), "diagnostics": []}
    return write_atomically(Path(output), page(state, {"mode": "file"}).encode("utf-8"), inputs=inputs)

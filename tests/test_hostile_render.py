"""Hostile strings through the diagram (issue 14, acceptance): every string from a spec reaches DOT through
one escaping function, `resgraph.diagram.dot_text`. Each artefact is checked by its real consumer -- the DOT
by graphviz's `dot` itself (its JSON output says what it drew), the SVG by an XML parser -- to contain the
payload only as inert text: no injected nodes, edges, elements or attributes, no script, no link.

Self-contained: the corpus is this file's own (tests/hostile.py holds the corpus of the Python export)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import resgraph
from resgraph.diagram import dot_text, to_digraph
from resgraph.graph import Graph, Node

from .hostile import yaml_string

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's `dot` is not installed")

PAYLOADS = [
    'double "quotes" here',
    "single 'quotes' here",
    "`backticks` “curly” ‘curly’ «guillemets» ＂fullwidth＂",
    '"""triple double"""',
    "'''triple single'''",
    "trailing backslash \\",
    'backslash before a quote \\" and after',
    "\\N \\G \\E \\T \\H \\L \\l \\r \\n \\\\ escapes of DOT",
    "\\N{BULLET} \\x41 \\u0041",
    ']{};<>" DOT specials [label="x"]',
    "a:b:c] ; evil [label=injected",
    "-> b; c -- d",
    "<<b>an html-like label</b>>",
    "<table><tr><td>cell</td></tr></table>",
    "</script><script>alert(1)</script>",
    "<!-- comment --> --> <!--",
    "]]> <![CDATA[x]]> <?xml version='1.0'?>",
    "&amp; &lt; &#0; & &#x3c;",
    "javascript:alert(document.cookie)",
    '<a href="javascript:alert(1)">link</a> <img src=x onerror=alert(1)>',
    "line\nbreak and cr\rand crlf\r\nend",
    "nul\0byte",
    "unicode\u2028line\u2029paragraph\x85next",
    "controls \x01\x07\x1b[31mred\x1b[0m \x7f \x9b",
    "tab\there",
    "emoji 😀, rtl \u202eevil\u202c, zero\u200bwidth",
    "node",
    "subgraph",
    "digraph",
]

_BREAKS = "\r\n\u2028\u2029\x85\x0b\x0c"


def shown_lines(*texts: str) -> list[str]:
    """What graphviz must draw for `texts` (one line each, more at line breaks), written independently of
    `dot_text`: line separators break lines, controls show as their U+24xx symbol (DEL U+2421, C1 U+FFFD),
    a tab as a space. Empty lines draw nothing."""
    lines: list[str] = []
    for text in texts:
        text = text.replace("\r\n", "\n")
        current = ""
        for char in text:
            code = ord(char)
            if char in _BREAKS:
                lines.append(current)
                current = ""
            elif char == "\t":
                current += " "
            elif code < 0x20:
                current += chr(0x2400 + code)
            elif code == 0x7F:
                current += "\u2421"
            elif 0x80 <= code < 0xA0:
                current += "\ufffd"
            else:
                current += char
        lines.append(current)
    return [line for line in lines if line]


class _Label:
    """A stand-in op whose label is a payload."""

    def __init__(self, text: str) -> None:
        self.text = text

    def op_name(self) -> str:
        return "hostile"

    def label(self) -> str:
        return self.text


def hostile_graph(name: str = " | ".join(PAYLOADS[:12])) -> Graph:
    """A chain input -> one node per payload -> output; each node is named after its payload, sits in a cluster
    named after it and has it as its op label."""
    graph = Graph(name)
    graph.add(Node("input", None, [], shape=(4,)))
    previous = "input"
    for index, payload in enumerate(PAYLOADS):
        graph.add(Node(payload, _Label(payload), [previous], scopes=(f"{payload} {index}",), index=index + 1,
                       shape=(index + 1,)))
        previous = payload
    graph.inputs, graph.outputs = ["input"], [previous]
    return graph


def drawn_by_dot(source: str) -> dict:
    """graphviz's own reading of a DOT text, with the text it draws (refuses a DOT it cannot parse)."""
    result = subprocess.run(["dot", "-Tjson"], input=source.encode("utf-8"), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"syntax error" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def texts(drawn: dict, key: str = "_ldraw_") -> list[str]:
    return [op["text"] for op in drawn.get(key, []) if op.get("op") == "T"]


def test_dot_text_escapes_everything_dot_reads_specially():
    assert dot_text('a"b') == 'a\\"b' and dot_text("a\\") == "a\\\\" and dot_text("x", "y") == "x\\ny"
    assert dot_text("\0") == "\u2400" and dot_text("a\u2028b") == "a\\nb" and dot_text("&lt;") == "&amp;lt;"
    assert type(dot_text("<b>")).__name__ == "NoHtml"   # graphviz then quotes it instead of passing HTML


def test_dot_draws_every_hostile_name_and_label_as_text():
    graph = hostile_graph()
    drawn = drawn_by_dot(to_digraph(graph).source)
    objects = drawn["objects"]
    clusters = [o for o in objects if "nodes" in o or o.get("name", "").startswith("cluster")]
    nodes = [o for o in objects if o not in clusters]
    # Nothing injected: exactly the payload nodes, the input and the output, and the chain of edges.
    assert len(nodes) == len(PAYLOADS) + 2
    assert len(drawn["edges"]) == len(PAYLOADS) + 1
    assert len(clusters) == len(PAYLOADS)
    by_text = {tuple(texts(node)): node for node in nodes}
    for index, payload in enumerate(PAYLOADS):
        lines = tuple(shown_lines(payload))   # the node's name and its label, drawn once as they are the same
        assert lines in by_text, (payload, lines, sorted(by_text)[:3])
    cluster_texts = sorted(tuple(texts(c)) for c in clusters)
    assert cluster_texts == sorted(tuple(shown_lines(f"{p} {i}")) for i, p in enumerate(PAYLOADS))
    assert texts(drawn) == shown_lines(graph.name)
    shapes = sorted(texts(edge, "_tldraw_") or texts(edge, "_ldraw_") for edge in drawn["edges"])
    expected = [["4"]] + [[str(i)] for i in range(1, len(PAYLOADS))] + [[]]   # shapes; the output edge has none
    assert shapes == sorted(expected)


_SVG = "{http://www.w3.org/2000/svg}"
_DRAWING = {"svg", "g", "title", "polygon", "polyline", "path", "ellipse", "text", "a"}


def check_svg(data: bytes, expected_lines: list[str]) -> None:
    """Parse the SVG; only drawing elements, no link, no script, no event handler; the payload only as text."""
    raw = data.decode("utf-8")
    without_comments = re.sub(r"<!--.*?-->", "", raw, flags=re.DOTALL)
    assert "-->" not in without_comments and "<!--" not in without_comments   # no comment closed early
    for comment in re.findall(r"<!--(.*?)-->", raw, flags=re.DOTALL):
        assert "--" not in comment and "<" not in comment
    root = ET.fromstring(data)
    drawn: list[str] = []
    for element in root.iter():
        tag = element.tag.removeprefix(_SVG)
        assert tag in _DRAWING, f"unexpected element <{element.tag}>"
        for attribute in element.attrib:
            local = attribute.rpartition("}")[2]
            assert local != "href" and not local.lower().startswith("on"), (tag, attribute)
        if tag == "a":   # graphviz wraps a node with a tooltip in <a xlink:title>, with no link
            assert {a.rpartition("}")[2] for a in element.attrib} <= {"title"}, element.attrib
        if tag == "text" and element.text:
            drawn.append(element.text)
    for line in expected_lines:
        assert line in drawn, (line, drawn[:5])


def test_svg_of_hostile_names_and_labels_is_inert_text():
    graph = hostile_graph()
    svg = to_digraph(graph).pipe(format="svg")
    expected = [line for payload in PAYLOADS for line in shown_lines(payload)] + shown_lines(graph.name)
    check_svg(svg, expected)
    assert b"<script" not in svg and b"<table" not in svg and b"<img" not in svg


def test_a_spec_with_hostile_name_and_doc_renders_safely_to_every_format(tmp_path):
    name = " ".join(PAYLOADS)
    spec = tmp_path / "hostile.yaml"
    spec.write_text(f"resgraph: 1\nname: {yaml_string(name)}\ndoc: {yaml_string(name)}\ninput: [4]\n"
                    "nodes:\n  fc: {op: linear, out: 2}\n", encoding="utf-8")
    network = resgraph.load(spec)
    assert network.name == name and network.spec.doc == name   # the payload reached the diagram intact
    assert type(resgraph.compile(network, device="meta")).__name__.isidentifier()
    outputs = {suffix: resgraph.render(network, tmp_path / f"net.{suffix}") for suffix in ("dot", "svg", "png", "pdf")}
    drawn = drawn_by_dot(outputs["dot"].read_text(encoding="utf-8"))
    assert texts(drawn) == shown_lines(name)
    assert len(drawn["objects"]) == 3 and len(drawn["edges"]) == 2   # input, fc, output
    check_svg(outputs["svg"].read_bytes(), shown_lines(name))
    assert outputs["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert outputs["pdf"].read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize("payload", PAYLOADS[:10], ids=range(10))
def test_hostile_names_of_nodes_blocks_and_params_are_refused_with_a_diagnostic(tmp_path, payload):
    """Names are `[A-Za-z0-9_]`: a hostile one never reaches a diagram, it is an error at its line."""
    key = yaml_string(payload)
    for text in (f"nodes:\n  {key}: {{op: linear, out: 2}}\n",
                 f"blocks:\n  {key}:\n    nodes:\n      l: {{op: linear, out: 2}}\nnodes:\n  b: {{block: {key}}}\n",
                 f"params: {{{key}: 2}}\nnodes:\n  fc: {{op: linear, out: 2}}\n"):
        path = tmp_path / "spec.yaml"
        path.write_text("resgraph: 1\ninput: [4]\n" + text, encoding="utf-8")
        errors = [d for d in resgraph.validate(path) if d.is_error]
        assert errors and all(d.span is not None for d in errors), (text, errors)
        assert "RG045" in {d.code for d in errors}, errors


def test_legend_and_diff_labels_of_hostile_names_are_text():
    """The diff drawing (its title, remarks and colours) and the legend go through `dot_text` too."""
    from resgraph.diff import diff_drawing, diff_graphs
    from resgraph.diagram import to_dot

    a, b = hostile_graph(), hostile_graph(" | ".join(PAYLOADS[12:20]))
    b.nodes[PAYLOADS[5]].op = _Label("changed: " + PAYLOADS[5])
    del b.nodes[PAYLOADS[-1]]
    b.outputs = [PAYLOADS[-2]]
    drawing = diff_drawing(diff_graphs(a, b, PAYLOADS[0], PAYLOADS[1]), depth=None)
    drawn = drawn_by_dot(to_dot(drawing).source)
    assert texts(drawn) == shown_lines(f"{a.name} -> {b.name}")
    boxes = {tuple(texts(o)): o for o in drawn["objects"] if "nodes" not in o}
    assert tuple(shown_lines(PAYLOADS[-1])) in boxes                      # removed, drawn from a
    assert tuple(shown_lines(PAYLOADS[5], "changed: " + PAYLOADS[5])) in boxes
    legend = next(o for o in drawn["objects"] if o.get("name") == "cluster_(legend)")
    assert texts(legend) == ["legend"]
    shown = {line for o in drawn["objects"] for line in texts(o)}
    assert {"removed", "changed"} <= shown
    check_svg(to_dot(drawing).pipe(format="svg"), shown_lines(PAYLOADS[-1]))


def test_a_diff_of_hostile_specs_is_inert_in_every_output(tmp_path):
    from html.parser import HTMLParser

    from click.testing import CliRunner

    from resgraph.cli import main

    name = " ".join(PAYLOADS)
    for stem, out in (("a", 2), ("b", 3)):
        (tmp_path / f"{stem}.yaml").write_text(f"resgraph: 1\nname: {yaml_string(name + stem)}\ninput: [4]\n"
                                               f"nodes:\n  fc: {{op: linear, out: {out}}}\n", encoding="utf-8")
    outputs = {}
    for suffix in ("dot", "svg", "html"):
        outputs[suffix] = tmp_path / f"diff.{suffix}"
        result = CliRunner().invoke(main, ["diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"),
                                           "-o", str(outputs[suffix])])
        assert result.exit_code == 1, result.output
    drawn = drawn_by_dot(outputs["dot"].read_text(encoding="utf-8"))
    assert texts(drawn) == shown_lines(f"{name}a -> {name}b")
    check_svg(outputs["svg"].read_bytes(), shown_lines(f"{name}a -> {name}b"))

    class Elements(HTMLParser):
        tags: list = []
        attributes: list = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.attributes.extend(name for name, _ in attrs)

    page = outputs["html"].read_text(encoding="utf-8")
    parser = Elements()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags   # graphviz's <a> carries a tooltip only:
    assert not any(a.startswith("on") or a.endswith("href") or a == "src" for a in parser.attributes)
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page

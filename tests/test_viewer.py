"""The interactive viewer (`resgraph render spec.yaml -o net.html`), opened from disk in a real browser with the
network cut off: what it draws, collapsing and expanding, hover, click, search; a hostile spec's page runs no
script. The escaping of the page's data is checked without a browser too.

The browser tests skip where no chromium can be had (tests/browser.py says how it is found)."""

from __future__ import annotations

import html.parser
import json
import time
from pathlib import Path

import pytest

import resgraph
from resgraph.viewer import json_for_html

from .browser import VIEWPORT, browser, save_screenshot, shots  # noqa: F401 - fixtures (one browser a module)
from .hostile import TEXTS, yaml_string

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- without a browser
def test_json_for_html_escapes_what_html_reads_and_keeps_every_string():
    for text in TEXTS + ["\u2028\u2029", "\ud800 lone surrogate", "</SCRIPT >", "<!--<script>"]:
        encoded = json_for_html({"name": text, "list": [text]})
        assert not any(c in encoded for c in "<>&\u2028\u2029"), text
        assert encoded.isascii()
        assert json.loads(encoded) == {"name": text, "list": [text]}


class _Elements(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.data: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = dict(attrs).get("id") if tag == "script" else None

    def handle_data(self, data):
        if self._open:
            self.data[self._open] = self.data.get(self._open, "") + data


def hostile_spec(directory: Path) -> Path:
    """A valid spec whose every free text -- file name, `name`, `doc`, a block's `doc`, comments -- is hostile."""
    name = " ".join(t for t in TEXTS if t.strip())[:2000]
    path = directory / "<img src=x onerror=window.pwned=1>.yaml"
    comment = "# </script><script>window.pwned=2</script> <!-- <img src=x onerror=window.pwned=3> &lt; \u202e"
    path.write_text(f"resgraph: 1\n{comment}\nname: {yaml_string(name)}\ndoc: {yaml_string(name)}\ninput: [4]\n"
                    f"blocks:\n  b:\n    doc: {yaml_string(name)}\n    nodes:\n      fc: {{op: linear, out: 4}}  {comment}\n"
                    "nodes:\n  first: {block: b}\n  fc: {op: linear, out: 2}\n", encoding="utf-8")
    return path


def test_a_hostile_spec_reaches_the_page_only_as_json_data(tmp_path):
    spec = hostile_spec(tmp_path)
    network = resgraph.load(spec)
    page = resgraph.render(network, tmp_path / "net.html").read_text(encoding="utf-8")
    parser = _Elements()
    parser.feed(page)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert [s.get("type") for s in scripts] == ["application/json", "application/json", None]
    assert {tag for tag, _ in parser.tags} <= {"html", "head", "meta", "title", "style", "body", "header", "div", "span",
                                               "input", "ol", "button", "main", "section", "label", "textarea", "svg",
                                               "aside", "p", "script"}
    state = json.loads(parser.data["resgraph-state"])
    assert state["graph"]["name"] == network.name and state["graph"]["doc"] == network.spec.doc
    assert state["graph"]["files"][0]["text"] == spec.read_text(encoding="utf-8")


def test_render_html_through_the_command_line_and_never_over_an_input(tmp_path):
    from click.testing import CliRunner

    from resgraph.cli import main

    out = tmp_path / "net.html"
    done = CliRunner().invoke(main, ["render", str(ROOT / "specs" / "resnet18.yaml"), "-o", str(out), "--depth", "1"])
    assert done.exit_code == 0 and done.output.strip() == f"wrote {out}", done.output
    parser = _Elements()
    parser.feed(out.read_text(encoding="utf-8"))
    assert json.loads(parser.data["resgraph-state"])["graph"]["depth"] == 1   # the level its blocks open collapsed at
    spec = tmp_path / "spec.html"   # a spec may have any name; the page never replaces it
    spec.write_text("resgraph: 1\ninput: [4]\nnodes:\n  fc: {op: linear, out: 2}\n", encoding="utf-8")
    with pytest.raises(resgraph.SpecError) as caught:
        resgraph.render(spec, spec)
    assert caught.value.diagnostics[0].code == "RG075"
    assert spec.read_text(encoding="utf-8").startswith("resgraph: 1")


# ---------------------------------------------------------------------------- in the browser
class Offline:
    """A page that may load file:// URLs only: every other request is aborted and recorded."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport=VIEWPORT, offline=True, service_workers="block")
        self.attempted: list[str] = []
        self.errors: list[str] = []

        def route(request_route):
            url = request_route.request.url
            if url.startswith("file://"):
                request_route.continue_()
            else:
                self.attempted.append(url)
                request_route.abort()

        self.context.route("**/*", route)
        self.context.set_default_timeout(15000)   # generous: the test machine may be shared
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)

    def open(self, path: Path) -> float:
        start = time.perf_counter()
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("window.resgraphViewer && window.resgraphViewer.ready")
        return time.perf_counter() - start

    def drawn(self) -> int:
        return self.page.locator("#drawing g.vertex").count()

    def close(self) -> None:
        self.context.close()
        assert self.attempted == [], f"the page tried to reach the network: {self.attempted}"
        assert self.errors == [], self.errors


def _dims(shape) -> str:
    return "\u00d7".join(str(d) for d in shape)


def test_resnet18_offline_draw_collapse_expand_hover_click_search(browser, shots, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)   # the page names files as the command line did: specs/resnet18.yaml
    network = resgraph.load("specs/resnet18.yaml")
    graph = network.graph
    out = resgraph.render(network, tmp_path / "resnet18.html")
    viewer = Offline(browser)
    page = viewer.page
    viewer.open(out)
    # every node and the output marker, drawn (a small net opens fully expanded)
    assert viewer.drawn() == len(graph) + len(graph.outputs)
    assert page.title() == "resnet18 \u2014 resgraph"
    # the summary's table of the top-level blocks, with their parameters
    rows = page.locator("table.blocks tr[data-scope]")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.scope)") == ["layer1", "layer2", "layer3", "layer4"]
    layer2_params = sum(node.meta["params"] for node in graph if node.scopes[:1] == ("layer2",))
    assert rows.nth(1).locator("td.share").first.text_content() == f"{layer2_params / 1e3:.2f} K"   # 525.57 K
    save_screenshot(page, shots, "viewer_resnet18.png")

    # collapse the stage `layer2` by its title: its nodes become one box; expand it again by clicking the box
    page.click("#fit")   # the whole drawing in the window
    in_layer2 = sum(1 for node in graph if node.scopes[:1] == ("layer2",))
    page.click('g.cluster[data-scope="layer2"] > g.head')
    assert viewer.drawn() == len(graph) + len(graph.outputs) - in_layer2 + 1
    group = page.locator('g.vertex.group[data-scope="layer2"]')
    assert group.count() == 1 and "basic \u00d72" in group.text_content()
    group.hover()
    tooltip = page.locator("#tooltip")
    assert f"{layer2_params:,}" in tooltip.text_content() and "projection" in tooltip.text_content()
    group.click()
    assert viewer.drawn() == len(graph) + len(graph.outputs)

    # hover: the tooltip gives the output shape, parameters and MACs
    node = graph.nodes["layer3.0.conv1"]
    page.fill("#search", node.name)   # a search brings it into view
    page.locator("#search").press("Enter")
    page.hover('g.vertex[data-name="layer3.0.conv1"]')
    assert tooltip.is_visible()
    text = tooltip.text_content()
    assert "layer3.0.conv1" in text and _dims(node.shape) in text and f"{node.meta['params']:,}" in text
    assert f"{node.meta['macs']:,}" in text

    # click: the details give the source location and its line
    page.click('g.vertex[data-name="layer3.0.conv1"]')
    span = node.span
    location = page.locator("#details .location").first.text_content()
    assert location == f"{span.file}:{span.line}:{span.col}"
    source_line = Path(ROOT / span.file).read_text(encoding="utf-8").splitlines()[span.line - 1]
    assert page.locator("#details pre.source span.here").text_content().endswith(source_line)

    # search: every node whose name holds the text is listed; Enter shows and selects the first
    page.fill("#search", "relu2")
    expected = [n.name for n in graph if "relu2" in n.name]
    assert page.locator("#results li[data-index]").all_text_contents() == [
        name + graph.nodes[name].op.label() for name in expected]
    page.click("#fit")
    page.click('g.cluster[data-scope="layer1"] > g.head')    # hide the first match in a collapsed stage
    assert page.locator('g.vertex[data-name^="layer1."]').count() == 0 and len(expected) == 8
    page.locator("#search").press("ArrowDown")
    page.locator("#search").press("ArrowUp")
    page.locator("#search").press("Enter")
    assert page.locator(f'g.vertex.selected[data-name="{expected[0]}"]').count() == 1
    assert page.locator("#details h2").text_content() == expected[0]
    save_screenshot(page, shots, "viewer_search.png")
    viewer.close()


def test_resnet152_is_small_opens_fast_and_expands(browser, shots, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    network = resgraph.load("specs/resnet152.yaml")
    graph = network.graph
    out = resgraph.render(network, tmp_path / "resnet152.html")
    assert out.stat().st_size <= 2 * 2**20
    viewer = Offline(browser)
    seconds = viewer.open(out)
    # big nets open with the units of each stage collapsed: one box per unit
    units = {node.scopes[1] if len(node.scopes) > 1 else node.name for node in graph}
    assert viewer.drawn() == len(units) + len(graph.outputs)
    # opening in well under a second on a desktop (docs/diagrams.md gives the figures); a loose bound here, where
    # eight test runs may share two cores
    assert seconds < 4, seconds
    viewer.page.hover('g.vertex.group[data-scope="layer2.0"]')
    text = viewer.page.locator("#tooltip").text_content()
    assert "bottleneck" in text and "projection" in text and _dims(graph.nodes["layer2.0.relu3"].shape) in text
    save_screenshot(viewer.page, shots, "viewer_resnet152.png")
    viewer.page.click("#expand-all")
    assert viewer.drawn() == len(graph) + len(graph.outputs)
    viewer.close()


def test_a_hostile_spec_runs_no_script_in_the_browser(browser, tmp_path):
    spec = hostile_spec(tmp_path)
    network = resgraph.load(spec)
    out = resgraph.render(network, tmp_path / "hostile.html")
    viewer = Offline(browser)
    page = viewer.page
    # anything that ran would set window.pwned or open a dialog; a script blocked by the page's CSP (which an
    # escaping failure would inject) is counted as a violation
    page.add_init_script("window.pwned = 0; window.violations = 0; window.alert = () => { window.pwned = 'alert'; };"
                         "document.addEventListener('securitypolicyviolation', () => { window.violations += 1; });")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    viewer.open(out)
    page.hover('g.vertex[data-name="first.fc"]')
    page.click('g.vertex[data-name="first.fc"]')
    page.fill("#search", "fc")
    assert page.evaluate("window.pwned") == 0 and page.evaluate("window.violations") == 0 and dialogs == []
    # the text is shown as text: the title, the summary, the source line with its comment
    assert page.locator("#title").text_content() == network.name
    assert page.locator("#summary h2").text_content() == network.name
    assert page.locator("#summary .doc").text_content() == network.spec.doc
    assert "</script><script>window.pwned=2</script>" in page.locator("#details pre.source").text_content()
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.locator("#details .location").first.text_content().startswith(str(spec))
    viewer.close()


def test_a_dict_output_shows_its_keys(browser, tmp_path):
    """FCN returns torchvision's {'out', 'aux'}: the viewer's output markers say which key is which."""
    network = resgraph.load(ROOT / "specs" / "fcn_resnet50.yaml", {"size": 64})
    out = resgraph.render(network, tmp_path / "fcn.html")
    viewer = Offline(browser)
    viewer.open(out)
    texts = viewer.page.locator("#drawing g.vertex").all_text_contents()
    assert any("output out" in t and "21×64×64" in t for t in texts), texts[-3:]
    assert any("output aux" in t for t in texts), texts[-3:]
    viewer.close()


def test_a_call_with_several_outputs_shows_each(browser, tmp_path):
    """The FPN backbone's trunk is one call of a block with four outputs: its box lists them, `:k` as read."""
    network = resgraph.load(ROOT / "specs" / "resnet50_fpn.yaml", {"size": 64})
    out = resgraph.render(network, tmp_path / "fpn.html", depth=0)
    viewer = Offline(browser)
    viewer.open(out)
    texts = viewer.page.locator("#drawing g.vertex").all_text_contents()
    body = next((t for t in texts if "bodyresnet_trunk" in t), texts)   # name, block, then a line per output
    assert all(f":{k} {shape}" in body for k, shape in enumerate(["256×16×16", "512×8×8", "1024×4×4", "2048×2×2"])), body
    viewer.close()

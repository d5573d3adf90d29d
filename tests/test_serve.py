"""The live playground (`resgraph serve`): its guards against other sites, without a browser; then the real command
on a free port, in a real browser: a change on disk (to the spec or a file it includes) shows in the page, a broken
spec shows its diagnostic in place, a fixed one the diagram again, and `--edit` writes the file."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from resgraph.serve import Playground, PlaygroundServer

from .browser import VIEWPORT, browser, save_screenshot, shots  # noqa: F401 - fixtures (one browser a module)

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
resgraph: 1
name: playground
doc: A small residual network to edit.
include: [blocks.yaml]
input: [64, 56, 56]
nodes:
  layer1: {block: basic, repeat: 2, with: {planes: 64}}
  layer2: {block: basic, with: {planes: 128, stride: 2, shortcut: project}}
  pool: {op: adaptive_avgpool2d, size: 1}
  flatten: flatten
  fc: {op: linear, out: 10}
"""
BLOCKS = """\
resgraph: 1
blocks:
  basic:
    params: {planes: null, stride: 1, shortcut: auto}
    nodes:
      conv1: {op: conv2d, out: planes, kernel: 3, stride: stride, padding: 1, bias: false}
      bn1: batchnorm2d
      relu1: relu
      conv2: {op: conv2d, out: planes, kernel: 3, padding: 1, bias: false}
      bn2: batchnorm2d
      add: {op: add, inputs: [bn2, input], shortcut: shortcut}
      relu2: relu
"""


def write_project(directory: Path) -> Path:
    (directory / "blocks.yaml").write_text(BLOCKS, encoding="utf-8")
    spec = directory / "net.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    return spec


def save_on_disk(path: Path, text: str) -> None:
    """Write as an editor does, and make sure the modification time moves even on a coarse clock."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 10**7, before + 10**7))


# ---------------------------------------------------------------------------- without a browser
@pytest.fixture
def server(tmp_path):
    """A playground with `--edit` on a free loopback port, served from a thread."""
    spec = write_project(tmp_path)
    playground = Playground(str(spec), edit=True)
    httpd = PlaygroundServer(playground, "127.0.0.1", 0, long_poll_seconds=0.2)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, spec
    httpd.shutdown()
    httpd.server_close()


def request(httpd, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    port = httpd.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Host": f"127.0.0.1:{port}"}
    if data is not None:
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    connection.request(method, path, body=data, headers=sent)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


def test_the_page_carries_a_token_and_saving_needs_it_and_this_server_as_host_and_origin(server):
    httpd, spec = server
    port = httpd.server_address[1]
    token = httpd.playground.token
    status, page = request(httpd, "GET", "/")
    assert status == 200 and token.encode() in page
    # a name rebound to 127.0.0.1 (DNS rebinding) reads nothing and writes nothing
    assert request(httpd, "GET", "/", headers={"Host": f"evil.example:{port}"})[0] == 403
    assert request(httpd, "GET", "/api/state?after=0", headers={"Host": f"evil.example:{port}"})[0] == 403
    new = SPEC.replace("out: 10", "out: 3")
    refused = [
        ({"token": "guess", "text": new}, {}),                                       # no token
        ({"token": token, "text": new}, {"Origin": "http://evil.example"}),          # another site
        ({"token": token, "text": new}, {"Host": f"evil.example:{port}"}),           # a rebound name
        ({"token": token, "text": new}, {"Sec-Fetch-Site": "cross-site"}),
        ({"token": token, "text": new}, {"Content-Type": "text/plain"}),             # a form's kind of body
    ]
    for body, headers in refused:
        status, answer = request(httpd, "POST", "/api/save", body, headers)
        assert status in (403, 415), (headers, status, answer)
        assert spec.read_text(encoding="utf-8") == SPEC
    status, answer = request(httpd, "POST", "/api/save", {"token": token, "text": new},
                             {"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200, answer
    assert spec.read_text(encoding="utf-8") == new
    assert sorted(p.name for p in spec.parent.iterdir()) == ["blocks.yaml", "net.yaml"]   # no temporary left


def test_a_read_only_playground_refuses_to_save(tmp_path):
    spec = write_project(tmp_path)
    playground = Playground(str(spec))
    httpd = PlaygroundServer(playground, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        status, page = request(httpd, "GET", "/")
        assert status == 200 and playground.token.encode() not in page
        status, _ = request(httpd, "POST", "/api/save", {"token": playground.token, "text": "x"})
        assert status == 403 and spec.read_text(encoding="utf-8") == SPEC
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_beyond_loopback_any_address_may_name_the_server_but_no_other_name(tmp_path):
    playground = Playground(str(write_project(tmp_path)))
    httpd = PlaygroundServer(playground, "0.0.0.0", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        assert request(httpd, "GET", "/", headers={"Host": f"192.0.2.7:{port}"})[0] == 200
        assert request(httpd, "GET", "/", headers={"Host": f"evil.example:{port}"})[0] == 403
        assert request(httpd, "GET", "/", headers={"Host": "192.0.2.7:1"})[0] == 403
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_port_in_use_is_a_clear_error_and_exit_2(tmp_path):
    import socket

    from click.testing import CliRunner

    from resgraph.cli import main

    spec = write_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = CliRunner().invoke(main, ["serve", str(spec), "--port", str(port)])
    assert done.exit_code == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: " in done.output and "`--port`" in done.output


def test_diagnostics_with_hostile_text_reach_the_page_only_as_json(tmp_path):
    from .test_viewer import _Elements

    payload = "</script><script>window.pwned=1</script><img src=x onerror=alert(1)>"
    spec = tmp_path / "net.yaml"
    spec.write_text(f"resgraph: 1\ninput: [4]\nnodes:\n  fc: {{op: {json.dumps(payload)}}}\n", encoding="utf-8")
    playground = Playground(str(spec))
    assert not playground.state["ok"] and payload in playground.state["diagnostics"][0]["message"]
    parser = _Elements()
    parser.feed(playground.page())
    assert [tag for tag, _ in parser.tags].count("script") == 3 and "img" not in [tag for tag, _ in parser.tags]
    assert json.loads(parser.data["resgraph-state"])["diagnostics"] == playground.state["diagnostics"]


# ---------------------------------------------------------------------------- the command, in the browser
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`resgraph serve net.yaml --port 0 --edit` as a subprocess, in a directory of its own. Module-scoped and
    named before `browser` by the test, so that it starts while the browser is launched."""
    directory = tmp_path_factory.mktemp("served")
    spec = write_project(directory)
    process = subprocess.Popen([sys.executable, "-m", "resgraph", "serve", spec.name, "--port", "0", "--edit"],
                               cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    yield process, spec
    process.terminate()
    process.wait(timeout=10)


def listening_at(process) -> str:
    """The URL the command prints once it listens."""
    line = process.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    if not found:
        process.kill()
        raise AssertionError(f"no URL in {line!r}: {process.stderr.read()}")
    return found.group(1)


def test_serve_follows_the_files_shows_diagnostics_in_place_and_edit_writes_the_spec(served, browser, shots):
    from playwright.sync_api import expect

    process, spec = served
    blocks = spec.parent / "blocks.yaml"
    url = listening_at(process)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15000)   # generous: the test machine may be shared
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        fc_shape = page.locator('g.vertex[data-name="fc"] text.t-shape')
        expect(fc_shape).to_have_text("10", timeout=15000)
        assert page.locator("#drawing g.vertex").count() == 1 + 7 * 3 + 3 + 1   # input, 3 units, head, output
        save_screenshot(page, shots, "playground.png")

        # the spec changes on disk: the page follows
        started = time.perf_counter()
        save_on_disk(spec, SPEC.replace("out: 10", "out: 7"))
        expect(fc_shape).to_have_text("7", timeout=15000)
        followed = time.perf_counter() - started
        assert followed < 5, followed   # within a second when the machine is not shared (docs/diagrams.md)
        # so does a file it includes
        save_on_disk(blocks, BLOCKS.replace("relu2: relu", "act2: relu"))
        page.wait_for_selector('g.vertex[data-name="layer2.act2"]')

        # broken: the diagnostic in place, with its location and help; the last drawing greyed
        save_on_disk(spec, SPEC.replace("shortcut: project", "shortcut: identity"))
        diagnostic = page.locator('#diagnostics .diagnostic[data-code="RG050"]')
        diagnostic.wait_for()
        text = diagnostic.text_content()
        assert f"{spec.name}:8:" in text and "error[RG050]" in text and "help" in text
        assert "stale" in page.get_attribute("#canvas", "class")
        assert page.locator("g.vertex.failing").evaluate_all("gs => gs.map(g => g.dataset.name)") == ["layer2.add"]
        save_screenshot(page, shots, "playground_error.png")

        # fixed: the diagram again, no diagnostics
        save_on_disk(spec, SPEC)
        page.wait_for_selector("#diagnostics", state="hidden")
        assert "stale" not in page.get_attribute("#canvas", "class")
        expect(fc_shape).to_have_text("10", timeout=15000)

        # --edit: the editor holds the spec; saving writes it (and the page follows)
        editor = page.locator("#source")
        assert editor.input_value() == SPEC
        editor.fill(SPEC.replace("out: 10", "out: 5"))
        page.click("#save")
        expect(fc_shape).to_have_text("5", timeout=15000)
        assert spec.read_text(encoding="utf-8") == SPEC.replace("out: 10", "out: 5")
        assert errors == []
    finally:
        context.close()

"""The live playground (`resgraph serve`): the viewer page (resgraph/viewer) served over HTTP from the standard
library, re-validated whenever the spec or a file it includes changes on disk.

A watcher thread polls the modification times of the spec and every file it read; on a change it runs the static
passes again and publishes a new state (the graph, or the diagnostics) under a new version number. The page
long-polls `GET /api/state?after=N`, which answers as soon as the version passes N. With `edit`, `POST /api/save`
writes the page's editor text to the spec (only the spec, atomically), when the request carries the page's random
token, a Host that is this server's and no Origin but this server's: another site cannot write the file, even
through a DNS name rebound to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

POLL_SECONDS = 0.2           # how often the watcher looks at the files
LONG_POLL_SECONDS = 20.0     # how long `GET /api/state` waits for a change before answering unchanged
MAX_SAVE_BYTES = 8 * 2**20   # the largest spec the editor may write


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Playground:
    """The state of one served spec, shared by the watcher and the request handlers."""

    def __init__(self, spec: str | os.PathLike, params: Mapping[str, Any] | None = None,
                 include_path: Sequence[str | os.PathLike] = (), plugins: bool = True, edit: bool = False) -> None:
        self.spec = str(spec)
        self.params, self.include_path, self.plugins, self.edit = params, include_path, plugins, edit
        self.token = secrets.token_urlsafe(32)
        self.version = 0
        self.state: dict = {}
        self.files: list[str] = [self.spec]
        self._stamps: dict[str, tuple | None] = {}
        self._changed = threading.Condition()
        self.check()

    # ------------------------------------------------------------------ checking
    @staticmethod
    def _stamp(path: str) -> tuple | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def check(self) -> None:
        """Run every static pass on the spec as it is on disk now and publish the result as a new version."""
        import resgraph

        from .viewer import diagnostics_data, graph_data

        stamps = {path: self._stamp(path) for path in self.files}
        network, diagnostics = resgraph._analyse(self.spec, self.params, None, self.include_path, self.plugins)
        sources = diagnostics.sources
        files = [self.spec] + [path for path in sources if path != self.spec and os.path.isfile(path)]
        state: dict[str, Any] = {"ok": network is not None, "graph": None,
                                 "diagnostics": diagnostics_data(diagnostics.items, sources),
                                 "files": files, "checked": time.time()}
        if network is not None:
            state["graph"] = graph_data(network.graph, sources, network.spec.doc)
        elif not diagnostics.has_errors:   # a block library: valid, but nothing to draw
            from .diagnostics import Diagnostic, Span

            state["diagnostics"] = diagnostics_data([Diagnostic(
                "RG010", "the spec defines no network (it has no `nodes`)", Span(self.spec, 1, 1, 1, 2),
                help="a block library can be included and validated, but not drawn")], sources)
        if self.edit:
            try:
                state["text"] = Path(self.spec).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                state["text"] = None
        # the spec's directory too: a file the spec names but that did not exist yet (an error) may appear there
        for path in files + [os.path.dirname(os.path.abspath(self.spec))]:
            stamps.setdefault(path, self._stamp(path))
        with self._changed:
            self.files, self._stamps = files, stamps
            self.version += 1
            state["version"] = self.version
            self.state = state
            self._changed.notify_all()

    def changed_on_disk(self) -> bool:
        return any(self._stamp(path) != stamp for path, stamp in self._stamps.items())

    def watch(self, stop: threading.Event) -> None:
        """Poll the files until `stop` is set; check again after a change."""
        while not stop.wait(POLL_SECONDS):
            if self.changed_on_disk():
                time.sleep(0.05)   # an editor that writes in two steps has finished
                try:
                    self.check()
                except Exception as exc:  # noqa: BLE001 - the server keeps running; the page says what failed
                    with self._changed:
                        self._stamps = {path: self._stamp(path) for path in self._stamps}   # until the next save
                        self.version += 1
                        self.state = {"ok": False, "graph": None, "files": self.files, "checked": time.time(),
                                      "version": self.version, "diagnostics": [{
                                          "code": "internal", "severity": "error", "where": "", "file": "",
                                          "line": 0, "col": 0, "excerpt": "", "notes": [],
                                          "message": f"internal error: {type(exc).__name__}: {exc}",
                                          "help": "this is a bug in resgraph; the server keeps watching"}]}
                        self._changed.notify_all()

    def wait_for(self, after: int, timeout: float) -> dict:
        """The state once its version is past `after`, or the current one after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > after, timeout)
            return self.state

    # ------------------------------------------------------------------ the page and saving
    def page(self) -> str:
        from .viewer import page

        config = {"mode": "serve", "edit": self.edit, "spec": self.spec}
        if self.edit:
            config["token"] = self.token
        return page(self.state, config)

    def save(self, text: str) -> None:
        """Write the editor's text to the spec, atomically (never to any other file)."""
        from .atomic import write_atomically

        write_atomically(Path(self.spec), text.encode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    server: "PlaygroundServer"
    protocol_version = "HTTP/1.1"
    server_version = "resgraph"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:   # quiet: the terminal shows what the page shows
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")

    def _refuse(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_allowed(self) -> bool:
        """The Host header names this server (so a page of another site whose DNS name was rebound to this
        address cannot read or write through it)."""
        host = self.headers.get("Host", "")
        return host in self.server.allowed_hosts or (self.server.any_ip_host and _ip_host(host, self.server.port))

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if not self._host_allowed():
            return self._refuse(HTTPStatus.FORBIDDEN, "this server answers only requests addressed to it by its own "
                                                      "address (the Host header names another)")
        url = urlsplit(self.path)
        playground = self.server.playground
        if url.path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, playground.page().encode("utf-8"), "text/html; charset=utf-8")
        if url.path == "/api/state":
            try:
                after = int(parse_qs(url.query).get("after", ["-1"])[0])
            except ValueError:
                return self._refuse(HTTPStatus.BAD_REQUEST, "`after` is not a version number")
            return self._json(HTTPStatus.OK, playground.wait_for(after, self.server.long_poll_seconds))
        if url.path == "/favicon.ico":   # browsers ask; there is none
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        return self._refuse(HTTPStatus.NOT_FOUND, "not found")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        playground = self.server.playground
        if urlsplit(self.path).path != "/api/save":
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        if not self._host_allowed():
            return self._refuse(HTTPStatus.FORBIDDEN, "the Host header names another server")
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.allowed_origins:
            return self._refuse(HTTPStatus.FORBIDDEN, "a request from another site (Origin) is refused")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return self._refuse(HTTPStatus.FORBIDDEN, "a request from another site (Sec-Fetch-Site) is refused")
        if not playground.edit:
            return self._refuse(HTTPStatus.FORBIDDEN, "the spec is served read-only; start with `--edit` to edit it")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._refuse(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        if not 0 <= length <= MAX_SAVE_BYTES:
            self.close_connection = True
            return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a spec of more than {MAX_SAVE_BYTES:,} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            return self._refuse(HTTPStatus.BAD_REQUEST, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("token"), str) or not isinstance(body.get("text"), str):
            return self._refuse(HTTPStatus.BAD_REQUEST, "send {\"token\": ..., \"text\": ...}")
        if not secrets.compare_digest(body["token"].encode(), playground.token.encode()):
            return self._refuse(HTTPStatus.FORBIDDEN, "wrong token: reload the page")
        try:
            playground.save(body["text"])
        except Exception as exc:  # noqa: BLE001 - the editor shows why it was not saved
            return self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc) or type(exc).__name__)
        return self._json(HTTPStatus.OK, {"saved": playground.spec})


def _ip_host(host: str, port: int) -> bool:
    """`host` (a Host header, or an origin without its scheme) is an IP literal or localhost, with `port`."""
    name, sep, given = host.rpartition(":")
    if not sep or given != str(port):
        return False
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return name == "localhost"


class PlaygroundServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, playground: Playground, host: str = "127.0.0.1", port: int = 0,
                 long_poll_seconds: float = LONG_POLL_SECONDS) -> None:
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.playground = playground
        self.long_poll_seconds = long_poll_seconds
        port = self.port = self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        names = {shown}
        if is_loopback(host):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        # A wildcard address is reached by whatever address the machine has: any IP literal is accepted then
        # (a DNS rebinding attack needs a name, which stays refused).
        self.any_ip_host = host in ("0.0.0.0", "::", "")
        self.allowed_hosts = {f"{name}:{port}" for name in names}
        self.allowed_origins = {f"http://{name}" for name in self.allowed_hosts}
        if self.any_ip_host:
            self.allowed_origins = _AnyIpOrigin(port)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else (
            f"[{host}]" if ":" in host else host)
        return f"http://{shown}:{port}/"


class _AnyIpOrigin:
    """`origin in this`: an http origin whose host is an IP literal (or localhost) and whose port is ours."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __contains__(self, origin: object) -> bool:
        if not isinstance(origin, str) or not origin.startswith("http://"):
            return False
        return _ip_host(origin[len("http://"):], self.port)


def serve(playground: Playground, host: str = "127.0.0.1", port: int = 8765, ready=None) -> None:
    """Serve until interrupted; `ready(server)` is called once the socket listens. OSError where it cannot listen."""
    try:
        server = PlaygroundServer(playground, host, port)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another with `--port`") from None
    stop = threading.Event()
    watcher = threading.Thread(target=playground.watch, args=(stop,), name="resgraph-watch", daemon=True)
    watcher.start()
    try:
        if ready is not None:
            ready(server)
        server.serve_forever(poll_interval=0.25)
    finally:
        stop.set()
        server.server_close()

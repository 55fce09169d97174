"""Fixtures for the fetch tests: real HTTP servers on 127.0.0.1, a git repo, a fetch config."""
from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .helpers import make_git_repo


@dataclass
class Request:
    seq: int          # global order over all servers of one test
    server: str
    method: str
    path: str
    headers: dict[str, str]


class FileServer:
    """A threaded HTTP server that serves ``files`` and records every request.

    Knobs, all keyed by URL path:
      truncate_once  the first full GET sends the whole Content-Length but only half the body,
                     then closes the connection; later GETs (and Range GETs) behave.
      throttle       seconds spread over sending the body (a slow server).
      hold           a threading.Event the body waits for after sending half (max 20 s).
    ``Range: bytes=N-`` is answered with 206 Partial Content.
    """

    def __init__(self, name: str, log: list[Request], counter):
        self.name = name
        self.log = log
        self.files: dict[str, bytes] = {}
        self.truncate_once: set[str] = set()
        self.throttle: dict[str, float] = {}
        self.hold: dict[str, threading.Event] = {}
        self._counter = counter
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def requests(self) -> list[Request]:
        return [r for r in self.log if r.server == self.name]

    def gets(self, path: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and (path is None or r.path == path)]

    def close(self):
        for event in self.hold.values():
            event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, handler) -> None:
        with self._lock:
            self.log.append(Request(next(self._counter), self.name, handler.command,
                                    handler.path.split("?")[0], dict(handler.headers.items())))

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                server._record(self)
                self._respond(body=False)

            def do_GET(self):
                server._record(self)
                self._respond(body=True)

            def _respond(self, body: bool):
                path = self.path.split("?")[0]
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
                if match and int(match.group(1)) < len(data):
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                rest = data[start:]
                if start == 0 and self.command == "GET" and path in server.truncate_once:
                    server.truncate_once.discard(path)
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if path in server.hold:
                    half = len(rest) // 2
                    self.wfile.write(rest[:half])
                    self.wfile.flush()
                    server.hold[path].wait(20)
                    rest = rest[half:]
                delay = server.throttle.get(path, 0.0)
                pieces = 10 if delay else 1
                step = -(-len(rest) // pieces) or 1
                for offset in range(0, len(rest), step):
                    if delay:
                        time.sleep(delay / pieces)
                    self.wfile.write(rest[offset:offset + step])
                    self.wfile.flush()

        return Handler


@pytest.fixture
def request_log() -> list[Request]:
    """All requests received by every server of the test, in arrival order."""
    return []


@pytest.fixture
def make_server(request_log):
    """Start a new FileServer: ``make_server("mirror")``; all are shut down after the test."""
    servers = []
    counter = itertools.count()

    def make(name: str = "upstream") -> FileServer:
        server = FileServer(name, request_log, counter)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(make_server) -> FileServer:
    """The upstream server."""
    return make_server("upstream")


@pytest.fixture
def hanging_server():
    """Base URL of a server that accepts connections and never answers; yields the base URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def dl_dir(tmp_path) -> Path:
    path = tmp_path / "dl"
    path.mkdir()
    return path


@pytest.fixture
def make_config(dl_dir):
    """FetchConfig with no mirrors by default, so no test ever reaches the host's Debian archive."""
    from buildsys.fetch import FetchConfig

    def make(**kw) -> FetchConfig:
        kw.setdefault("dl_dir", dl_dir)
        kw.setdefault("mirrors", [])
        return FetchConfig(**kw)

    return make


@pytest.fixture
def git_repo(tmp_path):
    """A git repo (branch main) with two commits at known times; see helpers.GitRepo."""
    return make_git_repo(tmp_path / "repo")


@dataclass
class Workspace:
    """dest (where archives are unpacked) and an empty sibling sentinel that must stay empty."""

    root: Path
    dest: Path
    sentinel: Path
    archives: Path    # where the tests write their archives, away from root

    def outside_dest(self) -> list[str]:
        """Everything under root that is not dest or inside it (should be just the sentinel)."""
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                      if p != self.dest and self.dest not in p.parents)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    root = tmp_path / "work"
    dest, sentinel, archives = root / "dest", root / "sentinel", tmp_path / "archives"
    for path in (dest, sentinel, archives):
        path.mkdir(parents=True)
    return Workspace(root, dest, sentinel, archives)

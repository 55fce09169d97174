"""Real servers on 127.0.0.1 for tests and bench/: nginx WebDAV as the
shared cache, a Dask scheduler for cluster builds.

    from servers import nginx_cache

    with nginx_cache(tmp_path) as url:          # http://127.0.0.1:PORT
        shared = f"{url}/artifacts"             # the shared artifact cache
        mirror = f"{url}/downloads"             # the premirror
        ...                                     # files land in tmp_path/"nginx-root"/{artifacts,downloads}

The config is scripts/cache-server.py's (one place); nginx runs in the
foreground of a child process and is stopped when the block ends.  It starts
in a few milliseconds.  ``nginx_root(tmp_path)`` is the served dir, for tests
that tamper with what the server holds.

    with dask_scheduler(tmp_path) as address:   # tcp://127.0.0.1:PORT (its log: tmp_path/scheduler.log)
        ...
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("cache_server", ROOT / "scripts" / "cache-server.py")
assert _spec is not None and _spec.loader is not None
cache_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cache_server)


def have_nginx() -> bool:
    return os.access(cache_server.NGINX, os.X_OK)


def nginx_root(tmp_path: Path) -> Path:
    return tmp_path / "nginx-root"


@contextlib.contextmanager
def nginx_cache(tmp_path: Path, root: Path | None = None) -> Iterator[str]:
    """A throw-away nginx serving ``root`` (default ``tmp_path/nginx-root``):
    yields its base URL.  Skips the test when nginx is not installed
    (scripts/setup-host.sh installs it)."""
    if not have_nginx():
        pytest.skip(f"nginx not installed ({cache_server.NGINX}); scripts/setup-host.sh installs it")
    root = root or nginx_root(tmp_path)
    state = tmp_path / "nginx-state"
    for _attempt in range(5):           # a free port may be taken between choosing and binding it
        port = cache_server.free_port()
        cmd = cache_server.prepare(root, state, port, daemon=False)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cache_server.wait_listening("127.0.0.1", port, proc)
        except RuntimeError:
            proc.kill()
            proc.wait()
            continue
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    log = (state / "error.log").read_text() if (state / "error.log").exists() else ""
    raise RuntimeError(f"nginx did not start: {log[-2000:]}")


@pytest.fixture
def nginx_url(tmp_path) -> Iterator[str]:
    """Base URL of a throw-away nginx (see nginx_cache)."""
    with nginx_cache(tmp_path) as url:
        yield url



@contextlib.contextmanager
def dask_scheduler(work: Path) -> Iterator[str]:
    """A Dask scheduler on 127.0.0.1 (its own session: stopped as a group); yields its address."""
    port, dashboard = cache_server.free_port(), cache_server.free_port()
    with open(work / "scheduler.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", str(port), "--dashboard-address", f"127.0.0.1:{dashboard}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            cache_server.wait_listening("127.0.0.1", port, proc, timeout=60)
            yield f"tcp://127.0.0.1:{port}"
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session, and its children: TERM, then KILL after 20 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

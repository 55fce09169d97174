"""Real servers on 127.0.0.1 for tests: nginx WebDAV as the shared cache.

    from servers import nginx_cache

    with nginx_cache(tmp_path) as url:          # http://127.0.0.1:PORT
        shared = f"{url}/artifacts"             # the shared artifact cache
        mirror = f"{url}/downloads"             # the premirror
        ...                                     # files land in tmp_path/"nginx-root"/{artifacts,downloads}

The config is scripts/cache-server.py's (one place); nginx runs in the
foreground of a child process and is stopped when the block ends.  It starts
in a few milliseconds.  ``nginx_root(tmp_path)`` is the served dir, for tests
that tamper with what the server holds.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
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


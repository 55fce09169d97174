#!/usr/bin/env python3
"""A throw-away nginx on 127.0.0.1 serving a buildsys shared cache and premirror.

    scripts/cache-server.py --root DIR [--port N] [--listen ADDR] [--foreground]
    scripts/cache-server.py --stop STATE_DIR

``DIR/artifacts/`` is the shared artifact cache (``shared_cache:
http://127.0.0.1:N/artifacts``) and ``DIR/downloads/`` the premirror
(``premirrors: [http://127.0.0.1:N/downloads]``).  GET and HEAD for everyone,
PUT (WebDAV) for anyone who can reach the port: fine on 127.0.0.1 for tests
and a try-out, not for a team -- docs/shared-cache.md has the production site
file (PUT for builders only).  Signed artifacts are what makes a PUT alone
unable to inject anything.

nginx writes a PUT body to a temp file (client_body_temp_path) and renames
it into place when the body is complete, so a killed upload leaves nothing at
the final name.  The temp dir is ``DIR/.nginx-tmp`` -- on the root's file
system, so the rename is a rename and not a copy -- and is not served.

The config, pid file and log go to a state dir (a new temp dir unless
``--state``).  Without ``--foreground`` nginx daemonizes; the script prints
the base URL and the command that stops it.  Used by tests/servers.py.
"""
from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NGINX = os.environ.get("BUILDSYS_NGINX", shutil.which("nginx") or "/usr/sbin/nginx")


def config(root: Path, state: Path, port: int, listen: str = "127.0.0.1", daemon: bool = True) -> str:
    """The nginx.conf text of a cache server on ``listen:port`` serving ``root``."""
    lines = []
    if os.geteuid() == 0:
        # As root, nginx's workers would run as nobody and could not write the
        # root dir; run them as the caller (root's files stay root's).
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        lines.append(f"user {user} {group};")
    tmp = root / ".nginx-tmp"
    lines += [
        f"daemon {'on' if daemon else 'off'};",
        "worker_processes 1;",
        f"pid {state / 'nginx.pid'};",
        f"error_log {state / 'error.log'} warn;",
        "events { worker_connections 256; }",
        "http {",
        f"  access_log {state / 'access.log'};",
        "  default_type application/octet-stream;",
        "  sendfile on;",
        "  log_not_found off;",         # a cache miss is not an error
        # Every temp path nginx knows, out of the system's /var/lib/nginx (not writable by a user).
        f"  client_body_temp_path {tmp}/body;",
        f"  proxy_temp_path {state}/proxy;",
        f"  fastcgi_temp_path {state}/fastcgi;",
        f"  uwsgi_temp_path {state}/uwsgi;",
        f"  scgi_temp_path {state}/scgi;",
        "  server {",
        f"    listen {listen}:{port};",
        f"    root {root};",
        "    location ~ /\\. { deny all; }",             # .nginx-tmp and any other dot file
        "    location /artifacts/ {",
        "      dav_methods PUT;",
        "      create_full_put_path on;",
        "      dav_access user:rw group:r all:r;",
        "      client_max_body_size 0;",
        "      limit_except GET PUT { deny all; }",   # GET implies HEAD
        "    }",
        "    location /downloads/ {",
        "      dav_methods PUT;",
        "      create_full_put_path on;",
        "      dav_access user:rw group:r all:r;",
        "      client_max_body_size 0;",
        "      limit_except GET PUT { deny all; }",
        "    }",
        "    location / { return 404; }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def free_port(listen: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((listen, 0))
        return s.getsockname()[1]


def prepare(root: Path, state: Path, port: int, listen: str = "127.0.0.1", daemon: bool = True) -> list[str]:
    """Write the config; the nginx command line that serves it."""
    root, state = root.resolve(), state.resolve()
    for d in (root / "artifacts", root / "downloads", root / ".nginx-tmp", state):
        d.mkdir(parents=True, exist_ok=True)
    conf = state / "nginx.conf"
    conf.write_text(config(root, state, port, listen, daemon))
    # -e: the log nginx writes before it has read the config (default: the system's).
    return [NGINX, "-p", str(state), "-c", str(conf), "-e", str(state / "error.log")]


def wait_listening(host: str, port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"nginx exited with status {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nginx does not listen on {host}:{port} after {timeout:.0f} s")


def stop(state: Path) -> None:
    pid = int((state / "nginx.pid").read_text())
    os.kill(pid, signal.SIGQUIT)        # graceful: finishes the requests in flight


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="served dir (artifacts/ and downloads/ under it)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--state", type=Path, help="dir for config, pid file and logs (default: a new temp dir)")
    p.add_argument("--foreground", action="store_true", help="stay in the foreground (Ctrl-C stops it)")
    p.add_argument("--stop", type=Path, metavar="STATE_DIR", help="stop the server of this state dir")
    args = p.parse_args(argv)
    if args.stop:
        stop(args.stop)
        return 0
    if not args.root:
        p.error("--root is required")
    state = args.state or Path(tempfile.mkdtemp(prefix="buildsys-cache-server-"))
    port = args.port or free_port(args.listen)
    cmd = prepare(args.root, state, port, args.listen, daemon=not args.foreground)
    url = f"http://{args.listen}:{port}"
    print(f"shared_cache: {url}/artifacts\npremirrors: [{url}/downloads]", flush=True)
    if args.foreground:
        proc = subprocess.Popen(cmd)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGQUIT)
            return proc.wait()
    subprocess.run(cmd, check=True)
    wait_listening(args.listen, port)
    print(f"stop it with: {sys.argv[0]} --stop {state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Running one build step inside bubblewrap.

The step sees: the host's /usr (and the /bin, /lib symlinks or dirs) read-only,
a private /tmp, /proc and /dev, no network (all namespaces unshared), and
under /build only what the step may touch (see classes/base.py): its work
dirs writable, its dependencies' trees read-only.  The environment is cleared
to a fixed list.  Because /build is the same everywhere, nothing a step
produces can depend on where the build directory lives on the host.

A step is untrusted code, and buildsys is often run as root (CI containers).
So every step runs in its own user namespace as uid/gid 0 *of that namespace*
with an empty capability set, bounding set included (``--cap-drop ALL``),
and no way to make another user namespace (``--disable-userns``): mount,
remount, unshare, pivot_root and friends fail with EPERM whoever runs
buildsys, and the read-only binds stay read-only.  The uid inside is the same
for root and for a normal user, so outputs do not depend on who builds.  PID
and network namespaces are private: no host process is visible to ptrace.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

# Host directories a compiler and a shell need, besides /usr.
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC_RO = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d")


@dataclass
class Mount:
    host: str
    inside: str
    writable: bool


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise UserError("bubblewrap (bwrap) is not installed", None, hint="apt-get install bubblewrap")
    return path


def bwrap_argv(mounts: list[Mount], env: dict[str, str], cwd: str, command: list[str],
               root: Path | None = None) -> list[str]:
    """The bwrap argv of one step.  ``root`` is the pinned build environment's
    tree (its usr/ and etc/ become the step's /usr and /etc); None means the
    host's /usr (projects that opted into ``build_env: host``)."""
    argv = [bwrap_path(), "--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0", "--disable-userns",
            "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--hostname", "buildsys"]
    if root is not None:
        argv += ["--ro-bind", str(Path(root) / "usr"), "/usr", "--ro-bind", str(Path(root) / "etc"), "/etc"]
        for name in _ROOT_LINKS:
            if (Path(root) / "usr" / name).is_dir():
                argv += ["--symlink", f"usr/{name}", f"/{name}"]
    else:
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in _ROOT_LINKS:
            host = f"/{name}"
            if os.path.islink(host):
                argv += ["--symlink", os.readlink(host), host]
            elif os.path.isdir(host):
                argv += ["--ro-bind", host, host]
        for path in _ETC_RO:
            if os.path.exists(path):
                argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/build"]
    for m in mounts:
        argv += ["--bind" if m.writable else "--ro-bind", m.host, m.inside]
    argv += ["--clearenv"]
    for key in sorted(env):
        argv += ["--setenv", key, env[key]]
    argv += ["--chdir", cwd, "--"] + command
    return argv


def run(argv: list[str], log_path: Path) -> int:
    """Run the argv with output appended to the log; return the exit status."""
    with open(log_path, "ab") as log:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              env={"PATH": "/usr/bin:/bin"}, umask=0o022, close_fds=True)
    return proc.returncode


def replay_script(argv: list[str]) -> str:
    return "#!/bin/sh\n# Replays one buildsys step in its sandbox.\numask 022\nexec " + \
        " ".join(shlex.quote(a) for a in argv) + "\n"

"""git sources: a bare mirror in the download dir, a pinned commit, a deterministic tarball.

The tarball (``git archive``: sorted entries, every mtime the commit time,
fixed owner) lets the rest of the pipeline treat git like any archive, and
gives SOURCE_DATE_EPOCH for free.  Submodules are not followed.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

from filelock import FileLock

from ..errors import FetchError, NetworkAccessError
from .source import Source

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "LC_ALL": "C", "TZ": "UTC"}


def repo_url(source: Source) -> str:
    return source.url[len("git+"):] if source.url.startswith("git+") else source.url


def mirror_dir(source: Source, dl_dir: Path) -> Path:
    url = repo_url(source)
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    return dl_dir / "git" / f"{tail}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _git(args, cwd=None, check=True, where=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **GIT_ENV)
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        reason = next((line for line in lines if line.startswith(("fatal:", "error:"))),
                      lines[0] if lines else "failed")
        raise FetchError(f"git {args[0]} failed: {reason}", where)
    return proc


def _has_commit(mirror: Path, rev: str) -> bool:
    return mirror.exists() and _git(["cat-file", "-e", f"{rev}^{{commit}}"], cwd=mirror, check=False).returncode == 0


def check_rev(source: Source) -> None:
    if not source.rev:
        raise FetchError(f"{source.url}: a git source needs 'rev:' with a full commit id", source.where)
    if not FULL_SHA.match(source.rev) and not source.allow_branch:
        raise FetchError(f"{source.url}: rev '{source.rev}' is not a full 40-hex commit id", source.where,
                         hint="pin the commit, or set 'allow_branch: true' to follow a branch (not reproducible)")


def fetch(source: Source, dl_dir: Path, offline: bool) -> Path:
    """The tarball of the pinned commit, made from the mirror (which is updated when it lacks the commit)."""
    check_rev(source)
    assert source.rev is not None
    mirror = mirror_dir(source, dl_dir)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(mirror) + ".lock"):
        pinned = FULL_SHA.match(source.rev)
        if not (pinned and _has_commit(mirror, source.rev)):
            if offline:
                raise NetworkAccessError(f"{source.url}: commit {source.rev} is not in the download dir",
                                         source.where)
            _update_mirror(source, mirror)
        commit = _git(["rev-parse", "--verify", "-q", f"{source.rev}^{{commit}}"], cwd=mirror,
                      check=False).stdout.strip()
        if not commit:
            raise FetchError(f"{source.url}: no commit '{source.rev}' in the repository", source.where)
        return _tarball(source, mirror, commit, dl_dir)


def _update_mirror(source: Source, mirror: Path) -> None:
    url = repo_url(source)
    if not mirror.exists():
        tmp = mirror.with_name(mirror.name + ".tmp")
        if tmp.exists():
            import shutil
            shutil.rmtree(tmp)
        _git(["clone", "--quiet", "--mirror", url, str(tmp)], where=source.where)
        os.replace(tmp, mirror)
    else:
        _git(["fetch", "--quiet", "--prune", "origin", "+refs/*:refs/*"], cwd=mirror, where=source.where)


def _tarball(source: Source, mirror: Path, commit: str, dl_dir: Path) -> Path:
    # Named by commit, whatever 'name:' says: a new rev must never find the old tarball.
    name = Source(source.url, rev=commit).name
    out = dl_dir / name
    if out.exists():
        return out
    prefix = name[:-4] + "/"
    part = out.with_name(f"{out.name}.{os.getpid()}.part")
    with open(part, "wb") as f:
        proc = subprocess.run(["git", "-c", "tar.umask=0022", "archive", "--format=tar", f"--prefix={prefix}", commit],
                              cwd=mirror, stdout=f, stderr=subprocess.PIPE, env=dict(os.environ, **GIT_ENV))
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        raise FetchError(f"{source.url}: git archive failed: {proc.stderr.decode(errors='replace').strip()}",
                         source.where)
    os.replace(part, out)
    return out

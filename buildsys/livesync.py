"""Bringing a recipe's source dir up to date with its live working tree.

A clean build copies the whole tree; an incremental one copies only what
changed since the last sync and removes what the developer deleted, leaving
everything else -- object files of an in-tree build, generated files -- in
place, so make rebuilds what the edit requires and nothing more.

The source dir is writable by the recipe's steps, so nothing in it is
trusted: every path is reached through directory fds with O_NOFOLLOW (a link
a step planted is replaced or makes us start over, never followed), and a
file counts as unchanged only if its inode, size, mtime *and* ctime are what
we recorded after writing it (a step can reset mtime, not ctime).  What is
copied is hashed as it is read and must match the digest the signature was
made from: an edit during the build fails it instead of producing an
artifact under the wrong key.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from .errors import BuildError
from .fileio import _walk_to_parent, atomic_write
from .treedigest import DIR, FILE, LINK, Entry

_CHUNK = 1 << 20


class StartOver(Exception):
    """The source dir is not what the last sync left (a step replaced a dir
    with a link, or the record is unreadable): sync into an empty dir."""


def _record(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def load_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sync(tree: Path, src: Path, entries: list[Entry], state_path: Path) -> tuple[int, int]:
    """Make ``src`` hold ``entries`` (scanned from ``tree``).  Returns (files
    copied, entries removed).  Raises StartOver when ``src`` must be emptied
    first; the caller then empties it (and the object dir) and calls again."""
    old = load_state(state_path)
    new: dict[str, list] = {}
    copied = removed = 0
    wanted = {e.path for e in entries}
    try:
        # Removals first, deepest first: a file may become a directory.
        for rel in sorted(set(old) - wanted, reverse=True):
            if _remove(src, rel, old[rel][0]):
                removed += 1
        for entry in entries:
            if entry.kind == DIR:
                _make_dir(src, entry.path, entry.mode)
                new[entry.path] = ["dir"]
            elif entry.kind == LINK:
                _make_link(src, entry.path, entry.target)
                new[entry.path] = ["link", entry.target]
            elif entry.kind == FILE:
                prev = old.get(entry.path)
                st = _lstat(src, entry.path)
                if (prev and prev[0] == "file" and prev[1] == entry.sha256 and prev[2] == entry.mode
                        and st is not None and stat.S_ISREG(st.st_mode) and prev[3] == _record(st)):
                    new[entry.path] = prev
                    continue
                mtime = _copy(tree, src, entry, prev)
                st = _lstat(src, entry.path)
                assert st is not None
                new[entry.path] = ["file", entry.sha256, entry.mode, _record(st), mtime]
                copied += 1
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise StartOver(str(exc)) from None
        raise
    atomic_write(state_path, json.dumps(new, sort_keys=True))
    return copied, removed


def _lstat(root: Path, rel: str) -> os.stat_result | None:
    dfd, name = _walk_to_parent(root, rel, create_dirs=False)
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(dfd)


def _remove(root: Path, rel: str, kind: str) -> bool:
    try:
        dfd, name = _walk_to_parent(root, rel, create_dirs=False)
    except FileNotFoundError:
        return False
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(name, dir_fd=dfd)      # build products may still be inside: then it stays
            except OSError:
                return False
        else:
            os.unlink(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)


def _make_dir(root: Path, rel: str, mode: int) -> None:
    dfd, name = _walk_to_parent(root, rel, create_dirs=False)
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dfd)
            st = None
        if st is None:
            os.mkdir(name, 0o755, dir_fd=dfd)
        # Owner rwx always: the engine must be able to sync into it next time.
        os.chmod(name, (mode | 0o700) & 0o7777, dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)


def _make_link(root: Path, rel: str, target: str) -> None:
    dfd, name = _walk_to_parent(root, rel, create_dirs=False)
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dfd) == target:
                return
            if stat.S_ISDIR(st.st_mode):
                raise StartOver(f"{rel} is a directory, the working tree has a link")
            os.unlink(name, dir_fd=dfd)
        os.symlink(target, name, dir_fd=dfd)
    finally:
        os.close(dfd)


def _copy(tree: Path, root: Path, entry: Entry, prev: list | None) -> int:
    """Copy one file (temp + rename, hashed as read); returns the mtime given it."""
    fd = os.open(tree / entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(f"live source {tree / entry.path} changed during the build; build again")
        # The tree's own time, so that a clean build and a sync agree; but a
        # changed file must look newer than what was built from it, whatever
        # its time in the tree (restored from a backup, `cp -p`).
        mtime = st.st_mtime_ns
        if prev and prev[0] == "file" and prev[1] != entry.sha256 and mtime <= prev[4]:
            mtime = max(time.time_ns(), prev[4] + 1)
        dfd, name = _walk_to_parent(root, entry.path, create_dirs=False)
        tmp = f".{name}.buildsys-sync"
        try:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            h = hashlib.sha256()
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dfd)
            with os.fdopen(out, "wb") as w:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    w.write(chunk)
                os.fchmod(w.fileno(), entry.mode & 0o7777)
                w.flush()
                os.utime(w.fileno(), ns=(mtime, mtime))
            if h.hexdigest() != entry.sha256:
                os.unlink(tmp, dir_fd=dfd)
                raise BuildError(f"live source {tree / entry.path} changed during the build; build again")
            st_dest = _stat_at(dfd, name)
            if st_dest is not None and stat.S_ISDIR(st_dest.st_mode):
                os.unlink(tmp, dir_fd=dfd)
                raise StartOver(f"{entry.path} is a directory, the working tree has a file")
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            os.close(dfd)
    return mtime


def _stat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None

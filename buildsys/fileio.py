"""Small file helpers every module uses: hashing, atomic writes, and opening
files below a directory a build step could have written to without following
any link the step planted.

Why the no-follow helpers: a step may replace any file in its writable dirs
(/build/obj, /build/src, ...) with a symlink to a host file.  Host-side code
that later opens such a path by name would write or read the host file.  So
paths inside step-writable dirs are opened component by component, relative
to a directory fd, each with O_NOFOLLOW: a link anywhere on the way is an
error (ELOOP / ENOTDIR), never followed.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from .errors import BuildError


def sha256_file(path: str | os.PathLike, *, follow: bool = True) -> str:
    """Hex sha256 of a regular file's content."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temp file in the same dir and a rename.

    A reader sees the old content or the new, never half; a build killed
    midway leaves at most a ``.<name>.<pid>.tmp`` file, which the caches
    remove.  The temp file is created with O_EXCL|O_NOFOLLOW, and the rename
    replaces a link at ``path`` rather than writing through it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- inside directories a step could write to ---------------------------------------

def _walk_to_parent(root: str | os.PathLike, rel: str, create_dirs: bool) -> tuple[int, str]:
    """An fd of the directory holding ``rel`` (below ``root``), and the last name.

    ``root`` itself is trusted (the engine made it); every component below it
    is opened with O_NOFOLLOW|O_DIRECTORY, so a planted link raises."""
    parts = [p for p in str(rel).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad relative path {rel!r}")
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                if not create_dirs:
                    raise
                os.mkdir(name, 0o755, dir_fd=dfd)
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
    except BaseException:
        os.close(dfd)
        raise
    return dfd, parts[-1]


def _planted(root, rel, exc: OSError) -> BuildError:
    return BuildError(f"refusing to follow a link in a step's output: {Path(root) / rel} "
                      f"({exc.strerror}); a build step replaced it with a symlink or another kind of file")


def read_beneath(root: str | os.PathLike, rel: str) -> bytes:
    """Content of the regular file ``root/rel``, never following a link."""
    try:
        dfd, name = _walk_to_parent(root, rel, create_dirs=False)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
        finally:
            os.close(dfd)
        with os.fdopen(fd, "rb") as f:
            if not _is_regular(f.fileno()):
                raise OSError(errno.EINVAL, "not a regular file")
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL, errno.EMLINK):
            raise _planted(root, rel, exc) from None
        raise


def read_text_beneath(root: str | os.PathLike, rel: str) -> str:
    return read_beneath(root, rel).decode("utf-8", "replace")


def write_beneath(root: str | os.PathLike, rel: str, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``root/rel`` atomically without following links: parent dirs are
    walked with O_NOFOLLOW, the file is made as a fresh temp (O_EXCL) and
    renamed over whatever was there (a planted link is replaced, not followed)."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        dfd, name = _walk_to_parent(root, rel, create_dirs=True)
    except OSError as exc:
        raise _planted(root, rel, exc) from None
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            os.fchmod(f.fileno(), mode)     # not subject to the umask, unlike open()'s mode
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a tree that may hold read-only directories (package trees, Go
    module caches); never follows a link out of it."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(path)


def _is_regular(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def copy_beneath(root: str | os.PathLike, rel: str, dest: str | os.PathLike) -> None:
    """Copy the regular file ``root/rel`` (never through a link) to ``dest``
    (a path the engine owns), atomically."""
    atomic_write(dest, read_beneath(root, rel))

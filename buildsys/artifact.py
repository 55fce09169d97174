"""Package trees <-> deterministic lz4-compressed tar archives.

Members are sorted, owned by 0:0 with no user/group names, and carry the
tree's (already clamped) mtimes, so the same tree always gives the same bytes.
"""
from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import lz4.frame

from . import safetar
from .errors import BuildError, UnpackError, Where


def clamp_mtimes(tree: Path, epoch: int) -> None:
    """No file time newer than SOURCE_DATE_EPOCH."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    if os.lstat(tree).st_mtime > epoch:
        os.utime(tree, (epoch, epoch))


def _walk_sorted(tree: Path):
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            yield full, os.path.relpath(full, tree)


def _check_entry(full: str, rel: str, st: os.stat_result) -> None:
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        kind = ("a fifo" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device node")
        raise UnpackError(f"'{rel}' is {kind}; a package holds files, directories and symlinks only",
                          Where(full), hint="remove it in the install step; device nodes belong in the image recipe")


def check_tree(tree: Path) -> None:
    """Refuse a package tree that cannot become a package: fifos, sockets,
    device nodes.  (Symlinks may point anywhere; hard links become copies.)
    The engine calls this on the install dir before packing and caching."""
    for full, rel in _walk_sorted(Path(tree)):
        _check_entry(full, rel, os.lstat(full))


def pack(tree: Path, out: Path) -> None:
    """Write ``tree`` as a deterministic lz4 tar to ``out``.  Nothing in the
    tree is followed: links are stored as links, files are opened O_NOFOLLOW."""
    with lz4.frame.open(out, "wb", compression_level=3, content_checksum=True) as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for full, rel in _walk_sorted(tree):
                st = os.lstat(full)
                _check_entry(full, rel, st)
                info = tar.gettarinfo(full, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = int(info.mtime)
                if info.islnk():
                    # Hard links become copies: link order would depend on the walk.
                    info.type = tarfile.REGTYPE
                    info.linkname = ""
                    info.size = st.st_size
                if info.isreg():
                    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    with os.fdopen(fd, "rb") as f:
                        fst = os.fstat(f.fileno())
                        if (fst.st_ino, fst.st_dev, fst.st_size) != (st.st_ino, st.st_dev, info.size):
                            raise BuildError(f"{full} changed while it was being packed")
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def unpack(archive: Path, dest: Path) -> None:
    """Extract a package archive into ``dest`` (a new directory).

    Package rules (safetar.extract_package): symlinks may point anywhere --
    ``bin/sh -> /bin/busybox`` is normal in a root filesystem -- but nothing
    is ever written through a link, and a hard link must point at a regular
    file of the archive.  A hostile or corrupt archive is an UnpackError."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with lz4.frame.open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            safetar.extract_package(tar, dest)
    except safetar.UnsafeMember as exc:
        raise UnpackError(f"unsafe package archive: {exc}", Where(str(archive)),
                          hint="hostile or broken artifact; extraction stopped") from None
    except (tarfile.TarError, RuntimeError, EOFError) as exc:
        raise UnpackError(f"corrupt package archive: {exc}", Where(str(archive))) from None
    except OSError as exc:
        if exc.errno is None:       # lz4 reports bad frames as plain OSError/RuntimeError
            raise UnpackError(f"corrupt package archive: {exc}", Where(str(archive))) from None
        raise BuildError(f"{archive}: unpacking into {dest} failed: {exc}") from None

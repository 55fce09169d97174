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
from .errors import UserError, Where


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


def pack(tree: Path, out: Path) -> None:
    with lz4.frame.open(out, "wb", compression_level=3, content_checksum=True) as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for full, rel in _walk_sorted(tree):
                info = tar.gettarinfo(full, arcname=rel)
                if info.isdir() and os.path.islink(full):
                    info = tar.gettarinfo(full, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = int(info.mtime)
                if info.islnk():
                    # Hard links become copies: link order would depend on the walk.
                    info.type = tarfile.REGTYPE
                    info.linkname = ""
                    info.size = os.lstat(full).st_size
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with lz4.frame.open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            safetar.extract(tar, dest, tar, keep_mode=True)
    except safetar.UnsafeMember as exc:
        raise UserError(f"unsafe artifact: {exc}", Where(str(archive))) from None
    except (tarfile.TarError, RuntimeError, OSError, EOFError) as exc:
        raise UserError(f"corrupt or unsafe artifact: {exc}", Where(str(archive))) from None

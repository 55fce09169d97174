"""sha256 of downloads and layer files, and the record of what was verified.

The record (``.verified/<name>.json``: sha256, size, mtime, ctime, inode) only
spares ``fetch`` from re-hashing a 140 MB tarball to learn that it is already
downloaded.  It is never the reason a file's content is trusted: ``unpack``
hashes the bytes it reads and refuses a file whose sha256 is not the
recipe's.  ctime and inode are in the record because a file rewritten in
place can have its size and mtime restored (os.utime), but not its ctime.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from ..fileio import atomic_write, sha256_file

__all__ = ["sha256_file", "local_checksum", "verified", "record_verified", "forget_verified"]


def local_checksum(path: Path) -> str:
    """sha256 of a file; for a directory, of its sorted tree (names, modes' x bit, link targets, contents)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                digest.update(f"L {rel}\0{os.readlink(full)}\0".encode())
            else:
                digest.update(f"F {rel}\0{'x' if st.st_mode & 0o111 else '-'}\0{sha256_file(full)}\0".encode())
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.parent / ".verified" / (path.name + ".json")


def _identity(st: os.stat_result) -> dict:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def verified(path: Path, sha256: str) -> bool:
    """True if ``path`` has ``sha256``; a record keyed by size, mtime, ctime and
    inode spares re-hashing big files.  A file that fails is not deleted here
    (the caller downloads it again over the top), but its record is."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return False
    stamp = _stamp_path(path)
    try:
        data = json.loads(stamp.read_text())
        if data == dict(_identity(st), sha256=sha256):
            return True
    except (OSError, ValueError, KeyError):
        pass
    if sha256_file(path) != sha256:
        forget_verified(path)
        return False
    record_verified(path, sha256)
    return True


def record_verified(path: Path, sha256: str) -> None:
    path = Path(path)
    stamp = _stamp_path(path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stamp, json.dumps(dict(_identity(path.stat()), sha256=sha256), sort_keys=True))


def forget_verified(path: Path) -> None:
    """Drop the record, so the next fetch hashes the file again (and replaces it if it is wrong)."""
    try:
        _stamp_path(Path(path)).unlink()
    except OSError:
        pass

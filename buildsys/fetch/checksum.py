"""sha256 of downloads and layer files, and the record of what was verified."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
                digest.update(f"F {rel}\0{'x' if st.st_mode & 0o111 else '-'}\0{sha256_file(Path(full))}\0".encode())
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.parent / ".verified" / (path.name + ".json")


def verified(path: Path, sha256: str) -> bool:
    """True if ``path`` has ``sha256``; a stamp keyed by size and mtime spares re-hashing big files."""
    try:
        st = path.stat()
    except OSError:
        return False
    stamp = _stamp_path(path)
    try:
        data = json.loads(stamp.read_text())
        if (data["sha256"], data["size"], data["mtime_ns"]) == (sha256, st.st_size, st.st_mtime_ns):
            return True
    except (OSError, ValueError, KeyError):
        pass
    if sha256_file(path) != sha256:
        return False
    record_verified(path, sha256)
    return True


def record_verified(path: Path, sha256: str) -> None:
    st = path.stat()
    stamp = _stamp_path(path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    os.replace(tmp, stamp)

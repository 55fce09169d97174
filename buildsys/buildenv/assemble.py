"""Putting a build environment's tree together from .deb files.

No maintainer scripts run (nothing of the packages executes on the host):
each package's data.tar is extracted with the package rules of safetar (any
symlink target, no link followed while writing), in the lock's order, with
Debian's /bin, /sbin, /lib* moved under /usr (the merged-/usr layout the
sandbox mounts), and then the lock's ``links`` are made -- what
update-alternatives and dpkg-divert would have done (awk, sh, cc, yacc...).
Times are clamped so the tree does not depend on when it was made.
"""
from __future__ import annotations

import copy
import io
import lzma
import os
import tarfile
from pathlib import Path

from .. import safetar
from ..errors import UnpackError
from . import Lock

_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The time of every file: the environment is an input, its clock is not.
EPOCH = 0


def deb_data(path: Path) -> tuple[str, bytes]:
    """(member name, bytes) of a .deb's data.tar.* (an ar archive)."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise UnpackError(f"{path}: not a Debian package (no ar header)")
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            data = f.read(size)
            if size % 2:
                f.read(1)
            if name.startswith("data.tar"):
                return name, data
    raise UnpackError(f"{path}: no data.tar member")


def _open_data(name: str, data: bytes) -> tarfile.TarFile:
    if name == "data.tar.xz":
        return tarfile.open(fileobj=io.BytesIO(lzma.decompress(data)), mode="r:")
    if name in ("data.tar.gz", "data.tar.bz2", "data.tar"):
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    if name == "data.tar.zst":
        import subprocess

        raw = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
        return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    raise UnpackError(f"unsupported package payload {name}")


def _usr_path(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return None
    if parts[0] in _MERGED:
        parts = ["usr"] + parts
    return "/".join(parts)


def _members(tar: tarfile.TarFile, seen_dirs: set[str]):
    for member in tar:
        name = _usr_path(member.name)
        if name is None:
            continue
        if member.isdir() and name in seen_dirs:
            continue                # shared directories: the first package's mode stays
        m = copy.copy(member)
        m.name = name
        if m.islnk():
            m.linkname = _usr_path(m.linkname) or m.linkname
        if m.issym() and m.linkname.startswith("/") and _usr_path(m.linkname[1:]) is not None:
            m.linkname = "/" + (_usr_path(m.linkname[1:]) or "")
        m.mtime = EPOCH
        if m.isdir():
            seen_dirs.add(name)
        yield m


def assemble(lock: Lock, debs: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True)
    seen_dirs: set[str] = set()
    for pkg, deb in zip(lock.packages, debs, strict=True):
        name, data = deb_data(deb)
        with _open_data(name, data) as tar:
            try:
                safetar.extract_package(tar, dest, _members(tar, seen_dirs))
            except UnpackError as exc:
                raise UnpackError(f"{pkg.name} {pkg.version}: {exc}") from None
    for name in _MERGED:
        if (dest / "usr" / name).is_dir() and not (dest / name).exists():
            os.symlink(f"usr/{name}", dest / name)
    for link, target in lock.links:
        path = dest / link
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
    (dest / "etc").mkdir(exist_ok=True)
    (dest / "tmp").mkdir(exist_ok=True)
    _clamp(dest)


def _clamp(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(tree, (EPOCH, EPOCH))

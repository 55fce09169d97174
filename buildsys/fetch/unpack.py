"""Safe extraction of tar and zip archives into a recipe's source tree.

Absolute names, ``..`` components, links that leave the tree and device or
fifo members make the archive an error (checks in ``buildsys/safetar.py``,
shared with the artifact cache).  Each member is checked just before it is
written, against the links already on disk, so a chain of individually
harmless links cannot lead outside either.
"""
from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

from .. import safetar
from ..errors import UnpackError
from .source import Source

_HOSTILE = "hostile or broken archive; extraction stopped"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.lz4", ".tar.zst", ".tzst")

# newest member mtime per (path, size, mtime_ns) — unpack computes it anyway,
# so source_date_epoch() need not decompress a 140 MB tarball a second time.
_epochs: dict[tuple, int] = {}


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(TAR_SUFFIXES) or name.endswith(".zip")


def unpack(path: Path, dest: Path, source: Source) -> None:
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, dest, symlinks=True, dirs_exist_ok=True)
    elif not source.unpack or not is_archive(path):
        shutil.copy2(path, dest / (source.filename or path.name))
    elif path.name.lower().endswith(".zip"):
        _unpack_zip(path, dest, source)
    else:
        _unpack_tar(path, dest, source)


def source_date_epoch(path: Path) -> int | None:
    """The newest member time of an archive (for a git tarball: the commit time)."""
    path = Path(path)
    if path.is_dir() or not is_archive(path):
        return None
    key = _key(path)
    if key not in _epochs:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                import calendar
                _epochs[key] = max((calendar.timegm(i.date_time + (0, 0, -1)) for i in z.infolist()), default=0)
        else:
            with _open_tar(path) as tar:
                _epochs[key] = max((int(m.mtime) for m in tar), default=0)
    return _epochs[key] or None


def _key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


# --- tar ---------------------------------------------------------------------------
def _open_tar(path: Path) -> tarfile.TarFile:
    name = path.name.lower()
    try:
        if name.endswith((".tar.lz4",)):
            import lz4.frame
            return tarfile.open(fileobj=lz4.frame.open(path, "rb"), mode="r|")
        if name.endswith((".tar.zst", ".tzst")):
            return _open_zstd(path)
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnpackError(f"{path.name}: not a readable tar archive: {exc}") from None


def _open_zstd(path: Path) -> tarfile.TarFile:
    try:
        import zstandard
        return tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), mode="r|")
    except ImportError:
        if not shutil.which("zstd"):
            raise UnpackError(f"{path.name}: zstd archives need the zstd tool or the zstandard module") from None
        data = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def _stripped(name: str, strip: int) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts[strip:]) if len(parts) > strip else None


def _renamed(path: Path, tar: tarfile.TarFile, strip: int, newest: list[int]):
    """The members to extract, with ``strip`` leading components dropped (checked by safetar)."""
    for m in tar:
        try:
            safetar.check_name(m.name)
        except safetar.UnsafeMember as exc:
            raise UnpackError(f"{path.name}: {exc}", hint=_HOSTILE) from None
        newest[0] = max(newest[0], int(m.mtime))
        name = _stripped(m.name, strip)
        if name is None:
            continue
        if m.islnk():
            link = _stripped(m.linkname, strip)
            if link is None or m.linkname.startswith("/"):
                raise UnpackError(f"{path.name}: hard link '{m.name}' points outside the tree ('{m.linkname}')",
                                  hint=_HOSTILE)
            m.linkname = link
        m.name = name
        yield m


def _unpack_tar(path: Path, dest: Path, source: Source) -> None:
    # One pass: each member is checked just before it is written, so nothing
    # of a hostile member (or after it) lands, and nothing lands outside dest.
    newest = [0]
    with _open_tar(path) as tar:
        try:
            safetar.extract(tar, dest, _renamed(path, tar, source.strip, newest))
        except safetar.UnsafeMember as exc:
            raise UnpackError(f"{path.name}: {exc}", hint=_HOSTILE) from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UnpackError(f"{path.name}: extraction failed: {exc}") from None
    _epochs[_key(path)] = newest[0]


# --- zip ---------------------------------------------------------------------------
def _unpack_zip(path: Path, dest: Path, source: Source) -> None:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnpackError(f"{path.name}: not a readable zip archive: {exc}") from None
    try:
        with z:
            _extract_zip(z, dest, source.strip)
    except safetar.UnsafeMember as exc:
        raise UnpackError(f"{path.name}: {exc}", hint=_HOSTILE) from None


def _extract_zip(z: zipfile.ZipFile, dest: Path, strip: int) -> None:
    # The same checks as for tar (safetar): names and link targets before
    # anything is written, link targets again against what is on disk.
    plan = []
    for info in z.infolist():
        safetar.check_name(info.filename)
        mode = info.external_attr >> 16
        name = _stripped(info.filename, strip)
        if name is None:
            continue
        kind = stat.S_IFMT(mode)    # 0: a zip from a non-Unix tool, a plain file
        if stat.S_ISLNK(mode):
            safetar.check_symlink(name, z.read(info).decode(), str(dest))
        elif kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise safetar.UnsafeMember(info.filename, "is a device, fifo or other special file")
        plan.append((info, name, mode))
    real_dest = os.path.realpath(dest)
    for info, name, mode in plan:
        out = dest / name
        if os.path.commonpath([os.path.realpath(out.parent), real_dest]) != real_dest:
            raise safetar.UnsafeMember(info.filename, "would be written through a link that leads outside the tree")
        if info.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(mode):
            target = z.read(info).decode()
            safetar.check_symlink(name, target, str(dest))
            os.symlink(target, out)
        else:
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(out, 0o755 if mode & 0o111 else 0o644)

"""Safe extraction of tar and zip archives into a recipe's source tree.

Absolute names, ``..`` components, links that leave the tree and device or
fifo members make the archive an error (checks in ``buildsys/safetar.py``,
shared with the artifact cache).  Each member is checked just before it is
written, against the links already on disk, and every link once more at the
end, so a chain of individually harmless links cannot lead outside either.

Sources are verified on every use, not only when downloaded: the file's bytes
are hashed *as they are read* for extraction (or copying), and compared with
the recipe's sha256 once the whole file has been read.  Everything is written
to a staging directory inside ``dest`` first and moved into place only after
the hash matched, so a download rewritten in place after it was verified
never reaches the source tree.  Hashing while reading reads a 140 MB kernel
tarball once instead of twice, and leaves no window between the check and the
use (hashing first and extracting afterwards would read the file twice and
trust it between the two reads).
"""
from __future__ import annotations

import calendar
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, cast

from .. import safetar
from ..errors import ChecksumError, UnpackError, Where
from .checksum import forget_verified, local_checksum
from .source import Source

_HOSTILE = "hostile or broken archive; extraction stopped"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.lz4", ".tar.zst", ".tzst")
CHUNK = 1 << 20

# newest member mtime per (path, size, mtime_ns) — unpack computes it anyway,
# so source_date_epoch() need not decompress a 140 MB tarball a second time.
_epochs: dict[tuple, int] = {}


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(TAR_SUFFIXES) or name.endswith(".zip")


class HashingReader(io.RawIOBase):
    """A read-only file that hashes every byte read through it."""

    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.raw.readinto(buf)
        if n:
            self.digest.update(memoryview(buf)[:n])
            self.size += n
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) the rest: a tar reader stops at the end-of-archive
        marker, before padding and the compressor's trailer."""
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def unpack(path: Path, dest: Path, source: Source) -> None:
    """Unpack (or copy) the fetched ``path`` into ``dest``.

    When the source has a sha256, the bytes read are checked against it and a
    mismatch is a ChecksumError naming the file, the expected and the actual
    sha256; nothing of the file is left in ``dest`` then."""
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        if path.is_dir():
            shutil.copytree(path, staging, symlinks=True, dirs_exist_ok=True)
            if source.sha256:
                _check_sha256(path, source, local_checksum(staging))
        else:
            with open(path, "rb") as raw:
                reader = HashingReader(raw)
                newest = None
                if not source.unpack or not is_archive(path):
                    out = staging / (source.filename or path.name)
                    with open(out, "wb") as f:
                        while chunk := reader.read(CHUNK):
                            f.write(chunk)
                    shutil.copystat(path, out)
                elif path.name.lower().endswith(".zip"):
                    _unpack_zip(path, reader, staging, source)
                else:
                    newest = _unpack_tar(path, reader, staging, source)
                reader.drain()
            if source.sha256:
                _check_sha256(path, source, reader.hexdigest())
            if newest is not None:
                _epochs[_key(path)] = newest
        _merge(staging, dest)
    finally:
        _rmtree(staging)


def _check_sha256(path: Path, source: Source, actual: str) -> None:
    if actual == source.sha256:
        return
    forget_verified(path)
    raise ChecksumError(f"{path}: sha256 mismatch when unpacking: expected {source.sha256}, got {actual}",
                        source.where,
                        hint="the file changed after it was verified; nothing of it was used, and the next "
                             "fetch checks it again and downloads it anew")


def _merge(src: Path, dst: Path) -> None:
    """Move everything from ``src`` into ``dst``; directories present in both
    are merged.  A link in ``dst`` is replaced, never followed."""
    with os.scandir(src) as entries:
        for entry in entries:
            target = dst / entry.name
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                os.rename(entry.path, target)
                continue
            if stat.S_ISDIR(st.st_mode) and entry.is_dir(follow_symlinks=False):
                _merge(Path(entry.path), target)
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(target)
            elif entry.is_dir(follow_symlinks=False):
                os.unlink(target)
            os.replace(entry.path, target)


def _rmtree(path: Path) -> None:
    def writable(func, p, _exc):
        # A directory the archive made read-only: open it up, then retry.
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass
    if path.exists():
        shutil.rmtree(path, onerror=writable)


def source_date_epoch(path: Path) -> int | None:
    """The newest member time of an archive (for a git tarball: the commit time)."""
    path = Path(path)
    if path.is_dir() or not is_archive(path):
        return None
    key = _key(path)
    if key not in _epochs:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                _epochs[key] = max((calendar.timegm(i.date_time + (0, 0, -1)) for i in z.infolist()), default=0)
        else:
            with open(path, "rb") as raw, _open_tar(path, raw) as tar:
                _epochs[key] = max((int(m.mtime) for m in tar), default=0)
    return _epochs[key] or None


def _key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


# --- tar ---------------------------------------------------------------------------
class _ZstdPipe:
    """``zstd -dc`` fed from ``fileobj`` by a thread (no zstandard module needed)."""

    def __init__(self, fileobj):
        self.proc = subprocess.Popen(["zstd", "-q", "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.feeder = threading.Thread(target=self._feed, args=(fileobj,), daemon=True)
        self.feeder.start()

    def _feed(self, fileobj) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while chunk := fileobj.read(CHUNK):
                stdin.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def read(self, size: int = -1) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read(size)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.feeder.join()


def _open_tar(path: Path, fileobj) -> tarfile.TarFile:
    """A streaming TarFile over ``fileobj`` (never seeks, so every byte passes a HashingReader once)."""
    name = path.name.lower()
    try:
        if name.endswith(".tar.lz4"):
            import lz4.frame
            return tarfile.open(fileobj=lz4.frame.open(fileobj, "rb"), mode="r|")
        if name.endswith((".tar.zst", ".tzst")):
            try:
                import zstandard
                return tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(fileobj), mode="r|")
            except ImportError:
                if not shutil.which("zstd"):
                    raise UnpackError("zstd archives need the zstd tool or the zstandard module",
                                      Where(str(path))) from None
                pipe = _ZstdPipe(fileobj)
                tar = tarfile.open(fileobj=cast(Any, pipe), mode="r|")
                setattr(tar, "_zstd_pipe", pipe)        # noqa: B010 -- closed by _close_tar
                return tar
        return tarfile.open(fileobj=fileobj, mode="r|*")
    except (tarfile.TarError, OSError, EOFError, RuntimeError) as exc:
        raise UnpackError(f"not a readable tar archive: {exc}", Where(str(path))) from None


def _close_tar(tar: tarfile.TarFile) -> None:
    pipe = getattr(tar, "_zstd_pipe", None)
    tar.close()
    if pipe is not None:
        pipe.close()
        if pipe.proc.returncode not in (0, -9):
            err = pipe.proc.stderr.read().decode(errors="replace").strip() if pipe.proc.stderr else ""
            raise tarfile.ReadError(f"zstd: {err or 'exit status ' + str(pipe.proc.returncode)}")


def _unpack_tar(path: Path, reader: HashingReader, dest: Path, source: Source) -> int:
    """Extract into ``dest``; the newest member time."""
    newest = [0]

    def timed(tar):
        for m in tar:
            newest[0] = max(newest[0], int(m.mtime))
            yield m

    tar = _open_tar(path, reader)
    try:
        safetar.extract(tar, dest, timed(tar), strip=source.strip)
        _close_tar(tar)
    except safetar.UnsafeMember as exc:
        raise UnpackError(str(exc), Where(str(path)), hint=_HOSTILE) from None
    except (tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
        raise UnpackError(f"extraction failed: {exc}", Where(str(path))) from None
    finally:
        pipe = getattr(tar, "_zstd_pipe", None)
        if pipe is not None:
            pipe.close()       # idempotent: stops zstd and its feeder when extraction failed
    return newest[0]


# --- zip ---------------------------------------------------------------------------
def _unpack_zip(path: Path, reader: HashingReader, dest: Path, source: Source) -> None:
    # A zip is read from its end (the central directory), so it cannot be
    # streamed: it is copied (and hashed) into an unlinked temp file first, and
    # extracted from that copy, which nobody else can change.
    with tempfile.TemporaryFile(dir=dest) as copy:
        while chunk := reader.read(CHUNK):
            copy.write(chunk)
        copy.seek(0)
        try:
            z = zipfile.ZipFile(copy)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UnpackError(f"not a readable zip archive: {exc}", Where(str(path))) from None
        try:
            with z:
                _extract_zip(z, dest, source.strip)
        except safetar.UnsafeMember as exc:
            raise UnpackError(str(exc), Where(str(path)), hint=_HOSTILE) from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UnpackError(f"extraction failed: {exc}", Where(str(path))) from None


def _extract_zip(z: zipfile.ZipFile, dest: Path, strip: int) -> None:
    # The same checks as for tar (safetar): names and link targets before
    # anything is written, link targets again against what is on disk, and
    # every link once more at the end.
    plan = []
    names: dict[str, str] = {}
    for info in z.infolist():
        safetar.check_name(info.filename)
        mode = info.external_attr >> 16
        name = safetar.stripped(info.filename, strip)
        if name is None:
            continue
        kind = stat.S_IFMT(mode)    # 0: a zip from a non-Unix tool, a plain file
        if stat.S_ISLNK(mode):
            safetar.check_symlink(name, z.read(info).decode(), str(dest), info.filename)
        elif kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise safetar.UnsafeMember(info.filename, "is a device, fifo or other special file")
        names[os.path.normpath(name)] = info.filename
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
        if out.is_symlink():
            out.unlink()        # replaced, as GNU tar and unzip do, never written through
        if stat.S_ISLNK(mode):
            target = z.read(info).decode()
            safetar.check_symlink(name, target, str(dest), info.filename)
            os.symlink(target, out)
        else:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with z.open(info) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(out, 0o755 if mode & 0o111 else 0o644)
    safetar.check_links(dest, names.get)

"""The artifact cache: package archives stored by signature.

A small backend interface (contains / get / put) with two backends: a local
directory (shareable between build dirs and concurrent builds: atomic renames,
a lock per key) and a plain HTTP server speaking GET/PUT (nginx WebDAV,
bazel-remote's /cas/).  Every archive has a sidecar JSON with its sha256, size
and key, which reads verify, so a truncated, tampered or swapped artifact is
never used: ``get`` then answers "not in the cache" and the build rebuilds.

Layout of a local cache::

    <root>/<sig[:2]>/<sig>.tar.lz4    the archive
    <root>/<sig[:2]>/<sig>.json       written last: its presence marks the entry complete;
                                      its mtime is the entry's last use (``get`` touches it)
    <root>/.locks/<sig[:2]>.lock      entry locks (one file per shard, never deleted)

Writers (``put``) and ``gc`` hold the entry's lock; readers need none: they
read the JSON, copy the archive (an open file survives its unlink) and check
the copy's sha256 and size before anyone sees it.  ``gc`` removes the JSON
before the archive, so an entry is absent before it is incomplete.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock

from .fileio import atomic_write, sha256_file

__all__ = ["CacheBackend", "LocalCache", "HttpCache", "open_cache", "gc", "clean_temp_files", "sha256_file"]

SIG = re.compile(r"^[0-9a-f]{8,128}$")
META_LIMIT = 16 << 20          # a sidecar JSON larger than this is not one of ours
CHUNK = 1 << 20
STALE_TMP_SECONDS = 15 * 60    # a temp file untouched this long belongs to a dead writer
DEAD_PID_TMP_SECONDS = 60      # ... or this long, when its pid is not running here
CLEAN_INTERVAL = 3600          # opening a local cache cleans temp files at most this often


def _warn(message: str) -> None:
    print(f"warning: artifact cache: {message}", file=sys.stderr)


class _TooBig(Exception):
    pass


class _Unavailable(Exception):
    """The cache could not be asked (network error, timeout, server error)."""


class _HashingWriter:
    def __init__(self, f: BinaryIO, limit: int | None):
        self.f = f
        self.limit = limit
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise _TooBig(f"more than the {self.limit} bytes expected")
        self.digest.update(data)
        self.f.write(data)


def _check_meta(sig: str, data: bytes) -> dict | None:
    """The sidecar's content if it is a well-formed record for ``sig``, else None."""
    try:
        meta = json.loads(data)
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    sha, size = meta.get("sha256"), meta.get("size")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        return None
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        return None
    for field in ("key", "signature"):      # an entry copied under another key is not this one
        if field in meta and meta[field] != sig:
            return None
    return meta


def entry_record(sig: str, archive: Path, meta: dict) -> dict:
    """The JSON of a cache entry: ``meta`` with the archive's sha256 and size, and its key."""
    archive = Path(archive)
    return dict(meta, sha256=sha256_file(archive), size=archive.stat().st_size, key=sig)


def encode_record(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, indent=1).encode()


class CacheBackend(ABC):
    label = "cache"

    @abstractmethod
    def contains(self, sig: str) -> bool: ...

    @abstractmethod
    def _read(self, name: str, out: _HashingWriter) -> bool:
        """Copy object ``name`` into ``out``; False when absent.  May raise _TooBig, _Unavailable, OSError."""

    @abstractmethod
    def _store(self, sig: str, archive: Path, meta_bytes: bytes) -> None:
        """Store the archive, then the JSON."""

    def _touch(self, sig: str) -> None:  # noqa: B027 -- optional for a backend
        """Record a use of ``sig`` (for least-recently-used eviction)."""

    def _failed(self, what: str, exc: BaseException | str) -> None:
        _warn(f"{self.label}: {what}: {exc}")

    # --- the interface -------------------------------------------------------------------
    def put(self, sig: str, archive: Path, meta: dict) -> None:
        self.put_record(sig, archive, entry_record(sig, archive, meta))

    def put_record(self, sig: str, archive: Path, record: dict) -> None:
        """Store ``archive`` with ``record`` (from ``entry_record``, maybe signed) as its JSON."""
        try:
            self._store(sig, Path(archive), encode_record(record))
        except _Unavailable as exc:
            self._failed(f"PUT {sig}", exc)

    def get_meta(self, sig: str) -> dict | None:
        """The entry's JSON (verified to be a record for ``sig``), or None."""
        if not SIG.match(sig):
            return None
        buf = io.BytesIO()
        try:
            if not self._read(f"{sig}.json", _HashingWriter(buf, META_LIMIT)):
                return None
        except _Unavailable as exc:
            self._failed(f"reading {sig}.json", exc)
            return None
        except (_TooBig, OSError) as exc:
            _warn(f"{self.label}: {sig}.json refused ({exc}); rebuilding instead")
            return None
        meta = _check_meta(sig, buf.getvalue())
        if meta is None:
            _warn(f"{self.label}: {sig}.json is not a valid cache record; rebuilding instead")
        return meta

    def get(self, sig: str, dest: Path) -> bool:
        """Fetch the archive to ``dest``; False when absent or when it fails
        verification (sha256 and size of the JSON, written after the archive).
        ``dest`` appears only complete and verified."""
        meta = self.get_meta(sig)
        return meta is not None and self.get_archive(sig, dest, meta)

    def get_archive(self, sig: str, dest: Path, meta: dict, who: str | None = None) -> bool:
        """Fetch the archive to ``dest`` if it has the sha256 and size of
        ``meta`` (a JSON read and checked before: the one that was verified,
        never one read again, which may have changed since).  ``who`` names
        the entry in messages (default: the archive's file name)."""
        dest = Path(dest)
        name = who or f"{sig}.tar.lz4"
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                out = _HashingWriter(f, meta["size"])
                if not self._read(f"{sig}.tar.lz4", out):
                    return False        # removed since the JSON was read (gc), or never complete
            actual = out.digest.hexdigest()
            if out.size != meta["size"] or actual != meta["sha256"]:
                _warn(f"{self.label}: {name}: the archive is refused (size {out.size}, sha256 {actual}; "
                      f"its JSON says size {meta['size']}, sha256 {meta['sha256']}); rebuilding instead")
                return False
            os.replace(tmp, dest)
        except _Unavailable as exc:
            self._failed(f"reading {sig}.tar.lz4", exc)
            return False
        except _TooBig as exc:
            _warn(f"{self.label}: {name}: the archive is refused ({exc}); rebuilding instead")
            return False
        except OSError as exc:
            _warn(f"{self.label}: {name}: reading the archive failed: {exc}; rebuilding instead")
            return False
        finally:
            tmp.unlink(missing_ok=True)
        self._touch(sig)
        return True

    def _get_raw(self, name: str, dest: Path) -> bool:
        """Copy one object (``<sig>.json``) as is to ``dest``.  Kept for callers
        that want the raw JSON; ``get_meta`` verifies it."""
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                if not self._read(name, _HashingWriter(f, META_LIMIT if name.endswith(".json") else None)):
                    return False
            os.replace(tmp, dest)
            return True
        except (_Unavailable, _TooBig, OSError):
            return False
        finally:
            tmp.unlink(missing_ok=True)


# --- a local directory ---------------------------------------------------------------------

class LocalCache(CacheBackend):
    def __init__(self, root: Path, clean: bool = True):
        self.root = Path(root)
        self.label = str(self.root)
        if clean:
            self._clean_now_and_then()

    def _path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def contains(self, sig: str) -> bool:
        return bool(SIG.match(sig)) and self._path(f"{sig}.json").is_file()

    def _read(self, name: str, out: _HashingWriter) -> bool:
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(CHUNK):
                out.write(chunk)
        return True

    def _touch(self, sig: str) -> None:  # noqa: B027 -- optional for a backend
        try:
            os.utime(self._path(f"{sig}.json"))
        except OSError:
            pass            # a read-only cache, or gc removed it just now: no matter

    def _store(self, sig: str, archive: Path, meta_bytes: bytes) -> None:
        final = self._path(f"{sig}.tar.lz4")
        final.parent.mkdir(parents=True, exist_ok=True)
        with entry_lock(self.root, sig):
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            try:
                with open(archive, "rb") as src, open(tmp, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            atomic_write(self._path(f"{sig}.json"), meta_bytes)     # written last: the entry is complete

    def _clean_now_and_then(self) -> None:
        """Remove dead writers' temp files, at most once an hour (a stamp file says when)."""
        stamp = self.root / ".cleaned"
        try:
            if time.time() - stamp.stat().st_mtime < CLEAN_INTERVAL:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        if not self.root.is_dir():
            return
        try:
            clean_temp_files(self.root)
            stamp.touch()
        except OSError:
            pass            # a read-only cache


@contextlib.contextmanager
def entry_lock(root: Path, sig: str) -> Iterator[None]:
    """The lock of entry ``sig``: one lock file per two-hex-digit shard, never
    deleted (deleting a lock file lets two processes hold "the" lock)."""
    locks = Path(root) / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{sig[:2]}.lock")):
        yield


_TMP = re.compile(r"^\..+\.(\d+)\.tmp$")


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_temp_files(root: Path, now: float | None = None) -> tuple[int, int]:
    """Remove temp files (``.<name>.<pid>.tmp``) that dead writers left in a
    local cache: untouched for 15 minutes, or for a minute when their pid is
    not running on this host.  A writer copies without pause and renames at
    once, so a live one's file is never that old.  Returns (files, bytes)."""
    now = time.time() if now is None else now
    removed = freed = 0
    root = Path(root)
    for shard in _shards(root):
        for entry in _scandir(shard):
            m = _TMP.match(entry.name)
            if not m or not entry.is_file(follow_symlinks=False):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            age = now - st.st_mtime
            if age > STALE_TMP_SECONDS or (age > DEAD_PID_TMP_SECONDS and not _pid_running(int(m.group(1)))):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
                freed += st.st_size
    return removed, freed


def _shards(root: Path) -> list[Path]:
    return sorted(Path(e.path) for e in _scandir(root)
                  if len(e.name) == 2 and e.is_dir(follow_symlinks=False))


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def gc(root: Path, max_size: int) -> tuple[int, int]:
    """Shrink the local cache at ``root`` to at most ``max_size`` bytes.

    Dead writers' temp files go first, then incomplete entries (an archive
    without its JSON, or the reverse), then whole entries (JSON and archive)
    least recently used first -- ``get`` touches the JSON, so its mtime is the
    last use, whatever the mount's atime options.  Safe while other builds use
    the cache: each removal holds the entry's lock (no ``put`` is halfway), an
    entry used since the scan is skipped, and the JSON goes before the archive,
    so a reader either finds the entry absent or fails verification and
    rebuilds; it never uses half an entry.  Returns (entries removed, bytes freed).
    """
    root = Path(root)
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, not {max_size}")
    _files, freed = clean_temp_files(root)
    removed = 0
    entries: dict[str, dict[str, os.stat_result]] = {}
    for shard in _shards(root):
        for entry in _scandir(shard):
            for suffix in (".json", ".tar.lz4"):
                if entry.name.endswith(suffix) and not entry.name.startswith("."):
                    sig = entry.name[: -len(suffix)]
                    try:
                        entries.setdefault(sig, {})[suffix] = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        pass
    total = sum(st.st_size for parts in entries.values() for st in parts.values())

    def last_use(item):
        sig, parts = item
        if ".json" not in parts or ".tar.lz4" not in parts:
            return (0, 0)                            # incomplete: first to go
        return (1, parts[".json"].st_mtime_ns)

    for sig, parts in sorted(entries.items(), key=last_use):
        complete = ".json" in parts and ".tar.lz4" in parts
        if complete and total <= max_size:
            break
        gone = _remove_entry(root, sig, parts, complete)
        if gone is None:
            continue                                 # used or rewritten since the scan: keep it
        total -= sum(st.st_size for st in parts.values())
        removed += 1
        freed += gone
    return removed, freed


def _remove_entry(root: Path, sig: str, parts: dict[str, os.stat_result], complete: bool) -> int | None:
    """Remove one entry under its lock; the bytes freed, or None when it changed since the scan."""
    shard = root / sig[:2]
    json_path, archive = shard / f"{sig}.json", shard / f"{sig}.tar.lz4"
    with entry_lock(root, sig):
        now = {}
        for suffix, path in ((".json", json_path), (".tar.lz4", archive)):
            try:
                now[suffix] = os.lstat(path)
            except FileNotFoundError:
                pass
        if complete:
            if {k: (v.st_ino, v.st_mtime_ns) for k, v in now.items()} != \
               {k: (v.st_ino, v.st_mtime_ns) for k, v in parts.items()}:
                return None     # used (touched) or rewritten since the scan
        elif ".json" in now and ".tar.lz4" in now:
            return None         # completed since the scan
        elif now and time.time() - max(v.st_mtime for v in now.values()) < DEAD_PID_TMP_SECONDS:
            return None         # being written by a writer that does not take our lock (an older buildsys)
        freed = 0
        for path in (json_path, archive):           # the JSON first: the entry is absent before it is partial
            try:
                size = os.lstat(path).st_size
                os.unlink(path)
                freed += size
            except FileNotFoundError:
                pass
        return freed


# --- a plain HTTP server ---------------------------------------------------------------------

class HttpCache(CacheBackend):
    """GET/PUT/HEAD against ``base_url/<name>`` (nginx WebDAV: docs/shared-cache.md).

    The cache is an optimisation: a server that is down, slow or broken makes
    every entry "not in the cache" after one warning, and the build goes on
    (short timeouts, at most one quick retry; after the first failure the
    server is not asked again in this process).  The delay is bounded: a
    refused connection costs a retry (~0.2 s), a listener that never answers
    READ_TIMEOUT, a body that trickles GRACE + READ_TIMEOUT at most."""

    CONNECT_TIMEOUT = 3.0
    READ_TIMEOUT = 5.0          # the longest silence of a server, within an answer too
    PUT_TIMEOUT = 30.0          # ... while it takes a PUT's body (a disk flush may take a while)
    MIN_RATE = 256 << 10        # bytes/s a body must average, after GRACE seconds, not to be given up
    GRACE = 10.0

    def __init__(self, base_url: str):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.base = base_url.rstrip("/")
        self.label = _redacted(self.base)
        self.session = requests.Session()
        retry = Retry(total=1, connect=1, read=0, status=1, backoff_factor=0.2,
                      status_forcelist=(502, 503, 504), allowed_methods=("GET", "HEAD"), raise_on_status=False,
                      respect_retry_after_header=False)     # a Retry-After of an hour would hang the build
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.down: str | None = None        # why the server is not asked any more

    def _failed(self, what: str, exc: BaseException | str) -> None:
        if self.down is None:
            self.down = f"{what}: {exc}"
            _warn(f"{self.label} is not usable ({what}: {exc}); building without it")

    def _timeout(self):
        return (self.CONNECT_TIMEOUT, self.READ_TIMEOUT)

    def contains(self, sig: str) -> bool:
        import requests

        if self.down is not None or not SIG.match(sig):
            return False
        try:
            r = self.session.head(f"{self.base}/{sig}.json", timeout=self._timeout(), allow_redirects=True)
        except requests.RequestException as exc:
            self._failed(f"HEAD {sig}.json", _short(exc))
            return False
        if r.status_code == 200:
            return True
        if r.status_code not in (404, 410):
            self._failed(f"HEAD {sig}.json", f"HTTP {r.status_code}")
        return False

    def _read(self, name: str, out: _HashingWriter) -> bool:
        import requests

        if self.down is not None:
            return False
        url = f"{self.base}/{name}"
        try:
            with self.session.get(url, stream=True, timeout=self._timeout()) as r:
                if r.status_code in (404, 410):
                    return False
                if r.status_code != 200:
                    raise _Unavailable(f"HTTP {r.status_code}")
                length = r.headers.get("Content-Length")
                if out.limit is not None and length and length.isdigit() and int(length) > out.limit:
                    raise _TooBig(f"the server announces {length} bytes, more than the {out.limit} expected")
                start = time.monotonic()
                # read1: whatever one recv gives (read(n) would wait for n
                # bytes, and a trickle would never reach the rate check).
                while chunk := r.raw.read1(CHUNK, decode_content=False):
                    out.write(chunk)
                    elapsed = time.monotonic() - start
                    if elapsed > self.GRACE and out.size < elapsed * self.MIN_RATE:
                        raise _Unavailable(f"too slow ({out.size} bytes in {elapsed:.0f} s)")
                if length and length.isdigit() and out.size != int(length):
                    raise _Unavailable(f"the body ended after {out.size} of {length} bytes")
        except (requests.RequestException, _urllib3_errors()) as exc:
            raise _Unavailable(_short(exc)) from None
        return True

    def _store(self, sig: str, archive: Path, meta_bytes: bytes) -> None:
        """PUT the archive, then the JSON (nginx renames a complete body into
        place, so a killed PUT leaves nothing); _Unavailable when it fails."""
        import requests

        if self.down is not None:
            raise _Unavailable(f"not asked again after {self.down}")
        try:
            with open(archive, "rb") as f:
                r = self.session.put(f"{self.base}/{sig}.tar.lz4", data=f,
                                     timeout=(self.CONNECT_TIMEOUT, self.PUT_TIMEOUT))
            r.raise_for_status()
            r = self.session.put(f"{self.base}/{sig}.json", data=meta_bytes, timeout=self._timeout())
            r.raise_for_status()
        except requests.RequestException as exc:
            raise _Unavailable(_short(exc)) from None


def _urllib3_errors() -> type[BaseException]:
    """urllib3's base error: read1 on the raw response raises it unwrapped."""
    from urllib3.exceptions import HTTPError

    return HTTPError


def _redacted(url: str) -> str:
    """``url`` without user and password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _short(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"     # requests' text names the URL, password included
    text = re.sub(r"//[^/@\s]*@", "//***@", str(exc))
    for marker in ("timed out", "Connection refused", "Name or service not known", "Max retries exceeded",
                   "Connection aborted", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def open_cache(spec: str | Path) -> CacheBackend:
    spec = str(spec)
    if spec.startswith(("http://", "https://")):
        return HttpCache(spec)
    return LocalCache(Path(spec))

"""The artifact cache: package archives stored by signature.

A small backend interface (contains / get / put) with two backends: a local
directory (shareable between build dirs and concurrent builds: atomic renames,
a lock per key) and a plain HTTP server speaking GET/PUT (nginx WebDAV,
bazel-remote's /cas/).  Every archive has a sidecar JSON with its sha256, which
reads verify, so a truncated or tampered artifact is never used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from filelock import FileLock


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CacheBackend(ABC):
    @abstractmethod
    def contains(self, sig: str) -> bool: ...

    @abstractmethod
    def _get_raw(self, name: str, dest: Path) -> bool: ...

    @abstractmethod
    def _put_raw(self, name: str, src: Path) -> None: ...

    def put(self, sig: str, archive: Path, meta: dict) -> None:
        meta = dict(meta, sha256=sha256_file(archive), size=archive.stat().st_size)
        with tempfile.NamedTemporaryFile("w", dir=archive.parent, delete=False, suffix=".json") as f:
            json.dump(meta, f, sort_keys=True, indent=1)
        try:
            self._put_raw(f"{sig}.tar.lz4", archive)
            self._put_raw(f"{sig}.json", Path(f.name))  # written last: it marks the entry complete
        finally:
            os.unlink(f.name)

    def get(self, sig: str, dest: Path) -> bool:
        """Fetch the archive to ``dest``; False when absent or when it fails verification."""
        meta_path = dest.with_suffix(".json.tmp")
        try:
            if not self._get_raw(f"{sig}.json", meta_path):
                return False
            meta = json.loads(meta_path.read_text())
            if not self._get_raw(f"{sig}.tar.lz4", dest):
                return False
            if sha256_file(dest) != meta.get("sha256"):
                dest.unlink()
                return False
            return True
        except (OSError, ValueError):
            return False
        finally:
            meta_path.unlink(missing_ok=True)


class LocalCache(CacheBackend):
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def contains(self, sig: str) -> bool:
        return self._path(f"{sig}.json").is_file()

    def _get_raw(self, name: str, dest: Path) -> bool:
        src = self._path(name)
        if not src.is_file():
            return False
        shutil.copyfile(src, dest)
        return True

    def _put_raw(self, name: str, src: Path) -> None:
        final = self._path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        Path(str(final) + ".lock").unlink(missing_ok=True)


class HttpCache(CacheBackend):
    """GET/PUT/HEAD against ``base_url/<name>``."""

    def __init__(self, base_url: str):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(502, 503, 504),
                      allowed_methods=("GET", "PUT", "HEAD"))
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def contains(self, sig: str) -> bool:
        try:
            return self.session.head(f"{self.base}/{sig}.json", timeout=10).status_code == 200
        except Exception:
            return False

    def _get_raw(self, name: str, dest: Path) -> bool:
        with self.session.get(f"{self.base}/{name}", stream=True, timeout=(10, 60)) as r:
            if r.status_code != 200:
                return False
            with open(dest, "wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        return True

    def _put_raw(self, name: str, src: Path) -> None:
        with open(src, "rb") as f:
            r = self.session.put(f"{self.base}/{name}", data=f, timeout=(10, 300))
        r.raise_for_status()


def open_cache(spec: str | Path) -> CacheBackend:
    spec = str(spec)
    if spec.startswith(("http://", "https://")):
        return HttpCache(spec)
    return LocalCache(Path(spec))

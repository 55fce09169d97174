"""The package store: every recipe's installed tree, by signature, under
<build>/packages/<sig>/ with a <sig>.json beside it; filled from a build's
/build/dest or from the artifact cache.

What goes into the cache is what was checked: a tree is packed, the archive is
extracted again with the package rules (nothing escapes, no link followed), and
only then is the archive offered to the cache and the tree published.  What
comes from the cache went through the cache's own sha256 check and the same
extraction.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from . import artifact
from .cache import CacheBackend
from .errors import BuildError, UnpackError
from .fileio import atomic_write


class PackageStore:
    def __init__(self, root: Path, cache: CacheBackend):
        self.root = root
        self.cache = cache

    def dir(self, sig: str) -> Path:
        return self.root / sig

    def meta(self, sig: str) -> dict:
        path = self.root / f"{sig}.json"
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            return {}

    def available(self, sig: str) -> bool:
        return (self.root / f"{sig}.json").is_file() and self.dir(sig).is_dir()

    def remove_stale(self) -> None:
        """Temp dirs left by a killed build (the caller holds the build dir lock)."""
        if self.root.is_dir():
            for stale in self.root.glob(".*"):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)

    def add_built(self, sig: str, dest: Path, meta: dict, cache_meta: dict) -> None:
        """Pack a task's /build/dest, check it, cache it, publish it."""
        self.root.mkdir(parents=True, exist_ok=True)
        artifact.check_tree(dest)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".pack-") as tmp:
            archive = Path(tmp) / f"{sig}.tar.lz4"
            artifact.pack(dest, archive)
            staged = Path(tmp) / "tree"
            # Extract before caching: an archive that fails the package
            # checks must never reach the cache, where every later build
            # (fresh build dirs included) would restore it and fail.
            artifact.unpack(archive, staged)
            self.cache.put(sig, archive, cache_meta)
            self._publish(sig, staged, meta)

    def restore(self, sig: str, meta: dict) -> None:
        """Publish the cache's archive for ``sig``; UnusableCacheEntry when it
        is gone or fails verification (the caller then builds instead)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".restore-") as tmp:
            archive = Path(tmp) / f"{sig}.tar.lz4"
            if not self.cache.get(sig, archive):
                raise UnusableCacheEntry(f"cache entry {sig} disappeared or failed verification")
            staged = Path(tmp) / "tree"
            try:
                artifact.unpack(archive, staged)
            except UnpackError as exc:
                raise UnusableCacheEntry(f"cache entry {sig} is unsafe: {exc}") from None
            if "source_date_epoch" not in meta:
                cached = self.cache.get_meta(sig) or {}
                meta["source_date_epoch"] = int(cached.get("source_date_epoch", 0) or 0)
            self._publish(sig, staged, meta)

    def _publish(self, sig: str, tree: Path, meta: dict) -> None:
        final = self.dir(sig)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tree, final)
        atomic_write(self.root / f"{sig}.json", json.dumps(meta, indent=1, sort_keys=True))


class UnusableCacheEntry(BuildError):
    """A cache entry that cannot be used: the recipe is built instead."""

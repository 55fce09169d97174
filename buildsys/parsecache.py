"""Parsed YAML trees, remembered between runs and keyed by file content.

Parsing a recipe file costs 30-50 us (yamlfast or libyaml); unpickling the tree
built from it last time about 15 us.  The cache is one file in the build directory
holding ``{path: (sha256 of the file's bytes, pickled tree)}``: a file whose
bytes changed is simply parsed again, so the cache can never serve stale data
(no mtime races), and a file that fails to parse is never stored, so its error
is reported, with its position, on every run.

The cache is an optimisation only: an unreadable, truncated or foreign cache
file is ignored and rewritten.  It is written to a temporary file and renamed
into place, so a killed run or two runs at once never leave a torn file.  It
lives in the user's own build directory, which is as trusted as the project
(builds run code from there), so pickle is fine here.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

import yaml

from . import yamlfast, yamlio

FILE_NAME = "parse-cache.pickle"
# Bump when the trees yamlio builds change shape; the loaders' own sizes and
# mtimes are part of the header too, so an edited loader never reads old trees.
TREE_VERSION = 1


def _header() -> tuple:
    stats = [os.stat(str(module.__file__)) for module in (yamlio, yamlfast)]
    return (TREE_VERSION, sys.version_info[:2], yaml.__version__, [(st.st_size, st.st_mtime_ns) for st in stats])


class ParseCache:
    """Loads YAML files like ``yamlio.load``, through the cache file ``path``
    (None: no cache, just parse)."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._old: dict[str, tuple[bytes, bytes]] | None = None   # as read from disk
        self._used: dict[str, tuple[bytes, bytes]] = {}            # entries this run needed
        self.hits = self.misses = 0

    @classmethod
    def for_build_dir(cls, build: Path, environ=os.environ) -> ParseCache:
        """The build directory's cache; BUILDSYS_PARSE_CACHE=0 turns it off."""
        if environ.get("BUILDSYS_PARSE_CACHE", "1") in ("0", "no", "off", "false"):
            return cls(None)
        return cls(Path(build) / FILE_NAME)

    def _entries(self) -> dict:
        if self._old is None:
            self._old = {}
            if self.path is None:
                return self._old
            try:
                with open(self.path, "rb") as f:
                    header, entries = pickle.load(f)
                if header == _header() and isinstance(entries, dict):
                    self._old = entries
            except Exception:  # noqa: BLE001 -- missing, torn or foreign: start afresh
                pass
        return self._old

    def load(self, path) -> yamlio.Map:
        path = str(path)
        if self.path is None:
            return yamlio.load(path)
        data = yamlio.read(path)
        digest = hashlib.sha256(data).digest()
        entry = self._entries().get(path)
        if entry is not None and entry[0] == digest:
            try:
                tree = pickle.loads(entry[1])
            except Exception:  # noqa: BLE001 -- a damaged entry is a miss
                tree = None
            if tree is not None:
                self._used[path] = entry
                self.hits += 1
                return tree
        tree = yamlio.load_bytes(data, path)
        # Pickle now: later stages coerce values inside the tree in place.
        self._used[path] = (digest, pickle.dumps(tree, pickle.HIGHEST_PROTOCOL))
        self.misses += 1
        return tree

    def save(self) -> None:
        """Write the cache if this run parsed anything new.  Entries of files
        not needed this run are kept while the file exists (another board or
        layer set may need them)."""
        if self.path is None or not self.misses:
            return
        entries = {p: e for p, e in self._entries().items() if p not in self._used and os.path.exists(p)}
        entries.update(self._used)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{FILE_NAME}.")
            try:
                os.fchmod(fd, 0o644)   # not mkstemp's 0600: readable like the rest of the build dir
                with os.fdopen(fd, "wb") as f:
                    pickle.dump((_header(), entries), f, pickle.HIGHEST_PROTOCOL)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # a read-only or full build dir only costs speed
        self._old, self.misses = entries, 0

"""Comparing file trees (package trees, unpacked images) by content.

A tree's **digest** is a sha256 over one record per entry, in sorted path
order: the path, the type (file, dir, link, other), the permission bits, and
the file's sha256 or the link's target.  Owners and times are left out: the
package store's trees are extracted by us (owners are the caller's, times are
SOURCE_DATE_EPOCH-clamped archive times), while what two builds of a recipe
put in their trees is what reproducibility is about.  The same tree gives the
same digest in any directory.

Nothing in a tree is followed: links are read with readlink, files are opened
with O_NOFOLLOW (a tree may be a build step's output).
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .fileio import sha256_file

FILE, DIR, LINK, OTHER = "file", "dir", "link", "other"


@dataclass(frozen=True)
class Entry:
    path: str                  # relative to the tree, '/'-separated
    kind: str                  # FILE, DIR, LINK or OTHER
    mode: int                  # permission bits (stat.S_IMODE)
    size: int = 0              # files: bytes
    sha256: str = ""           # files: content hash
    target: str = ""           # links: where they point

    def record(self) -> str:
        what = self.sha256 if self.kind == FILE else self.target
        return f"{self.path}\0{self.kind}\0{self.mode:o}\0{what}\n"

    def as_dict(self) -> dict:
        out: dict = {"path": self.path, "type": self.kind, "mode": f"{self.mode:04o}"}
        if self.kind == FILE:
            out.update(size=self.size, sha256=self.sha256)
        elif self.kind == LINK:
            out["target"] = self.target
        return out


def entries(root: str | os.PathLike) -> list[Entry]:
    """Every entry below ``root`` (not ``root`` itself), sorted by path."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(rel, LINK, mode, target=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                out.append(Entry(rel, DIR, mode))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(rel, FILE, mode, st.st_size, sha256_file(full, follow=False)))
            else:
                out.append(Entry(rel, OTHER, mode))
    out.sort(key=lambda e: e.path)
    return out


def digest_entries(items: list[Entry]) -> str:
    h = hashlib.sha256()
    for entry in sorted(items, key=lambda e: e.path):
        h.update(entry.record().encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def tree_digest(root: str | os.PathLike) -> str:
    """The tree's content digest (see the module doc)."""
    return digest_entries(entries(root))


@dataclass(frozen=True)
class Change:
    path: str
    what: str                  # "added", "removed" or "changed"
    old: Entry | None
    new: Entry | None

    def line(self) -> str:
        """One line of a file-level listing: path, sizes, sha256s (or link targets)."""
        def desc(e: Entry | None) -> str:
            if e is None:
                return "-"
            if e.kind == FILE:
                return f"{e.size} bytes sha256 {e.sha256[:16]} mode {e.mode:04o}"
            if e.kind == LINK:
                return f"link -> {e.target}"
            return f"{e.kind} mode {e.mode:04o}"

        if self.what == "added":
            return f"  added    {self.path}  {desc(self.new)}"
        if self.what == "removed":
            return f"  removed  {self.path}  {desc(self.old)}"
        return f"  changed  {self.path}  {desc(self.old)}  ->  {desc(self.new)}"

    def as_dict(self) -> dict:
        return {"path": self.path, "change": self.what, "a": self.old.as_dict() if self.old else None,
                "b": self.new.as_dict() if self.new else None}


def compare(old: list[Entry], new: list[Entry]) -> list[Change]:
    """Entries added, removed or changed from ``old`` to ``new``, sorted by path."""
    a = {e.path: e for e in old}
    b = {e.path: e for e in new}
    out = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            out.append(Change(path, "removed", a[path], None))
        elif path not in a:
            out.append(Change(path, "added", None, b[path]))
        elif a[path] != b[path]:
            out.append(Change(path, "changed", a[path], b[path]))
    return out

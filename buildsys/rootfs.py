"""The root filesystem tree of an image: packages' install trees merged into one.

Two packages installing the same path is an error naming both (which one
should win is a decision, not an accident of order).  Directories may be
shared.  Files are copied, not hard-linked: clamping times in the rootfs must
not touch the package store.  Owners, modes and device nodes are not applied
to the tree (that would need root); they become a permission table that
squashfs.pseudo_text() turns into mksquashfs pseudo definitions.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .errors import UserError, Where
from .image.squashfs import Entry

_KINDS = {"f": "m", "file": "m", "m": "m", "d": "d", "dir": "d", "c": "c", "b": "b"}


def merge(packages: list[tuple[str, Path]], dest: Path, epoch: int) -> dict[str, str]:
    """Merge (package name, tree) pairs into ``dest``; return {"/path": package}.

    Raises UserError on a path installed by two packages (or a directory in
    one and a file or symlink in the other)."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)       # the image's / -- not whatever the umask made it
    owners: dict[str, str] = {}
    dir_owners: dict[str, str] = {}
    for pkg, tree in sorted(packages, key=lambda p: p[0]):
        tree = Path(tree)
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, tree)
            for name in sorted(dirnames + filenames):
                src = os.path.join(dirpath, name)
                rel = "/" + os.path.normpath(os.path.join(rel_dir, name))
                target = dest / rel.lstrip("/")
                is_dir = os.path.isdir(src) and not os.path.islink(src)
                if is_dir:
                    if rel in owners:
                        raise _conflict(rel, owners[rel], pkg)
                    dir_owners.setdefault(rel, pkg)
                    target.mkdir(exist_ok=True)
                    shutil.copymode(src, target)
                    continue
                if rel in owners or rel in dir_owners:
                    raise _conflict(rel, owners.get(rel) or dir_owners[rel], pkg)
                owners[rel] = pkg
                if os.path.islink(src):
                    os.symlink(os.readlink(src), target)
                elif stat.S_ISREG(os.lstat(src).st_mode):
                    shutil.copy2(src, target, follow_symlinks=False)
                else:
                    raise UserError(f"package {pkg} installs {rel}, which is not a file, directory or symlink",
                                    hint="device nodes and fifos go in the recipe's permissions table")
    # Every time becomes the epoch (not just clamped): mksquashfs sets inode
    # times from SOURCE_DATE_EPOCH anyway, and then nothing depends on how the
    # package trees were unpacked.
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(dest, (epoch, epoch))
    return {**dir_owners, **owners}


def _conflict(path: str, first: str, second: str) -> UserError:
    return UserError(f"{path} is installed by both {first} and {second}",
                     hint="remove it from one of them, e.g. with an append")


def permission_entries(package: str, table, where: Where | None = None) -> list[Entry]:
    """A recipe's ``permissions`` list as Entries (validated)."""
    out = []
    for i, item in enumerate(table or []):
        if not isinstance(item, dict) or "path" not in item:
            raise UserError(f"{package}: permissions item {i + 1} needs at least 'path'", where)
        unknown = set(item) - {"path", "type", "mode", "uid", "gid", "major", "minor", "_where"}
        if unknown:
            raise UserError(f"{package}: unknown key(s) {', '.join(sorted(unknown))} in permissions item {i + 1}",
                            item.get("_where", where))
        kind = _KINDS.get(str(item.get("type", "m")))
        if kind is None:
            raise UserError(f"{package}: permissions type {item.get('type')!r} for {item['path']} "
                            "(expected f, d, c or b)", item.get("_where", where))
        try:
            mode = int(str(item.get("mode", "0755" if kind == "d" else "0644")), 8)
        except ValueError:
            raise UserError(f"{package}: mode {item.get('mode')!r} of {item['path']} is not octal",
                            item.get("_where", where)) from None
        if kind in ("c", "b") and ("major" not in item or "minor" not in item):
            raise UserError(f"{package}: device {item['path']} needs major and minor", item.get("_where", where))
        out.append(Entry(str(item["path"]), kind, mode, int(item.get("uid", 0)), int(item.get("gid", 0)),
                         int(item.get("major", 0)), int(item.get("minor", 0)), package))
    return out


def check_entries(tree: Path, entries: list[Entry]) -> None:
    """'m' entries must name something in the tree; new nodes must not."""
    for e in entries:
        exists = os.path.lexists(tree / e.path.lstrip("/"))
        if e.kind == "m" and not exists:
            raise UserError(f"{e.owner}: permissions name {e.path}, which no package installs")
        if e.kind in ("c", "b") and exists:
            raise UserError(f"{e.owner}: permissions create device {e.path}, but a package installs that path")


def full_table(tree: Path, entries: list[Entry]) -> list[Entry]:
    """Every path of the tree as root-owned, then the entries on top.

    Needed only when some entry names a non-root owner: mksquashfs's
    -all-root overrides pseudo definitions' owners, so without it every path
    must get its owner from the table instead of from the build user."""
    given = {e.path.strip("/") for e in entries}
    out = list(entries)
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, tree)
            if rel not in given:
                out.append(Entry("/" + rel, "m", stat.S_IMODE(os.lstat(full).st_mode), 0, 0, owner="rootfs"))
    return out

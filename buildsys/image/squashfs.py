"""A squashfs root filesystem: the pseudo-file text and the mksquashfs argv.

Owners, modes and device nodes come from a permission table turned into
mksquashfs pseudo definitions, so no step needs root or fakeroot: the tree on
disk holds plain files owned by whoever built them, ``-all-root`` makes
everything root's, and the pseudo file applies the exceptions.

Times: mksquashfs (4.4+) reads SOURCE_DATE_EPOCH from the environment for the
filesystem time and every inode time.  We never pass -mkfs-time/-all-time:
4.5 and 4.6 refuse them together with SOURCE_DATE_EPOCH.
"""
from __future__ import annotations

from dataclasses import dataclass

COMPRESSORS = ("xz", "gzip", "lzo", "lz4", "zstd", "lzma")


@dataclass(frozen=True)
class Entry:
    """One line of the permission table.

    kind: "m" changes an existing file's mode/owner; "d" creates a directory;
    "c"/"b" create a character/block device.
    """

    path: str
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    major: int = 0
    minor: int = 0
    owner: str = ""            # the package that asked, for error messages

    def pseudo_line(self) -> str:
        name = self.path.strip("/")
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"{self.owner}: unsupported path {self.path!r} in permissions (empty or with spaces)")
        head = f"{name} {self.kind} {self.mode:o} {self.uid} {self.gid}"
        if self.kind in ("c", "b"):
            return f"{head} {self.major} {self.minor}"
        if self.kind in ("m", "d"):
            return head
        raise ValueError(f"{self.owner}: unknown permission type {self.kind!r} for {self.path}")


def pseudo_text(entries: list[Entry]) -> str:
    """The -pf file.  Sorted by path so that it is the same whatever the
    package order; a path given twice is an error (which one would win?)."""
    seen: dict[str, Entry] = {}
    for e in entries:
        key = e.path.strip("/")
        if key in seen and seen[key] != e:
            raise ValueError(f"permissions for /{key} given twice: by {seen[key].owner or '?'} and {e.owner or '?'}")
        seen[key] = e
    return "".join(seen[k].pseudo_line() + "\n" for k in sorted(seen))


def mksquashfs_argv(src: str, out: str, pseudo_file: str | None, compressor: str = "xz",
                    block_size: int = 131072, mksquashfs: str = "mksquashfs", all_root: bool = True) -> list[str]:
    """argv building ``out`` from directory ``src``.  Run it with
    SOURCE_DATE_EPOCH in the environment (see env()).

    all_root=False is for tables with non-root owners: -all-root overrides
    the pseudo definitions' owners (measured with 4.5.1), so then the table
    must name every path instead (rootfs.full_table)."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"unknown squashfs compressor '{compressor}' (known: {', '.join(COMPRESSORS)})")
    if block_size & (block_size - 1) or not 4096 <= block_size <= 1 << 20:
        raise ValueError(f"squashfs block size {block_size} is not a power of two between 4 KiB and 1 MiB")
    argv = [mksquashfs, src, out, "-noappend", "-no-xattrs"] + (["-all-root"] if all_root else []) + [
        "-comp", compressor, "-b", str(block_size), "-no-progress", "-quiet"]
    if pseudo_file:
        argv += ["-pf", pseudo_file]
    return argv


def env(source_date_epoch: int) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(int(source_date_epoch))}

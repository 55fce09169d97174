"""The rootfs after the merge and before mksquashfs (Buildroot's target-finalize):
development files out, the C library down to what the programs need.

Development files (headers, static libraries, libtool archives, pkg-config
and CMake package files, manuals, the ``libfoo.so`` links the linker uses)
stay in the packages -- the sysroot of every dependent needs them -- and are
dropped from the image's tree only.  Patterns (the image's ``rootfs_exclude``
and ``rootfs_keep``):
  * a pattern with a ``/`` matches the path from the root (``/usr/include``),
    one without matches the file name (``*.la``); ``*`` and ``?`` as in fnmatch;
  * a directory that matches goes with everything under it;
  * a trailing ``@`` matches symbolic links only: ``lib*.so@`` is the
    development link, never a library really called ``libfoo.so``;
  * ``rootfs_keep`` wins: a kept path (or anything under a kept dir) stays.
"""
from __future__ import annotations

import fnmatch
import os
import posixpath
from pathlib import Path

from . import elf

DEFAULT_EXCLUDE = (
    "/usr/include", "/usr/local/include", "*.a", "*.la", "lib*.so@",
    "/lib/pkgconfig", "/usr/lib/pkgconfig", "/usr/share/pkgconfig", "/usr/local/lib/pkgconfig",
    "/lib/cmake", "/usr/lib/cmake", "/usr/share/cmake", "/usr/local/lib/cmake",
    "/usr/share/man", "/usr/share/info", "/usr/share/doc", "/usr/share/aclocal", "/usr/share/gtk-doc",
    "/usr/local/share/man", "/usr/local/share/info", "/usr/local/share/doc",
)


def _matches(pattern: str, path: str, is_link: bool) -> bool:
    if pattern.endswith("@"):
        if not is_link:
            return False
        pattern = pattern[:-1]
    if "/" in pattern:
        return fnmatch.fnmatchcase(path, "/" + pattern.strip("/"))
    return fnmatch.fnmatchcase(posixpath.basename(path), pattern)


def _first(patterns, path: str, is_link: bool) -> str | None:
    return next((p for p in patterns if _matches(p, path, is_link)), None)


def exclude(tree: Path, patterns, keep=()) -> dict[str, str]:
    """Remove what ``patterns`` name from ``tree`` unless ``keep`` names it;
    return {image path: the pattern that removed it} (files and links, and
    the dirs left empty)."""
    removed: dict[str, str] = {}
    patterns, keep = list(patterns), list(keep)

    def visit(host: Path, path: str, inherited: str | None, kept: bool) -> bool:
        """Handle ``path``; True when it is gone."""
        is_link = host.is_symlink()
        kept = kept or _first(keep, path, is_link) is not None
        why = inherited or _first(patterns, path, is_link)
        if host.is_dir() and not is_link:
            children = sorted(os.listdir(host))
            gone = [visit(host / c, f"{path.rstrip('/')}/{c}", why, kept) for c in children]
            if why and not kept and all(gone):
                host.rmdir()
                removed[path] = why
                return True
            return False
        if why and not kept:
            host.unlink()
            removed[path] = why
            return True
        return False

    for child in sorted(os.listdir(tree)):
        visit(tree / child, "/" + child, None, False)
    return removed


def needed_closure(tree: Path, arch: str, roots: list[str],
                   loaded: dict[str, str] | None = None) -> tuple[set[str], list[tuple[str, str]]]:
    """The image paths (links resolved) ld.so maps for the ELF files ``roots``:
    their interpreters and DT_NEEDED libraries, transitively; and the
    (program, soname) pairs that found nothing.  ``loaded``: elf.preloaded()."""
    seen: set[str] = set()
    missing: list[tuple[str, str]] = []
    stack = list(roots)
    while stack:
        path = stack.pop()
        real = elf.resolve(tree, path)
        if real is None or real in seen:
            continue
        seen.add(real)
        info = elf.read(tree / real.lstrip("/"))
        if info is None:
            continue
        if info.interp:
            stack.append(info.interp)
        dirs = elf.search_dirs(real, info, arch)
        for soname in info.needed:
            found = elf.find_library(tree, soname, dirs, info, loaded)
            if found is None:
                missing.append((path, soname))
            else:
                stack.append(found)
    return seen, missing


def prune_unneeded(tree: Path, arch: str, owners: dict[str, str], packages: set[str],
                   keep_with: dict[str, list[str]] | None = None) -> list[str]:
    """Remove the ELF files of ``packages`` (the C library) that no ELF of
    another package needs, and the links to them; return their paths.

    ``keep_with`` {soname: [libraries]}: libraries loaded with dlopen that
    must stay whenever the library stays (glibc dlopens libgcc_s.so.1 for
    pthread_cancel)."""
    elves = {path: info for path, _, info in elf.walk(tree)}
    roots = [p for p in elves if owners.get(p) not in packages]
    loaded = elf.preloaded(tree, elves.values())
    used, _ = needed_closure(tree, arch, roots, loaded)
    for path in list(used):
        name = posixpath.basename(path)
        for extra in (keep_with or {}).get(name, []):
            info = elves.get(path)
            if info is None:
                continue
            found = elf.find_library(tree, extra, elf.search_dirs(path, info, arch), info, loaded)
            if found:
                more, _ = needed_closure(tree, arch, [found], loaded)
                used |= more
    gone = []
    for path in sorted(elves):
        if owners.get(path) in packages and path not in used:
            os.unlink(tree / path.lstrip("/"))
            gone.append(path)
    # Links of those packages that now point nowhere.
    for dirpath, _, filenames in os.walk(tree):
        for name in sorted(filenames):
            host = Path(dirpath) / name
            path = "/" + str(host.relative_to(tree))
            if host.is_symlink() and owners.get(path) in packages and elf.resolve(tree, path) is None:
                host.unlink()
                gone.append(path)
    return gone


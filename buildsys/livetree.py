"""A live-source working tree (``buildsys source RECIPE --local DIR``): what
is in it, and its content digest for the recipe's signature.

The tree is the developer's: it changes between builds, so its digest takes
the place of the sources' sha256s in the signature (an edit makes a new key,
the same content gives the same key anywhere).  ``.git`` directories are left
out -- history is not input, and a ``git commit`` alone must not rebuild --
and so is what git ignores in a git work tree (see git_files).
Files are hashed once per (inode, size, mtime, ctime) in this process: a
build plans and then syncs, and both need the digest.

This module only reads and hashes; livesync.py copies the tree into the
recipe's source dir and checks it against the digest computed here.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from .errors import UserError, Where
from .fileio import sha256_file
from .treedigest import DIR, FILE, LINK, Entry, digest_entries

SKIP = {".git"}

_hashes: dict[tuple, str] = {}


def scan(root: str | os.PathLike, where: Where | None = None) -> list[Entry]:
    """Every entry of the working tree below ``root`` but .git dirs, sorted by path."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise UserError(f"live source {root} is not a directory", where,
                        hint="fix live_sources in local.yaml, or `buildsys source RECIPE --reset`")
    out: list[Entry] = []
    listed = git_files(root)
    parents = {p for f in listed for p in _parents(f)} if listed is not None else set()

    def wanted(rel: str) -> bool:
        # Outside git everything; in git what it lists, the dirs above, and
        # what is below a listed dir (a submodule).
        return listed is None or rel in listed or rel in parents or any(p in listed for p in _parents(rel))

    for dirpath, dirnames, filenames in os.walk(root):
        top = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if top == "." else top + "/"
        # Ignored by git: a build product of your own `make`, a build dir.
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP and wanted(prefix + d))
        for name in dirnames + sorted(f for f in filenames if f not in SKIP and wanted(prefix + f)):
            full = os.path.join(dirpath, name)
            rel = prefix + name
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(rel, LINK, 0o777, target=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                out.append(Entry(rel, DIR, mode))
            elif stat.S_ISREG(st.st_mode):
                key = (full, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                digest = _hashes.get(key)
                if digest is None:
                    digest = _hashes[key] = sha256_file(full, follow=False)
                out.append(Entry(rel, FILE, mode, st.st_size, digest))
            else:
                raise UserError(f"live source {full} is not a file, directory or symlink", where,
                                hint="remove sockets, fifos and device nodes from the working tree")
    out.sort(key=lambda e: e.path)
    return out


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def git_files(root: str) -> set[str] | None:
    """For a git work tree, the files git would commit: tracked ones and
    untracked ones not ignored (`git ls-files -co --exclude-standard`), so
    that objects and binaries of the developer's own builds (ignored by
    .gitignore) stay out of the build.  None (every file counts) outside git,
    or when git cannot tell.  The repository's own config must not run
    anything here: no fsmonitor, no hooks."""
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    git = shutil.which("git")
    if git is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    try:
        proc = subprocess.run([git, "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
                               "-c", f"safe.directory={root}", "-C", root, "ls-files", "-z", "-c", "-o",
                               "--exclude-standard"], env=env, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return {name for name in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if name}


def digest(root: str | os.PathLike, where: Where | None = None) -> str:
    return digest_entries(scan(root, where))


# Files a package's configure step reads, or that say how it is built (a
# plain Makefile's flags): Yocto's externalsrc re-runs do_configure when one
# of these changes, and so do we -- an edit to anything else (a .c file) goes
# straight to the compile step, which is what keeps the loop short for
# autotools and Meson projects.
CONFIGURE_FILES = ("configure", "configure.ac", "configure.in", "aclocal.m4", "acinclude.m4", "Makefile.am",
                   "Makefile.in", "config.h.in", "CMakeLists.txt", "CMakePresets.json", "meson.build",
                   "meson_options.txt", "meson.options", "Makefile", "makefile", "GNUmakefile")
CONFIGURE_SUFFIXES = (".cmake", ".m4", ".mk", ".pc.in", ".ac", ".am")


def is_configure_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in CONFIGURE_FILES or name.endswith(CONFIGURE_SUFFIXES) or name.startswith("Kconfig")


def digests(root: str | os.PathLike, where: Where | None = None) -> dict[str, str]:
    """{"live_tree": the whole tree's digest, "live_configure": its configure files'}."""
    entries = scan(root, where)
    return {"live_tree": digest_entries(entries),
            "live_configure": digest_entries([e for e in entries if is_configure_file(e.path)])}


def resolve_dir(project_root: Path, value: str) -> Path:
    """A live_sources value: absolute, or relative to the project."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (project_root / path)

"""``class: libc`` -- the target's C library, taken from the toolchain (virtual/libc).

Nothing is compiled: the runtime files of the glibc the toolchain links
against are copied out of the build environment, so a dynamically linked
program runs on the board against the very library it was linked with.

Where they are: Debian's native glibc (libc6, libgcc-s1) in
``usr/lib/<triplet>/``, a cross one (libc6-arm64-cross...) in
``usr/<triplet>/lib/`` -- of the pinned environment (buildenv.lock.json),
or of this host for a ``build_env: host`` project.

Layout in the package (and the image): the loader at the ELF interpreter path
programs carry (``/lib64/ld-linux-x86-64.so.2``, ``/lib/ld-linux-aarch64.so.1``),
every other library in ``/lib``: glibc's ld.so searches /lib and /usr/lib
when there is no ld.so.cache, so no ldconfig run is needed.

The signature names every file's origin exactly: with a pinned environment,
the Debian packages the files come from (``debian_packages``, with their
sha256 from the lock: a file's bytes cannot change without one of those);
without one, the sha256 of each host file.  The image manifest then lists the
sha256 of each file (deploy.py).  An image class drops the libraries of this
package that no program in the image needs (classes/image.py).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from ..fileio import sha256_bytes, sha256_file, write_beneath
from .base import BuildClass, StrList
from .toolchain import resolve_inside

# The ELF interpreter (PT_INTERP) gcc writes into programs, per architecture.
INTERPRETERS = {"x86_64": "/lib64/ld-linux-x86-64.so.2", "aarch64": "/lib/ld-linux-aarch64.so.1"}
TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
# Debian architecture of a build environment -> the triplet of its native libc.
_NATIVE = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
# Where the library dir is inside the package/image.
LIBDIR = "lib"

# Sonames glibc and gcc's runtime ship: a program that needs one of these
# needs virtual/libc in the image (the image class's hint).
SONAMES = frozenset({
    "libc.so.6", "libm.so.6", "libresolv.so.2", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "libutil.so.1", "libanl.so.1", "libnsl.so.1", "libcrypt.so.1", "libBrokenLocale.so.1",
    "libnss_files.so.2", "libnss_dns.so.2", "libnss_compat.so.2", "libthread_db.so.1", "libgcc_s.so.1",
    "libmvec.so.1", "libc_malloc_debug.so.0",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux-armhf.so.3",
})


def source_dir(machine: str, native: str | None) -> str:
    """The target's library dir, relative to the environment's (or host's) root."""
    return f"usr/lib/{machine}" if machine == native else f"usr/{machine}/lib"


class Libc(BuildClass):
    name = "libc"
    params = {
        "libraries": StrList([], "the shared libraries to install in /lib (file names in the toolchain's "
                                 "library dir); the loader is always installed"),
        "debian_packages": StrList([], "the build environment's packages these files come from (their sha256 "
                                       "from buildenv.lock.json go into the signature)"),
    }

    @staticmethod
    def _arch(recipe, board) -> tuple[str, str]:
        """(machine triplet, interpreter path) of the board."""
        if board.arch not in TRIPLETS:
            raise UserError(f"class libc knows no C library for {board.arch}", recipe.where("class")
                            if hasattr(recipe, "where") else None, hint="known: " + ", ".join(sorted(TRIPLETS)))
        return TRIPLETS[board.arch], INTERPRETERS[board.arch]

    def files(self, recipe, board) -> dict[str, str]:
        """{path in the package: file name in the toolchain's library dir}."""
        _, interp = self._arch(recipe, board)
        out = {interp.lstrip("/"): os.path.basename(interp)}
        for name in recipe.get("libraries", []):
            if "/" in name or name in ("", ".", ".."):
                raise UserError(f"libraries: {name!r} is not a file name", recipe.where("libraries"))
            out[f"{LIBDIR}/{name}"] = name
        return out

    def signature_extra(self, recipe, board, env=None):
        machine, _ = self._arch(recipe, board)
        files = self.files(recipe, board)
        if env is not None:
            packages = {}
            for name in recipe.get("debian_packages", []):
                locked = env.lock.package(name)
                if locked is None:
                    raise UserError(f"the build environment has no package {name}", recipe.where("debian_packages"),
                                    hint="add it to buildenv.yaml and run 'buildsys lock update'")
                packages[name] = {"version": locked.version, "sha256": locked.sha256}
            return {"libc": {"files": sorted(files), "debian_packages": packages}}
        # The host's files: their bytes, read now (a host update rebuilds).
        base = Path("/") / source_dir(machine, _host_triplet())
        hashes = {}
        for path, name in sorted(files.items()):
            src = Path(os.path.realpath(base / name))
            if not src.is_file():
                raise UserError(f"this host has no {base / name} for the target C library", recipe.where("libraries"),
                                hint=f"install the {machine} C library (Debian: libc6 or libc6-<arch>-cross)")
            hashes[path] = sha256_file(src)
        return {"libc": {"files": hashes}}

    def run(self, task, ctx):
        steps = ctx.recipe.get("steps") or {}
        if task in steps:
            return super().run(task, ctx)
        if task != "install":
            return None
        machine, _ = self._arch(ctx.recipe, ctx.board)
        env = getattr(ctx, "buildenv", None)
        root = env.root if env is not None else Path("/")
        native = _NATIVE.get(env.lock.architecture) if env is not None else _host_triplet()
        base = source_dir(machine, native)
        dest = Path(ctx.paths.dest)
        for path, name in sorted(self.files(ctx.recipe, ctx.board).items()):
            # Links in the environment resolve inside it, never on the host.
            src = resolve_inside(root, f"{base}/{name}") if env is not None \
                else Path(os.path.realpath(root / base / name))
            if not src.is_file():
                raise UserError(f"the toolchain's C library has no {base}/{name}", ctx.recipe.where("libraries"),
                                hint="check libraries: against the environment's " + base)
            data = src.read_bytes()
            # dest is step-writable (a recipe may add steps): no link followed.
            write_beneath(dest, path, data, mode=0o755)
            ctx.log(f"{path}: {base}/{name} sha256 {sha256_bytes(data)}")
        return None


def _host_triplet() -> str:
    machine = os.uname().machine
    return TRIPLETS.get(machine, machine)

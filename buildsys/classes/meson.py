"""``class: meson`` -- a Meson package (meson setup, ninja, meson install).

Target builds use a cross file generated from the board (crossbuild.py): the
board's compilers and binutils, CFLAGS/CPPFLAGS/LDFLAGS as built-in options
(cleared in the environment of `meson setup`, which would give them to the
build machine's compiler),
pkg-config's sysroot and the host machine (system, cpu_family, cpu, endian).
Native builds have no cross file (Meson reads CFLAGS... from the
environment).  Both: out of tree in /build/obj, prefix /usr, libdir lib,
buildtype release, and no subproject downloads.
"""
from __future__ import annotations

from .base import SANDBOX_DEST, SANDBOX_OBJ, SANDBOX_SRC, StrList
from .crossbuild import CrossBuild, args, meson_cross, stage_path

CROSS_FILE = "meson-cross.ini"


class Meson(CrossBuild):
    name = "meson"
    params = {
        "meson_args": StrList([], "extra `meson setup` arguments (-Dfoo=enabled ...)"),
        **CrossBuild.params,
    }

    def generated_files(self, ctx):
        if self.native(ctx):
            return {}
        cflags, ldflags = self.flags(ctx)
        return {CROSS_FILE: meson_cross(ctx.board, ctx.board.cross_prefix, cflags, ldflags)}

    def configure_args(self, ctx) -> list[str]:
        out = ["--prefix=/usr", "--libdir=lib", "--sysconfdir=/etc", "--localstatedir=/var",
               "--buildtype=release", "--wrap-mode=nodownload"]
        if not self.native(ctx):
            out.append(f"--cross-file={stage_path(CROSS_FILE)}")
        return out

    def script(self, task, ctx):
        if task == "configure":
            # Cross: the target's flags are in the cross file; the environment's
            # would reach the build machine's compiler (a native: true tool).
            clear = "" if self.native(ctx) else "CFLAGS= CXXFLAGS= CPPFLAGS= LDFLAGS= "
            return (f'{clear}meson setup {" ".join(self.configure_args(ctx))} {args(ctx.recipe.get("meson_args"))} '
                    f'{SANDBOX_OBJ} {SANDBOX_SRC}')
        if task == "compile":
            return f'ninja -C {SANDBOX_OBJ} -j"$JOBS" -v'
        if task == "install":
            return f'DESTDIR={SANDBOX_DEST} meson install -C {SANDBOX_OBJ} --no-rebuild'
        return None

"""``class: cmake`` -- a CMake package, built with Ninja (cmake -G Ninja, ninja, ninja install).

Target builds use a toolchain file generated from the board (crossbuild.py):
the board's compilers, CMAKE_SYSTEM_NAME/PROCESSOR, and dependencies found
only under /build/sysroot (CMAKE_FIND_ROOT_PATH; programs on the build
machine).  Native builds have no toolchain file and find dependencies under
/build/native/usr (CMAKE_PREFIX_PATH).  Both: prefix /usr, libdir lib,
Release without -g and without its -O3 (CFLAGS decide), CPPFLAGS folded into
CFLAGS/CXXFLAGS (CMake does not read CPPFLAGS).
"""
from __future__ import annotations

from .base import SANDBOX_DEST, SANDBOX_NATIVE, SANDBOX_OBJ, SANDBOX_SRC, StrList
from .crossbuild import CrossBuild, args, cmake_toolchain, stage_path

TOOLCHAIN_FILE = "toolchain.cmake"


class CMake(CrossBuild):
    name = "cmake"
    params = {
        "cmake_args": StrList([], "extra cmake arguments (-DFOO=ON ...)"),
        **CrossBuild.params,
    }

    def generated_files(self, ctx):
        return {} if self.native(ctx) else {TOOLCHAIN_FILE: cmake_toolchain(ctx.board, ctx.board.cross_prefix)}

    def extra_env(self, ctx):
        cflags = self.flags(ctx)[0]
        return {"CFLAGS": cflags, "CXXFLAGS": cflags}

    def configure_args(self, ctx) -> list[str]:
        out = ["-G Ninja", f"-S {SANDBOX_SRC}", f"-B {SANDBOX_OBJ}",
               "-DCMAKE_INSTALL_PREFIX=/usr", "-DCMAKE_INSTALL_LIBDIR=lib",
               "-DCMAKE_INSTALL_SYSCONFDIR=/etc", "-DCMAKE_INSTALL_LOCALSTATEDIR=/var",
               "-DCMAKE_BUILD_TYPE=Release",
               # No user package registry (~/.cmake): nothing outside the sysroot.
               "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF", "-DCMAKE_EXPORT_NO_PACKAGE_REGISTRY=ON"]
        if self.native(ctx):
            out += [f"-DCMAKE_PREFIX_PATH={SANDBOX_NATIVE}/usr",
                    "-DCMAKE_C_FLAGS_RELEASE=-DNDEBUG", "-DCMAKE_CXX_FLAGS_RELEASE=-DNDEBUG"]
        else:
            out.append(f"-DCMAKE_TOOLCHAIN_FILE={stage_path(TOOLCHAIN_FILE)}")
        return out

    def script(self, task, ctx):
        if task == "configure":
            return f'cmake {" ".join(self.configure_args(ctx))} {args(ctx.recipe.get("cmake_args"))}'
        if task == "compile":
            return f'ninja -C {SANDBOX_OBJ} -j"$JOBS" -v'
        if task == "install":
            return f'DESTDIR={SANDBOX_DEST} ninja -C {SANDBOX_OBJ} -v install'
        return None

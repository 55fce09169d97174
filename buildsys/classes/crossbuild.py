"""What the autotools, cmake and meson classes share (CrossBuild, their base).

* The environment of their steps (and of the recipe's steps and hooks):
  pkg-config looks only in the recipe's sysroot (target: /build/sysroot,
  native: /build/native), and the linker finds the shared libraries that a
  dependency's libraries need (-rpath-link), as Buildroot's and OE's
  pkg-config wrappers and LDFLAGS do.
* The files a cross build reads, generated host-side from the board into the
  stage dir (mounted read-only at /build/stage, so no step can change them):
  an autoconf config.site, a CMake toolchain file and a Meson cross file.
* After install (and after the recipe's post_install hook): libtool's .la
  files are removed, ELF programs and libraries are stripped, and no text
  file of the package may still name a sandbox path (/build/sysroot...):
  compiler flags naming one in .pc files and *-config scripts are dropped,
  anything else fails the build.

Nothing here is a registered class (no ``name``); BuildClass.version() hashes
this module for every class built on it.
"""
from __future__ import annotations

import os
import re
import shlex
import stat
from pathlib import Path

from ..errors import BuildError, UserError
from ..fileio import atomic_write, read_beneath, write_beneath
from ..resolve import HOST_ARCH
from .base import (
    SANDBOX_DEST,
    SANDBOX_NATIVE,
    SANDBOX_OBJ,
    SANDBOX_STAGE,
    SANDBOX_SYSROOT,
    Bool,
    BuildClass,
)

# Board arch -> Meson's cpu_family and the byte order (Meson's reference
# tables: "CPU families" and "endian").
MESON_CPU_FAMILY = {"x86_64": "x86_64", "i686": "x86", "aarch64": "aarch64", "arm": "arm", "riscv64": "riscv64"}
BIG_ENDIAN = frozenset({"mips", "powerpc", "ppc64", "s390x"})

# Autoconf results a cross configure cannot find out by running a test
# program; the values are glibc's on Linux (Buildroot and OE cache the same
# ones).  A recipe overrides one with ``env: {ac_cv_...: "no"}``: configure
# takes cache variables from the environment before it reads config.site's
# defaults (they are written as ${var=value}).
CONFIG_SITE_VALUES = {
    "ac_cv_func_malloc_0_nonnull": "yes",
    "ac_cv_func_realloc_0_nonnull": "yes",
    "ac_cv_func_calloc_0_nonnull": "yes",
    "ac_cv_func_mmap_fixed_mapped": "yes",
    "ac_cv_func_memcmp_working": "yes",
    "ac_cv_func_strnlen_working": "yes",
    "ac_cv_func_working_mktime": "yes",
    "ac_cv_func_fork_works": "yes",
    "ac_cv_func_vfork_works": "yes",
    "ac_cv_func_setpgrp_void": "yes",
    "ac_cv_func_getpgrp_void": "yes",
    "ac_cv_func_closedir_void": "no",
    "ac_cv_func_stat_empty_string_bug": "no",
    "ac_cv_func_lstat_empty_string_bug": "no",
    "ac_cv_func_lstat_dereferences_slashed_symlink": "yes",
    "ac_cv_func_getgroups_works": "yes",
    "ac_cv_func_chown_works": "yes",
    "ac_cv_func_strcoll_works": "yes",
    "ac_cv_func_posix_getpwuid_r": "yes",
    "ac_cv_func_posix_getgrgid_r": "yes",
    "ac_cv_file__dev_zero": "yes",
    "ac_cv_file__dev_random": "yes",
    "ac_cv_file__dev_urandom": "yes",
    "ac_cv_file__dev_ptmx": "yes",
    "ac_cv_file__dev_ptc": "no",
    "ac_cv_have_decl_sys_siglist": "no",
}

# The sandbox's own dirs: a package naming one of them at run time is broken.
SANDBOX_PATH = re.compile(rb"/build/(?:src|obj|dest|home|files|stage|sysroot|native|scripts)(?![\w.-])")
# Compiler/linker flags naming a sandbox dir, as configure scripts copy them
# from CPPFLAGS/LDFLAGS into .pc files and *-config scripts.
SANDBOX_FLAG = re.compile(rb"[ \t]*(?:-(?:I|L|isystem[ \t]*)|-Wl,-rpath(?:-link)?[=,])"
                          rb"/build/(?:sysroot|native)[^\s'\"]*")

STRIP_SCRIPT = r"""# Strip ELF programs and shared libraries; static archives, objects and
# anything else keep their symbols.  e_type 2 (EXEC) or 3 (DYN), either byte order.
find "$DESTDIR" -type f ! -name '*.a' ! -name '*.o' ! -name '*.ko' -exec sh -c '
for f; do
  case "$(od -An -tx1 -N18 "$f" | tr -d " \n")" in
    7f454c46????????????????????????0[23]00|7f454c46????????????????????????000[23]) ;;
    *) continue ;;
  esac
  case "${f##*/}" in
    *.so|*.so.*) "$STRIP" --strip-unneeded "$f" ;;
    *) "$STRIP" --strip-all "$f" ;;
  esac
done' sh {} +
"""


def build_triplet() -> str:
    """The build machine's GNU triplet (Debian's spelling, as its gcc says)."""
    return f"{HOST_ARCH}-linux-gnu"


def target_triplet(board) -> str:
    """The board's GNU triplet: its cross prefix without the dash, or for a
    board built with the build machine's own compiler <arch>-linux-gnu."""
    prefix = board.cross_prefix or ""
    return prefix[:-1] if prefix.endswith("-") else f"{board.arch}-linux-gnu"


def args(values) -> str:
    # Joined, not quoted (as in class make): recipes may pass shell
    # expressions such as CC="$CC" or --with-foo="$SYSROOT"/usr.
    return " ".join(values or ())


def config_site(arch: str) -> str:
    values = dict(CONFIG_SITE_VALUES, ac_cv_c_bigendian="yes" if arch in BIG_ENDIAN else "no")
    lines = ["# Generated by buildsys (classes/crossbuild.py): results a cross configure cannot test.",
             "# ${var=value}: a value already in the environment wins."]
    lines += [f": ${{{k}={v}}}" for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


def _cmake_list(values) -> str:
    return ";".join(values)


def cmake_toolchain(board, cross_prefix: str) -> str:
    """A CMake toolchain file for the board: its compilers, and dependencies
    found in /build/sysroot only (programs on the build machine)."""
    roots = [SANDBOX_SYSROOT]
    if cross_prefix:
        # Debian's cross C library (libm, libpthread... for find_library)
        # lives in the environment's /usr/<triplet>.
        roots.append(f"/usr/{target_triplet(board)}")
    lines = [
        "# Generated by buildsys (classes/crossbuild.py) for board " + board.name,
        "set(CMAKE_SYSTEM_NAME Linux)",
        f"set(CMAKE_SYSTEM_PROCESSOR {board.arch})",
        f"set(CMAKE_C_COMPILER {cross_prefix}gcc)",
        f"set(CMAKE_CXX_COMPILER {cross_prefix}g++)",
        f"set(CMAKE_AR {cross_prefix}ar CACHE FILEPATH \"\")",
        f"set(CMAKE_RANLIB {cross_prefix}ranlib CACHE FILEPATH \"\")",
        f"set(CMAKE_STRIP {cross_prefix}strip CACHE FILEPATH \"\")",
        f"set(CMAKE_FIND_ROOT_PATH \"{_cmake_list(roots)}\")",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
        # Release without its -O3: optimization comes from CFLAGS, like
        # every other class's (and no -g: Release has none).
        "set(CMAKE_C_FLAGS_RELEASE \"-DNDEBUG\" CACHE STRING \"\")",
        "set(CMAKE_CXX_FLAGS_RELEASE \"-DNDEBUG\" CACHE STRING \"\")",
    ]
    return "\n".join(lines) + "\n"


def _meson_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _meson_array(values) -> str:
    return "[" + ", ".join(_meson_str(v) for v in values) + "]"


def _words(flags: str) -> list[str]:
    try:
        return shlex.split(flags)
    except ValueError as exc:
        raise UserError(f"CFLAGS or LDFLAGS are not shell words ({exc}): {flags}", None,
                        hint="check the quotes in the recipe's env or the board's tune") from None


def meson_cross(board, cross_prefix: str, cflags: str, ldflags: str) -> str:
    """A Meson cross file for the board.  Meson ignores CFLAGS/LDFLAGS of the
    environment for the host machine of a cross build, so they are written
    here as built-in options."""
    arch = board.arch
    pc_dirs = f"{SANDBOX_SYSROOT}/usr/lib/pkgconfig:{SANDBOX_SYSROOT}/usr/share/pkgconfig"
    lines = [
        "# Generated by buildsys (classes/crossbuild.py) for board " + board.name,
        "[binaries]",
        f"c = {_meson_str(cross_prefix + 'gcc')}",
        f"cpp = {_meson_str(cross_prefix + 'g++')}",
        f"ar = {_meson_str(cross_prefix + 'ar')}",
        f"strip = {_meson_str(cross_prefix + 'strip')}",
        # Meson 1.0 (the pinned environment's) spells the key 'pkgconfig'.
        "pkgconfig = 'pkg-config'",
        "",
        "[built-in options]",
        f"c_args = {_meson_array(_words(cflags))}",
        f"c_link_args = {_meson_array(_words(ldflags))}",
        f"cpp_args = {_meson_array(_words(cflags))}",
        f"cpp_link_args = {_meson_array(_words(ldflags))}",
        "",
        "[properties]",
        f"sys_root = {_meson_str(SANDBOX_SYSROOT)}",
        f"pkg_config_libdir = {_meson_str(pc_dirs)}",
        "",
        "[host_machine]",
        "system = 'linux'",
        f"cpu_family = {_meson_str(MESON_CPU_FAMILY.get(arch, arch))}",
        f"cpu = {_meson_str(arch)}",
        f"endian = {_meson_str('big' if arch in BIG_ENDIAN else 'little')}",
    ]
    return "\n".join(lines) + "\n"


def pkg_config_env(native: bool) -> dict[str, str]:
    # The native variant's dependencies are installed trees under
    # /build/native, their .pc files saying prefix=/usr as the target's do:
    # the same sysroot rewriting makes their -I/-L point there.
    root = SANDBOX_NATIVE if native else SANDBOX_SYSROOT
    return {"PKG_CONFIG_SYSROOT_DIR": root,
            "PKG_CONFIG_LIBDIR": f"{root}/usr/lib/pkgconfig:{root}/usr/share/pkgconfig",
            "PKG_CONFIG_PATH": ""}


def link_flags(ldflags: str, native: bool) -> str:
    """LDFLAGS plus the -rpath-link that lets ld find the libraries a
    dependency's shared library needs (libssl -> libcrypto)."""
    root = SANDBOX_NATIVE if native else SANDBOX_SYSROOT
    return f"{ldflags} -Wl,-rpath-link={root}/usr/lib:{root}/lib".strip()


def clean_sandbox_flags(data: bytes) -> bytes:
    return SANDBOX_FLAG.sub(b"", data)


def _fixable(rel: str) -> bool:
    name = os.path.basename(rel)
    return name.endswith(".pc") or (name.endswith("-config") and "/bin/" in f"/{rel}")


def check_sandbox_paths(dest: Path, pn: str, log) -> None:
    """No text file of the installed tree may name a sandbox dir.  Flags in
    .pc files and *-config scripts are dropped (with a log line); anything
    else fails the build with the file and line."""
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = os.path.relpath(full, dest)
            data = read_beneath(dest, rel)
            if b"\0" in data or not SANDBOX_PATH.search(data):
                continue        # binaries may carry /build/src in strings (__FILE__): not run-time paths
            if _fixable(rel):
                fixed = clean_sandbox_flags(data)
                if fixed != data:
                    write_beneath(dest, rel, fixed, stat.S_IMODE(st.st_mode))
                    log(f"{rel}: dropped compiler flags naming sandbox dirs (-I/-L/-rpath-link /build/...)")
                    data = fixed
            for number, line in enumerate(data.splitlines(), 1):
                if SANDBOX_PATH.search(line):
                    text = line.decode("utf-8", "replace").strip()
                    problems.append(f"{rel}:{number}: {text[:120]}")
    if problems:
        more = f" (and {len(problems) - 1} more, see the install log)" if len(problems) > 1 else ""
        for p in problems:
            log(f"sandbox path left in the package: {p}")
        raise BuildError(f"{pn}: the package names a build sandbox path at run time: {problems[0]}{more}; "
                         "fix the install (e.g. a post_install step with sed) or the configure arguments")


class CrossBuild(BuildClass):
    """Base of the autotools, cmake and meson classes (not a class a recipe names)."""

    params = {
        "strip": Bool(True, "strip ELF programs (--strip-all) and shared libraries (--strip-unneeded) "
                            "in the package with $STRIP"),
    }

    # --- what the subclasses fill in ----------------------------------------
    def generated_files(self, ctx) -> dict[str, str]:
        """name -> text of the files the class writes into the stage dir."""
        return {}

    def extra_env(self, ctx) -> dict[str, str]:
        return {}

    # --- shared -------------------------------------------------------------
    @staticmethod
    def native(ctx) -> bool:
        return ctx.recipe.variant == "native"

    def flags(self, ctx) -> tuple[str, str]:
        """(CFLAGS with CPPFLAGS, LDFLAGS with -rpath-link) of this task."""
        env = ctx.env
        cflags = f"{env.get('CFLAGS', '')} {env.get('CPPFLAGS', '')}".strip()
        return cflags, link_flags(env.get("LDFLAGS", ""), self.native(ctx))

    def task_env(self, ctx) -> dict[str, str]:
        stage = Path(ctx.paths.stage)
        for name, text in self.generated_files(ctx).items():
            # The stage dir is the host's (read-only in the sandbox): a plain
            # atomic write cannot meet a link a step planted.
            stage.mkdir(parents=True, exist_ok=True)
            atomic_write(stage / name, text)
        env = pkg_config_env(self.native(ctx))
        env["LDFLAGS"] = self.flags(ctx)[1]
        env.update(self.extra_env(ctx))
        return env

    def step_cwd(self, ctx) -> str:
        return SANDBOX_OBJ

    def finish(self, task, ctx) -> None:
        if task != "install":
            return
        lines = ["# libtool archives name the sandbox's dirs and are not needed with pkg-config",
                 f"find {SANDBOX_DEST} -name '*.la' \\( -type f -o -type l \\) -print -delete"]
        if ctx.recipe.get("strip", True):
            lines.append(STRIP_SCRIPT)
        ctx.sh("\n".join(lines), env=self.task_env(ctx), cwd=SANDBOX_DEST)
        check_sandbox_paths(Path(ctx.paths.dest), ctx.recipe.pn, ctx.log)


def stage_path(name: str) -> str:
    return f"{SANDBOX_STAGE}/{name}"

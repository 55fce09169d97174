"""``class: kernel`` -- a Linux kernel, configured from a base target plus fragments.

Why ``allnoconfig`` with KCONFIG_ALLCONFIG rather than tinyconfig + olddefconfig:
merging fragments and running olddefconfig turns on everything the fragments
make visible (VT, input, ACPI fan/battery...); allnoconfig with the fragments
as "all config" keeps every other symbol off.  Kconfig still drops a symbol
whose dependencies are off without a word, so after configuring, every
fragment line must be in the final .config or the task fails (or warns, as
the fragment asks), naming the unmet dependency (buildsys.kconfigcheck).

Builds out of tree (O=/build/obj) so the source tree stays clean, and installs
the boot image, its .config and the dtbs into /build/dest/boot/.

Interface assumptions (StepContext, see classes/base.py):
  * ctx.recipe.get("config_fragments") is a list of FileRef (``.path``), as for
    the kconfig class; ctx.stage_file() copies them into /build/files.
  * ctx.paths.obj is the host path of /build/obj (.config is read back from
    there without following links: the step could have planted one).
  * ctx.env carries ARCH, CROSS_COMPILE and SOURCE_DATE_EPOCH.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from .base import SANDBOX_DEST, SANDBOX_OBJ, SANDBOX_SRC, BuildClass, Files, Str, StrList
from .kconfig import check_fragments, read_config

ALLCONFIG = f"{SANDBOX_OBJ}/buildsys-allconfig.cfg"

# Reproducible kernel builds: the kernel embeds user, host, date and a build
# counter in its version string unless these are fixed.  Derived from
# SOURCE_DATE_EPOCH inside the sandbox (TZ=UTC, LC_ALL=C there).
_REPRO_ENV = """\
export KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %e %H:%M:%S UTC %Y')"
export KBUILD_BUILD_USER=buildsys KBUILD_BUILD_HOST=buildsys KBUILD_BUILD_VERSION=1
# The sandbox exports CC/CFLAGS/LDFLAGS for userland; the kernel picks its own.
unset CC CXX LD AR NM OBJCOPY STRIP RANLIB CFLAGS CPPFLAGS LDFLAGS
"""


def _make(recipe) -> str:
    args = " ".join(shlex.quote(a) for a in recipe.get("make_args", []))
    return (f'make -C {SANDBOX_SRC} O={SANDBOX_OBJ} ARCH="$ARCH" CROSS_COMPILE="$CROSS_COMPILE" {args}').rstrip()


class Kernel(BuildClass):
    name = "kernel"
    params = {
        "base": Str("allnoconfig", "the all*config target the fragments apply to"),
        "tree_fragments": StrList(["kernel/configs/tiny-base.config", "kernel/configs/tiny.config",
                                   "arch/${ARCH}/configs/tiny.config"],
                                  "config files inside the source tree put before the fragments (missing ones "
                                  "are skipped; not checked, they hold symbols of other arches)"),
        "config_fragments": Files([], "fragments; every line must survive into .config"),
        "kernel_image": Str("bzImage", "make target and file name under arch/$ARCH/boot/"),
        "dtbs": StrList([], "device trees to build, relative to arch/$ARCH/boot/dts/"),
        "make_args": StrList([], "extra arguments of every make call"),
    }

    def configure_script(self, ctx, staged: list[str]) -> str:
        r = ctx.recipe
        lines = [_REPRO_ENV.rstrip(), f": > {ALLCONFIG}"]
        for rel in r.get("tree_fragments", []):
            src = f"{SANDBOX_SRC}/{rel}"
            lines.append(f'if [ -f "{src}" ]; then cat "{src}" >> {ALLCONFIG}; fi')
        for path in staged:
            lines.append(f"cat {path} >> {ALLCONFIG}")
        lines.append(f"{_make(r)} KCONFIG_ALLCONFIG={ALLCONFIG} {shlex.quote(r.get('base', 'allnoconfig'))}")
        return "\n".join(lines)

    def script(self, task, ctx):
        r = ctx.recipe
        image = r.get("kernel_image", "bzImage")
        dtbs = r.get("dtbs", [])
        if task == "compile":
            targets = " ".join([shlex.quote(image)] + [shlex.quote(d) for d in dtbs])
            return f'{_REPRO_ENV}{_make(r)} -j"$JOBS" {targets}'
        if task == "install":
            lines = [f"install -D -m 0644 {SANDBOX_OBJ}/arch/$ARCH/boot/{shlex.quote(image)} "
                     f"{SANDBOX_DEST}/boot/{shlex.quote(image)}",
                     f"install -D -m 0644 {SANDBOX_OBJ}/.config {SANDBOX_DEST}/boot/config"]
            for dtb in dtbs:
                lines.append(f"install -D -m 0644 {SANDBOX_OBJ}/arch/$ARCH/boot/dts/{shlex.quote(dtb)} "
                             f"{SANDBOX_DEST}/boot/{shlex.quote(Path(dtb).name)}")
            return "\n".join(lines)
        return None

    def run(self, task, ctx):
        steps = ctx.recipe.get("steps") or {}
        if task != "configure" or "configure" in steps:
            return super().run(task, ctx)
        frags = list(ctx.recipe.get("config_fragments", []))
        staged = [ctx.stage_file(f.path, f"fragment-{i}-{Path(f.path).name}") for i, f in enumerate(frags)]
        ctx.sh(self.configure_script(ctx, staged), cwd=SANDBOX_OBJ)
        config = read_config(Path(ctx.paths.obj), ".config", ctx.recipe.pn)
        check_fragments(ctx, config, frags)

"""``class: autotools`` -- a GNU autoconf/automake package (./configure && make && make install).

Configure runs in /build/obj ($B, out of tree) unless ``out_of_tree: false``.
Target builds get ``--host=<board triplet> --build=<build triplet>`` and
CONFIG_SITE, a generated config.site with the results configure cannot find
out by running a test program on the build machine (crossbuild.py); native
builds get neither.  Both: ``--prefix=/usr --sysconfdir=/etc
--localstatedir=/var --disable-dependency-tracking``; static/shared, NLS and
the like are the recipe's ``conf_args``.  After install, see crossbuild.py
(.la removed, stripped, no sandbox paths).
"""
from __future__ import annotations

import shutil

from ..errors import UserError
from .base import SANDBOX_DEST, SANDBOX_OBJ, SANDBOX_SRC, Bool, StrList
from .crossbuild import CrossBuild, args, build_triplet, config_site, stage_path, target_triplet

# What `autoreconf -fi` runs; the build environment must ship all of them.
AUTORECONF_PACKAGES = ("autoconf", "automake", "libtool")


class Autotools(CrossBuild):
    name = "autotools"
    params = {
        "conf_args": StrList([], "extra ./configure arguments"),
        "make_args": StrList([], "arguments for every make call"),
        "make_targets": StrList([], "targets of the compile step (default: make's first, all)"),
        "install_args": StrList([], "extra arguments of the install step"),
        "install_targets": StrList(["install"], "targets of the install step"),
        "autoreconf": Bool(False, "run `autoreconf -fi` in the source tree before configure (needs autoconf, "
                                  "automake and libtool in the build environment)"),
        "out_of_tree": Bool(True, "configure and build in /build/obj ($B); false: in the source tree"),
        **CrossBuild.params,
    }

    def signature_extra(self, recipe, board, env=None):
        if recipe.get("autoreconf"):
            self._check_autoreconf(recipe, env)
        return {}

    @staticmethod
    def _check_autoreconf(recipe, env) -> None:
        if env is not None:
            missing = [p for p in AUTORECONF_PACKAGES if env.lock.package(p) is None]
            hint = (f"add {', '.join(missing)} to buildenv.yaml's packages and run 'buildsys lock update', "
                    "or ship a generated configure (autoreconf: false)")
        else:
            missing = [p for p, tool in zip(AUTORECONF_PACKAGES, ("autoconf", "automake", "libtoolize"), strict=True)
                       if shutil.which(tool, path="/usr/bin:/bin") is None]
            hint = f"install {', '.join(missing)} on this host, or ship a generated configure (autoreconf: false)"
        if missing:
            raise UserError(f"autoreconf: true needs {', '.join(missing)}, which the build environment does not have",
                            recipe.where("autoreconf"), hint=hint)

    def generated_files(self, ctx):
        return {} if self.native(ctx) else {"config.site": config_site(ctx.board.arch)}

    def extra_env(self, ctx):
        return {} if self.native(ctx) else {"CONFIG_SITE": stage_path("config.site")}

    def step_cwd(self, ctx) -> str:
        return SANDBOX_OBJ if ctx.recipe.get("out_of_tree", True) else SANDBOX_SRC

    def configure_args(self, ctx) -> list[str]:
        out = ["--prefix=/usr", "--sysconfdir=/etc", "--localstatedir=/var", "--disable-dependency-tracking"]
        if not self.native(ctx):
            out[:0] = [f"--host={target_triplet(ctx.board)}", f"--build={build_triplet()}"]
        return out

    def script(self, task, ctx):
        r = ctx.recipe
        if task == "configure":
            lines = []
            if r.get("autoreconf"):
                lines.append(f'(cd {SANDBOX_SRC} && autoreconf -fi)')
            lines.append(f'{SANDBOX_SRC}/configure {" ".join(self.configure_args(ctx))} {args(r.get("conf_args"))}')
            return "\n".join(lines)
        if task == "compile":
            return f'make -j"$JOBS" {args(r.get("make_args"))} {args(r.get("make_targets"))}'
        if task == "install":
            return (f'make {args(r.get("make_args"))} {args(r.get("install_args"))} '
                    f'DESTDIR={SANDBOX_DEST} {args(r.get("install_targets"))}')
        return None

"""``class: make`` -- a Makefile-driven package (Buildroot's generic-package)."""
from __future__ import annotations

from .base import SANDBOX_DEST, BuildClass, StrList


def _args(values) -> str:
    # Joined, not quoted: recipes may pass shell expressions such as CC="$CC".
    return " ".join(values or ())


class Make(BuildClass):
    name = "make"
    params = {
        "make_args": StrList([], "arguments for every make call"),
        "make_targets": StrList([], "targets of the compile step"),
        "install_args": StrList([], "extra arguments of the install step"),
        "install_targets": StrList(["install"], "targets of the install step"),
    }

    def script(self, task, ctx):
        r = ctx.recipe
        if task == "compile":
            return f'make -j"$JOBS" {_args(r.get("make_args"))} {_args(r.get("make_targets"))}'
        if task == "install":
            return (f'make {_args(r.get("make_args"))} {_args(r.get("install_args"))} '
                    f'DESTDIR={SANDBOX_DEST} {_args(r.get("install_targets"))}')
        return None

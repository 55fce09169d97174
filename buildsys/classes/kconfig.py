"""``class: kconfig`` -- a make package configured through Kconfig (busybox, U-Boot...).

The configuration is a full config file or a defconfig target, plus fragments;
after the merge every fragment line must survive in the final .config, because
Kconfig silently drops a symbol whose dependencies are off.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import BuildError
from ..fileio import read_text_beneath
from .base import File, Files, Str
from .make import Make, _args


def read_config(root: Path, rel: str, recipe_name: str) -> str:
    """A .config a step wrote, read without following a link it may have planted."""
    try:
        return read_text_beneath(root, rel)
    except FileNotFoundError:
        raise BuildError(f"{recipe_name}: the configure step wrote no {rel}") from None


def check_fragments(ctx, config_text: str, fragments) -> None:
    """Every fragment line must be in the final .config: Kconfig drops a symbol
    whose dependencies are off without a word.  kconfigcheck compares, explains
    each dropped symbol from the source tree's Kconfig files, and fails the
    step or warns, as the fragment asks.  It only checks, so it is not hashed
    into the class version (signature.py): its report can improve without
    rebuilding every kernel."""
    from .. import kconfigcheck

    kconfigcheck.enforce(ctx, config_text, fragments)


class Kconfig(Make):
    name = "kconfig"
    params = dict(Make.params)
    params.update({
        "config": File(None, "a full .config"),
        "defconfig": Str(None, "a make target writing .config, e.g. defconfig"),
        "config_fragments": Files([], "fragments merged on top"),
        "olddefconfig": Str("olddefconfig", "the make target that fills in defaults"),
    })

    def run(self, task, ctx):
        steps = ctx.recipe.get("steps") or {}
        if task != "configure" or "configure" in steps:
            return super().run(task, ctx)
        r = ctx.recipe
        lines = []
        if r.get("config"):
            lines.append(f"cp {ctx.stage_file(r.get('config').path, 'defconfig')} .config")
        elif r.get("defconfig"):
            lines.append(f"make {_args(r.get('make_args'))} {r.get('defconfig')}")
        else:
            lines.append("touch .config")
        for i, frag in enumerate(r.get("config_fragments", [])):
            lines.append(f"cat {ctx.stage_file(frag.path, f'fragment-{i}.cfg')} >> .config")
        lines.append(f"yes '' | make {_args(r.get('make_args'))} {r.get('olddefconfig')} >/dev/null")
        ctx.sh("\n".join(lines))
        check_fragments(ctx, read_config(Path(ctx.paths.src), ".config", r.pn), r.get("config_fragments", []))

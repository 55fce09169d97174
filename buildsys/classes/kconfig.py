"""``class: kconfig`` -- a make package configured through Kconfig (busybox, U-Boot...).

The configuration is a full config file or a defconfig target, plus fragments;
after the merge every fragment line must survive in the final .config, because
Kconfig silently drops a symbol whose dependencies are off.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import BuildError
from .base import SANDBOX_SRC, Param
from .make import Make, _args


def fragment_lines(paths) -> dict[str, str]:
    """symbol -> wanted line, from fragment files (later files win)."""
    wanted: dict[str, str] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                wanted[line.split("=", 1)[0]] = line
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                wanted[line[2:].split()[0]] = line
    return wanted


def check_fragments(config: Path, fragments, recipe_name: str) -> None:
    have: dict[str, str] = {}
    for line in config.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            have[line.split("=", 1)[0]] = line
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            have[line[2:].split()[0]] = line
    missing = []
    for symbol, line in fragment_lines(fragments).items():
        got = have.get(symbol, f"# {symbol} is not set")
        if got != line and not (line.endswith(" is not set") and symbol not in have):
            missing.append(f"{line} (got: {got})")
    if missing:
        raise BuildError(f"{recipe_name}: {len(missing)} config fragment line(s) did not survive into .config "
                         "(a dependency is probably off):\n  " + "\n  ".join(missing))


class Kconfig(Make):
    name = "kconfig"
    params = dict(Make.params)
    params.update({
        "config": Param("file", None, "a full .config"),
        "defconfig": Param("str", None, "a make target writing .config, e.g. defconfig"),
        "config_fragments": Param("files", [], "fragments merged on top"),
        "olddefconfig": Param("str", "olddefconfig", "the make target that fills in defaults"),
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
        check_fragments(Path(ctx.paths.src) / ".config", [f.path for f in r.get("config_fragments", [])], r.pn)

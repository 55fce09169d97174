"""`buildsys menuconfig`: a Kconfig recipe's menuconfig in its work dir's sandbox."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .. import kconfiglines
from ..errors import UserError, Where
from ..fileio import read_text_beneath
from ..workspace import Workspace
from .base import Command, board_option


class Menuconfig(Command):
    name = "menuconfig"
    help = "run a Kconfig recipe's menuconfig in its work dir; optionally save the changes as a fragment"

    def setup(self, parser):
        parser.add_argument("recipe", nargs="?", default="linux")
        board_option(parser)
        parser.add_argument("--save-fragment", metavar="FILE", help="write the changed symbols to FILE")

    def run(self, args):
        from ..build import Session

        ws = Workspace(args)
        recipe = ws.targets([args.recipe])[0]
        session = Session(ws.project, ws.board, ws.resolver, ws.paths, os.cpu_count() or 1, ws.fetch_config())
        session.plan([recipe])
        paths = session.recipe_paths(recipe)
        config = next((p for p in (paths.obj / ".config", paths.src / ".config") if p.is_file()), None)
        if config is None:
            raise UserError(f"{recipe.pn} has not been configured in {paths.work}", Where("command line"),
                            hint=f"run `buildsys build {recipe.pn}` first")
        # The .config is a step's output: read it without following a planted link.
        before = read_text_beneath(config.parent, ".config")
        argv = menuconfig_argv(session, recipe, out_of_tree=config.parent == paths.obj)
        if subprocess.run(argv).returncode != 0:
            return 1
        changed = config_diff(before, read_text_beneath(config.parent, ".config"))
        print(f"{len(changed)} symbol(s) changed in {config}", file=sys.stderr)
        if args.save_fragment:
            Path(args.save_fragment).write_text("".join(line + "\n" for line in changed))
            print(f"fragment written to {args.save_fragment}; add it to config_fragments", file=sys.stderr)
        return 0


def menuconfig_argv(session, recipe, out_of_tree: bool) -> list[str]:
    """The bwrap command line running ``make menuconfig`` in the recipe's
    sandbox: the mounts and environment its build steps get, plus $TERM."""
    from ..classes.base import SANDBOX_SRC

    paths = session.recipe_paths(recipe)
    paths.logs.mkdir(parents=True, exist_ok=True)
    session.prepare_environment()       # the pinned /usr the configure step ran against
    ctx = session.step_context(recipe, "menuconfig", paths.logs / "menuconfig.log")
    command = ["make", f"ARCH={ctx.env['ARCH']}", *(["O=/build/obj"] if out_of_tree else []), "menuconfig"]
    return ctx.sandbox_argv(command, {"TERM": os.environ.get("TERM", "xterm")}, SANDBOX_SRC)


def config_diff(before: str, after: str) -> list[str]:
    """The lines of ``after`` (a .config) that set a symbol differently from ``before``."""
    old, new = kconfiglines.symbols(before), kconfiglines.symbols(after)
    return [new[k] for k in sorted(new) if old.get(k) != new[k]]

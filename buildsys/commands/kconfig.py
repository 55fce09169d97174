"""`buildsys kconfig check [RECIPE]`: the fragment report of a Kconfig recipe
(the kernel, busybox), without building it.

The recipe's dependencies are built or restored and its own tasks run up to
configure (one engine.build with ``stop_after="configure"``, as devshell
does), with the configure step's fragment check only logging; then every
fragment line is compared with the final .config and each dropped one is
explained from the tree's Kconfig files (kconfigcheck.py).  Exit 0 when
nothing that must survive was dropped, 1 when something was (the configure
step then failed too, with one line, so a later build configures again).
"""
from __future__ import annotations

import sys

from ..errors import UserError, Where
from .base import Command, board_option, build_options, jobs

KCONFIG_CLASSES = ("kernel", "kconfig")


class KconfigCommand(Command):
    name = "kconfig"
    help = "check a Kconfig recipe's fragments against its configured .config (kconfig check [RECIPE])"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="kconfig_command", metavar="ACTION", required=True)
        check = sub.add_parser("check", help="configure RECIPE (default: linux) and report every fragment line "
                                             "Kconfig dropped, with the unmet dependency; nothing is compiled")
        check.add_argument("recipe", nargs="?", default="linux", help="a recipe of class kernel or kconfig")
        board_option(check)
        build_options(check)

    def run(self, args):
        from .. import engine, kconfigcheck
        from ..fileio import read_text_beneath
        from ..workspace import Workspace

        ws = Workspace(args)
        recipe = ws.targets([args.recipe])[0]
        klass = recipe.get("class")
        if klass not in KCONFIG_CLASSES:
            raise UserError(f"{recipe.pn} is of class {klass}, not a Kconfig recipe", Where("command line"),
                            hint=f"name a recipe of class {' or '.join(KCONFIG_CLASSES)}, e.g. linux or busybox")
        options = engine.BuildOptions(jobs=jobs(args), offline=args.offline, stop_after="configure")
        with kconfigcheck.report_only():
            result = engine.build(ws, [args.recipe], options)
        # A configure whose fragment lines were dropped fails (so that no
        # stamp says it succeeded) after writing .config: that is the case
        # to report on.
        configure_failed = result.failed == [f"{recipe.pn}:configure"]
        if result.session is None or not (result.ok or configure_failed):
            return result.status or 1
        paths = result.session.recipe_paths(recipe)
        root = paths.obj if klass == "kernel" else paths.src
        try:
            config = read_text_beneath(root, ".config")     # a step's output: no link is followed
        except (FileNotFoundError, OSError):
            print(f"error: {recipe.pn}: configure wrote no .config in {root}", file=sys.stderr)
            return 1
        fragments = list(recipe.get("config_fragments", []))
        dropped = kconfigcheck.compare(config, fragments)
        kconfigcheck.explain(dropped, config, paths.src, ws.board.kernel_arch)
        lines = sum(len(kconfigcheck.wanted_lines([f])) for f in fragments)
        where = f"{recipe.pn} ({ws.board.name})"
        if dropped:
            print(kconfigcheck.format_report(dropped))
        failing = [d for d in dropped if d.wanted.mode == "fail"]
        print(f"{where}: {len(fragments)} fragment(s), {lines} line(s): {len(dropped)} dropped by Kconfig "
              f"({len(failing)} that must survive); .config: {root / '.config'}")
        return 1 if failing else 0

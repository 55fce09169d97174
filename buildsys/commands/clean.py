"""`buildsys clean`: remove work dirs or build outputs."""
from __future__ import annotations

import shutil

from ..workspace import Workspace
from .base import Command, board_option


class Clean(Command):
    name = "clean"
    help = "remove a recipe's work dir (or the whole build dir but downloads and cache)"

    def setup(self, parser):
        parser.add_argument("recipe", nargs="?")
        board_option(parser)

    def run(self, args):
        ws = Workspace(args)
        build = ws.paths.build
        if args.recipe:
            removed = 0
            for work in sorted((build / "work").glob(f"*/{args.recipe}")):
                shutil.rmtree(work)
                removed += 1
            print(f"removed {removed} work dir(s) of {args.recipe}")
            return 0
        for name in ("work", "packages", "deploy", "sigdata"):
            shutil.rmtree(build / name, ignore_errors=True)
        print(f"cleaned {build} (kept downloads and cache)")
        return 0

"""`buildsys build`: build targets through the engine."""
from __future__ import annotations

from .. import engine
from ..workspace import Workspace
from .base import Command, board_option, build_options, jobs


class Build(Command):
    name = "build"
    help = "build targets (default: the board's default image)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        build_options(parser)
        parser.add_argument("-k", "--keep-going", action="store_true",
                            help="build all that does not depend on a failure")
        parser.add_argument("--force", action="append", default=[], metavar="RECIPE",
                            help="rebuild RECIPE even if cached")

    def run(self, args):
        options = engine.BuildOptions(jobs=jobs(args), keep_going=args.keep_going, offline=args.offline,
                                      force=frozenset(args.force))
        return engine.build(Workspace(args), args.target, options).status

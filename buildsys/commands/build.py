"""`buildsys build`: build targets through the engine."""
from __future__ import annotations

from .. import engine
from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option


class Build(Command):
    name = "build"
    help = "build targets (default: the board's default image)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        parser.add_argument("-j", "--jobs", type=int, default=0, help="parallel tasks (default: cores)")
        parser.add_argument("-k", "--keep-going", action="store_true",
                            help="build all that does not depend on a failure")
        parser.add_argument("--offline", action="store_true", help="no network: sources must be in the download dir")
        parser.add_argument("--force", action="append", default=[], metavar="RECIPE",
                            help="rebuild RECIPE even if cached")

    def run(self, args):
        if args.jobs < 0:
            raise UserError(f"-j {args.jobs}: the number of parallel tasks cannot be negative", Where("command line"),
                            hint="0 means one per core")
        options = engine.BuildOptions(jobs=args.jobs, keep_going=args.keep_going, offline=args.offline,
                                      force=frozenset(args.force))
        return engine.build(Workspace(args), args.target, options).status

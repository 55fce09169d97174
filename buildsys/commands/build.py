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
        parser.add_argument("--no-push", action="store_true",
                            help="do not push what this build makes to the shared cache")
        parser.add_argument("--cluster", metavar="tcp://HOST:PORT",
                            help="build on the workers of this Dask scheduler (default: the cluster setting)")
        parser.add_argument("--no-cluster", action="store_true", help="build here even if a cluster is set")

    def run(self, args):
        ws = Workspace(args)
        cluster = None if args.no_cluster else (args.cluster or ws.project.settings.get("cluster"))
        options = engine.BuildOptions(jobs=jobs(args), keep_going=args.keep_going, offline=args.offline,
                                      force=frozenset(args.force), push=False if args.no_push else None,
                                      cluster=cluster)
        return engine.build(ws, args.target, options).status

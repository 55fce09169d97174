"""`buildsys fetch`: download every source a target needs."""
from __future__ import annotations

from ..workspace import Workspace
from .base import Command, board_option


class Fetch(Command):
    name = "fetch"
    help = "download every source a target needs (for building offline later)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        parser.add_argument("--offline", action="store_true", help="only check the download dir")

    def run(self, args):
        from ..executor import sources_of
        from ..fetch import fetch_many
        from ..graph import recipe_graph

        ws = Workspace(args)
        rgraph = recipe_graph(ws.resolver, ws.targets(args.target))
        sources = []
        for pn in sorted(rgraph.nodes):
            sources += sources_of(rgraph.nodes[pn]["recipe"])
        from .. import buildenv

        env = buildenv.for_project(ws.project)
        config = ws.fetch_config(args.offline)
        if env is not None:
            sources += env.sources(config)       # the build environment's .debs
        fetch_many(sources, config)
        remote = [s for s in sources if not s.url.startswith("file:")]
        print(f"{len(remote)} remote source(s) and {len(sources) - len(remote)} layer file(s) in place; "
              f"download dir: {ws.paths.dl}")
        return 0

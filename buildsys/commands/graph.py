"""`buildsys graph`: the task graph as dot, json or png."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option


class Graph(Command):
    name = "graph"
    help = "print the task graph (dot, json or png)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        parser.add_argument("--format", choices=("dot", "json", "png"), default="dot")
        parser.add_argument("-o", "--output", help="output file (png needs one)")

    def run(self, args):
        from ..graph import recipe_graph, task_graph, to_dot, to_json

        ws = Workspace(args)
        graph = task_graph(recipe_graph(ws.resolver, ws.targets(args.target)))
        if args.format == "json":
            text = to_json(graph)
        else:
            text = to_dot(graph)
        if args.format == "png":
            if not args.output:
                raise UserError("--format png needs -o FILE", Where("command line"))
            dot = shutil.which("dot")
            if dot is None:
                raise UserError("graphviz's 'dot' is not installed", Where("command line"),
                                hint="apt-get install graphviz")
            subprocess.run([dot, "-Tpng", "-o", args.output], input=text.encode(), check=True)
            return 0
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
        return 0

"""`buildsys diff A B`: what changed between two deployed images."""
from __future__ import annotations

import json

from .base import Command


class Diff(Command):
    name = "diff"
    help = ("compare two deployed images (deploy dirs or manifest.json): recipes, root filesystem files, "
            "kernel config symbols, deployed files")

    def setup(self, parser):
        parser.add_argument("a", metavar="A", help="deploy dir or manifest.json (the old one)")
        parser.add_argument("b", metavar="B", help="deploy dir or manifest.json (the new one)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--exit-code", action="store_true", help="exit 1 when the images differ")

    def run(self, args):
        from .. import imagediff

        result = imagediff.diff(args.a, args.b)
        if args.json:
            print(json.dumps(result, indent=1, sort_keys=True))
        else:
            print(imagediff.render_text(result), end="")
        return 1 if args.exit_code and imagediff.has_changes(result) else 0

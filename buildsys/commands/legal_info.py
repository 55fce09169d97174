"""`buildsys legal-info`: the license manifest, license texts and the
sources of the GPL/LGPL packages of an image (Buildroot's make legal-info).
Nothing is built: the recipes are planned and their sources fetched."""
from __future__ import annotations

from pathlib import Path

from ..workspace import Workspace
from .base import Command, board_option


class LegalInfo(Command):
    name = "legal-info"
    help = "write an image's license manifest, license texts and the sources of its GPL/LGPL packages"

    def setup(self, parser):
        parser.add_argument("image", nargs="?", help="image recipe (default: the board's default image)")
        board_option(parser)
        parser.add_argument("-o", "--output", metavar="DIR",
                            help="output directory (default: <build>/legal-info/<board>/)")
        parser.add_argument("--offline", action="store_true", help="no network: sources must be in the download dir")

    def run(self, args):
        from ..build import Session
        from ..legal import default_dir, legal_info, report
        from .size import image_target

        ws = Workspace(args)
        recipe = image_target(ws, args.image)
        session = Session(ws.project, ws.board, ws.resolver, ws.paths, 1, ws.fetch_config(args.offline))
        session.plan([recipe])
        out = Path(args.output).absolute() if args.output else default_dir(session)
        report(legal_info(session, recipe, out), out)
        return 0

"""`buildsys size`: what each package adds to an image, the largest files,
the kernel, and a chart (SVG, or PNG through graphviz)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option


def image_target(ws: Workspace, image: str | None):
    """The image recipe named on the command line (default: the board's)."""
    recipe = ws.targets([image] if image else [])[0]
    if not getattr(ws.resolver.build_class(recipe), "installs_packages", False):
        raise UserError(f"'{recipe.name}' is not an image (class {recipe.class_name})", Where("command line"),
                        hint="name an image recipe, e.g. image-minimal")
    return recipe


def built_image_session(ws: Workspace, image: str | None):
    """Build the image if needed (a no-op when up to date); (status, session, recipe)."""
    from .. import engine
    from ..build import Session

    recipe = image_target(ws, image)
    result = engine.build(ws, [recipe.pn], engine.BuildOptions())
    if not result.ok:
        return result.status, None, recipe
    session = result.session
    if session is None:         # the plan cache answered: plan again (nothing runs) for the trees
        session = Session(ws.project, ws.board, ws.resolver, ws.paths, 1, ws.fetch_config())
        session.plan([recipe])
    return 0, session, recipe


class Size(Command):
    name = "size"
    help = "what each package adds to an image, the largest files, the kernel (--svg/--png: a chart)"

    def setup(self, parser):
        parser.add_argument("image", nargs="?", help="image recipe (default: the board's default image)")
        board_option(parser)
        charts = parser.add_mutually_exclusive_group()
        charts.add_argument("--svg", metavar="FILE", help="write a bar chart as SVG")
        charts.add_argument("--png", metavar="FILE", help="write a bar chart as PNG (needs graphviz's dot)")
        parser.add_argument("--largest", type=int, default=10, metavar="N", help="list the N largest files (10)")

    def run(self, args):
        from ..fileio import atomic_write
        from ..size import dot, session_report, svg, text

        ws = Workspace(args)
        if args.png and shutil.which("dot") is None:
            raise UserError("--png needs graphviz's 'dot'", Where("command line"), hint="apt-get install graphviz")
        status, session, recipe = built_image_session(ws, args.image)
        if session is None:
            return status
        report = session_report(session, recipe, ws.paths.deploy / ws.board.name)
        sys.stdout.write(text(report, args.largest))
        if args.svg:
            atomic_write(Path(args.svg), svg(report))
            print(f"wrote {args.svg}", file=sys.stderr)
        if args.png:
            png = subprocess.run(["dot", "-Tpng"], input=dot(report).encode(), capture_output=True, check=False)
            if png.returncode != 0:
                raise UserError(f"dot failed: {png.stderr.decode(errors='replace').strip()}", Where("--png"))
            atomic_write(Path(args.png), png.stdout)
            print(f"wrote {args.png}", file=sys.stderr)
        return 0

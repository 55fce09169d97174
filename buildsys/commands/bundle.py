"""`buildsys bundle [IMAGE]`: build an A/B image, then write its signed update
bundle (bundle.py) from the deploy outputs, for the device's `update install`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option, build_options, jobs

ENV_KEY = "BUILDSYS_UPDATE_SIGNING_KEY"
KEY_HINT = "make one with `buildsys key new NAME --kind update`, then set update_signing_key in local.yaml " \
           "or pass --key FILE"


def signing_key(ws: Workspace, arg: Path | None):
    """--key, else BUILDSYS_UPDATE_SIGNING_KEY, else local.yaml's update_signing_key."""
    from .. import minisign

    if arg is not None:
        return minisign.load_secret(arg.absolute(), Where("--key"))
    if ws.environ.get(ENV_KEY):
        return minisign.load_secret(Path(ws.environ[ENV_KEY]).expanduser().absolute(), Where(ENV_KEY))
    value = ws.project.settings.get("update_signing_key")
    where = ws.project.settings_where.get("update_signing_key")
    if not value:
        raise UserError("no key to sign the bundle with", Where("command line"), hint=KEY_HINT)
    if where is not None and not where.path.endswith("local.yaml"):
        raise UserError("update_signing_key belongs in local.yaml (it names this machine's secret key)", where,
                        hint=f"move it to local.yaml, or set {ENV_KEY}")
    path = Path(os.path.expanduser(str(value)))
    return minisign.load_secret(path if path.is_absolute() else ws.project.root / path,
                                where or Where("update_signing_key"))


class Bundle(Command):
    name = "bundle"
    help = "write the signed update bundle of an A/B image (ab_slots), building it first"

    def setup(self, parser):
        parser.add_argument("image", nargs="?", help="image recipe with ab_slots (default: the board's default image)")
        board_option(parser)
        build_options(parser)
        parser.add_argument("--key", type=Path, metavar="FILE",
                            help=f"minisign secret key (default: {ENV_KEY}, else update_signing_key in local.yaml)")
        parser.add_argument("-o", "--output", type=Path, metavar="OUT",
                            help="the bundle file (default: <deploy dir>/<image>-<board>.bundle)")

    def run(self, args):
        from .. import bundle, engine, minisign
        from .size import image_target

        ws = Workspace(args)
        recipe = image_target(ws, args.image)
        if not recipe.get("ab_slots"):
            raise UserError(f"'{recipe.name}' has no A/B slots: a bundle holds the contents of a slot",
                            Where("command line"),
                            hint="name an image with ab_slots, e.g. image-base-ab")
        key = signing_key(ws, args.key)       # before building: a missing key fails at once
        trusted = minisign.project_keys(ws.project.root, ws.project.settings, ws.project.settings_where)
        result = engine.build(ws, [recipe.pn], engine.BuildOptions(jobs=jobs(args), offline=args.offline))
        if result.status != 0:
            return result.status
        inputs = bundle.Inputs(ws.paths.deploy / ws.board.name, f"{recipe.name}-{ws.board.name}")
        out = (args.output or inputs.path(".bundle")).absolute()
        if out.is_dir():
            raise UserError("is a directory", Where(str(out)), hint="-o names the bundle file")
        if not out.parent.is_dir():
            raise UserError("no such directory", Where(str(out.parent)))
        epoch = int(ws.project.settings.get("source_date_epoch") or 0)
        manifest = bundle.write(inputs, out, key, epoch)
        print(f"bundle {out}: {manifest['compatible']} version {manifest['version']}, signed by key "
              f"{minisign.key_id_hex(key.key_id)}", file=sys.stderr)
        for image in manifest["images"]:
            print(f"  {image['file']:<10} {image['size']:>12} bytes  sha256 {image['sha256'][:16]}", file=sys.stderr)
        if key.public() not in [k for _, k in trusted]:
            print(f"warning: key {minisign.key_id_hex(key.key_id)} is not in the project's update_keys: devices "
                  "built from this project will refuse this bundle", file=sys.stderr)
        return 0

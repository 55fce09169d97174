"""`buildsys reproduce`: rebuild a deployed image from nothing and check it is the same."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError, Where
from .base import Command


class Reproduce(Command):
    name = "reproduce"
    help = ("check the project is the one an image was built from, rebuild it from nothing (no artifact cache) "
            "and compare every recipe's output and deployed file; exit 0 reproduced, 1 differs")

    def setup(self, parser):
        parser.add_argument("manifest", metavar="DEPLOY_DIR|manifest.json",
                            help="an image's deploy dir (build/deploy/<board>) or its manifest.json")
        parser.add_argument("-j", "--jobs", type=int, default=0, help="parallel tasks (default: cores)")
        parser.add_argument("--offline", action="store_true", help="no network: sources must be in the download dir")
        parser.add_argument("--work-dir", metavar="DIR",
                            help="build dir of the rebuild, new or empty (default: a new temp dir)")
        parser.add_argument("--keep", action="store_true", help="keep the rebuild's build dir when it reproduced")

    def run(self, args):
        from .. import reproduce
        from ..workspace import Workspace

        if args.jobs < 0:
            raise UserError(f"-j {args.jobs}: the number of parallel tasks cannot be negative", Where("command line"),
                            hint="0 means one per core")
        path = reproduce.manifest_path(args.manifest)
        manifest = reproduce.load_manifest(path, need_format=2)
        ws = Workspace(argparse.Namespace(project=args.project, build_dir=args.build_dir, board=manifest["board"]))
        options = reproduce.Options(jobs=args.jobs, offline=args.offline, keep=args.keep,
                                    work_dir=Path(args.work_dir) if args.work_dir else None)
        return reproduce.reproduce(ws, path, manifest, options)

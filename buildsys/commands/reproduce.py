"""`buildsys reproduce`: rebuild a deployed image from nothing and check it is the same."""
from __future__ import annotations

import argparse
from pathlib import Path

from .base import Command, build_options, jobs


class Reproduce(Command):
    name = "reproduce"
    help = ("check the project is the one an image was built from, rebuild it from nothing (no artifact cache) "
            "and compare every recipe's output and deployed file; exit 0 reproduced, 1 differs")

    def setup(self, parser):
        parser.add_argument("manifest", metavar="DEPLOY_DIR|manifest.json",
                            help="an image's deploy dir (build/deploy/<board>) or its manifest.json")
        build_options(parser)
        parser.add_argument("--work-dir", metavar="DIR",
                            help="build dir of the rebuild, new or empty (default: a new temp dir)")
        parser.add_argument("--keep", action="store_true", help="keep the rebuild's build dir when it reproduced")

    def run(self, args):
        from .. import reproduce
        from ..workspace import Workspace

        path = reproduce.manifest_path(args.manifest)
        manifest = reproduce.load_manifest(path, need_format=2)
        ws = Workspace(argparse.Namespace(project=args.project, build_dir=args.build_dir, board=manifest["board"]))
        options = reproduce.Options(jobs=jobs(args), offline=args.offline, keep=args.keep,
                                    work_dir=Path(args.work_dir) if args.work_dir else None)
        return reproduce.reproduce(ws, path, manifest, options)

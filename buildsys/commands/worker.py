"""`buildsys worker tcp://HOST:PORT`: build recipes for clients of a Dask scheduler (docs/cluster.md)."""
from __future__ import annotations

import os
from pathlib import Path

from .base import Command


class Worker(Command):
    name = "worker"
    help = "build recipes sent by `buildsys build --cluster` (a Dask worker)"

    def setup(self, parser):
        parser.add_argument("scheduler", metavar="tcp://HOST:PORT", help="the Dask scheduler's address")
        parser.add_argument("--dir", type=Path, default=Path("buildsys-worker"),
                            help="the worker's build dirs, project snapshots, local cache and downloads "
                                 "(default ./buildsys-worker; BUILDSYS_DL_DIR wins for downloads)")
        parser.add_argument("--cores", type=int, default=0, help="parallel jobs of a recipe build (default: all)")
        parser.add_argument("--slots", type=int, default=2,
                            help="recipes built at once (default 2: a long one and short ones beside it, as a "
                                 "local build overlaps them)")
        parser.add_argument("--name", help="the worker's name in reports and the dashboard (default: host-pid)")

    def run(self, args):
        from ..cluster.worker import serve
        from ..errors import UserError, Where

        if args.cores < 0:
            raise UserError(f"--cores {args.cores}: cannot be negative", Where("command line"), hint="0 means all")
        if args.slots < 1:
            raise UserError(f"--slots {args.slots}: a worker needs at least one", Where("command line"))
        return serve(args.scheduler, args.dir, args.cores or os.cpu_count() or 1, args.name, args.slots)

"""`buildsys lock update|show`: the pinned build environment's lock file."""
from __future__ import annotations

import sys

from ..workspace import Workspace
from .base import Command


class Lock(Command):
    name = "lock"
    help = "show or refresh the build environment's lock (buildenv.lock.json)"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="lock_command", metavar="ACTION", required=True)
        sub.add_parser("update", help="resolve buildenv.yaml against the Debian archive now, write the lock "
                                      "and show what changed")
        sub.add_parser("show", help="the environment's id, packages and versions")

    def run(self, args):
        from .. import buildenv

        ws = Workspace(args)
        if args.lock_command == "update":
            from ..buildenv import lockupdate

            lock, changes = lockupdate.update(ws.project.root, ws.fetch_config())
            for line in changes or ["no change"]:
                print(line)
            print(f"{lock.path}: {len(lock.packages)} packages, environment {lock.id[:12]}", file=sys.stderr)
            return 0
        env = buildenv.for_project(ws.project)
        if env is None:
            print("this project builds against the host's /usr (no buildenv.lock.json, or build_env: host)")
            return 0
        print(f"environment {env.id}  ({'assembled' if env.ready() else 'not assembled yet'}: {env.root})")
        print(f"suites {', '.join(env.lock.suites)}, architecture {env.lock.architecture}")
        for p in env.lock.packages:
            print(f"  {p.name:<36} {p.version}")
        return 0

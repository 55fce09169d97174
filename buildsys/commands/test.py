"""`buildsys test`: build if needed, boot headless, check the shell, power off."""
from __future__ import annotations

import sys

from ..workspace import Workspace
from .base import Command, board_option
from .run import built_image, qemu_argv


class Test(Command):
    name = "test"
    help = "boot the image headless, run checks on its shell, power off; exit 0 or 1"

    def setup(self, parser):
        board_option(parser)
        parser.add_argument("--timeout", type=float, default=300, help="seconds to reach the shell (default 300)")

    def run(self, args):
        from ..qemu import Check, boot_and_check

        ws = Workspace(args)
        status, image = built_image(ws)
        if image is None:
            return status
        argv = qemu_argv(ws, image)
        arch = ws.board.arch
        checks = [
            Check("grep ' / ' /proc/mounts", r"^\S+ / squashfs ro[ ,]"),
            Check("cat /proc/cmdline", r"root="),
            Check("uname -m", rf"^{arch}\s*$"),
            Check("touch /probe-readonly 2>&1", r"Read-only file system", status=None),
            Check("ls /dev/console /dev/null", r"/dev/null"),
        ]
        log = ws.paths.build / "logs" / f"boot-{ws.board.name}.log"
        print("booting: " + " ".join(argv), file=sys.stderr)
        result = boot_and_check(argv, checks, log, timeout=args.timeout)
        verdict = "PASS" if result.ok else "FAIL"
        print(f"{verdict}: {ws.board.name}: {result.reason}", file=sys.stderr)
        print(f"serial log: {result.log_path}", file=sys.stderr)
        return 0 if result.ok else 1

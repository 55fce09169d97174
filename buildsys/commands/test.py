"""`buildsys test`: build if needed, boot headless, check the shell, power off.

An image with an SSH server (dropbear in its manifest) is also logged into
over QEMU's user network (the board forwards a free host port to the guest's
22): a command, a file copied each way, sha256s compared.  The image trusts
the keys of ``ssh_authorized_keys`` / BUILDSYS_SSH_AUTHORIZED_KEYS; ssh uses
``--identity``, else the private key beside BUILDSYS_SSH_AUTHORIZED_KEYS's .pub
file, else the user's own ssh keys and agent.
"""
from __future__ import annotations

import os
import sys

from .. import sshkeys
from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option
from .run import built_image, forwards_ssh, has_ssh_server, qemu_argv


def _identity(args, environ) -> str | None:
    if args.identity:
        if not os.path.isfile(args.identity):
            raise UserError(f"no such file: {args.identity}", Where("--identity"), hint="a private SSH key")
        return args.identity
    pub = environ.get(sshkeys.ENV_VAR, "")
    if pub.endswith(".pub") and os.path.isfile(pub[:-4]):
        return pub[:-4]
    return None


class Test(Command):
    name = "test"
    help = "boot the image headless, run checks on its shell (and over SSH if it has dropbear), power off; exit 0 or 1"

    def setup(self, parser):
        board_option(parser)
        parser.add_argument("image", nargs="?", help="the image recipe (default: the board's default_image)")
        parser.add_argument("--timeout", type=float, default=300, help="seconds to reach the shell (default 300)")
        parser.add_argument("--identity", metavar="FILE", help="the private key ssh logs in with")

    def run(self, args):
        from ..qemu import Check, boot_and_check, free_port, ssh_checks

        ws = Workspace(args)
        identity = _identity(args, ws.environ)
        status, image = built_image(ws, args.image)
        if image is None:
            return status
        port = free_port()
        # A/B images: a factory device every time (fresh disk and variables).
        argv = qemu_argv(ws, image, port, fresh=True)
        arch = ws.board.arch
        checks = [
            Check("grep ' / ' /proc/mounts", r"^\S+ / squashfs ro[ ,]"),
            Check("cat /proc/cmdline", r"root="),
            Check("uname -m", rf"^{arch}\s*$"),
            Check("touch /probe-readonly 2>&1", r"Read-only file system", status=None),
            Check("ls /dev/console /dev/null", r"/dev/null"),
        ]
        after = None
        if has_ssh_server(image):
            if not forwards_ssh(argv, port):
                raise UserError(f"board '{ws.board.name}' forwards no host port to the guest's SSH port",
                                Where(str(ws.board.path)),
                                hint="add -netdev user,id=net0,hostfwd=tcp:127.0.0.1:${ssh_port}-:22 to qemu args")
            if not sshkeys.project_keys(ws.project.settings, ws.environ):
                print("FAIL: the image has an SSH server but trusts no key: set ssh_authorized_keys in local.yaml "
                      f"or {sshkeys.ENV_VAR}, rebuild and test again", file=sys.stderr)
                return 1
            work = ws.paths.build / "run" / ws.board.name / "ssh"
            after = lambda: ssh_checks(port, identity, work, arch,  # noqa: E731
                                       log=lambda line: print(line, file=sys.stderr))
        log = ws.paths.build / "logs" / f"boot-{ws.board.name}.log"
        print("booting: " + " ".join(argv), file=sys.stderr)
        result = boot_and_check(argv, checks, log, timeout=args.timeout, after=after)
        verdict = "PASS" if result.ok else "FAIL"
        print(f"{verdict}: {ws.board.name}: {result.reason}", file=sys.stderr)
        print(f"serial log: {result.log_path}", file=sys.stderr)
        return 0 if result.ok else 1

"""`buildsys run`: build the board's image if needed, boot it on this terminal."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .. import engine
from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option


def built_image(ws: Workspace, name: str | None = None) -> tuple[int, Path | None]:
    """Build the image ``name`` (default: the board's default image; a no-op
    when up to date): the build's exit status and, when it succeeded, the
    deployed disk image."""
    result = engine.build(ws, [name] if name else [], engine.BuildOptions())
    if not result.ok:
        return result.status, None
    if not result.deployed:
        raise UserError(f"the default image of board '{ws.board.name}' deployed nothing",
                        Where(str(ws.board.path)), hint="default_image must name an image recipe")
    out = result.deployed[0]
    manifest = out / "manifest.json"
    images = sorted(f for f in json.loads(manifest.read_text())["files"] if f.endswith(".img"))
    if not images:
        raise UserError(f"the image of board '{ws.board.name}' has no .img file", Where(str(manifest)))
    return 0, out / images[0]


def image_manifest(image: Path) -> dict:
    """The deploy manifest beside a deployed disk image."""
    return json.loads((image.parent / "manifest.json").read_text())


def has_ssh_server(image: Path) -> bool:
    """Whether the deployed image carries dropbear (its manifest says)."""
    return any(r.get("name") == "dropbear" for r in image_manifest(image).get("recipes", []))


def forwards_ssh(argv: list[str], port: int) -> bool:
    """Whether the QEMU command line forwards host ``port`` to the guest's 22."""
    return any(f":{port}-:22" in a for a in argv)


def qemu_argv(ws: Workspace, image: Path, ssh_port: int | None = None, fresh: bool = False) -> list[str]:
    """The board's QEMU command line, booting a scratch copy of the image;
    ``${ssh_port}`` (the host end of the forward to the guest's port 22) is
    ``ssh_port``, by default a port free now.  An A/B image boots the UEFI
    firmware from split pflash with persistent variables (ab_machine)."""
    from ..qemu import board_argv, free_port

    qemu = ws.board.get("qemu")
    if not qemu:
        raise UserError(f"board '{ws.board.name}' cannot be emulated (it has no qemu: settings)",
                        Where(str(ws.board.path)), hint="flash the image to the device instead")
    # Work on a copy: the guest must not change the deployed, checksummed image.
    run_dir = ws.paths.build / "run" / ws.board.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if ssh_port is None:
        ssh_port = free_port()
    if is_ab_image(image):
        disk, firmware = ab_machine(ws, image, run_dir, fresh=fresh)
        argv = board_argv(qemu, image=str(disk), deploy=str(image.parent), ssh_port=str(ssh_port))
        from ..qemu import with_pflash
        return with_pflash(argv, firmware)
    copy = run_dir / image.name
    shutil.copyfile(image, copy)
    return board_argv(qemu, image=str(copy), deploy=str(image.parent), ssh_port=str(ssh_port))


def is_ab_image(image: Path) -> bool:
    """An A/B image (``ab_slots``): the image class deploys <stem>.slot.json beside it."""
    return (image.parent / f"{image.stem}.slot.json").is_file()


def ab_machine(ws: Workspace, image: Path, run_dir: Path, fresh: bool = False) -> tuple[Path, list[str]]:
    """The emulated A/B device: a disk and a UEFI variable store that persist
    across runs (updates and boot entries survive a power-off), both reset
    from the deployed image and the firmware's template when the image was
    rebuilt or ``fresh``.  With a secure boot variable store deployed
    (secureboot.py), the Secure Boot firmware with that store.

    Kept in the build dir's run/<board>/, not beside the deployed image: the
    deploy dir is the build's checksummed output.  -> (disk, firmware args)."""
    from .. import secureboot
    from ..fileio import sha256_file
    from ..qemu import pflash_args, uefi_firmware

    state = run_dir / image.stem
    state.mkdir(parents=True, exist_ok=True)
    disk, vars_file, stamp = state / "disk.img", state / "vars.fd", state / "image.sha256"
    sb_vars = image.parent / f"{image.stem}{secureboot.VARS_SUFFIX}"
    try:
        code, template = uefi_firmware(ws.board.arch)
    except ValueError as e:
        raise UserError(f"cannot boot the A/B image {image.name}: {e}", Where(str(ws.board.path))) from None
    if sb_vars.is_file():
        template = sb_vars
    want = sha256_file(image) + " " + sha256_file(template)
    if fresh or not disk.is_file() or not vars_file.is_file() or not stamp.is_file() \
            or stamp.read_text().strip() != want:
        for src, dst in ((image, disk), (template, vars_file)):
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        stamp.write_text(want + "\n")
    if sb_vars.is_file():
        return disk, secureboot.qemu_args(ws.board.arch, vars_file)
    return disk, pflash_args(code, vars_file)


class Run(Command):
    name = "run"
    help = "build if needed, then boot the image in QEMU with the serial console on this terminal"

    def setup(self, parser):
        board_option(parser)
        parser.add_argument("image", nargs="?", help="the image recipe (default: the board's default_image)")
        parser.add_argument("--fresh", action="store_true",
                            help="A/B images: start from the factory image and empty firmware variables "
                                 "(else the disk and variables of the last run are kept)")

    def run(self, args):
        from ..qemu import free_port

        ws = Workspace(args)
        status, image = built_image(ws, args.image)
        if image is None:
            return status
        port = free_port()
        argv = qemu_argv(ws, image, port, fresh=args.fresh)
        print("booting: " + " ".join(argv), file=sys.stderr)
        if forwards_ssh(argv, port) and has_ssh_server(image):
            print(f"ssh: ssh -p {port} root@127.0.0.1 (scp -O -P {port} ...)", file=sys.stderr)
        print("(quit QEMU with Ctrl-a x)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvp(argv[0], argv)

"""A/B updates in QEMU, as a device in the field sees them (issue 13 item 6),
on x86-virtio (OVMF) and qemu-arm64 (AAVMF): the firmware with its variables
in a writable pflash copy, plain QEMU command lines, no -no-reboot -- reboots
are how slots are tried and rolled back.

Per board, one project copy with an update key made here (update_keys in its
local.yaml); image-base-ab is built three times: version 1 (the factory
image), version 2 (the update), and version 3 whose health check fails.
Then one emulated device, one QEMU process across reboots where possible:

  boot 1  factory: slot a from a fresh variable store (the removable path),
          Boot0001/Boot0002 registered, root = dm-verity; a bundle signed by
          another key and one for another board are refused, nothing written;
          install v2 -> slot b, reboot
  boot 2  trial of b: health checks pass, committed; install v3 (failing
          health check) -> slot a, reboot
  boot 3  trial of a fails its check -> reboot -f
  boot 4  back on b (committed), nobody touched it; reinstall v2 (--force)
          into a, flip one bit of root_a's squashfs, reboot
  boot 5  a panics ("corrupted"), panic=5 resets -> back on b
          install v2 (--force) again and pull the plug (kill QEMU) mid-write
  boot 6  (new QEMU, same disk and variables) still on b; the next install
          succeeds, reboot
  boot 7  trial of a passes and commits.

Each TCG boot takes ~25-40 s on x86 (~10-20 s on arm64); the builds are
warm-cache image builds (the kernel comes from BUILDSYS_TEST_CACHE_DIR or the
shared cache).  Measured: 4 min 42 s for x86's two tests (builds ~1.5 min,
the seven boots ~3 min), 2 min 25 s for arm64's."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

IMAGE = "image-base-ab"
DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
PROMPT = r"[#$] $"


@dataclass(frozen=True)
class Board:
    name: str
    code: Path                 # the firmware, read-only pflash
    vars: Path                 # the variable-store template, copied per device
    machine: tuple[str, ...]   # qemu binary and machine options
    boot_timeout: float

    def firmware_missing(self) -> bool:
        return not self.code.is_file() or not self.vars.is_file() or shutil.which(self.machine[0]) is None


BOARDS = {
    "x86-virtio": Board("x86-virtio", Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                        Path("/usr/share/OVMF/OVMF_VARS_4M.fd"),
                        # i6300esb: the PCI watchdog linux-ab has on x86_64.
                        ("qemu-system-x86_64", "-M", "q35", "-device", "i6300esb"), 240),
    "qemu-arm64": Board("qemu-arm64", Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd"),
                        ("qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53"), 300),
}

RECIPE = """format: 1
name: image-base-ab
extends: image-base
version: "{version}"
summary: image-base-ab for tests/slow/test_ab_updates.py
ab_slots: {{root_size: 96M, esp_size: 16M}}
overrides:
  arch:aarch64:
    ab_slots: {{root_size: 96M, esp_size: 32M}}
kernel: linux-ab
packages+: [update-client{extra}]
data_partition: 64M
"""
FAILING_CHECK = """format: 1
name: health-fails
version: "1"
license: MIT
summary: A health check that always fails (tests/slow/test_ab_updates.py)
class: script
steps:
  install: |
    mkdir -p ${destdir}/etc/update/health.d
    printf '#!/bin/sh\\necho "health check: failing on purpose" >&2\\nexit 1\\n' > ${destdir}/etc/update/health.d/fail
    chmod 0755 ${destdir}/etc/update/health.d/fail
"""


def _copy_project(dest: Path) -> None:
    for name in ("buildsys.yaml", "buildenv.lock.json", "buildenv.yaml", "recipes", "board-configs"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="module", params=sorted(BOARDS))
def project(request, tmp_path_factory):
    """For one board: a project copy whose images trust a key made here, and
    the bundles of three versions.  -> (project root, bundles dir, Board)"""
    board = BOARDS[request.param]
    if board.firmware_missing():
        pytest.skip(f"{board.name}: QEMU or its UEFI firmware is missing (scripts/setup-host.sh)")
    root = tmp_path_factory.mktemp(f"ab-{board.name}") / "project"
    root.mkdir()
    _copy_project(root)
    keys = root / "keys"
    run_buildsys("key", "new", "--kind", "update", "--out", keys, "product", check=0)
    run_buildsys("key", "new", "--kind", "update", "--out", keys, "other", check=0)
    (root / "local.yaml").write_text("format: 1\nupdate_keys: [keys/product.pub]\n")
    (root / "recipes" / "health-fails").mkdir()
    (root / "recipes" / "health-fails" / "health-fails.yaml").write_text(FAILING_CHECK)
    build = root / "build"
    env = {"BUILDSYS_BUILD_DIR": str(build), "BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR")
           or os.environ.get("BUILDSYS_CACHE_DIR") or str(build / "cache")}
    deploy = build / "deploy" / board.name
    out = root / "out"
    out.mkdir()
    recipe = root / "recipes" / IMAGE / f"{IMAGE}.yaml"
    for version, extra in (("1", ""), ("2", ""), ("3", ", health-fails")):
        recipe.write_text(RECIPE.format(version=version, extra=extra))
        run_buildsys("--project", root, "bundle", "-j2", "--board", board.name, "--key", keys / "product.key", "-o",
                     out / f"v{version}.bundle", IMAGE, env=env, check=0)
        if version == "1":
            shutil.copyfile(deploy / f"{IMAGE}-{board.name}.img", out / "factory.img")
            (out / "slot-v1.json").write_text((deploy / f"{IMAGE}-{board.name}.slot.json").read_text())
    # The same v3 image, signed by a key the device does not trust.
    run_buildsys("--project", root, "bundle", "-j2", "--board", board.name, "--key", keys / "other.key", "-o",
                 out / "foreign.bundle", IMAGE, env=env, check=0)
    return root, out, board


class Server:
    """The bundles over HTTP on 127.0.0.1, which QEMU's user network shows
    the guest as 10.0.2.2."""

    def __init__(self, directory: Path):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *a, **k: None      # type: ignore[method-assign]
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://10.0.2.2:{self.port}/{name}"


class Device:
    """One emulated device: a disk and a variable store that outlive QEMU runs."""

    def __init__(self, board: Board, work: Path, factory: Path):
        self.board = board
        self.disk, self.vars, self.log = work / "disk.img", work / "vars.fd", work / "serial.log"
        shutil.copyfile(factory, self.disk)
        shutil.copyfile(board.vars, self.vars)
        self.child: pexpect.spawn | None = None
        self.n = 0

    def argv(self) -> list[str]:
        return [*self.board.machine, "-m", "256",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={self.board.code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
                "-drive", f"file={self.disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-pci,drive=disk0",
                "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
                "-device", "virtio-rng-pci", "-nographic"]

    def start(self) -> None:
        argv = self.argv()
        self.child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace",
                                   timeout=self.board.boot_timeout, dimensions=(50, 250))
        self.child.logfile_read = open(self.log, "a", encoding="utf-8", errors="replace")  # noqa: SIM115

    def wait_shell(self, expect_first: str | None = None) -> None:
        """Wait for the next boot's shell (after ``expect_first`` on the console, if given)."""
        assert self.child is not None
        if expect_first:
            self.child.expect(expect_first)
        self.child.expect("Run /sbin/init|Freeing unused kernel")
        self.child.expect(PROMPT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sh("true", timeout=5)
                return
            except pexpect.TIMEOUT:
                if time.monotonic() > deadline:
                    raise

    def sh(self, command: str, timeout: float = 60, status: int | None = 0) -> str:
        assert self.child is not None
        self.n += 1
        n = self.n
        self.child.sendline(f'echo "@@B""EGIN-{n}@@"; {command}; echo "@@R""C-{n}=$?@@"')
        self.child.expect(re.compile(rf"@@BEGIN-{n}@@\r*\n(.*?)@@RC-{n}=(\d+)@@", re.S), timeout=timeout)
        m = self.child.match
        out, rc = m.group(1).replace("\r", ""), int(m.group(2))
        if status is not None:
            assert rc == status, f"{command!r} exited {rc}: {out[-800:]}"
        return out

    def slot(self) -> str:
        m = re.search(r"buildsys\.slot=(\w)", self.sh("cat /proc/cmdline"))
        assert m, "no buildsys.slot= on the command line"
        return m.group(1)

    def kill(self) -> None:
        if self.child is not None and self.child.isalive():
            self.child.terminate(force=True)
        self.child = None

    def flip_bit(self, n: int, offset: int) -> None:
        """Flip the lowest bit of byte ``offset`` of GPT partition ``n``, on the host."""
        from buildsys.image import gpt
        p = gpt.read(self.disk).partitions[n - 1]
        with open(self.disk, "r+b") as f:
            f.seek(p.offset + offset)
            b = f.read(1)
            f.seek(p.offset + offset)
            f.write(bytes([b[0] ^ 1]))


def status(dev: Device) -> dict[str, str]:
    out = dev.sh("update status")
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def test_updates_rollbacks_tampering_and_power_cut(project, tmp_path):
    root, out, board = project
    server = Server(out)
    dev = Device(board, tmp_path, out / "factory.img")
    try:
        # --- boot 1: the factory image, a fresh variable store.
        dev.start()
        dev.wait_shell()
        assert dev.slot() == "a"
        cmdline = dev.sh("cat /proc/cmdline")
        assert "root=/dev/dm-0" in cmdline and " verity 1 " in cmdline and "panic_on_corruption" in cmdline
        assert re.search(r"^\S+ / squashfs ro", dev.sh("cat /proc/mounts"), re.M)
        # / is the verity device (the kernel calls it /dev/root in /proc/mounts).
        assert dev.sh("cat /sys/block/dm-0/dm/name").strip() == "vroot"
        assert dev.sh("mountpoint -d /").strip() == dev.sh("cat /sys/block/dm-0/dev").strip()
        efivars = dev.sh("ls /sys/firmware/efi/efivars/")
        assert "Boot0001-8be4df61" in efivars and "Boot0002-8be4df61" in efivars
        # The entries are the image's exact bytes.
        dev.sh("cmp /sys/firmware/efi/efivars/Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c "
               "/usr/share/update/boot-a.var")
        st = status(dev)
        assert (st["booted"], st["committed"], st["slot a"], st["slot b"]) == ("a", "a", "1 (booted, committed)",
                                                                                "empty")
        # Refused: another key's signature.  Nothing is written to slot b.
        refused = dev.sh(f"update install {server.url('foreign.bundle')} 2>&1", status=None)
        assert "refused" in refused or "signature" in refused, refused
        zeros = hashlib.sha256(bytes(1 << 20)).hexdigest()
        assert dev.sh("dd if=/dev/vda4 bs=65536 count=16 2>/dev/null | sha256sum").split()[0] == zeros
        assert dev.sh("dd if=/dev/vda3 bs=65536 count=16 2>/dev/null | sha256sum").split()[0] == zeros
        # The update: v2 into slot b, then try it.
        dev.sh(f"update install {server.url('v2.bundle')} 2>&1", timeout=300)
        assert "slot b is armed" in dev.sh("update status")
        dev.child.sendline("reboot")

        # --- boot 2: the trial of b passes its checks and commits.
        dev.wait_shell()
        assert dev.slot() == "b"
        deadline = time.monotonic() + 120
        while (st := status(dev))["committed"] != "b" and time.monotonic() < deadline:
            time.sleep(3)
        assert st["committed"] == "b" and st["slot b"].startswith("2"), st
        # v3 fails its health check.
        dev.sh(f"update install {server.url('v3.bundle')} 2>&1", timeout=300)
        dev.child.sendline("reboot")

        # --- boot 3: trial of a fails -> reboot -f; boot 4: back on b by itself.
        dev.child.expect("buildsys.slot=a")
        dev.child.expect("failing on purpose")
        dev.wait_shell()
        assert dev.slot() == "b"
        st = status(dev)
        assert st["committed"] == "b", st

        # Tampering: a good bundle into a, then one flipped byte in root_a's squashfs (its superblock,
        # read at mount).
        dev.sh(f"update install --force {server.url('v2.bundle')} 2>&1", timeout=300)
        # The guest synced what it wrote; flip one bit of the disk file from the host (QEMU's raw
        # file, written through on the guest's flush), in block 0 of root_a.
        dev.flip_bit(2, 100)
        dev.child.sendline("reboot")
        # --- boot 5: verity stops slot a, the panic resets, the firmware goes back to b.
        dev.child.expect(r"verity.*corrupt|Kernel panic")
        dev.wait_shell()
        assert dev.slot() == "b"

        # Power cut in the middle of writing the inactive slot.
        dev.child.sendline(f"update install --force {server.url('v2.bundle')} 2>&1")
        dev.child.expect(r"writing \S+ to vda", timeout=120)
        dev.kill()
        # --- boot 6: a new QEMU on the same disk and variables: still b; the next install succeeds.
        dev.start()
        dev.wait_shell()
        assert dev.slot() == "b"
        assert "incomplete" in status(dev)["slot a"]
        dev.sh(f"update install --force {server.url('v2.bundle')} 2>&1", timeout=300)
        dev.child.sendline("reboot")
        # --- boot 7: the trial of a commits.
        dev.wait_shell()
        assert dev.slot() == "a"
        deadline = time.monotonic() + 120
        while (st := status(dev))["committed"] != "a" and time.monotonic() < deadline:
            time.sleep(3)
        assert st["committed"] == "a", st
        dev.child.sendline("poweroff -f")
        dev.child.expect(pexpect.EOF, timeout=60)
    finally:
        dev.kill()
        server.httpd.shutdown()


def test_same_sources_same_slot_images(project):
    """Reproducible: building version 1 again (--force: not from the cache)
    gives the same slot images -- the bundle's payload, esp.vfat and root.img
    -- and the same verity root hash."""
    root, out, board = project
    first = json.loads((out / "slot-v1.json").read_text())
    recipe = root / "recipes" / IMAGE / f"{IMAGE}.yaml"
    recipe.write_text(RECIPE.format(version="1", extra=""))
    env = {"BUILDSYS_BUILD_DIR": str(root / "build"), "BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR")
           or os.environ.get("BUILDSYS_CACHE_DIR") or str(root / "build" / "cache")}
    run_buildsys("--project", root, "build", "-j2", "--board", board.name, "--no-push", "--force", IMAGE, IMAGE,
                 env=env, check=0)
    again = json.loads((root / "build" / "deploy" / board.name / f"{IMAGE}-{board.name}.slot.json").read_text())
    assert again["root"]["sha256"] == first["root"]["sha256"]
    assert again["esp"]["sha256"] == first["esp"]["sha256"]
    assert again["root"]["verity_root_hash"] == first["root"]["verity_root_hash"]

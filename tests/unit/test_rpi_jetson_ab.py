"""The Raspberry Pi and Jetson A/B layouts (the boards' disk_ab), checked as
the image class reads them, and the updater's backends (backend-rpi.sh,
backend-jetson.sh) run by the real /usr/sbin/update under busybox sh against
a fake root: the device tree the Pi firmware fills in, sysfs partitions,
autoboot.txt in a directory (a fake tree is never mounted), real signed
bundles (bundle.py) checked by the real minisign.

Stand-ins only for what cannot run here: the restart (reboot-tryboot and
reboot record that they were called) and NVIDIA's nvbootctrl (a small
program keeping the firmware's rootfs slot state in a file, with the
command line of the real one).  The tests play the firmware between boots.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildsys import bundle, minisign
from buildsys.image import disk, gpt
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board

ROOT = Path(__file__).resolve().parents[2]
UPDATE = ROOT / "recipes" / "update-client" / "files" / "update"
BACKEND_RPI = ROOT / "layers" / "raspberrypi" / "recipes" / "update-backend-rpi" / "files" / "backend-rpi.sh"
BACKEND_JETSON = ROOT / "layers" / "jetson" / "recipes" / "update-backend-jetson" / "files" / "backend-jetson.sh"
TRYBOOT_C = ROOT / "layers" / "raspberrypi" / "recipes" / "reboot-tryboot" / "files" / "reboot-tryboot.c"
AUTOBOOT = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
AUTOBOOT_B = "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n"
JETSONS = ("jetson-agx-orin-devkit", "jetson-orin-nano-devkit")
PART_BYTES = 64 * 1024
EPOCH = 315532800

BUSYBOX = os.environ.get("BUILDSYS_TEST_BUSYBOX") or shutil.which("busybox")
needs_device_tools = pytest.mark.skipif(BUSYBOX is None or shutil.which("minisign") is None,
                                        reason="needs busybox and minisign (apt)")


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT, environ={})


def board(project, name):
    return load_board(project, name)


def ab_layout(b):
    """disk_ab as the image class checks it: slot b's root holds nothing in
    the factory image (raw), so disk.parse_layout sees one root."""
    layout = copy.deepcopy(dict(b.get("disk_ab")))
    layout["partitions"] = [dict(p, filesystem="raw") if p.get("slot") == "b" and p["filesystem"] == "squashfs"
                            else dict(p) for p in layout["partitions"]]
    return layout


# --- the layouts ---------------------------------------------------------------------

def test_raspberrypi4_tryboot_layout(project):
    b = board(project, "raspberrypi4")
    ab = b.get("disk_ab")
    assert ab["backend"] == "rpi" and ab["table"] == "gpt"
    table, _align, specs = disk.parse_layout(ab_layout(b), b.name, arch=b.arch)
    parts = ab["partitions"]
    # GPT partition numbers are the list order: autoboot.txt's boot_partition=2/3 are boot_a/boot_b.
    assert [p["name"] for p in parts] == ["autoboot", "boot_a", "boot_b", "root_a", "root_b"]
    assert [p.get("slot") for p in parts] == [None, "a", "b", "a", "b"]
    assert [p["filesystem"] for p in parts] == ["vfat", "vfat", "vfat", "squashfs", "squashfs"]
    assert [s.filesystem for s in specs] == ["vfat", "vfat", "vfat", "squashfs", "raw"]
    assert table == "gpt" and len(specs) == 5
    # The firmware reads autoboot.txt as written: exactly the documented bytes.
    assert parts[0]["text"] == {"/autoboot.txt": AUTOBOOT}
    assert not parts[0].get("files")
    # FAT16, not FAT12: more than 4084 one-sector clusters.
    assert disk.parse_size(parts[0]["size"]) // 512 > 4084
    for p in parts[1:3]:
        # Each slot boots its own kernel with its own command line (the image's
        # A/B line for that slot names that slot's root).
        assert p["text"]["/cmdline.txt"] == "${cmdline}\n"
        assert "kernel=Image" in p["text"]["/config.txt"]
        assert p["files"]["/Image"] == "virtual/kernel:boot/Image"
        assert p["files"]["/start4.elf"] == "rpi-firmware:boot/firmware/start4.elf"
    assert parts[1]["files"] == parts[2]["files"] and parts[1]["text"] == parts[2]["text"]
    # Partition GUIDs (PARTUUIDs) are derived from names: the two roots differ.
    assert gpt.partition_guid(b.name, "root_a") != gpt.partition_guid(b.name, "root_b")
    # The board's plain layout is untouched (MBR, firmware + root).
    assert b.get("disk")["table"] == "mbr"


def test_raspberrypi3_has_no_ab_layout(project):
    # Its boot ROM reads MBR only, and 5 partitions + data exceed 4 primaries.
    assert board(project, "raspberrypi3").get("disk_ab") is None


@pytest.mark.parametrize("name", JETSONS)
def test_jetson_rootfs_ab_layout(project, name):
    b = board(project, name)
    ab = b.get("disk_ab")
    assert ab["backend"] == "jetson" and ab["table"] == "gpt"
    disk.parse_layout(ab_layout(b), b.name, arch=b.arch)
    parts = ab["partitions"]
    # NVIDIA's rootfs A/B names (ROOTFS_AB=1): APP is slot 0, APP_b slot 1.
    assert [(p["name"], p.get("slot"), p["filesystem"]) for p in parts] == [
        ("esp", None, "vfat"), ("APP", "a", "squashfs"), ("APP_b", "b", "squashfs")]
    assert "APPEND ${cmdline}" in parts[0]["text"]["/boot/extlinux/extlinux.conf"]
    # The plain layout's names are NVIDIA's too, so slot a is where a non-A/B image had its root.
    assert [p["name"] for p in b.get("disk")["partitions"]] == ["esp", "APP"]


@pytest.mark.parametrize("name, backend", [("raspberrypi4", "update-backend-rpi"),
                                           ("jetson-agx-orin-devkit", "update-backend-jetson"),
                                           ("jetson-orin-nano-devkit", "update-backend-jetson")])
def test_updater_brings_the_boards_backend(project, name, backend):
    r = Resolver(project, board(project, name))
    assert backend in r.recipe("update-client").get("rdepends")
    installed = r.recipe(backend)
    assert installed.get("class") == "script"
    if backend == "update-backend-rpi":
        assert "reboot-tryboot" in installed.get("rdepends")


def test_other_boards_updater_has_no_board_backend(project):
    for name in ("x86-virtio", "qemu-arm64", "raspberrypi3"):
        rdepends = Resolver(project, board(project, name)).recipe("update-client").get("rdepends")
        assert not {"update-backend-rpi", "update-backend-jetson"} & set(rdepends), name


def test_board_key_typos_are_one_line_errors(tmp_path):
    # disk_ab is checked as strictly as disk: a misspelt slot is an error with its position.
    (tmp_path / "buildsys.yaml").write_text("format: 1\n")
    (tmp_path / "board-configs").mkdir()
    (tmp_path / "board-configs" / "b.yaml").write_text(
        "format: 1\nname: b\narch: aarch64\ndisk_ab:\n  partitions:\n    - {name: boot_a, slot: c}\n")
    project = load_project(tmp_path, environ={})
    with pytest.raises(Exception) as e:
        load_board(project, "b")
    assert "b.yaml:6:" in str(e.value) and "unknown value 'c'" in str(e.value)


# --- reboot-tryboot ------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_reboot_tryboot_compiles_clean_and_refuses_bad_arguments(tmp_path):
    exe = tmp_path / "reboot-tryboot"
    subprocess.run(["cc", "-Os", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(TRYBOOT_C)], check=True)
    # Only arguments refused before any system call: never restart the host.
    for args in (["--help"], ["x"], ["1x"], ["-1"], ["128"], ["0", "1"]):
        out = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=10)
        assert out.returncode == 2, (args, out)
        assert "reboot-tryboot" in out.stderr
    source = TRYBOOT_C.read_text()
    assert re.search(r"LINUX_REBOOT_CMD_RESTART2,\s*arg\)", source) and '"%ld tryboot"' in source


# --- the backends, under the real updater --------------------------------------------

def device_applets() -> list[str]:
    """The applets the device's busybox-base has (as tests/unit/test_update_client.py)."""
    enabled = {}
    for name in ("busybox.config", "busybox-base.cfg"):
        for line in (ROOT / "recipes" / "busybox" / "files" / name).read_text().splitlines():
            m = re.match(r"^(?:# )?CONFIG_([A-Z0-9_]+)(=y| is not set)", line)
            if m:
                enabled[m.group(1)] = m.group(2) == "=y"
    host = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    return [a for a in host if enabled.get(a.upper().replace("-", "_"))]


class Device:
    """A fake root the updater runs in: /usr/share/update/layout, the board's
    backend, keys, partitions as files found through sysfs PARTNAMEs."""

    def __init__(self, tmp: Path, key: minisign.SecretKey, compatible: str, backend: Path, parts: dict[str, str],
                 layout: dict[str, str]):
        self.tmp, self.parts, self.compatible = tmp, parts, compatible
        r = self.root = tmp / "root"
        share = r / "usr/share/update"
        share.mkdir(parents=True)
        # What the image class writes for a disk_ab board (ESP_X = the slot's vfat partition).
        (share / "layout").write_text("".join(f"{k}={v}\n" for k, v in layout.items()))
        (r / "usr/lib/update").mkdir(parents=True)
        shutil.copy(backend, r / "usr/lib/update")
        etc = r / "etc/update"
        (etc / "keys").mkdir(parents=True)
        (etc / "health.d").mkdir()
        (etc / "compatible").write_text(compatible + "\n")
        (etc / "version").write_text("1.0\n")
        (etc / "keys" / f"{minisign.key_id_hex(key.key_id)}.pub").write_text(key.public().text())
        (r / "dev").mkdir()
        for dev, name in parts.items():
            d = r / "sys/class/block" / dev
            d.mkdir(parents=True)
            (d / "uevent").write_text(f"MAJOR=179\nMINOR=1\nDEVNAME={dev}\nDEVTYPE=partition\nPARTNAME={name}\n")
            (d / "size").write_text(f"{PART_BYTES // 512}\n")
            (r / "dev" / dev).write_bytes(bytes(PART_BYTES))
        (r / "dev" / "watchdog").write_bytes(b"")
        (r / "data" / "update").mkdir(parents=True)
        (r / "run").mkdir()
        (r / "proc").mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for applet in device_applets():
            (self.bin / applet).symlink_to(BUSYBOX)
        (self.bin / "minisign").symlink_to(shutil.which("minisign"))
        self.log = tmp / "restarts"
        self.env = {"PATH": str(self.bin), "UPDATE_ROOT": str(r), "UPDATE_REBOOT": f"{self.stand_in('reboot')}"}

    def stand_in(self, name: str) -> Path:
        """A program that records its call in self.log (the restarts)."""
        path = self.tmp / f"fake-{name}"
        path.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {self.log}\n")
        path.chmod(0o755)
        return path

    def restarts(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, *args: str, check: bool | None = True) -> subprocess.CompletedProcess:
        out = subprocess.run([BUSYBOX, "sh", str(UPDATE), *args], capture_output=True, text=True, env=self.env,
                             timeout=60)
        if check is True:
            assert out.returncode == 0, out.stdout + out.stderr
        elif check is False:
            assert out.returncode != 0, out.stdout + out.stderr
        return out

    def status(self) -> dict[str, str]:
        return dict(line.split(": ", 1) for line in self.run("status").stdout.splitlines())

    def dev(self, name: str) -> bytes:
        return (self.root / "dev" / next(d for d, n in self.parts.items() if n == name)).read_bytes()

    def bundle(self, key: minisign.SecretKey, version: str) -> Path:
        board, image = self.compatible.split("/")
        stem = f"{image}-{board}"
        deploy = self.tmp / f"deploy-{version}"
        deploy.mkdir()
        (deploy / f"{stem}.esp.vfat").write_bytes(b"\xeb\x3c\x90BOOT" + version.encode() * 1000)
        (deploy / f"{stem}.root.img").write_bytes(b"hsqs" + version.encode() * 3000)
        (deploy / f"{stem}.slot.json").write_text(json.dumps({"compatible": self.compatible, "version": version,
                                                              "root": {"verity_root_hash": "cd" * 32}}))
        (deploy / "manifest.json").write_text(json.dumps({"image": image, "board": board, "version": version}))
        out = deploy / "update.bundle"
        bundle.write(bundle.Inputs(deploy, stem), out, key, EPOCH)
        return out


@pytest.fixture
def key():
    return minisign.SecretKey.generate()


class Pi(Device):
    PARTS = {"mmcblk0p1": "autoboot", "mmcblk0p2": "boot_a", "mmcblk0p3": "boot_b", "mmcblk0p4": "root_a",
             "mmcblk0p5": "root_b"}

    def __init__(self, tmp: Path, key):
        super().__init__(tmp, key, "raspberrypi4/image-base-ab", BACKEND_RPI, self.PARTS,
                         {"ESP_A": "boot_a", "ROOT_A": "root_a", "ESP_B": "boot_b", "ROOT_B": "root_b",
                          "BACKEND": "rpi"})
        # The FAT partition's files, as the image wrote them (a fake tree is never mounted).
        self.autoboot = tmp / "autoboot"
        self.autoboot.mkdir()
        (self.autoboot / "autoboot.txt").write_text(AUTOBOOT)
        self.env.update(UPDATE_RPI_AUTOBOOT_DIR=str(self.autoboot),
                        UPDATE_REBOOT_TRYBOOT=str(self.stand_in("reboot-tryboot")))
        self.firmware_boot(tryboot=False)

    def firmware_boot(self, tryboot: bool) -> None:
        """What the firmware does: read autoboot.txt, boot [all] or (once) [tryboot]'s partition, and
        say so in /chosen/bootloader (u32, big endian)."""
        text = (self.autoboot / "autoboot.txt").read_text()
        section = "tryboot" if tryboot else "all"
        partition = int(re.search(rf"\[{section}\][^\[]*?boot_partition=(\d+)", text).group(1))
        dt = self.root / "proc/device-tree/chosen/bootloader"
        dt.mkdir(parents=True, exist_ok=True)
        (dt / "partition").write_bytes(partition.to_bytes(4, "big"))
        (dt / "tryboot").write_bytes(int(tryboot).to_bytes(4, "big"))
        shutil.rmtree(self.root / "run")
        (self.root / "run").mkdir()


@needs_device_tools
def test_rpi_update_tries_with_tryboot_and_commits_by_rewriting_autoboot(tmp_path, key):
    pi = Pi(tmp_path, key)
    assert pi.status() == {"compatible": "raspberrypi4/image-base-ab", "booted": "a", "committed": "a",
                           "trial": "none", "slot a": "1.0 (booted, committed)", "slot b": "empty"}
    pi.run("boot")
    assert (pi.autoboot / "autoboot.txt").read_text() == AUTOBOOT      # nothing to do on a committed boot

    out = pi.run("install", str(pi.bundle(key, "1.1")), "--reboot")
    assert "slot b holds 1.1" in out.stdout
    # Slot b's partitions hold the bundle's images; slot a and autoboot.txt are untouched.
    assert pi.dev("boot_b").startswith(b"\xeb\x3c\x90BOOT1.1") and pi.dev("root_b").startswith(b"hsqs1.1")
    assert pi.dev("boot_a") == bytes(PART_BYTES) and pi.dev("root_a") == bytes(PART_BYTES)
    assert (pi.autoboot / "autoboot.txt").read_text() == AUTOBOOT
    # The restart that carries the tryboot flag, not a plain reboot.
    assert pi.restarts() == ["reboot-tryboot "]

    pi.firmware_boot(tryboot=True)
    (pi.root / "etc/update/version").write_text("1.1\n")
    st = pi.status()
    assert st["booted"] == "b" and st["committed"] == "a" and st["trial"].startswith("slot b is running on trial")
    pi.run("boot")
    pi.run("health")
    # Committed: [all] boots partition 3 now, and the next trial would be partition 2.
    assert (pi.autoboot / "autoboot.txt").read_text() == AUTOBOOT_B
    assert sorted(p.name for p in pi.autoboot.iterdir()) == ["autoboot.txt"]   # the temporary file is gone
    pi.firmware_boot(tryboot=False)
    st = pi.status()
    assert (st["booted"], st["committed"], st["trial"], st["slot b"]) == ("b", "b", "none", "1.1 (booted, committed)")


@needs_device_tools
def test_rpi_failed_trial_goes_back_to_the_committed_slot(tmp_path, key):
    pi = Pi(tmp_path, key)
    out = pi.run("install", str(pi.bundle(key, "1.1")))
    assert pi.restarts() == []            # without --reboot, nothing restarts
    # ... and a plain reboot would not try it: the message says what does.
    assert "slot b holds 1.1: reboot-tryboot (or update install --reboot) to try it" in out.stdout
    assert pi.status()["trial"] == "slot b is armed (the next boot tries it once)"
    pi.firmware_boot(tryboot=True)
    (pi.root / "etc/update/health.d/fails").write_text("#!/bin/sh\nexit 1\n")
    (pi.root / "etc/update/health.d/fails").chmod(0o755)
    out = pi.run("health", check=None)
    assert "health checks failed" in out.stderr
    assert pi.restarts()[-1] == "reboot -f"       # a plain restart: the firmware's flag is gone
    assert (pi.autoboot / "autoboot.txt").read_text() == AUTOBOOT
    pi.firmware_boot(tryboot=False)
    st = pi.status()
    assert (st["booted"], st["committed"], st["slot a"]) == ("a", "a", "1.0 (booted, committed)"), st
    assert st["trial"].startswith("none"), st


@needs_device_tools
def test_rpi_backend_refuses_what_it_cannot_read(tmp_path, key):
    pi = Pi(tmp_path, key)
    (pi.root / "proc/device-tree/chosen/bootloader/partition").unlink()
    out = pi.run("status", check=False)
    assert "the firmware is too old for autoboot.txt" in out.stderr
    pi.firmware_boot(tryboot=False)
    (pi.autoboot / "autoboot.txt").write_text("[all]\ntryboot_a_b=1\nboot_partition=7\n")
    out = pi.run("install", str(pi.bundle(key, "1.1")), check=False)
    assert "autoboot.txt: [all] boot_partition='7', not 2 or 3" in out.stderr


NVBOOTCTRL = r'''#!PYTHON
# A stand-in for NVIDIA's nvbootctrl -t rootfs (its command line), keeping
# the firmware's rootfs slot state in a JSON file next to it.
import json, sys
from pathlib import Path
state = Path(__file__).with_suffix(".json")
s = json.loads(state.read_text())
args = sys.argv[1:]
assert args[:2] == ["-t", "rootfs"], args
cmd = args[2:]
log = Path(__file__).with_suffix(".log")
log.write_text(log.read_text() + " ".join(cmd) + "\n" if log.exists() else " ".join(cmd) + "\n")
if cmd == ["get-current-slot"]:
    print(s["current"])
elif cmd[:1] == ["set-active-boot-slot"] and cmd[1] in ("0", "1"):
    s["active"] = int(cmd[1]); s["retry"][cmd[1]] = 3
elif cmd == ["mark-boot-successful"]:
    s["successful"][str(s["current"])] = True; s["retry"][str(s["current"])] = 3
elif cmd == ["dump-slot-info"]:
    print("Current rootfs slot: " + "AB"[s["current"]]); print("Active rootfs slot: " + "AB"[s["active"]])
    print("num_slots: 2")
else:
    sys.exit("nvbootctrl: bad arguments " + " ".join(args))
state.write_text(json.dumps(s))
'''


class Jetson(Device):
    PARTS = {"mmcblk0p1": "esp", "mmcblk0p2": "APP", "mmcblk0p3": "APP_b"}

    def __init__(self, tmp: Path, key):
        # Root-only slots: the kernel stays on the shared ESP (README.md), so no ESP_A/ESP_B.
        super().__init__(tmp, key, "jetson-orin-nano-devkit/image-base-ab", BACKEND_JETSON, self.PARTS,
                         {"ESP_A": "", "ROOT_A": "APP", "ESP_B": "", "ROOT_B": "APP_b", "BACKEND": "jetson"})
        self.nv = tmp / "nvbootctrl"
        self.nv.write_text(NVBOOTCTRL.replace("PYTHON", sys.executable))
        self.nv.chmod(0o755)
        self.state = self.nv.with_suffix(".json")
        self.state.write_text(json.dumps({"current": 0, "active": 0, "retry": {"0": 3, "1": 3},
                                          "successful": {}}))
        self.env["UPDATE_NVBOOTCTRL"] = str(self.nv)

    def firmware_boot(self) -> None:
        """UEFI boots the active slot (counting retries down, as it does)."""
        s = json.loads(self.state.read_text())
        s["current"] = s["active"]
        s["retry"][str(s["active"])] -= 1
        self.state.write_text(json.dumps(s))

    def calls(self) -> list[str]:
        return self.nv.with_suffix(".log").read_text().splitlines()


    def backend(self, *calls: str) -> subprocess.CompletedProcess:
        """Backend functions the updater's install step calls, run in a shell that has the helpers
        /usr/sbin/update gives a backend (update_err, have, $R, $DATA, $REBOOT)."""
        prelude = ('update_err() { echo "update: $*" >&2; }; have() { type "$1" >/dev/null 2>&1; }; '
                   f'R={self.root}; DATA=$R/data/update; REBOOT={self.env["UPDATE_REBOOT"]}; '
                   f'. {BACKEND_JETSON}; ')
        return subprocess.run([BUSYBOX, "sh", "-ec", prelude + "; ".join(calls)], capture_output=True, text=True,
                              env=self.env, timeout=60)


@needs_device_tools
def test_jetson_backend_switches_rootfs_slots_with_nvbootctrl(tmp_path, key):
    j = Jetson(tmp_path, key)
    j.run("boot")
    # The first boot records slot a as committed, and every committed boot is
    # marked successful (else the firmware would count it down and switch).
    assert (j.root / "data/update/backend-jetson").read_text() == "COMMITTED=a\n"
    assert "mark-boot-successful" in j.calls()
    assert j.status()["committed"] == "a"
    # A bundle carries an ESP image, which these root-only slots have no
    # partition for: refused before anything is written (README.md: not done).
    out = j.run("install", str(j.bundle(key, "2.0")), check=False)
    assert "no esp partition for slot b in the layout" in out.stderr
    assert j.dev("APP_b") == bytes(PART_BYTES) and "set-active-boot-slot 1" not in j.calls()
    # Arming and restarting, as install does once the slot is written.
    out = j.backend("backend_arm_trial b", "backend_armed_slot", "backend_reboot_trial")
    assert out.returncode == 0 and out.stdout == "b\n", out.stderr
    assert "set-active-boot-slot 1" in j.calls()
    assert j.restarts() == ["reboot "]        # the active slot is in the firmware: a plain restart tries it
    j.firmware_boot()
    st = j.status()
    assert (st["booted"], st["committed"]) == ("b", "a") and "on trial" in st["trial"]
    before = len(j.calls())
    j.run("boot")
    assert "mark-boot-successful" not in j.calls()[before:]      # a trial is left to the health checks
    j.run("health")
    assert j.calls()[-1] == "mark-boot-successful"
    assert (j.root / "data/update/backend-jetson").read_text() == "COMMITTED=b\n"
    st = j.status()
    assert (st["booted"], st["committed"], st["trial"]) == ("b", "b", "none")
    assert j.backend("backend_arm_trial c").returncode != 0


@needs_device_tools
def test_jetson_backend_without_nvbootctrl_says_who_provides_it(tmp_path, key):
    j = Jetson(tmp_path, key)
    j.env["UPDATE_NVBOOTCTRL"] = "nvbootctrl"        # not on the device's PATH
    out = j.run("status", check=False)
    assert "no nvbootctrl (NVIDIA's, from the Jetson Linux BSP): the board layer must install it" in out.stderr


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_rpi_backend_alone_under_the_hosts_shells(tmp_path, shell):
    """backend-rpi.sh is plain POSIX sh: the host's /bin/sh (dash) and busybox
    sh give the same answers from the same fake device tree."""
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell}")
    argv = [shell, "-c"] if shell == "sh" else [shell, "sh", "-c"]
    dt = tmp_path / "proc/device-tree/chosen/bootloader"
    dt.mkdir(parents=True)
    ab = tmp_path / "autoboot"
    ab.mkdir()
    (ab / "autoboot.txt").write_text(AUTOBOOT.replace("\n", "\r\n"))     # as a PC editor may leave it
    prelude = (f'update_err() {{ echo "update: $*" >&2; }}; other_slot() {{ case $1 in a) echo b;; b) echo a;; '
               f'esac; }}; R={tmp_path}; UPDATE_RPI_AUTOBOOT_DIR={ab}; . {BACKEND_RPI}; ')

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run([*argv, prelude + script], capture_output=True, text=True, timeout=30)

    for partition, tryboot, want in ((2, 0, "a"), (3, 1, "b")):
        (dt / "partition").write_bytes(partition.to_bytes(4, "big"))
        (dt / "tryboot").write_bytes(tryboot.to_bytes(4, "big"))
        out = run("backend_booted_slot; backend_committed_slot; backend_is_trial && echo trial || echo normal")
        assert out.stdout.split() == [want, "a", "trial" if tryboot else "normal"], out.stderr
    out = run("backend_commit b; backend_committed_slot")
    assert out.returncode == 0 and out.stdout == "b\n", out.stderr
    assert (ab / "autoboot.txt").read_text() == AUTOBOOT_B
    # A partition the firmware says it booted that is no slot is an error, not a guess.
    (dt / "partition").write_bytes((1).to_bytes(4, "big"))
    out = run("backend_booted_slot")
    assert out.returncode != 0 and "booted from partition 1, which is no slot" in out.stderr

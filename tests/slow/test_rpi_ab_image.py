"""The Raspberry Pi 4 A/B (tryboot) disk image, built and read back as the
EEPROM bootloader and start4.elf would read it: no QEMU machine runs the Pi
4, and QEMU's raspi3b emulates no firmware (layers/raspberrypi/README.md).

One build of image-base-ab for raspberrypi4 (linux-ab with the tryboot
reboot-flag patch, the updater, its rpi backend and reboot-tryboot) and its
`buildsys bundle`, installed by the image's own updater into a fake device
made of the image's partitions: ~20 s on a warm cache
(BUILDSYS_TEST_CACHE_DIR), plus a kernel build (~35 min on a loaded
2-core machine) when cold.
The Jetson layouts are checked in tests/unit/test_rpi_jetson_ab.py (their
kernels are other builds, and slot b does not boot there yet)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from boards.helpers import (
    EM_AARCH64,
    build,
    elf_machines,
    env_for,
    fat_files,
    fat_read,
    fat_type,
    is_arm64_image,
    sfdisk_json,
    squashfs_paths,
)
from buildsys.image import gpt
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow
BOARD = "raspberrypi4"
IMAGE = "image-base-ab"
AUTOBOOT = b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"
AUTOBOOT_B = b"[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n"
BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp("rpi-ab") / "build", IMAGE)


@pytest.fixture(scope="module")
def parts(built):
    table = gpt.read(built.image)
    return {p.name: p for p in table.partitions}


def part_bytes(built, p) -> bytes:
    with open(built.image, "rb") as f:
        f.seek(p.offset)
        return f.read(p.sectors * gpt.SECTOR)


def test_gpt_has_the_tryboot_partitions_in_firmware_order(built, parts):
    # autoboot.txt's boot_partition=2 and 3 are GPT partitions 2 and 3.
    assert list(parts) == ["autoboot", "boot_a", "boot_b", "root_a", "root_b", "data"]
    for name, p in parts.items():
        assert str(p.guid) == str(gpt.partition_guid(BOARD, name)), name
        assert p.offset % (1 << 20) == 0, name
    for name in ("autoboot", "boot_a", "boot_b"):
        assert str(parts[name].type_guid).lower() == BASIC_DATA, name
    assert parts["root_a"].type_guid == parts["root_b"].type_guid == gpt.type_guid("root", "aarch64")
    # util-linux reads the same table (an independent reader).
    table = sfdisk_json(built.image)
    assert table["label"] == "gpt"
    assert [p.get("name") for p in table["partitions"]] == list(parts)
    # Slot sizes are fixed at build time so that a later version fits.
    assert parts["boot_a"].sectors == parts["boot_b"].sectors
    assert parts["root_a"].sectors == parts["root_b"].sectors


def test_autoboot_partition_holds_exactly_autoboot_txt(built, parts):
    off = parts["autoboot"].offset
    assert fat_type(built.image, off) == "FAT16"
    assert fat_files(built.image, off) == ["autoboot.txt"]
    assert fat_read(built.image, off, "/autoboot.txt") == AUTOBOOT


def test_slot_a_boots_its_own_root_and_slot_b_is_empty(built, parts):
    off = parts["boot_a"].offset
    assert fat_type(built.image, off) in ("FAT16", "FAT32")
    assert {"start4.elf", "fixup4.dat", "Image", "bcm2711-rpi-4-b.dtb", "config.txt", "cmdline.txt"} <= set(
        fat_files(built.image, off))
    cmdline = fat_read(built.image, off, "/cmdline.txt").decode()
    assert cmdline.endswith("\n") and cmdline.count("\n") == 1
    root_a, root_b = (str(gpt.partition_guid(BOARD, n)) for n in ("root_a", "root_b"))
    # dm-verity over root_a, named by its PARTUUID; nothing of slot b.
    assert f"PARTUUID={root_a}" in cmdline and root_b not in cmdline
    words = cmdline.split()
    assert "root=/dev/dm-0" in words and "buildsys.slot=a" in words and "console=ttyS1,115200" in words
    assert any(w.startswith("dm-mod.create=") for w in words) and " verity " in cmdline
    image = subprocess.run(["mtype", "-i", f"{built.image}@@{off}", "::/Image"], capture_output=True,
                           check=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}).stdout
    assert is_arm64_image(image)
    # linux-ab with the layer's patch: the firmware driver sets the tryboot flag.
    assert b"could not set the tryboot flag" in image
    # The factory image: slot b is all zeros until the first update.
    assert part_bytes(built, parts["boot_b"]) == bytes(parts["boot_b"].sectors * gpt.SECTOR)
    assert part_bytes(built, parts["root_b"]) == bytes(parts["root_b"].sectors * gpt.SECTOR)
    # root_a = the squashfs, then the verity superblock and hash tree.
    squashfs = built.squashfs.read_bytes()
    root = part_bytes(built, parts["root_a"])
    assert root[:len(squashfs)] == squashfs
    tail = root[-(-len(squashfs) // 4096) * 4096:]
    assert tail.startswith(b"verity\0\0")


def test_rootfs_has_the_rpi_backend_and_reboot_tryboot(built, tmp_path):
    paths = set(squashfs_paths(built.squashfs))
    for path in ("/usr/sbin/update", "/usr/lib/update/backend-rpi.sh", "/usr/sbin/reboot-tryboot"):
        assert path in paths, path
    machines = elf_machines(built.squashfs, tmp_path)
    assert machines["/usr/sbin/reboot-tryboot"] == EM_AARCH64
    layout = subprocess.run(["unsquashfs", "-cat", str(built.squashfs), "usr/share/update/layout"],
                            capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in layout.split() if "=" in line)
    assert {k: values.get(k) for k in ("BACKEND", "ESP_A", "ROOT_A", "ESP_B", "ROOT_B")} == {
        "BACKEND": "rpi", "ESP_A": "boot_a", "ROOT_A": "root_a", "ESP_B": "boot_b", "ROOT_B": "root_b"}


@pytest.mark.skipif(shutil.which("busybox") is None or shutil.which("minisign") is None,
                    reason="needs busybox and minisign (apt)")
def test_the_images_bundle_installs_into_slot_b_through_the_rpi_backend(built, parts, tmp_path):
    """`buildsys bundle` of this very image, installed by the image's own
    /usr/sbin/update and backend-rpi.sh (taken from its squashfs) under busybox
    sh, into a fake device whose partitions are the image's own bytes: slot b
    then holds slot a's boot partition and root, and the trial restarts with
    reboot-tryboot.  The firmware is played by writing /chosen/bootloader."""
    keys = tmp_path / "keys"
    run_buildsys("key", "new", "t", "--kind", "update", "--out", keys, check=0)
    out = tmp_path / "u.bundle"
    env = env_for(built.build_dir)
    run_buildsys("--project", ROOT, "bundle", IMAGE, "--board", BOARD, "--key", keys / "t.key", "-o", out,
                 env=env, check=0, timeout=1800)
    root = tmp_path / "root"
    tree = tmp_path / "rootfs"
    subprocess.run(["unsquashfs", "-no-xattrs", "-q", "-n", "-d", str(tree), str(built.squashfs)], check=True)
    for path in ("usr/sbin/update", "usr/lib/update/backend-rpi.sh", "usr/share/update/layout", "etc/update"):
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (tree / path).is_dir() else shutil.copy)(tree / path, dest)
    shutil.copy(keys / "t.pub", root / "etc/update/keys/t.pub")
    # The device: its partitions are the disk image's, found by PARTNAME.
    for i, (name, p) in enumerate(parts.items(), 1):
        sysfs = root / "sys/class/block" / f"mmcblk0p{i}"
        sysfs.mkdir(parents=True)
        (sysfs / "uevent").write_text(f"DEVNAME=mmcblk0p{i}\nDEVTYPE=partition\nPARTNAME={name}\n")
        (sysfs / "size").write_text(f"{p.sectors}\n")
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev" / f"mmcblk0p{i}").write_bytes(part_bytes(built, p))
    autoboot = tmp_path / "autoboot"
    autoboot.mkdir()
    (autoboot / "autoboot.txt").write_bytes(fat_read(built.image, parts["autoboot"].offset, "/autoboot.txt"))
    dt = root / "proc/device-tree/chosen/bootloader"
    dt.mkdir(parents=True)
    (dt / "partition").write_bytes((2).to_bytes(4, "big"))
    (dt / "tryboot").write_bytes((0).to_bytes(4, "big"))
    for d in ("data/update", "run"):
        (root / d).mkdir(parents=True)
    log = tmp_path / "restarts"
    fake_reboot = tmp_path / "reboot-tryboot"
    fake_reboot.write_text(f"#!/bin/sh\necho tryboot >> {log}\n")
    fake_reboot.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("busybox", "minisign"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    applets = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if not (bin_dir / applet).exists():
            (bin_dir / applet).symlink_to(shutil.which("busybox"))
    device_env = {"PATH": str(bin_dir), "UPDATE_ROOT": str(root), "UPDATE_RPI_AUTOBOOT_DIR": str(autoboot),
                  "UPDATE_REBOOT_TRYBOOT": str(fake_reboot), "UPDATE_REBOOT": "echo REBOOT"}

    def update(*args):
        proc = subprocess.run(["busybox", "sh", str(root / "usr/sbin/update"), *args], capture_output=True,
                              text=True, env=device_env, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert "slot b: empty" in update("status")
    # The image's version is 1 and so is the bundle's: --force (a reinstall).
    update("install", str(out), "--force", "--reboot")
    assert log.read_text() == "tryboot\n"
    dev = {name: (root / "dev" / f"mmcblk0p{i}").read_bytes() for i, name in enumerate(parts, 1)}
    esp = (built.deploy / f"{IMAGE}-{BOARD}.esp.vfat").read_bytes()
    rootimg = (built.deploy / f"{IMAGE}-{BOARD}.root.img").read_bytes()
    assert dev["boot_b"][:len(esp)] == esp == dev["boot_a"][:len(esp)]
    assert dev["root_b"][:len(rootimg)] == rootimg == dev["root_a"][:len(rootimg)]
    assert (autoboot / "autoboot.txt").read_bytes() == AUTOBOOT
    # The firmware's trial of partition 3, then the health checks commit it.
    (dt / "partition").write_bytes((3).to_bytes(4, "big"))
    (dt / "tryboot").write_bytes((1).to_bytes(4, "big"))
    update("health")
    assert (autoboot / "autoboot.txt").read_bytes() == AUTOBOOT_B
    assert "slot b: 1 (booted, committed)" in update("status")

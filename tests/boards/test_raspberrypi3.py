"""raspberrypi3: the SD-card image as the firmware expects it (MBR, FAT boot
partition with firmware, config.txt, cmdline.txt, kernel, dtb; squashfs root
as partition 2), and a boot under qemu-system-aarch64 -M raspi3b."""
import shutil

import pytest

from buildsys.image import mbr
from buildsys.qemu import Check, boot_and_check
from conftest import ROOT, run_buildsys

from .helpers import (
    EM_AARCH64,
    build,
    dtc_parses,
    elf_machines,
    env_for,
    fat_copy,
    fat_files,
    fat_read,
    fat_type,
    is_arm64_image,
    sfdisk_json,
)

pytestmark = pytest.mark.slow
BOARD = "raspberrypi3"
DTB = "bcm2837-rpi-3-b.dtb"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp(BOARD) / "build")


def boot_offset(built):
    return mbr.read(built.image)[1][0].first_lba * mbr.SECTOR


def test_mbr_layout(built):
    signature, parts = mbr.read(built.image)
    assert signature == mbr.disk_signature(BOARD)
    assert [(p.type, p.bootable) for p in parts] == [(0x0C, True), (0x83, False)]
    assert parts[0].first_lba * mbr.SECTOR % (1 << 20) == 0
    size = built.image.stat().st_size
    assert size & (size - 1) == 0, f"{size} is not a power of two (QEMU's SD card needs one)"
    assert (parts[1].first_lba + parts[1].sectors) * mbr.SECTOR <= size
    table = sfdisk_json(built.image)
    assert table["label"] == "dos" and int(table["id"], 16) == signature
    assert [p["type"] for p in table["partitions"]] == ["c", "83"]


def test_boot_partition_contents(built, tmp_path):
    off = boot_offset(built)
    assert fat_type(built.image, off) in ("FAT16", "FAT32")     # the boot ROM reads no FAT12
    assert fat_files(built.image, off) == sorted(["bootcode.bin", "start.elf", "fixup.dat", "LICENCE.broadcom",
                                                  "Image", DTB, "config.txt", "cmdline.txt"])
    config = fat_read(built.image, off, "/config.txt").decode()
    for line in ("arm_64bit=1", "kernel=Image", f"device_tree={DTB}", "enable_uart=1"):
        assert line in config.splitlines()
    cmdline = fat_read(built.image, off, "/cmdline.txt").decode()
    assert cmdline.endswith("\n") and cmdline.count("\n") == 1
    partuuid = mbr.partuuid(mbr.disk_signature(BOARD), 2)
    assert f"root=PARTUUID={partuuid}" in cmdline.split()
    assert {"rootfstype=squashfs", "ro", "rootwait", "console=ttyAMA0,115200"} <= set(cmdline.split())
    assert is_arm64_image(fat_read(built.image, off, "/Image"))
    dts = dtc_parses(fat_copy(built.image, off, f"/{DTB}", tmp_path / DTB))
    assert 'compatible = "raspberrypi,3-model-b' in dts
    assert len(fat_read(built.image, off, "/start.elf")) > 1_000_000


def test_every_elf_is_aarch64(built, tmp_path):
    machines = elf_machines(built.squashfs, tmp_path)
    assert machines and all(m == EM_AARCH64 for m in machines.values()), machines


def test_boots_under_qemu_raspi3b(built, tmp_path):
    # Kernel and dtb as the card carries them; QEMU plays the firmware.
    off = boot_offset(built)
    kernel = fat_copy(built.image, off, "/Image", tmp_path / "Image")
    dtb = fat_copy(built.image, off, f"/{DTB}", tmp_path / DTB)
    card = tmp_path / "card.img"
    shutil.copyfile(built.image, card)
    argv = ["qemu-system-aarch64", "-M", "raspi3b", "-m", "1G", "-kernel", str(kernel), "-dtb", str(dtb),
            "-drive", f"file={card},if=sd,format=raw", "-nographic", "-no-reboot"]
    result = boot_and_check(argv, [
        Check("grep ' / ' /proc/mounts", r"^\S+ / squashfs ro[ ,]"),
        Check("cat /proc/cmdline", r"root=PARTUUID=" + mbr.partuuid(mbr.disk_signature(BOARD), 2)),
        Check("cat /sys/block/mmcblk0/mmcblk0p2/partition", r"^2$"),
        Check("uname -m", r"^aarch64\s*$"),
        Check("cat /proc/device-tree/model", r"Raspberry Pi 3 Model B"),
    ], tmp_path / "serial.log", timeout=300)
    assert result.ok, f"{result.reason} (serial log {result.log_path})"


def test_buildsys_test_command(built):
    proc = run_buildsys("--project", ROOT, "test", "--board", BOARD, env=env_for(built.build_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PASS: {BOARD}" in proc.stderr

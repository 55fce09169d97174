"""raspberrypi4: no QEMU machine, so the SD-card image is checked as the
EEPROM bootloader and start4.elf will read it."""
import pytest

from buildsys.image import mbr
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
BOARD = "raspberrypi4"
DTB = "bcm2711-rpi-4-b.dtb"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp(BOARD) / "build")


def boot_offset(built):
    return mbr.read(built.image)[1][0].first_lba * mbr.SECTOR


def test_mbr_layout(built):
    signature, parts = mbr.read(built.image)
    assert signature == mbr.disk_signature(BOARD)
    assert [(p.type, p.bootable) for p in parts] == [(0x0C, True), (0x83, False)]
    assert all(p.first_lba * mbr.SECTOR % (1 << 20) == 0 for p in parts)
    table = sfdisk_json(built.image)
    assert table["label"] == "dos" and [p["type"] for p in table["partitions"]] == ["c", "83"]


def test_boot_partition_contents(built, tmp_path):
    off = boot_offset(built)
    assert fat_type(built.image, off) in ("FAT16", "FAT32")
    files = fat_files(built.image, off)
    assert files == sorted(["start4.elf", "fixup4.dat", "LICENCE.broadcom", "Image", DTB, "config.txt",
                            "cmdline.txt"])
    assert "bootcode.bin" not in files          # the Pi 4 boots from EEPROM
    config = fat_read(built.image, off, "/config.txt").decode().splitlines()
    for line in ("arm_64bit=1", "kernel=Image", f"device_tree={DTB}", "enable_uart=1"):
        assert line in config
    cmdline = fat_read(built.image, off, "/cmdline.txt").decode().split()
    assert f"root=PARTUUID={mbr.partuuid(mbr.disk_signature(BOARD), 2)}" in cmdline
    assert {"rootfstype=squashfs", "ro", "rootwait", "console=ttyS1,115200"} <= set(cmdline)
    assert is_arm64_image(fat_read(built.image, off, "/Image"))
    dts = dtc_parses(fat_copy(built.image, off, f"/{DTB}", tmp_path / DTB))
    assert 'compatible = "raspberrypi,4-model-b' in dts and 'brcm,bcm2711' in dts


def test_kernel_has_the_bcm2711_drivers(built):
    # The image may have come whole from the cache: ask for the kernel itself.
    run_buildsys("--project", ROOT, "build", "--board", BOARD, "linux", env=env_for(built.build_dir), check=0)
    linux = next(r for r in built.manifest["recipes"] if r["name"] == "linux")
    text = (built.build_dir / "packages" / linux["signature"] / "boot/config").read_text()
    for line in ("CONFIG_ARCH_BCM2835=y", "CONFIG_MMC_SDHCI_IPROC=y", "CONFIG_SERIAL_8250_BCM2835AUX=y",
                 "CONFIG_BCM2835_WDT=y", "CONFIG_SQUASHFS_XZ=y"):
        assert line in text.splitlines()


def test_every_elf_is_aarch64(built, tmp_path):
    machines = elf_machines(built.squashfs, tmp_path)
    assert machines and all(m == EM_AARCH64 for m in machines.values()), machines

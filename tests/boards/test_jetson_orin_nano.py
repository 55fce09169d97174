"""jetson-orin-nano-devkit: the Orin Nano developer kit, whose device tree
mainline has from 6.6 on, on the 6.12 kernel layers/jetson's linux append
moves it to.  The disk is the AGX Orin's (GPT; an ESP with extlinux.conf
naming kernel, dtb and command line; the squashfs root as APP); image-base
adds the data partition and a kernel with PCIe and the RTL8168 driver."""
import pytest

from buildsys.image import gpt

from .helpers import (
    EM_AARCH64,
    build,
    dtc_parses,
    elf_machines,
    ext4_label,
    extlinux_entries,
    fat_copy,
    fat_files,
    fat_read,
    fat_type,
    is_arm64_image,
    sfdisk_json,
    squashfs_paths,
)

pytestmark = pytest.mark.slow
BOARD = "jetson-orin-nano-devkit"
DTB = "tegra234-p3768-0000+p3767-0005.dtb"
VERSION = b"Linux version 6.12.107"
# Built-in drivers' names, in the uncompressed arm64 Image's .rodata.
ETHERNET = (b"r8169", b"tegra194-pcie", b"tegra194-p2u")


@pytest.fixture(scope="module")
def minimal(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp("nano") / "build")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp("nano-base") / "build", "image-base")


def check_esp(built, tmp_path) -> bytes:
    """The ESP as L4TLauncher reads it; returns the kernel Image."""
    table = gpt.read(built.image)
    esp, app = table.partitions[:2]
    assert fat_type(built.image, esp.offset).startswith("FAT")
    assert fat_files(built.image, esp.offset) == sorted(
        ["boot/Image", f"boot/dtb/{DTB}", "boot/extlinux/extlinux.conf"])
    entries = extlinux_entries(fat_read(built.image, esp.offset, "/boot/extlinux/extlinux.conf").decode())
    assert entries["DEFAULT"] == "primary" and entries["LABEL"] == "primary"
    assert entries["LINUX"] == "/boot/Image" and entries["FDT"] == f"/boot/dtb/{DTB}"
    append = entries["APPEND"].split()
    assert f"root=PARTUUID={app.guid}" in append
    assert {"console=ttyTCU0,115200", "rootfstype=squashfs", "ro", "rootwait"} <= set(append)
    kernel = fat_read(built.image, esp.offset, "/boot/Image")
    assert is_arm64_image(kernel)
    assert kernel[:2] == b"MZ", "not an EFI application: UEFI's LoadImage would refuse it"
    assert VERSION in kernel
    dts = dtc_parses(fat_copy(built.image, esp.offset, f"/boot/dtb/{DTB}", tmp_path / DTB))
    assert 'compatible = "nvidia,p3768-0000+p3767-0005' in dts and 'nvidia,tegra234' in dts
    assert 'model = "NVIDIA Jetson Orin Nano Developer Kit"' in dts
    # The C8 controller the RJ45's RTL8168 hangs off is enabled.
    assert "pcie@140a0000" in dts
    return kernel


def test_minimal_gpt_layout(minimal):
    table = gpt.read(minimal.image)
    assert [p.name for p in table.partitions] == ["esp", "APP"]
    esp, app = table.partitions
    assert esp.type_guid == gpt.TYPES["esp"]
    assert app.type_guid == gpt.TYPES["root:aarch64"]
    assert app.guid == gpt.partition_guid(BOARD, "APP")
    util = sfdisk_json(minimal.image)
    assert util["label"] == "gpt" and [p["name"] for p in util["partitions"]] == ["esp", "APP"]


def test_minimal_esp_and_kernel(minimal, tmp_path):
    kernel = check_esp(minimal, tmp_path)
    # image-minimal keeps the tiny kernel: no network stack, no PCIe.
    assert not any(name in kernel for name in ETHERNET)


def test_minimal_every_elf_is_aarch64(minimal, tmp_path):
    machines = elf_machines(minimal.squashfs, tmp_path)
    assert machines and all(m == EM_AARCH64 for m in machines.values()), machines


def test_base_layout_has_the_data_partition_after_app(base):
    table = gpt.read(base.image)
    assert [p.name for p in table.partitions] == ["esp", "APP", "data"]
    esp, app, data = table.partitions
    # APP keeps its GUID, so extlinux.conf's root= is the same as image-minimal's.
    assert app.guid == gpt.partition_guid(BOARD, "APP")
    assert data.offset > app.offset
    assert ext4_label(base.image, data.offset) == "data"


def test_base_esp_and_kernel_with_ethernet(base, tmp_path):
    kernel = check_esp(base, tmp_path)
    for name in ETHERNET:
        assert name in kernel, name


def test_base_root_has_ssh_and_is_aarch64(base, tmp_path):
    paths = squashfs_paths(base.squashfs)
    assert any(p.endswith("/dropbear") for p in paths), paths
    machines = elf_machines(base.squashfs, tmp_path)
    assert machines and all(m == EM_AARCH64 for m in machines.values()), machines

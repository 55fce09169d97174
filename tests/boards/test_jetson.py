"""jetson-agx-orin-devkit: the disk NVIDIA's UEFI + L4TLauncher boot -- GPT,
an ESP with /boot/extlinux/extlinux.conf naming kernel, dtb and command
line, and the squashfs root as the APP partition."""
import pytest

from buildsys.image import gpt

from .helpers import (
    EM_AARCH64,
    build,
    dtc_parses,
    elf_machines,
    fat_copy,
    fat_files,
    fat_read,
    fat_type,
    is_arm64_image,
    sfdisk_json,
)

pytestmark = pytest.mark.slow
BOARD = "jetson-agx-orin-devkit"
DTB = "tegra234-p3737-0000+p3701-0000.dtb"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp("jetson") / "build")


def test_gpt_layout(built):
    table = gpt.read(built.image)
    assert [p.name for p in table.partitions] == ["esp", "APP"]
    esp, app = table.partitions
    assert esp.type_guid == gpt.TYPES["esp"]
    assert app.type_guid == gpt.TYPES["root:aarch64"]
    assert app.guid == gpt.partition_guid(BOARD, "APP")
    util = sfdisk_json(built.image)
    assert util["label"] == "gpt"
    assert [p["name"] for p in util["partitions"]] == ["esp", "APP"]


def test_esp_contents(built, tmp_path):
    esp, app = gpt.read(built.image).partitions
    assert fat_type(built.image, esp.offset).startswith("FAT")
    assert fat_files(built.image, esp.offset) == sorted(
        ["boot/Image", f"boot/dtb/{DTB}", "boot/extlinux/extlinux.conf"])
    conf = fat_read(built.image, esp.offset, "/boot/extlinux/extlinux.conf").decode()
    entries = {}
    for line in conf.splitlines():
        words = line.split(None, 1)
        if len(words) == 2:
            entries.setdefault(words[0], words[1])
    assert entries["DEFAULT"] == "primary" and entries["LABEL"] == "primary"
    assert entries["LINUX"] == "/boot/Image"
    assert entries["FDT"] == f"/boot/dtb/{DTB}"
    append = entries["APPEND"].split()
    assert f"root=PARTUUID={app.guid}" in append
    assert {"console=ttyTCU0,115200", "rootfstype=squashfs", "ro", "rootwait"} <= set(append)
    kernel = fat_read(built.image, esp.offset, "/boot/Image")
    assert is_arm64_image(kernel)
    assert kernel[:2] == b"MZ", "not an EFI application: UEFI's LoadImage would refuse it"
    dts = dtc_parses(fat_copy(built.image, esp.offset, f"/boot/dtb/{DTB}", tmp_path / "orin.dtb"))
    assert 'compatible = "nvidia,p3737-0000+p3701-0000' in dts and 'nvidia,tegra234' in dts


def test_every_elf_is_aarch64(built, tmp_path):
    machines = elf_machines(built.squashfs, tmp_path)
    assert machines and all(m == EM_AARCH64 for m in machines.values()), machines

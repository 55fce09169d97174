"""image-base on the Raspberry Pi boards and the AGX Orin: the board's own
layout plus the data partition right after the root, a root with dropbear,
and linux-base with the board's Ethernet driver built in (the layers'
linux-base.append.yaml).  The Orin Nano has its own module
(test_jetson_orin_nano.py)."""
import pytest

from buildsys.image import gpt, mbr

from .helpers import (
    EM_AARCH64,
    build,
    elf_machines,
    ext4_label,
    fat_read,
    is_arm64_image,
    squashfs_paths,
)

pytestmark = pytest.mark.slow
# board -> (path of the kernel on the boot partition, built-in driver names
# that must be in the Image: .rodata of an uncompressed arm64 Image)
BOARDS = {
    "raspberrypi3": ("/Image", (b"dwc2", b"smsc95xx")),
    "raspberrypi4": ("/Image", (b"bcmgenet", b"unimac-mdio")),
    "jetson-agx-orin-devkit": ("/boot/Image", (b"r8169", b"tegra194-pcie", b"tegra194-p2u")),
}


@pytest.fixture(scope="module", params=sorted(BOARDS))
def built(request, tmp_path_factory):
    return build(request.param, tmp_path_factory.mktemp(request.param) / "build", "image-base")


def partitions(built) -> tuple[int, int, int]:
    """Byte offsets of the boot, root and data partitions."""
    with open(built.image, "rb") as f:
        f.seek(512)
        is_gpt = f.read(8) == b"EFI PART"
    if is_gpt:
        parts = gpt.read(built.image).partitions
        assert [p.name for p in parts] == ["esp", "APP", "data"]
        assert parts[1].guid == gpt.partition_guid(built.board, "APP")
        return parts[0].offset, parts[1].offset, parts[2].offset
    signature, parts = mbr.read(built.image)
    assert signature == mbr.disk_signature(built.board)
    assert [(p.type, p.bootable) for p in parts] == [(0x0C, True), (0x83, False), (0x83, False)]
    size = built.image.stat().st_size
    assert size & (size - 1) == 0, "the Pi layouts keep the power-of-two size with the data partition"
    assert (parts[2].first_lba + parts[2].sectors) * mbr.SECTOR <= size
    boot, root, data = (p.first_lba * mbr.SECTOR for p in parts)
    return boot, root, data


def test_data_partition_follows_the_root(built):
    _, root, data = partitions(built)
    assert data > root
    assert ext4_label(built.image, data) == "data"


def test_kernel_has_the_boards_ethernet(built):
    boot, _, _ = partitions(built)
    path, drivers = BOARDS[built.board]
    kernel = fat_read(built.image, boot, path)
    assert is_arm64_image(kernel)
    for name in drivers:
        assert name in kernel, name


def test_root_has_ssh_and_is_aarch64(built, tmp_path):
    paths = squashfs_paths(built.squashfs)
    assert any(p.endswith("/dropbear") for p in paths), paths
    machines = elf_machines(built.squashfs, tmp_path)
    assert machines and all(m == EM_AARCH64 for m in machines.values()), machines

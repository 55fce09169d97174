"""image-base on the Raspberry Pi boards and the AGX Orin: the board's own
layout plus the data partition right after the root, a root with dropbear,
and linux-base with the board's Ethernet driver built in (the layers'
linux-base.append.yaml).  The Orin Nano has its own module
(test_jetson_orin_nano.py)."""
import shutil
import subprocess

import pytest

from buildsys.image import gpt, mbr
from buildsys.qemu import Check, boot_and_check
from conftest import ROOT, run_buildsys

from .helpers import (
    EM_AARCH64,
    build,
    elf_machines,
    env_for,
    ext4_label,
    fat_copy,
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


def test_raspberrypi3_boots_with_data_and_a_dhcp_lease(built, tmp_path):
    """QEMU's raspi3b has no LAN9514; a USB CDC Ethernet device on the same
    dwc2 port stands in (cdc_ether), so the USB host stack, usbnet, the
    network scripts (DHCP from QEMU's user network) and /data are exercised."""
    if built.board != "raspberrypi3":
        pytest.skip("QEMU has no machine for this board")
    boot, _, _ = partitions(built)
    kernel = fat_copy(built.image, boot, "/Image", tmp_path / "Image")
    dtb = fat_copy(built.image, boot, "/bcm2837-rpi-3-b.dtb", tmp_path / "board.dtb")
    card = tmp_path / "card.img"
    shutil.copyfile(built.image, card)
    argv = ["qemu-system-aarch64", "-M", "raspi3b", "-m", "1G", "-kernel", str(kernel), "-dtb", str(dtb),
            "-drive", f"file={card},if=sd,format=raw", "-nographic", "-no-reboot",
            "-device", "usb-net,netdev=net0,mac=40:54:00:12:34:56", "-netdev", "user,id=net0"]
    result = boot_and_check(argv, [
        Check("grep ' /data ' /proc/mounts", r"^/dev/mmcblk0p3 /data ext4 rw[ ,]"),
        # The board's own driver is registered, and the stand-in is eth0.
        Check("ls /sys/bus/usb/drivers", r"smsc95xx"),
        Check("cat /sys/class/net/eth0/address", r"^40:54:00:12:34:56"),
        # S20network's udhcpc got QEMU's lease (it waits for it a few seconds).
        Check("ip -4 addr show eth0; ip route", r"inet 10\.0\.2\.15/24[\s\S]*default via 10\.0\.2\.2"),
        Check("ls /data/dropbear", r"dropbear_ed25519_host_key"),
    ], tmp_path / "serial.log", timeout=300)
    assert result.ok, f"{result.reason} (serial log {result.log_path})"


def test_raspberrypi3_buildsys_test_logs_in_over_ssh(built, tmp_path):
    """`buildsys test` with the board's qemu: args (usb-net, the SSH port
    forwarded): an image trusting a key made here, a command and a file
    copied each way over SSH."""
    if built.board != "raspberrypi3":
        pytest.skip("QEMU has no machine for this board")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
    env = dict(env_for(built.build_dir), BUILDSYS_SSH_AUTHORIZED_KEYS=f"{key}.pub")
    proc = run_buildsys("--project", ROOT, "test", "--board", built.board, "image-base", env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scp: guest -> host, sha256 matches" in proc.stderr
    assert f"PASS: {built.board}" in proc.stderr

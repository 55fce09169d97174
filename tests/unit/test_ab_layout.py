"""The A/B layout of an image with ab_slots (image/abslots.py): the UEFI
layout derived from a board's disk (esp_a, root_a, esp_b, root_b, data as GPT
partitions 1..5, fixed sizes), a board's own disk_ab, the Boot#### variable
bytes the updater writes to efivarfs (EFI_LOAD_OPTION, read back field by
field), the layout file and the command line that boots a slot."""
import struct
import uuid

import pytest

from buildsys.classes.image import Image
from buildsys.errors import UserError
from buildsys.image import abslots, gpt, verity


class Recipe:
    def __init__(self, name, values):
        self.name = self.pn = name
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class Board:
    def __init__(self, name, values, arch="x86_64"):
        self.name, self.arch, self.values = name, arch, values

    def get(self, key, default=None):
        return self.values.get(key, default)


X86 = Board("x86-virtio", {"console": "ttyS0", "disk": {"table": "gpt", "align": 4096, "partitions": [
    {"name": "esp", "type": "esp", "filesystem": "vfat",
     "files": {"/EFI/BOOT/BOOTX64.EFI": "virtual/kernel:boot/bzImage"}},
    {"name": "root", "type": "root", "filesystem": "squashfs"}]}})
AB = {"ab_slots": {"root_size": "96M", "esp_size": "16M"}, "data_partition": "8M", "kernel": "linux-ab",
      "version": "1.2"}


def test_uefi_layout_from_the_boards_disk():
    lay = abslots.layout(Recipe("image-base-ab", AB), X86)
    assert [s.name for s in lay.specs] == ["esp_a", "root_a", "esp_b", "root_b", "data"]
    assert [s.min_size for s in lay.specs] == [16 << 20, 96 << 20, 16 << 20, 96 << 20, 8 << 20]
    assert [s.filesystem for s in lay.specs] == ["vfat", "squashfs", "vfat", "squashfs", "ext4"]
    assert lay.slot_of == {"esp_a": "a", "root_a": "a", "esp_b": "b", "root_b": "b", "data": None}
    assert lay.root == {"a": "root_a", "b": "root_b"} and lay.esp == {"a": "esp_a", "b": "esp_b"}
    assert lay.backend == "efi" and lay.uki_path == "/EFI/BOOT/BOOTX64.EFI"
    assert lay.kernel_file == "virtual/kernel:boot/bzImage"
    # The UKI needs the stub and the image's kernel.
    assert Image().build_depends(Recipe("image-base-ab", AB), X86)[:2] == ["linux-ab", "systemd-boot-stub"]


def test_boot_variables_are_load_options_for_each_esp():
    lay = abslots.layout(Recipe("image-base-ab", AB), X86)
    parts, _ = gpt.plan([(s.name, gpt.type_guid(s.type, "x86_64"), gpt.partition_guid("x86-virtio", s.name),
                          s.min_size) for s in lay.specs], lay.align)
    variables = abslots.boot_vars("x86-virtio", lay, parts)
    for slot, number in (("a", 1), ("b", 3)):
        raw = variables[slot]
        assert raw[:4] == b"\x07\x00\x00\x00"            # NV|BS|RT, then the load option
        attrs, path_len = struct.unpack_from("<IH", raw, 4)
        assert attrs == 1                                  # LOAD_OPTION_ACTIVE
        desc_end = raw.index(b"\0\0", 10)
        desc_end += (desc_end - 10) % 2                     # UCS-2: the NUL pair on an even offset
        assert raw[10:desc_end].decode("utf-16-le") == f"buildsys slot {slot}"
        devpath = raw[desc_end + 2:]
        assert len(devpath) == path_len                     # no optional data
        kind, sub, length, partnum, start, size, sig, fmt, sigtype = struct.unpack_from("<BBHIQQ16sBB", devpath)
        p = parts[number - 1]
        assert (kind, sub, length, fmt, sigtype) == (4, 1, 42, 2, 2)
        assert (partnum, start, size) == (number, p.first_lba, p.sectors)
        assert uuid.UUID(bytes_le=sig) == gpt.partition_guid("x86-virtio", f"esp_{slot}") == p.guid
        kind, sub, flen = struct.unpack_from("<BBH", devpath, 42)
        assert (kind, sub) == (4, 4)
        assert devpath[46:42 + flen].decode("utf-16-le") == f"\\EFI\\Linux\\buildsys-{slot}.efi\0"
        assert devpath[42 + flen:] == b"\x7f\xff\x04\x00"


def test_layout_file_and_slot_cmdline():
    lay = abslots.layout(Recipe("image-base-ab", AB), X86)
    text = abslots.layout_text(lay, "x86-virtio/image-base-ab", "1.2")
    values = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert values == {"BACKEND": "efi", "BOOT_A": "0001", "BOOT_B": "0002", "ESP_A": "esp_a", "ROOT_A": "root_a",
                      "ESP_B": "esp_b", "ROOT_B": "root_b", "COMPATIBLE": "x86-virtio/image-base-ab",
                      "VERSION": "1.2"}
    salt = verity.salt_for("image-base-ab", "x86-virtio", "verity")
    v = verity.Verity(139, 140, "ab" * 32, salt.hex(), "u", 0)
    p = str(gpt.partition_guid("x86-virtio", "root_b"))
    line = abslots.cmdline(X86, p, v, "b")
    assert line == (f'dm-mod.create="vroot,,,ro,0 1112 verity 1 PARTUUID={p} PARTUUID={p} 4096 4096 139 140 '
                    f'sha256 {"ab" * 32} {salt.hex()} 1 panic_on_corruption" dm-mod.waitfor=PARTUUID={p} '
                    "root=/dev/dm-0 rootfstype=squashfs ro console=ttyS0 panic=5 buildsys.slot=b")
    # A board's boot: cmdline supplies the console and extras; its ${root} is the verity device.
    pi = Board("pi", {"console": "ttyS1", "boot": {"cmdline": "console=${console},115200 root=${root} ro rootwait"}})
    assert abslots.cmdline(pi, p, v, "a").endswith(
        " console=ttyS1,115200 root=/dev/dm-0 ro rootwait rootfstype=squashfs panic=5 buildsys.slot=a")


def test_a_boards_disk_ab_with_shared_partitions_and_backend():
    board = Board("pi4", {"disk_ab": {"backend": "rpi", "table": "gpt", "align": "1MiB", "partitions": [
        {"name": "autoboot", "type": "esp", "filesystem": "vfat", "size": "4MiB"},
        {"name": "boot_a", "slot": "a", "type": "esp", "filesystem": "vfat"},
        {"name": "boot_b", "slot": "b", "type": "esp", "filesystem": "vfat"},
        {"name": "root_a", "slot": "a", "type": "root", "filesystem": "squashfs"},
        {"name": "root_b", "slot": "b", "type": "root", "filesystem": "squashfs"}]}}, arch="aarch64")
    lay = abslots.layout(Recipe("image-base-ab", AB), board)
    assert [s.name for s in lay.specs] == ["autoboot", "boot_a", "boot_b", "root_a", "root_b", "data"]
    assert [s.min_size for s in lay.specs] == [4 << 20, 16 << 20, 16 << 20, 96 << 20, 96 << 20, 8 << 20]
    assert lay.backend == "rpi" and lay.uki_path is None and lay.esp == {"a": "boot_a", "b": "boot_b"}
    assert "BOOT_A" not in abslots.layout_text(lay, "pi4/image-base-ab", "1")


def test_bad_layouts_are_one_line_errors():
    with pytest.raises(UserError, match="root_size"):
        abslots.layout(Recipe("i", {"ab_slots": {"esp_size": "16M"}}), X86)
    mbr = Board("old", {"disk": {"table": "mbr", "partitions": [
        {"name": "boot", "type": "fat32-lba", "filesystem": "vfat"},
        {"name": "root", "type": "linux", "filesystem": "squashfs"}]}})
    with pytest.raises(UserError, match="no disk_ab layout"):
        abslots.layout(Recipe("i", AB), mbr)
    one_root = Board("b", {"disk_ab": {"partitions": [
        {"name": "root_a", "slot": "a", "type": "linux", "filesystem": "squashfs"}]}})
    with pytest.raises(UserError):
        abslots.layout(Recipe("i", AB), one_root)

"""Fast checks of what the board layouts need from the image code: MBR
planning and assembly, text files, the ELF check, power-of-two disks."""
import struct

import pytest

from buildsys.classes.image import Image, _pow2, _substitute, check_elves
from buildsys.errors import BuildError, UserError
from buildsys.image import disk, mbr, vfat


def test_mbr_plan_aligns_every_partition():
    parts, total = mbr.plan([(0x0C, 3_000_000, True), (0x83, 500_000, False)], 1 << 20)
    assert [(p.first_lba, p.sectors, p.bootable) for p in parts] == [(2048, 6144, True), (8192, 2048, False)]
    assert total == 10240


def test_assemble_mbr_reads_back(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"A" * 1000)
    b.write_bytes(b"B" * 512)
    parts, total = mbr.plan([(0x0C, 1000, True), (0x83, 512, False)], 4096)
    sig = mbr.disk_signature("board")
    out = tmp_path / "disk.img"
    disk.assemble_mbr(out, sig, [(parts[0], a), (parts[1], b)], _pow2(total))
    data = out.read_bytes()
    assert len(data) == 32 * 512 and mbr.read(out) == (sig, parts)
    assert data[parts[1].first_lba * 512:][:512] == b"B" * 512


def test_mbr_layout_rules():
    layout = {"table": "mbr", "align": "1MiB", "partitions": [
        {"name": "boot", "type": "fat32-lba", "bootable": True, "filesystem": "vfat",
         "text": {"/cmdline.txt": "${cmdline}\n"}},
        {"name": "root", "type": "linux", "filesystem": "squashfs"}]}
    table, align, parts = disk.parse_layout(layout, "b")
    assert (table, align, parts[0].bootable, parts[0].text) == ("mbr", 1 << 20, True, {"/cmdline.txt": "${cmdline}\n"})
    bad = dict(layout, partitions=[dict(layout["partitions"][0], type="gpt-thing"), layout["partitions"][1]])
    with pytest.raises(UserError, match="unknown MBR partition type"):
        disk.parse_layout(bad, "b")
    five = dict(layout, partitions=[{"name": f"p{i}", "filesystem": "raw"} for i in range(4)] +
                [layout["partitions"][1]])
    with pytest.raises(UserError, match="four"):
        disk.parse_layout(five, "b")


def test_text_variables_and_unknown_names():
    class Board:
        def get(self, key, default=None):
            return {"console": "ttyS1", "boot": {"cmdline": "console=${console} root=${root} ro"}}.get(key, default)

    v = Image.text_variables(Board(), "1234abcd-02")
    assert v["cmdline"] == "console=ttyS1 root=PARTUUID=1234abcd-02 ro"
    with pytest.raises(UserError, match=r"unknown variable \$\{rooot\}"):
        _substitute("root=${rooot}", v, "config.txt")


def _elf(machine: int, interp: bytes | None = None) -> bytes:
    phnum = 1 if interp else 0
    head = bytearray(64)
    head[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHIQQQIHHHHHH", head, 16, 2, machine, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    if not interp:
        return bytes(head)
    ph = struct.pack("<IIQQQQQQ", 3, 4, 120, 0, 0, len(interp), len(interp), 1)
    return bytes(head) + ph + interp


def test_elf_check(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/ok").write_bytes(_elf(183))
    (tmp_path / "bin/script").write_text("#!/bin/sh\n")
    check_elves(tmp_path, "aarch64")
    (tmp_path / "bin/host").write_bytes(_elf(62))
    with pytest.raises(BuildError, match="/bin/host is an ELF for machine 62"):
        check_elves(tmp_path, "aarch64")
    (tmp_path / "bin/host").unlink()
    (tmp_path / "bin/dyn").write_bytes(_elf(183, b"/lib/ld-linux-aarch64.so.1\0"))
    with pytest.raises(BuildError, match="needs the interpreter /lib/ld-linux-aarch64.so.1"):
        check_elves(tmp_path, "aarch64")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/ld-linux-aarch64.so.1").write_bytes(b"")
    check_elves(tmp_path, "aarch64")


def test_root_dir_grows_with_long_names():
    assert vfat.root_dir_sectors(["/EFI/BOOT/BOOTX64.EFI"]) == 1        # the x86 ESP is unchanged
    names = ["/bootcode.bin", "/start.elf", "/fixup.dat", "/LICENCE.broadcom", "/Image",
             "/bcm2837-rpi-3-b.dtb", "/config.txt", "/cmdline.txt"]
    assert vfat.root_dir_sectors(names) == 2


def test_pow2():
    assert [_pow2(n) for n in (1, 2, 3, 16383, 16384, 16385)] == [1, 2, 4, 16384, 16384, 32768]

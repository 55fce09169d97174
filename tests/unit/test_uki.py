"""The UKI writer (image/uki.py): a PE section appender.  A small PE32+ made
here stands in for systemd-stub (and, with another machine, for a wrong
kernel); the result is parsed back by our reader and by binutils' objdump,
which must show the new sections with their sizes and addresses.  When the
real stub is in the download dir (Debian's systemd-boot-efi .deb), it is
used as well."""
import glob
import os
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildsys.image import uki

OBJDUMP = shutil.which("objdump")


def tiny_pe(machine: int = 0x8664, sections: int = 2, size_of_headers: int = 0x400) -> bytes:
    """A PE32+ EFI application: headers, then ``sections`` sections of 0x200 bytes."""
    lfanew = 0x80
    dos = bytearray(lfanew)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, lfanew)
    opt = bytearray(240)                                # PE32+ optional header with 16 data directories
    struct.pack_into("<HBB", opt, 0, 0x20B, 2, 40)
    struct.pack_into("<I", opt, 16, 0x1000)             # AddressOfEntryPoint
    struct.pack_into("<II", opt, 32, 0x1000, 0x200)     # SectionAlignment, FileAlignment
    struct.pack_into("<I", opt, 56, 0x1000 * (sections + 1))   # SizeOfImage
    struct.pack_into("<I", opt, 60, size_of_headers)
    struct.pack_into("<H", opt, 68, 10)                 # EFI application
    struct.pack_into("<I", opt, 108, 16)                # NumberOfRvaAndSizes
    coff = struct.pack("<HHIIIHH", machine, sections, 0, 0, 0, len(opt), 0x206)
    table = b""
    for i in range(sections):
        table += uki.SECTION.pack(f".s{i}".encode(), 0x100, 0x1000 * (i + 1), 0x200, size_of_headers + 0x200 * i,
                                  0, 0, 0, 0, 0x60000020)
    head = bytes(dos) + b"PE\0\0" + coff + bytes(opt) + table
    assert len(head) <= size_of_headers
    body = b"".join(bytes([0x90 + i]) * 0x200 for i in range(sections))
    return head + bytes(size_of_headers - len(head)) + body


def test_sections_are_appended_after_the_stub_and_parse_back():
    stub = tiny_pe()
    kernel = tiny_pe() + os.urandom(3000)
    out = uki.make(stub, kernel, "root=/dev/dm-0 console=ttyS0", "ID=buildsys\n")
    pe = uki.parse(out)
    names = [s.name for s in pe.sections]
    assert names == [".s0", ".s1", ".osrel", ".cmdline", ".linux"]
    old_end = max(s.virtual_address + s.virtual_size for s in uki.parse(stub).sections)
    prev_end = old_end
    for sec, data in zip(pe.sections[2:], [b"ID=buildsys\n", b"root=/dev/dm-0 console=ttyS0", kernel],
                         strict=True):
        assert sec.virtual_address >= prev_end and sec.virtual_address % uki.PAGE == 0
        assert sec.raw_offset % pe.file_alignment == 0 and sec.raw_size % pe.file_alignment == 0
        assert sec.virtual_size == len(data)
        assert out[sec.raw_offset:sec.raw_offset + len(data)] == data
        prev_end = sec.virtual_address + sec.virtual_size
    assert pe.size_of_image == -(-prev_end // pe.section_alignment) * pe.section_alignment
    assert out[:len(stub)] != stub and out[len(stub):].startswith(b"ID=buildsys")   # the stub's bytes, then data
    assert pe.checksum == uki.checksum(out, pe.opt_offset + 64) != 0
    assert pe.timestamp == 0
    # Deterministic: the same inputs give the same bytes.
    assert uki.make(stub, kernel, "root=/dev/dm-0 console=ttyS0", "ID=buildsys\n") == out


@pytest.mark.skipif(OBJDUMP is None, reason="binutils missing")
def test_objdump_reads_the_sections(tmp_path: Path):
    out = uki.make(tiny_pe(), tiny_pe(), "quiet", "ID=x\n")
    (tmp_path / "u.efi").write_bytes(out)
    text = subprocess.run([OBJDUMP, "-h", str(tmp_path / "u.efi")], capture_output=True, text=True,
                          check=True).stdout
    rows = {line.split()[1]: line.split() for line in text.splitlines() if line.strip()[:1].isdigit()}
    pe = uki.parse(out)
    for sec in pe.sections[2:]:
        row = rows[sec.name]
        assert int(row[2], 16) == sec.virtual_size and int(row[3], 16) == sec.virtual_address
        assert int(row[5], 16) == sec.raw_offset
    assert "pei-x86-64" in text


def test_refusals():
    with pytest.raises(ValueError, match="MZ"):
        uki.parse(b"\x7fELF" + bytes(100))
    with pytest.raises(ValueError, match="machine"):
        uki.make(tiny_pe(), tiny_pe(machine=0xAA64), "", "")
    with pytest.raises(ValueError, match="no room"):
        # The headers end right after the section table: no room for three more.
        uki.make(tiny_pe(sections=3, size_of_headers=0x200), tiny_pe(), "", "")
    with pytest.raises(ValueError, match="longer than 8"):
        uki.add_sections(tiny_pe(), [(".toolongname", b"x")])


def _fill_room(pe_bytes: bytes, fill: bytes) -> bytes:
    """``pe_bytes`` with the header room after its section table filled with ``fill``."""
    pe = uki.parse(pe_bytes)
    start = pe.table_offset + len(pe.sections) * uki.SECTION.size
    out = bytearray(pe_bytes)
    room = pe.size_of_headers - start
    out[start:pe.size_of_headers] = (fill * (room // len(fill) + 1))[:room]
    return bytes(out)


def test_header_padding_of_nops_is_room_on_arm64_only():
    """Debian 12's arm64 stub pads its headers with aarch64 NOPs (gnu-efi's
    crt0 writes the PE header as code): that is room for section headers;
    anything else in the room -- or NOPs in an x86 stub -- is refused."""
    nop = bytes.fromhex("1f2003d5")
    arm = _fill_room(tiny_pe(machine=0xAA64), nop)
    out = uki.make(arm, tiny_pe(machine=0xAA64), "root=/dev/dm-0", "ID=buildsys\n")
    assert [s.name for s in uki.parse(out).sections][-3:] == [".osrel", ".cmdline", ".linux"]
    with pytest.raises(ValueError, match="not empty"):
        uki.make(_fill_room(tiny_pe(), nop), tiny_pe(), "", "")
    with pytest.raises(ValueError, match="not empty"):
        uki.make(_fill_room(tiny_pe(machine=0xAA64), b"\x01\x02\x03\x04"), tiny_pe(machine=0xAA64), "", "")


def _debian_stub(tmp_path: Path, deb_arch: str, stub: str) -> bytes | None:
    debs = glob.glob(os.path.expanduser(f"~/.cache/buildsys/downloads/systemd-boot-efi_252.*_{deb_arch}.deb"))
    if not debs or shutil.which("ar") is None:
        return None
    subprocess.run(["ar", "x", debs[0], "data.tar.xz"], cwd=tmp_path, check=True)
    with tarfile.open(tmp_path / "data.tar.xz") as t:
        member = t.extractfile(f"./usr/lib/systemd/boot/efi/{stub}")
        return member.read() if member else None


@pytest.mark.skipif(OBJDUMP is None, reason="binutils missing")
def test_with_debians_systemd_stub(tmp_path: Path):
    stub = _debian_stub(tmp_path, "amd64", "linuxx64.efi.stub")
    if stub is None:
        pytest.skip("systemd-boot-efi .deb not in the download dir")
    pe = uki.parse(stub)
    assert pe.checksum == uki.checksum(stub, pe.opt_offset + 64)    # our checksum is the one PE tools write
    out = uki.make(stub, tiny_pe(), "root=/dev/dm-0", "ID=buildsys\n")
    (tmp_path / "u.efi").write_bytes(out)
    text = subprocess.run([OBJDUMP, "-h", str(tmp_path / "u.efi")], capture_output=True, text=True,
                          check=True).stdout
    assert ".sdmagic" in text and ".osrel" in text and ".cmdline" in text and ".linux" in text


def test_with_debians_arm64_systemd_stub(tmp_path: Path):
    """Debian's arm64 stub (two sections, NOP-padded headers) takes the three
    sections; they follow its .data, page-aligned, and parse back."""
    stub = _debian_stub(tmp_path, "arm64", "linuxaa64.efi.stub")
    if stub is None:
        pytest.skip("arm64 systemd-boot-efi .deb not in the download dir")
    kernel = tiny_pe(machine=0xAA64)
    out = uki.parse(uki.make(stub, kernel, "root=/dev/dm-0", "ID=buildsys\n"))
    assert out.machine == 0xAA64
    names = [s.name for s in out.sections]
    assert names[-3:] == [".osrel", ".cmdline", ".linux"]
    last_stub = max(s.virtual_address + s.virtual_size for s in uki.parse(stub).sections)
    assert all(s.virtual_address >= last_stub and s.virtual_address % 4096 == 0 for s in out.sections[-3:])

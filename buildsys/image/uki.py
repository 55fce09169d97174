"""A unified kernel image (UKI): systemd-stub plus ``.osrel``, ``.cmdline``
and ``.linux`` sections, written by a small PE/COFF section appender.

Debian 12 has no ``ukify``; ``objcopy --add-section`` works but needs the
build host's binutils to know the stub's arch and picks section addresses
by hand.  This appender needs neither and writes the same bytes every time:
the stub is kept as it is (its own TimeDateStamp, which Debian's build
zeroes), new section headers go into the header's free room, each section's
data is appended at the file's end aligned to FileAlignment, its RVA follows
the stub's last section aligned to SectionAlignment (at least a page), and
SizeOfImage, SizeOfInitializedData and the PE checksum are updated.

The stub finds the sections by name in its own loaded image (systemd's
docs/BOOT_LOADER_SPECIFICATION "Type #2"): .cmdline is the kernel command
line it passes (ignoring the firmware's load options when Secure Boot is on),
.linux the kernel (an EFI-stub bzImage/Image), .osrel the os-release text.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

DOS_MAGIC = b"MZ"
PE_MAGIC = b"PE\0\0"
COFF = struct.Struct("<HHIIIHH")              # Machine .. Characteristics (20 bytes)
SECTION = struct.Struct("<8sIIIIIIHHI")       # 40 bytes
PE32, PE32_PLUS = 0x10B, 0x20B
SCN_DATA_READ = 0x40000040                    # INITIALIZED_DATA | MEM_READ
PAGE = 4096
MACHINES = {0x8664: "x86_64", 0xAA64: "aarch64"}
STUBS = {"x86_64": "linuxx64.efi.stub", "aarch64": "linuxaa64.efi.stub"}
FILL = {0xAA64: bytes.fromhex("1f2003d5")}   # header padding besides zeros, by machine
REMOVABLE_PATHS = {"x86_64": "/EFI/BOOT/BOOTX64.EFI", "aarch64": "/EFI/BOOT/BOOTAA64.EFI"}


@dataclass(frozen=True)
class Section:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_offset: int
    characteristics: int


@dataclass(frozen=True)
class PE:
    machine: int
    timestamp: int
    section_alignment: int
    file_alignment: int
    size_of_image: int
    size_of_headers: int
    checksum: int
    sections: tuple[Section, ...]
    # offsets of the fields the appender rewrites
    coff_offset: int
    opt_offset: int
    table_offset: int


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def parse(data: bytes) -> PE:
    """The headers of a PE/COFF image (PE32 or PE32+); ValueError when it is not one."""
    if len(data) < 64 or data[:2] != DOS_MAGIC:
        raise ValueError("not a PE image (no MZ header)")
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if data[lfanew:lfanew + 4] != PE_MAGIC:
        raise ValueError("not a PE image (no PE signature)")
    coff = lfanew + 4
    machine, nsections, timestamp, _, _, opt_size, _ = COFF.unpack_from(data, coff)
    opt = coff + COFF.size
    (magic,) = struct.unpack_from("<H", data, opt)
    if magic not in (PE32, PE32_PLUS):
        raise ValueError(f"unknown optional header magic {magic:#x}")
    section_alignment, file_alignment = struct.unpack_from("<II", data, opt + 32)
    size_of_image, size_of_headers, checksum = struct.unpack_from("<III", data, opt + 56)
    table = opt + opt_size
    sections = []
    for i in range(nsections):
        name, vsize, vaddr, rsize, roff, _, _, _, _, chars = SECTION.unpack_from(data, table + i * SECTION.size)
        sections.append(Section(name.rstrip(b"\0").decode("ascii", "replace"), vsize, vaddr, rsize, roff, chars))
    return PE(machine, timestamp, section_alignment, file_alignment, size_of_image, size_of_headers, checksum,
              tuple(sections), coff, opt, table)


def _security_directory(data: bytes, pe: PE) -> tuple[int, int]:
    (magic,) = struct.unpack_from("<H", data, pe.opt_offset)
    dirs = pe.opt_offset + (112 if magic == PE32_PLUS else 96)
    (count,) = struct.unpack_from("<I", data, dirs - 4)
    return struct.unpack_from("<II", data, dirs + 4 * 8) if count > 4 else (0, 0)


def checksum(data: bytes, checksum_offset: int) -> int:
    """The PE image checksum (the algorithm of imagehlp's CheckSumMappedFile):
    16-bit one's-complement-style sum of the file with the field as zero, plus the length."""
    buf = bytearray(data)
    buf[checksum_offset:checksum_offset + 4] = bytes(4)
    if len(buf) % 2:
        buf.append(0)
    total = 0
    for (word,) in struct.iter_unpack("<H", buf):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def _is_fill(room: bytes | bytearray, machine: int) -> bool:
    """Whether ``room`` (header bytes past the section table) is padding:
    zeros, or -- in Debian 12's arm64 stub, whose PE header gnu-efi's crt0
    writes as code -- the aarch64 NOP (d503201f) its alignment fills in."""
    if not any(room):
        return True
    fill = FILL.get(machine)
    return fill is not None and len(room) % len(fill) == 0 and room == fill * (len(room) // len(fill))


def add_sections(stub: bytes, sections: list[tuple[str, bytes]]) -> bytes:
    """``stub`` with ``sections`` [(name, data)] appended (names up to 8 bytes)."""
    pe = parse(stub)
    if _security_directory(stub, pe) != (0, 0):
        raise ValueError("the stub is signed: add sections to an unsigned stub, then sign the result")
    out = bytearray(stub)
    table_end = pe.table_offset + len(pe.sections) * SECTION.size
    first_raw = min((s.raw_offset for s in pe.sections if s.raw_size), default=pe.size_of_headers)
    room = min(pe.size_of_headers, first_raw) - table_end
    if room < SECTION.size * len(sections):
        raise ValueError(f"no room in the stub's headers for {len(sections)} more section headers")
    if not _is_fill(out[table_end:table_end + SECTION.size * len(sections)], pe.machine):
        raise ValueError("the stub's header room after its section table is not empty")
    vaddr = _align(max(s.virtual_address + max(s.virtual_size, s.raw_size) for s in pe.sections),
                   max(pe.section_alignment, PAGE))
    offset = _align(len(out), pe.file_alignment)
    out += bytes(offset - len(out))
    headers = b""
    init_data = 0
    for name, data in sections:
        raw = name.encode("ascii")
        if len(raw) > 8:
            raise ValueError(f"section name {name!r} is longer than 8 bytes")
        raw_size = _align(len(data), pe.file_alignment)
        headers += SECTION.pack(raw, len(data), vaddr, raw_size, offset, 0, 0, 0, 0, SCN_DATA_READ)
        out += data + bytes(raw_size - len(data))
        init_data += raw_size
        offset += raw_size
        vaddr = _align(vaddr + len(data), max(pe.section_alignment, PAGE))
    out[table_end:table_end + len(headers)] = headers
    struct.pack_into("<H", out, pe.coff_offset + 2, len(pe.sections) + len(sections))
    (size_init,) = struct.unpack_from("<I", out, pe.opt_offset + 8)
    struct.pack_into("<I", out, pe.opt_offset + 8, size_init + init_data)
    struct.pack_into("<I", out, pe.opt_offset + 56, _align(vaddr, pe.section_alignment))
    struct.pack_into("<I", out, pe.opt_offset + 64, checksum(bytes(out), pe.opt_offset + 64))
    return bytes(out)


def make(stub: bytes, kernel: bytes, cmdline: str, osrel: str) -> bytes:
    """The UKI: the stub with .osrel, .cmdline and .linux (in this order, as ukify writes them)."""
    pe = parse(stub)
    kpe = parse(kernel)
    if kpe.machine != pe.machine:
        raise ValueError(f"the kernel is for machine {kpe.machine:#x}, the stub for {pe.machine:#x}")
    # The stub reads .cmdline as a NUL-less string of its section's VirtualSize.
    return add_sections(stub, [(".osrel", osrel.encode()), (".cmdline", cmdline.encode()), (".linux", kernel)])

"""MBR (DOS) partition tables, for boards whose firmware reads nothing else
(the Raspberry Pi's boot ROM wants a FAT partition in an MBR).

Four primary partitions, LBA addressing only (CHS fields saturated, as every
modern tool writes them).  The 32-bit disk signature -- Linux's PARTUUID is
``<signature>-<partition number>`` -- is derived from names, never random.
"""
from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

SECTOR = 512
TYPES = {"fat32-lba": 0x0C, "fat16": 0x06, "fat12": 0x01, "linux": 0x83, "root": 0x83, "esp": 0xEF}
_ENTRY = struct.Struct("<B3sB3sII")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "buildsys:mbr")


def disk_signature(*names: str) -> int:
    """A 32-bit signature derived from names.  Images call it with the board
    name alone: the board's kernel names its root as <signature>-02, so every
    image of the board must have the same one (as gpt.partition_guid)."""
    return int.from_bytes(uuid.uuid5(_NAMESPACE, "/".join(names)).bytes[:4], "little")


def type_byte(kind: str) -> int:
    """An MBR type by name (TYPES) or as a number such as 0x0c."""
    if kind in TYPES:
        return TYPES[kind]
    try:
        value = int(kind, 0)
    except ValueError:
        raise ValueError(f"unknown MBR partition type '{kind}' (known: {', '.join(TYPES)} or a byte)") from None
    if not 0 < value < 256:
        raise ValueError(f"MBR partition type {kind} is not a byte")
    return value


def plan(sizes: list[tuple[int, int, bool]], align_bytes: int) -> tuple[list[Partition], int]:
    """Place partitions (type byte, size in bytes, bootable) back to back on
    ``align_bytes`` boundaries (the first one too: LBA 0 is the MBR); return
    them and the disk size in sectors."""
    if align_bytes % SECTOR:
        raise ValueError(f"alignment {align_bytes} is not a multiple of {SECTOR}")
    step = align_bytes // SECTOR
    lba = -(-1 // step) * step
    parts = []
    for ptype, size, bootable in sizes:
        sectors = -(-max(size, 1) // align_bytes) * step
        parts.append(Partition(ptype, lba, sectors, bootable))
        lba += sectors
    return parts, lba


def partuuid(signature: int, number: int) -> str:
    """What Linux calls the partition in root=PARTUUID=..."""
    return f"{signature:08x}-{number:02x}"


@dataclass(frozen=True)
class Partition:
    type: int                 # the MBR type byte
    first_lba: int
    sectors: int
    bootable: bool = False


def write(f, signature: int, partitions: list[Partition]) -> None:
    """Write the MBR sector (boot code left zero) into an open disk file."""
    if len(partitions) > 4:
        raise ValueError("an MBR holds four primary partitions")
    sector = bytearray(SECTOR)
    struct.pack_into("<I", sector, 440, signature)
    end = 1
    for i, p in enumerate(sorted(partitions, key=lambda p: p.first_lba)):
        if p.first_lba < end or p.sectors <= 0 or p.first_lba + p.sectors > 0xFFFFFFFF:
            raise ValueError(f"partition {i + 1} ({p.first_lba}+{p.sectors}) overlaps or is out of range")
        end = p.first_lba + p.sectors
    for i, p in enumerate(partitions):
        _ENTRY.pack_into(sector, 446 + 16 * i, 0x80 if p.bootable else 0, b"\xfe\xff\xff", p.type,
                         b"\xfe\xff\xff", p.first_lba, p.sectors)
    sector[510:512] = b"\x55\xaa"
    f.seek(0)
    f.write(sector)


def read(path) -> tuple[int, list[Partition]]:
    with open(path, "rb") as f:
        sector = f.read(SECTOR)
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        raise ValueError("no MBR signature")
    (signature,) = struct.unpack_from("<I", sector, 440)
    parts = []
    for i in range(4):
        status, _, ptype, _, first, count = _ENTRY.unpack_from(sector, 446 + 16 * i)
        if ptype:
            parts.append(Partition(ptype, first, count, status == 0x80))
    return signature, parts

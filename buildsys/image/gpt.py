"""GUID partition tables, written and read in pure Python.

Why our own writer: sgdisk/sfdisk pick random GUIDs unless told otherwise,
differ between versions, and `sgdisk -q` has been seen writing nothing while
returning 0.  The format is small (UEFI 2.10, section 5.3): a protective MBR,
a header and 128 entries at the start, the same entries and a header mirrored
at the end, CRC32s over both.  Every GUID here is derived with uuid5 from
names, so the same layout always gives the same bytes.
"""
from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from dataclasses import dataclass

SECTOR = 512
ENTRY_SIZE = 128
ENTRY_COUNT = 128
ENTRY_SECTORS = ENTRY_SIZE * ENTRY_COUNT // SECTOR          # 32
HEADER_SIZE = 92
REVISION = 0x00010000
FIRST_USABLE = 2 + ENTRY_SECTORS                            # MBR + header + entries = 34
TAIL_SECTORS = 1 + ENTRY_SECTORS                            # backup entries + backup header = 33

# Our namespace for derived GUIDs; changing it changes every image's bytes.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "buildsys:gpt")

# Partition type GUIDs.  "root" picks the Discoverable Partitions Specification
# root type of the architecture, so tools (and systemd, later) can tell what it is.
TYPES = {
    "esp": uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
    "linux": uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4"),
    "root:x86_64": uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
    "root:aarch64": uuid.UUID("b921b045-1df0-41c3-af44-4c6f280d3fae"),
}

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")


def disk_guid(image: str, board: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{image}/{board}/disk")


def partition_guid(board: str, name: str) -> uuid.UUID:
    """A partition's unique GUID.  Derived from the board and partition name,
    not the image: the board's kernel names its root by PARTUUID, and every
    image of the board must match that one kernel."""
    return uuid.uuid5(NAMESPACE, f"{board}/{name}")


def type_guid(kind: str, arch: str = "") -> uuid.UUID:
    if kind == "root":
        if f"root:{arch}" not in TYPES:
            raise ValueError(f"unknown partition type 'root' for arch '{arch}' (known: esp, linux, or a GUID)")
        kind = f"root:{arch}"
    try:
        return TYPES[kind]
    except KeyError:
        try:
            return uuid.UUID(kind)
        except ValueError:
            raise ValueError(f"unknown partition type '{kind}' (known: esp, linux, root, or a GUID)") from None


@dataclass(frozen=True)
class Partition:
    name: str                  # the GPT partition name (PARTLABEL), at most 36 UTF-16 units
    type_guid: uuid.UUID
    guid: uuid.UUID
    first_lba: int
    last_lba: int              # inclusive, as on disk
    attributes: int = 0

    @property
    def sectors(self) -> int:
        return self.last_lba - self.first_lba + 1

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR


def align_up(value: int, step: int) -> int:
    return -(-value // step) * step


def plan(sizes: list[tuple[str, uuid.UUID, uuid.UUID, int]], align_bytes: int = 4096) -> tuple[list[Partition], int]:
    """Place partitions (name, type, guid, size in bytes) back to back, each
    starting on ``align_bytes``; return them and the disk size in sectors."""
    if align_bytes % SECTOR:
        raise ValueError(f"alignment {align_bytes} is not a multiple of {SECTOR}")
    step = align_bytes // SECTOR
    lba = align_up(FIRST_USABLE, step)
    parts = []
    for name, ptype, guid, size in sizes:
        # Sizes round up to the alignment too: the gap would be wasted anyway,
        # and partition tools warn about partitions ending off the boundary.
        sectors = align_up(align_up(max(size, 1), SECTOR) // SECTOR, step)
        parts.append(Partition(name, ptype, guid, lba, lba + sectors - 1))
        lba = align_up(lba + sectors, step)
    total = (parts[-1].last_lba + 1 if parts else FIRST_USABLE) + TAIL_SECTORS
    return parts, total


def _entries(partitions: list[Partition]) -> bytes:
    if len(partitions) > ENTRY_COUNT:
        raise ValueError(f"{len(partitions)} partitions, GPT holds {ENTRY_COUNT}")
    out = bytearray(ENTRY_SIZE * ENTRY_COUNT)
    for i, p in enumerate(partitions):
        name = p.name.encode("utf-16-le")
        if len(name) > 72:
            raise ValueError(f"partition name '{p.name}' is longer than 36 characters")
        _ENTRY.pack_into(out, i * ENTRY_SIZE, p.type_guid.bytes_le, p.guid.bytes_le, p.first_lba, p.last_lba,
                         p.attributes, name)
    return bytes(out)


def _header(my_lba: int, alt_lba: int, entries_lba: int, last_usable: int, guid: uuid.UUID, entries_crc: int) -> bytes:
    fields = [b"EFI PART", REVISION, HEADER_SIZE, 0, 0, my_lba, alt_lba, FIRST_USABLE, last_usable,
              guid.bytes_le, entries_lba, ENTRY_COUNT, ENTRY_SIZE, entries_crc]
    crc = zlib.crc32(_HEADER.pack(*fields))
    fields[3] = crc
    return _HEADER.pack(*fields).ljust(SECTOR, b"\0")


def protective_mbr(total_sectors: int) -> bytes:
    """One partition of type 0xEE covering the disk, so MBR-only tools keep off."""
    mbr = bytearray(SECTOR)
    size = min(total_sectors - 1, 0xFFFFFFFF)
    # status, CHS first (0/0/2), type, CHS last (saturated), first LBA, sectors
    struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def write(f, guid: uuid.UUID, partitions: list[Partition], total_sectors: int) -> None:
    """Write the protective MBR and both GPTs into an open, writable disk file
    of ``total_sectors`` sectors (partition contents are left alone)."""
    last_usable = total_sectors - TAIL_SECTORS - 1
    for p in partitions:
        if p.first_lba < FIRST_USABLE or p.last_lba > last_usable or p.first_lba > p.last_lba:
            raise ValueError(f"partition '{p.name}' ({p.first_lba}-{p.last_lba}) is outside "
                             f"{FIRST_USABLE}-{last_usable}")
    ordered = sorted(partitions, key=lambda p: p.first_lba)
    for a, b in itertools.pairwise(ordered):
        if b.first_lba <= a.last_lba:
            raise ValueError(f"partitions '{a.name}' and '{b.name}' overlap")
    entries = _entries(partitions)
    crc = zlib.crc32(entries)
    backup_entries = total_sectors - TAIL_SECTORS
    blocks = [
        (0, protective_mbr(total_sectors)),
        (1, _header(1, total_sectors - 1, 2, last_usable, guid, crc)),
        (2, entries),
        (backup_entries, entries),
        (total_sectors - 1, _header(total_sectors - 1, 1, backup_entries, last_usable, guid, crc)),
    ]
    for lba, data in blocks:
        f.seek(lba * SECTOR)
        f.write(data)


# --- reading, for tests and for checking what we wrote ----------------------------


@dataclass(frozen=True)
class Table:
    disk_guid: uuid.UUID
    partitions: list[Partition]
    total_sectors: int


def _parse_header(raw: bytes, lba: int) -> tuple:
    fields = list(_HEADER.unpack_from(raw))
    if fields[0] != b"EFI PART":
        raise ValueError(f"no GPT header at LBA {lba}")
    if fields[2] != HEADER_SIZE or fields[1] != REVISION:
        raise ValueError(f"GPT header at LBA {lba}: unexpected size {fields[2]} or revision {fields[1]:#x}")
    crc, fields[3] = fields[3], 0
    if zlib.crc32(_HEADER.pack(*fields)) != crc:
        raise ValueError(f"GPT header at LBA {lba}: bad CRC")
    if fields[5] != lba:
        raise ValueError(f"GPT header at LBA {lba} says it is at LBA {fields[5]}")
    return tuple(fields)


def read(path) -> Table:
    """Parse and verify a disk image: MBR, both headers, both entry arrays.
    Raises ValueError naming the first problem."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % SECTOR:
        raise ValueError(f"size {len(data)} is not a multiple of {SECTOR}")
    total = len(data) // SECTOR
    mbr = data[:SECTOR]
    if mbr[510:512] != b"\x55\xaa" or mbr[446 + 4] != 0xEE:
        raise ValueError("no protective MBR")
    headers = []
    for lba in (1, total - 1):
        h = _parse_header(data[lba * SECTOR:(lba + 1) * SECTOR], lba)
        entries = data[h[10] * SECTOR:h[10] * SECTOR + h[11] * h[12]]
        if zlib.crc32(entries) != h[13]:
            raise ValueError(f"GPT entries of the header at LBA {lba}: bad CRC")
        headers.append((h, entries))
    (primary, entries), (backup, backup_entries) = headers
    if primary[6] != total - 1 or backup[6] != 1:
        raise ValueError("primary and backup headers do not point at each other")
    if entries != backup_entries or primary[9] != backup[9]:
        raise ValueError("primary and backup GPT differ")
    parts = []
    for i in range(primary[11]):
        t, g, first, last, attrs, name = _ENTRY.unpack_from(entries, i * primary[12])
        if t == bytes(16):
            continue
        parts.append(Partition(name.decode("utf-16-le").rstrip("\0"), uuid.UUID(bytes_le=t), uuid.UUID(bytes_le=g),
                               first, last, attrs))
    return Table(uuid.UUID(bytes_le=primary[9]), parts, total)

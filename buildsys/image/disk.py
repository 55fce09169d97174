"""A board's disk layout (the board YAML's ``disk:``) and the assembly of a
whole disk from partition contents.

    disk:
      table: gpt                 # gpt, or mbr (see mbr.py) for firmware that reads nothing else
      align: 4096                # bytes; partitions start on this boundary
      power_of_two: false        # pad the disk to a power of two (QEMU's SD card model wants it)
      partitions:
        - {name: esp, type: esp, filesystem: vfat,
           files: {/EFI/BOOT/BOOTX64.EFI: "virtual/kernel:boot/bzImage"}}
        - {name: root, type: root, filesystem: squashfs}

``files`` maps a path in the filesystem to ``<recipe>:<path in its installed
tree>``.  ``text`` maps a path to the file's contents, written by the image
class with ``${cmdline}`` (the board's ``boot: {cmdline: ...}``),
``${root}`` (``PARTUUID=...`` of the root partition), ``${root_partuuid}``
and ``${console}`` replaced.  ``size`` (bytes, or "4MiB"/"512KiB") is a
minimum; by default a partition is as big as its contents, to keep images
small.  ``type``: for GPT esp, linux, root (the architecture's root type) or a
GUID; for MBR fat32-lba, fat16, linux, esp, root (= linux) or a byte such as
0x0c.  ``bootable: true`` sets the MBR active flag.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, Where
from . import gpt, mbr

FILESYSTEMS = ("vfat", "squashfs", "raw")
TABLES = ("gpt", "mbr")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?)?\s*$", re.I)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass(frozen=True)
class PartSpec:
    name: str
    type: str
    filesystem: str
    files: dict[str, str] = field(default_factory=dict)   # fs path -> "recipe:path"
    min_size: int = 0
    label: str = ""
    text: dict[str, str] = field(default_factory=dict)    # fs path -> contents (a template)
    bootable: bool = False


def parse_size(value, where=None) -> int:
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise UserError(f"bad size {value!r}", where, hint="bytes, or e.g. 512KiB, 4MiB")
    return int(m.group(1)) * _UNITS[(m.group(2) or "").upper()[:1]]


def _pos(mapping, key, fallback: Where | None) -> Where | None:
    """Where ``mapping[key]`` is written, when the mapping comes from yamlio."""
    if hasattr(mapping, "where") and key in mapping:
        return mapping.where(key)
    return fallback


def parse_layout(disk, board_name: str, where: Where | None = None,
                 arch: str | None = None) -> tuple[str, int, list[PartSpec]]:
    """(table, align in bytes, partitions) from a board's ``disk`` mapping.

    Also the check of a board's layout when the board is loaded (resolve.py),
    with positions when ``disk`` is a yamlio mapping; ``arch`` checks that a
    GPT ``root`` type exists for the board's architecture."""
    if not disk or not disk.get("partitions"):
        raise UserError(f"board {board_name} has no disk partitions", _pos(disk or {}, "partitions", where),
                        hint="add disk: {table: gpt, partitions: [...]} to the board config")
    table = disk.get("table", "gpt")
    if table not in TABLES:
        raise UserError(f"unknown disk table '{table}'", _pos(disk, "table", where), hint=", ".join(TABLES))
    align = parse_size(disk.get("align", 4096), _pos(disk, "align", where))
    if align % gpt.SECTOR or align <= 0:
        raise UserError(f"disk align {align} is not a positive multiple of {gpt.SECTOR}", _pos(disk, "align", where))
    partitions = disk["partitions"]
    parts, names = [], set()
    for i, p in enumerate(partitions):
        pw = partitions.where(i) if hasattr(partitions, "where") else where
        if not isinstance(p, dict) or not p.get("name"):
            raise UserError(f"disk partition {i + 1} needs a name", pw)
        if p["name"] in names:
            raise UserError(f"disk partition name '{p['name']}' is used twice", _pos(p, "name", pw))
        names.add(p["name"])
        fs = p.get("filesystem", "raw")
        if fs not in FILESYSTEMS:
            raise UserError(f"partition {p['name']}: unknown filesystem '{fs}'", _pos(p, "filesystem", pw),
                            hint=", ".join(FILESYSTEMS))
        files = {str(k): str(v) for k, v in (p.get("files") or {}).items()}
        for dest, src in files.items():
            if ":" not in src:
                raise UserError(f"partition {p['name']}: file {dest} must come from '<recipe>:<path>', got {src!r}",
                                _pos(p.get("files"), dest, pw))
        text = {str(k): str(v) for k, v in (p.get("text") or {}).items()}
        both = set(text) & set(files)
        if both:
            raise UserError(f"partition {p['name']}: {', '.join(sorted(both))} in both files and text",
                            _pos(p, "text", pw))
        if (files or text) and fs != "vfat":
            raise UserError(f"partition {p['name']}: files and text need filesystem: vfat", _pos(p, "filesystem", pw))
        ptype = str(p.get("type", "linux"))
        try:
            if table == "mbr":
                mbr.type_byte(ptype)
            elif arch is not None or ptype != "root":
                gpt.type_guid(ptype, arch or "")
        except ValueError as e:
            raise UserError(f"partition {p['name']}: {e}", _pos(p, "type", pw)) from None
        parts.append(PartSpec(p["name"], ptype, fs, files, parse_size(p.get("size", 0), _pos(p, "size", pw)),
                              str(p.get("label", p["name"])), text, bool(p.get("bootable", False))))
    if sum(1 for p in parts if p.filesystem == "squashfs") != 1:
        raise UserError(f"board {board_name}: exactly one partition must hold the root (filesystem: squashfs)",
                        _pos(disk, "partitions", where))
    if table == "mbr" and len(parts) > 4:
        raise UserError(f"board {board_name}: an MBR holds at most four partitions", _pos(disk, "partitions", where))
    return table, align, parts


def power_of_two(disk) -> bool:
    return bool((disk or {}).get("power_of_two", False))


def _write_disk(tmp: Path, total_bytes: int, placed: list[tuple[str, int, int, Path | None]], write_table) -> None:
    """Zeros, then each (label, offset, capacity, content) in place, then the
    partition table through ``write_table(f)``."""
    with open(tmp, "wb") as f:
        f.truncate(total_bytes)
        for label, offset, capacity, src in placed:
            if src is None:
                continue
            size = os.path.getsize(src)
            if size > capacity:
                raise ValueError(f"{src} ({size} bytes) does not fit partition {label}")
            f.seek(offset)
            with open(src, "rb") as s:
                shutil.copyfileobj(s, f, 1 << 20)
        write_table(f)


def assemble_mbr(out: Path, signature: int, contents: list[tuple[mbr.Partition, Path | None]],
                 total_sectors: int) -> tuple[int, list[mbr.Partition]]:
    """Write an MBR disk and verify it by reading it back, like the GPT."""
    tmp = out.with_name(f".{out.name}.tmp")
    parts = [p for p, _ in contents]
    _write_disk(tmp, total_sectors * mbr.SECTOR,
                [(f"{p.first_lba}+{p.sectors}", p.first_lba * mbr.SECTOR, p.sectors * mbr.SECTOR, src)
                 for p, src in contents],
                lambda f: mbr.write(f, signature, parts))
    read = mbr.read(tmp)
    if read != (signature, parts):
        raise ValueError(f"{out}: the MBR read back differs from the one written")
    os.replace(tmp, out)
    return read


def assemble(out: Path, disk_guid, contents: list[tuple[gpt.Partition, Path | None]], total_sectors: int) -> gpt.Table:
    """Write a GPT disk; the result is read back and verified."""
    tmp = out.with_name(f".{out.name}.tmp")
    parts = [p for p, _ in contents]
    _write_disk(tmp, total_sectors * gpt.SECTOR,
                [(p.name, p.offset, p.sectors * gpt.SECTOR, src) for p, src in contents],
                lambda f: gpt.write(f, disk_guid, parts, total_sectors))
    table = gpt.read(tmp)
    os.replace(tmp, out)
    return table

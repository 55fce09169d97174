"""The A/B layout of an image with ``ab_slots`` (docs/updates.md): which
partitions make slot a and slot b, the kernel command line that boots a slot
(dm-verity over its root), the UEFI boot entries and the files the updater
reads in /usr/share/update.

On a UEFI board without ``disk_ab`` the layout is derived from the board's
``disk:`` (an ESP and a root): ``esp_a, root_a, esp_b, root_b`` and the data
partition, GPT partitions 1..5.  Each slot's command line names its own root
partition, but an update writes the same ESP image to either slot: so every
ESP holds both unified kernel images, ``/EFI/Linux/buildsys-a.efi`` (root_a)
and ``buildsys-b.efi`` (root_b), and Boot0001 = esp_a's buildsys-a.efi,
Boot0002 = esp_b's buildsys-b.efi.  The removable-media path holds slot a's
too, so a fresh variable store boots slot a by the firmware's fallback path.
(The root hash is the same in both: the root image's bytes do not depend on
the slot they are written to.)
A board whose firmware picks the slot itself (Raspberry Pi tryboot, Jetson
rootfs A/B) gives its own ``disk_ab:`` with ``slot: a|b`` on the partitions
of each slot and the updater ``backend``.

Slot sizes are fixed at build time (``ab_slots: {root_size, esp_size}``), so
a later version fits the partitions of a device in the field, and the
partitions' places -- hence the boot entries -- are known before the rootfs
is made.
"""
from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, replace

from ..errors import UserError
from . import disk, gpt, verity

SLOTS = ("a", "b")
BOOT_ENTRIES = {"a": 0x0001, "b": 0x0002}
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
VAR_ATTRIBUTES = b"\x07\x00\x00\x00"      # NON_VOLATILE | BOOTSERVICE | RUNTIME, as efivarfs wants them first
DEFAULT_ESP_SIZE = "16M"
DATA = "data"
SLOT_UKI = {"a": "/EFI/Linux/buildsys-a.efi", "b": "/EFI/Linux/buildsys-b.efi"}


@dataclass(frozen=True)
class Layout:
    table: str
    align: int
    specs: list[disk.PartSpec]           # disk order
    slot_of: dict[str, str | None]       # partition name -> "a", "b" or None (shared)
    backend: str                         # the updater's backend: efi, rpi, jetson
    root: dict[str, str]                 # slot -> its root partition's name
    esp: dict[str, str | None]           # slot -> its (first) vfat partition's name, if it has one
    uki_path: str | None                 # EFI: the removable-media path (slot a's UKI; SLOT_UKI: each slot's)
    kernel_file: str | None              # EFI: "<recipe>:<path>" of the kernel the board's ESP carries


def sizes(recipe) -> tuple[int, int]:
    """(root_size, esp_size) in bytes from the recipe's ``ab_slots``."""
    ab = recipe.get("ab_slots") or {}
    where = recipe.where("ab_slots") if hasattr(recipe, "where") else None
    if ab.get("root_size") is None:
        raise UserError("ab_slots needs root_size (the size of each slot's root partition)", where,
                        hint="e.g. ab_slots: {root_size: 96M, esp_size: 16M}")
    return disk.parse_size(ab["root_size"], where), disk.parse_size(ab.get("esp_size", DEFAULT_ESP_SIZE), where)


def layout(recipe, board) -> Layout:
    root_size, esp_size = sizes(recipe)
    where = recipe.where("ab_slots") if hasattr(recipe, "where") else None
    ab_disk = board.get("disk_ab")
    if ab_disk:
        # parse_layout drops keys it does not know: the slot of each partition.
        slot_of = {str(p["name"]): (str(p["slot"]) if p.get("slot") else None)
                   for p in ab_disk.get("partitions") or [] if isinstance(p, dict) and p.get("name")}
        # It also wants one root: slot b's is checked as a raw partition, then put back.
        b_roots = {n for n, sl in slot_of.items() if sl == "b" and any(
            p.get("name") == n and p.get("filesystem") == "squashfs" for p in ab_disk["partitions"])}
        view = dict(ab_disk)
        view["partitions"] = [dict(p, filesystem="raw") if p.get("name") in b_roots else p
                              for p in ab_disk["partitions"]]
        table, align, specs = disk.parse_layout(view, board.name)
        specs = [replace(s, filesystem="squashfs") if s.name in b_roots else s for s in specs]
        backend = str(ab_disk.get("backend") or "efi")
        uki_path = kernel_file = None
    else:
        table, align, base = disk.parse_layout(board.get("disk"), board.name)
        base_esps = [s for s in base if s.filesystem == "vfat" and s.type == "esp"]
        roots = [s for s in base if s.filesystem == "squashfs"]
        if table != "gpt" or len(base_esps) != 1 or len(roots) != 1 or len(base) != 2:
            raise UserError(f"board {board.name} has no disk_ab layout, and its disk: is not one ESP and one root "
                            "that the UEFI A/B layout could be made from", where,
                            hint="give the board a disk_ab: (docs/updates.md)")
        esp, root = base_esps[0], roots[0]
        from .uki import REMOVABLE_PATHS
        uki_path = REMOVABLE_PATHS.get(board.arch)
        if uki_path is None:
            raise UserError(f"no UEFI removable-media path known for arch {board.arch}", where)
        kernel_file = esp.files.get(uki_path) or next(iter(esp.files.values()), None)
        if kernel_file is None:
            raise UserError(f"board {board.name}: its ESP carries no kernel to put in a UKI", where)
        specs, slot_of = [], {}
        for slot in SLOTS:
            specs.append(replace(esp, name=f"esp_{slot}", files={}, text={}, label=f"ESP_{slot.upper()}"))
            specs.append(replace(root, name=f"root_{slot}"))
            slot_of[f"esp_{slot}"] = slot_of[f"root_{slot}"] = slot
        backend = "efi"
    out = []
    for s in specs:
        in_slot = slot_of.get(s.name)
        if in_slot is not None and in_slot not in SLOTS:
            raise UserError(f"board {board.name}: partition {s.name} has slot '{in_slot}'", where, hint="a or b")
        if in_slot is not None and s.filesystem == "squashfs":
            s = replace(s, min_size=root_size)
        elif in_slot is not None and s.filesystem == "vfat":
            s = replace(s, min_size=max(s.min_size, esp_size))
        out.append(s)
    slot_roots = {slot_of.get(s.name): s.name for s in out if s.filesystem == "squashfs"}
    if set(slot_roots) != set(SLOTS) or len([s for s in out if s.filesystem == "squashfs"]) != 2:
        raise UserError(f"board {board.name}'s A/B layout needs one root partition (squashfs) in each slot", where)
    slot_esps = {slot: next((s.name for s in out if s.filesystem == "vfat" and slot_of.get(s.name) == slot), None)
            for slot in SLOTS}
    data_size = recipe.get("data_partition")
    if data_size is not None:
        if any(s.name == DATA for s in out):
            raise UserError(f"board {board.name}'s A/B layout already has a partition named {DATA}", where)
        out.append(disk.PartSpec(DATA, "linux", "ext4", min_size=disk.parse_size(data_size), label=DATA))
        slot_of[DATA] = None
    return Layout(table, align, out, slot_of, backend, {k: v for k, v in slot_roots.items() if k}, slot_esps, uki_path,
                  kernel_file)


def cmdline(board, root_partuuid: str, v: verity.Verity, slot: str) -> str:
    """The command line that boots ``slot``: the kernel sets up dm-verity over
    the slot's root partition itself (DM_INIT, no initramfs) and mounts it;
    a corrupt block panics, and panic=5 reboots into the firmware's fallback.
    The board's ``boot: cmdline`` (if any) supplies console and extras, with
    ``${root}`` = /dev/dm-0."""
    dev = f"PARTUUID={root_partuuid}"
    dm = f'dm-mod.create="vroot,,,ro,{v.table(dev, dev)}" dm-mod.waitfor={dev}'
    template = str((board.get("boot") or {}).get("cmdline") or "")
    console = board.get("console") or ""
    if template:
        rest = (template.replace("${root}", "/dev/dm-0").replace("${root_partuuid}", root_partuuid)
                .replace("${console}", console))
        if "rootfstype=" not in rest:
            rest += " rootfstype=squashfs"
    else:
        rest = "root=/dev/dm-0 rootfstype=squashfs ro" + (f" console={console}" if console else "")
    return f"{dm} {rest} panic=5 buildsys.slot={slot}"


def load_option(description: str, partnum: int, first_lba: int, sectors: int, part_guid: uuid.UUID,
                path: str) -> bytes:
    """An EFI_LOAD_OPTION (UEFI 2.10 3.1.3): active, ``HD(partnum,GPT,guid,start,size)/File(path)``,
    no optional data (the stub would append it to the command line)."""
    hd = struct.pack("<BBHIQQ16sBB", 0x04, 0x01, 42, partnum, first_lba, sectors, part_guid.bytes_le, 0x02, 0x02)
    name = (path.replace("/", "\\") + "\0").encode("utf-16-le")
    file_node = struct.pack("<BBH", 0x04, 0x04, 4 + len(name)) + name
    end = b"\x7f\xff\x04\x00"
    devpath = hd + file_node + end
    return struct.pack("<IH", 1, len(devpath)) + (description + "\0").encode("utf-16-le") + devpath


def boot_vars(board_name: str, lay: Layout, parts: list[gpt.Partition]) -> dict[str, bytes]:
    """{slot: the efivarfs bytes of its Boot#### variable} -- attributes first,
    ready for one write(2) to /sys/firmware/efi/efivars/Boot000N-<guid>."""
    assert lay.uki_path is not None
    number = {p.name: i + 1 for i, p in enumerate(parts)}
    by_name = {p.name: p for p in parts}
    out = {}
    for slot in SLOTS:
        esp = lay.esp[slot]
        assert esp is not None
        p = by_name[esp]
        out[slot] = VAR_ATTRIBUTES + load_option(f"buildsys slot {slot}", number[esp], p.first_lba, p.sectors,
                                                 gpt.partition_guid(board_name, esp), SLOT_UKI[slot])
    return out


def layout_text(lay: Layout, compatible: str, version: str) -> str:
    """/usr/share/update/layout: sh-sourceable, read by the updater."""
    lines = [f"BACKEND={lay.backend}"]
    if lay.backend == "efi":
        lines += [f"BOOT_{s.upper()}={BOOT_ENTRIES[s]:04X}" for s in SLOTS]
    for s in SLOTS:
        lines += [f"ESP_{s.upper()}={lay.esp[s] or ''}", f"ROOT_{s.upper()}={lay.root[s]}"]
    lines += [f"COMPATIBLE={compatible}", f"VERSION={version}"]
    return "# The A/B layout of this image (written by the image class; docs/updates.md)\n" + "\n".join(lines) + "\n"

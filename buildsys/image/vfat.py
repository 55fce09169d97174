"""A FAT filesystem image (an EFI system partition) made with mtools, reproducibly.

mtools (4.0.32 measured) takes "now" from SOURCE_DATE_EPOCH for every entry
it creates and writes FAT times in *local* time, so the argv lists here must
run with SOURCE_DATE_EPOCH and TZ=UTC (env()).  We also copy with ``mcopy -m``
from files whose mtimes the caller clamped, so file times do not depend on an
mtools that ignores SOURCE_DATE_EPOCH.  The volume serial is fixed with -N
(mformat picks a random one otherwise).
"""
from __future__ import annotations

import uuid

SECTOR = 512
FAT12_MAX_CLUSTERS = 4084
ROOT_DIR_SECTORS = 1        # 16 root entries: an ESP holds EFI/ and a label
SLACK_CLUSTERS = 8


def serial_for(name: str) -> str:
    """A fixed 8-hex-digit volume serial derived from a name."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"buildsys:vfat:{name}").hex[:8]


def root_dir_sectors(paths) -> int:
    """Sectors of the root directory for these destination paths: 16
    entries a sector; a long (or lower-case) name takes 1 + ceil(len/13)
    entries, the volume label one.  An ESP (EFI/ and a label) needs one."""
    names = {p.strip("/").split("/")[0] for p in paths}
    entries = 1 + sum(1 + -(-len(n) // 13) for n in names)
    return max(ROOT_DIR_SECTORS, -(-entries // 16))


def size_sectors(file_sizes: list[int], n_dirs: int, root_sectors: int = ROOT_DIR_SECTORS) -> int:
    """Sectors of a FAT image (1-sector clusters) just big enough for these
    files and directories (each directory needs one cluster while it holds
    under 16 entries)."""
    clusters = sum(-(-s // SECTOR) for s in file_sizes) + n_dirs + SLACK_CLUSTERS
    bytes_per_entry = 1.5 if clusters <= FAT12_MAX_CLUSTERS else 2
    fat_sectors = -(-int((clusters + 2) * bytes_per_entry + 1) // SECTOR)
    return 1 + 2 * fat_sectors + root_sectors + clusters


def directories(paths) -> list[str]:
    """Every parent directory of the destination paths, parents first."""
    dirs = set()
    for p in paths:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def argvs(image: str, files: dict[str, str], total_sectors: int, label: str, serial: str,
          mformat: str = "mformat", mmd: str = "mmd", mcopy: str = "mcopy",
          root_sectors: int = ROOT_DIR_SECTORS, create: bool = True) -> list[list[str]]:
    """The commands that create ``image`` and fill it: files maps a path in
    the filesystem (e.g. /EFI/BOOT/BOOTX64.EFI) to a source file.

    create=False: the caller made ``image`` already, zero-filled and
    total_sectors long.  Reproducible images need that: ``mformat -C``
    (mtools 4.0.32, measured) writes uninitialised memory into the image's
    last sector, different on every run."""
    cmds = [[mformat, "-i", image] + (["-C"] if create else []) + [
        "-T", str(total_sectors), "-h", "1", "-s", "32", "-c", "1",
        "-r", str(root_sectors), "-N", serial, "-v", label[:11].upper(), "::"]]
    dirs = directories(files)
    if dirs:
        cmds.append([mmd, "-i", image] + [f"::/{d}" for d in dirs])
    for dest in sorted(files):
        cmds.append([mcopy, "-m", "-i", image, files[dest], f"::/{dest.strip('/')}"])
    return cmds


def env(source_date_epoch: int) -> dict[str, str]:
    # MTOOLS_SKIP_CHECK: our small images have no standard floppy geometry.
    return {"SOURCE_DATE_EPOCH": str(int(source_date_epoch)), "TZ": "UTC", "MTOOLS_SKIP_CHECK": "1"}

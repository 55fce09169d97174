"""An empty ext4 filesystem made reproducibly with mke2fs (the image's data partition).

mke2fs takes randomness and the clock from three places, all pinned here:
  * the filesystem UUID (``-U``) and the directory hash seed
    (``-E hash_seed=``): uuid5 of the board and image names, so two builds
    of one image give the same bytes and two images differ;
  * every time stamp: ``E2FSPROGS_FAKE_TIME`` = SOURCE_DATE_EPOCH;
  * lazy inode table / journal init is off, so every block mke2fs would
    leave for the kernel to zero at first mount is written now (a
    reproducible image, and no background writes on the device).
The features come from the build environment's /etc/mke2fs.conf (pinned with
e2fsprogs in buildenv.lock.json).  ``root_owner=0:0``: the build user is not
root, and the data partition's / must be root's.
"""
from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "buildsys:ext4")
BLOCK = 4096
MKE2FS = "/usr/sbin/mke2fs"      # the build environment's (not on the sandbox PATH)


def fs_uuid(board: str, image: str, name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{board}/{image}/{name}/uuid")


def hash_seed(board: str, image: str, name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{board}/{image}/{name}/hash_seed")


def blocks(size: int) -> int:
    """Filesystem blocks for a partition of ``size`` bytes (rounded down)."""
    if size < 1 << 20:
        raise ValueError(f"an ext4 filesystem of {size} bytes is too small (at least 1MiB)")
    return size // BLOCK


def mke2fs_argv(path: str, label: str, fs_id: uuid.UUID, seed: uuid.UUID, nblocks: int) -> list[str]:
    """mke2fs creating ``path`` (a new regular file) with ``nblocks`` blocks."""
    return [MKE2FS, "-q", "-F", "-t", "ext4", "-b", str(BLOCK), "-L", label, "-U", str(fs_id),
            "-E", f"hash_seed={seed},lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0,nodiscard",
            "-m", "0", path, str(nblocks)]


def env(sde: int) -> dict[str, str]:
    return {"E2FSPROGS_FAKE_TIME": str(sde), "SOURCE_DATE_EPOCH": str(sde)}


@dataclass(frozen=True)
class Superblock:
    fs_id: uuid.UUID
    label: str
    hash_seed: uuid.UUID
    blocks: int
    block_size: int
    mkfs_time: int


def read_superblock(path: Path, offset: int = 0) -> Superblock:
    """The fields of an ext4 superblock we check (at ``offset`` in a disk image)."""
    with open(path, "rb") as f:
        f.seek(offset + 1024)
        sb = f.read(1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        raise ValueError(f"{path}: no ext4 superblock at {offset}")
    lo, = struct.unpack_from("<I", sb, 0x04)
    hi, = struct.unpack_from("<I", sb, 0x150)
    log, = struct.unpack_from("<I", sb, 0x18)
    mkfs, = struct.unpack_from("<I", sb, 0x108)
    return Superblock(uuid.UUID(bytes=sb[0x68:0x78]), sb[0x78:0x88].rstrip(b"\0").decode(errors="replace"),
                      uuid.UUID(bytes=sb[0xEC:0xFC]), lo | (hi << 32), 1024 << log, mkfs)

"""dm-verity in hashlib: the superblock and hash tree ``veritysetup format``
writes, appended to the data in the same file (docs/updates.md).

Layout of a root partition (what ``veritysetup format --hash-offset=<data
size> img img`` makes, byte for byte -- tests/unit/test_verity.py compares):

    data (padded to whole 4096-byte blocks) | superblock block | hash tree

The superblock (version 1, 512 bytes, zero-padded to a hash block) is at
block ``data_blocks``; the tree starts one block later, so the kernel's
table says ``hash_start = data_blocks + 1``.  The tree is stored top level
first; every digest is H(salt || block) (format version 1: salt first), each
level's digests are packed into zero-padded hash blocks, and the root hash is
the digest of the single top block.

Why not veritysetup itself: it is not in the pinned build environment, and
twenty lines of hashlib give the same bytes without one more tool.
"""
from __future__ import annotations

import hashlib
import os
import struct
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

BLOCK = 4096                # data and hash block size (the kernel's page size on both arches)
ALGORITHM = "sha256"
SUPERBLOCK = struct.Struct("<8sII16s32sIIQH6x256s168x")      # 512 bytes, dm-verity format version 1
assert SUPERBLOCK.size == 512


@dataclass(frozen=True)
class Verity:
    data_blocks: int        # also where the superblock is, in blocks
    hash_start: int         # first block of the tree (data_blocks + 1)
    root_hash: str          # hex
    salt: str               # hex
    uuid: str
    size: int               # bytes of the whole thing: data + superblock + tree

    @property
    def data_sectors(self) -> int:
        return self.data_blocks * BLOCK // 512

    def table(self, data_dev: str, hash_dev: str, options: tuple[str, ...] = ("panic_on_corruption",)) -> str:
        """The dm table line (dm-verity.rst): ``0 <sectors> verity 1 <data> <hash> <dbs> <hbs> <blocks>
        <hash_start> <alg> <root> <salt> [<#opts> <opts>...]``."""
        line = (f"0 {self.data_sectors} verity 1 {data_dev} {hash_dev} {BLOCK} {BLOCK} {self.data_blocks} "
                f"{self.hash_start} {ALGORITHM} {self.root_hash} {self.salt}")
        return line + (f" {len(options)} " + " ".join(options) if options else "")


def salt_for(*parts: str) -> bytes:
    """A fixed salt from names (image, board, "verity"): the root hash then
    depends on the content only, and two builds of the same sources agree."""
    return hashlib.sha256("\0".join(parts).encode()).digest()


def uuid_for(salt: bytes) -> uuidlib.UUID:
    """The superblock's UUID (veritysetup picks a random one; ours is derived)."""
    return uuidlib.UUID(bytes=hashlib.sha256(b"verity-uuid\0" + salt).digest()[:16], version=4)


def tree(data_digests: list[bytes], salt: bytes) -> tuple[list[bytes], bytes]:
    """The hash levels above the data, top level first (as stored), and the root hash."""
    per_block = BLOCK // hashlib.new(ALGORITHM).digest_size
    levels: list[bytes] = []
    digests = data_digests
    # Levels until one digest is left; a single data block is its own root
    # (no tree at all, as veritysetup does it).
    while len(digests) > 1:
        blocks = []
        for i in range(0, len(digests), per_block):
            chunk = b"".join(digests[i:i + per_block])
            blocks.append(chunk + bytes(BLOCK - len(chunk)))
        levels.append(b"".join(blocks))
        digests = [hashlib.new(ALGORITHM, salt + b).digest() for b in blocks]
    return levels[::-1], digests[0]


def superblock(data_blocks: int, salt: bytes, uuid: uuidlib.UUID) -> bytes:
    if len(salt) > 256:
        raise ValueError("a verity salt is at most 256 bytes")
    sb = SUPERBLOCK.pack(b"verity\0\0", 1, 1, uuid.bytes, ALGORITHM.encode(), BLOCK, BLOCK, data_blocks,
                         len(salt), salt)
    return sb + bytes(BLOCK - len(sb))


def append(path: Path, salt: bytes, uuid: uuidlib.UUID | None = None) -> Verity:
    """Pad ``path`` (e.g. a squashfs) to whole blocks and append the superblock
    and the hash tree to it, in place; return what the kernel's table needs."""
    uuid = uuid or uuid_for(salt)
    digests = []
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f"{path}: empty, nothing to protect")
        pad = -size % BLOCK
        if pad:
            f.seek(size)
            f.write(bytes(pad))
        f.seek(0)
        while block := f.read(BLOCK):
            digests.append(hashlib.new(ALGORITHM, salt + block).digest())
        levels, root = tree(digests, salt)
        f.write(superblock(len(digests), salt, uuid))
        for level in levels:
            f.write(level)
        total = f.tell()
    return Verity(len(digests), len(digests) + 1, root.hex(), salt.hex(), str(uuid), total)


def hash_blocks(data_blocks: int) -> int:
    """How many blocks the superblock and tree take for ``data_blocks`` of data:
    to know before building whether a root fits its partition."""
    per_block = BLOCK // hashlib.new(ALGORITHM).digest_size
    n, total = data_blocks, 1
    while n > 1:
        n = -(-n // per_block)
        total += n
    return total

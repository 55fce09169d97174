"""dm-verity in Python (image/verity.py) against cryptsetup's own
``veritysetup format``: the same superblock and hash tree byte for byte, the
same root hash, on sizes around the tree's edges (one block, one hash block
full, one more (two levels), a padded tail; three levels were checked by hand
with 64 MiB, too slow for a unit test)."""
import hashlib
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from buildsys.image import verity

VERITYSETUP = shutil.which("veritysetup", path="/usr/sbin:/sbin:/usr/bin")
needs_veritysetup = pytest.mark.skipif(VERITYSETUP is None, reason="veritysetup missing (apt cryptsetup-bin)")


def _data(n: int) -> bytes:
    return random.Random(n).randbytes(n)


@needs_veritysetup
@pytest.mark.parametrize("size", [1, 4096, 5000, 128 * 4096, 129 * 4096 + 17, 139 * 4096])
def test_same_bytes_and_root_hash_as_veritysetup(tmp_path: Path, size: int):
    data = _data(size)
    ours, theirs = tmp_path / "ours.img", tmp_path / "theirs.img"
    ours.write_bytes(data)
    salt = verity.salt_for("image-base-ab", "x86-virtio", "verity")
    v = verity.append(ours, salt)
    assert v.data_blocks == -(-size // verity.BLOCK) and v.hash_start == v.data_blocks + 1
    theirs.write_bytes(data + bytes(-size % verity.BLOCK))
    out = subprocess.run([VERITYSETUP, "format", f"--hash-offset={v.data_blocks * verity.BLOCK}",
                          f"--salt={salt.hex()}", f"--uuid={v.uuid}", str(theirs), str(theirs)],
                         capture_output=True, text=True, check=True).stdout
    root = next(line.split()[-1] for line in out.splitlines() if line.startswith("Root hash"))
    assert v.root_hash == root
    assert ours.read_bytes() == theirs.read_bytes()
    assert v.size == ours.stat().st_size
    assert verity.hash_blocks(v.data_blocks) == v.size // verity.BLOCK - v.data_blocks


@needs_veritysetup
def test_veritysetup_verifies_ours_and_finds_a_flipped_byte(tmp_path: Path):
    img = tmp_path / "root.img"
    img.write_bytes(_data(200 * 4096))
    v = verity.append(img, verity.salt_for("a", "b", "verity"))
    argv = [VERITYSETUP, "verify", f"--hash-offset={v.data_blocks * verity.BLOCK}", str(img), str(img),
            v.root_hash]
    subprocess.run(argv, check=True, capture_output=True)
    with open(img, "r+b") as f:
        f.seek(77 * 4096 + 5)
        b = f.read(1)
        f.seek(77 * 4096 + 5)
        f.write(bytes([b[0] ^ 1]))
    bad = subprocess.run(argv, capture_output=True, text=True)
    assert bad.returncode != 0


def test_salt_is_fixed_and_the_table_names_every_field():
    salt = verity.salt_for("image-base-ab", "x86-virtio", "verity")
    assert salt == hashlib.sha256(b"image-base-ab\0x86-virtio\0verity").digest()
    v = verity.Verity(data_blocks=139, hash_start=140, root_hash="ab" * 32, salt=salt.hex(),
                      uuid=str(verity.uuid_for(salt)), size=0)
    assert v.table("PARTUUID=x", "PARTUUID=x") == (
        f"0 1112 verity 1 PARTUUID=x PARTUUID=x 4096 4096 139 140 sha256 {'ab' * 32} {salt.hex()} "
        "1 panic_on_corruption")


def test_empty_data_is_refused(tmp_path: Path):
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        verity.append(tmp_path / "e", b"salt")

"""The image's data partition: an ext4 filesystem made reproducibly by mke2fs
(same bytes every time, fixed UUID and hash seed, epoch times), checked with
e2fsprogs' own dumpe2fs and e2fsck; and where the image puts it."""
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildsys.classes.base import SANDBOX_OBJ
from buildsys.classes.image import Image
from buildsys.errors import UserError
from buildsys.image import disk, ext4, gpt

EPOCH = 1_700_000_000
TOOLS = ("mke2fs", "dumpe2fs", "e2fsck")
needs_e2fsprogs = pytest.mark.skipif(any(shutil.which(t, path="/usr/sbin:/sbin:/usr/bin") is None for t in TOOLS),
                                     reason="e2fsprogs missing")


class Recipe:
    def __init__(self, name, values):
        self.name = self.pn = name
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class Board:
    def __init__(self, name, layout, arch="x86_64"):
        self.name, self.arch, self.layout = name, arch, layout

    def get(self, key, default=None):
        return self.layout if key == "disk" else default


GPT = {"table": "gpt", "partitions": [
    {"name": "esp", "type": "esp", "filesystem": "vfat", "files": {"/BOOTX64.EFI": "virtual/kernel:boot/bzImage"}},
    {"name": "root", "type": "root", "filesystem": "squashfs"}]}
MBR = {"table": "mbr", "align": "1MiB", "partitions": [
    {"name": "boot", "type": "fat32-lba", "filesystem": "vfat"},
    {"name": "root", "type": "linux", "filesystem": "squashfs"}]}


class HostCtx:
    """Runs the class's argv on this host (the tools are the same e2fsprogs
    the pinned environment has), /build/obj mapped to a temp dir."""

    def __init__(self, work: Path, recipe, board):
        self.recipe, self.board, self.logged = recipe, board, []
        self.paths = SimpleNamespace(obj=work / "obj", stage=work / "stage")
        for p in (self.paths.obj / "parts", self.paths.stage / "parts"):
            p.mkdir(parents=True)

    def run(self, argv, env=None, cwd=None):
        argv = [a.replace(SANDBOX_OBJ, str(self.paths.obj)) for a in argv]
        argv[0] = shutil.which(Path(argv[0]).name, path="/usr/sbin:/sbin:/usr/bin")
        subprocess.run(argv, env={"PATH": "/usr/bin:/bin", **(env or {})}, check=True, capture_output=True)

    def log(self, text):
        self.logged.append(text)


def make(tmp_path: Path, image="image-base", board="x86-virtio", size="8M") -> Path:
    ctx = HostCtx(tmp_path, Recipe(image, {"data_partition": size}), Board(board, GPT))
    _, _, specs = Image.partitions(ctx.recipe, ctx.board)
    data = next(s for s in specs if s.name == "data")
    return Image().make_ext4(ctx, data, ctx.paths.stage, ctx.paths.obj, EPOCH)


@needs_e2fsprogs
def test_two_builds_give_the_same_bytes(tmp_path):
    first, second = make(tmp_path / "a"), make(tmp_path / "b")
    assert first.stat().st_size == 8 << 20
    assert first.read_bytes() == second.read_bytes()
    other = make(tmp_path / "c", image="image-other")
    assert other.read_bytes() != first.read_bytes()


@needs_e2fsprogs
def test_label_uuid_seed_and_times(tmp_path):
    path = make(tmp_path)
    sb = ext4.read_superblock(path)
    assert sb.label == "data" and sb.block_size == 4096 and sb.blocks == 2048 and sb.mkfs_time == EPOCH
    assert sb.fs_id == ext4.fs_uuid("x86-virtio", "image-base", "data")
    assert sb.hash_seed == ext4.hash_seed("x86-virtio", "image-base", "data") != sb.fs_id
    dump = subprocess.run([shutil.which("dumpe2fs", path="/usr/sbin:/sbin"), "-h", str(path)],
                          capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in dump.splitlines() if ":" in line)
    assert fields["Filesystem volume name"].strip() == "data"
    assert fields["Filesystem UUID"].strip() == str(sb.fs_id)
    assert fields["Directory Hash Seed"].strip() == str(sb.hash_seed)
    assert "extent" in fields["Filesystem features"] and "has_journal" in fields["Filesystem features"]
    assert fields["Reserved block count"].strip() == "0"
    # Check, do not repair: 0 is clean.
    fsck = subprocess.run([shutil.which("e2fsck", path="/usr/sbin:/sbin"), "-fn", str(path)],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_data_partition_goes_after_root_and_root_keeps_its_partuuid():
    board = Board("x86-virtio", GPT)
    _, _, plain = Image.partitions(Recipe("image-minimal", {}), board)
    assert [s.name for s in plain] == ["esp", "root"]
    _, _, specs = Image.partitions(Recipe("image-base", {"data_partition": "16MiB"}), board)
    assert [(s.name, s.filesystem, s.type, s.label) for s in specs] == [
        ("esp", "vfat", "esp", "esp"), ("root", "squashfs", "root", "root"), ("data", "ext4", "linux", "data")]
    assert specs[2].min_size == 16 << 20
    # GPT PARTUUIDs come from the board and partition names: the root's does not move.
    assert gpt.partition_guid("x86-virtio", "root") == gpt.partition_guid(board.name, specs[1].name)
    _, _, mbr_specs = Image.partitions(Recipe("image-base", {"data_partition": 8 << 20}), Board("rpi", MBR, "aarch64"))
    assert [s.name for s in mbr_specs] == ["boot", "root", "data"]      # root stays partition 2 (-02)


def test_bad_data_partitions():
    with pytest.raises(UserError, match="too small"):
        Image.partitions(Recipe("i", {"data_partition": "512KiB"}), Board("b", GPT))
    with pytest.raises(UserError, match="bad size"):
        Image.partitions(Recipe("i", {"data_partition": "lots"}), Board("b", GPT))
    full = {"table": "mbr", "partitions": [dict(MBR["partitions"][0], name=f"p{i}") for i in range(3)]
            + [MBR["partitions"][1]]}
    with pytest.raises(UserError, match="no room for a data partition"):
        Image.partitions(Recipe("i", {"data_partition": "8M"}), Board("b", full))
    taken = {"table": "gpt", "partitions": GPT["partitions"] + [{"name": "data", "filesystem": "raw"}]}
    with pytest.raises(UserError, match="already has a partition named data"):
        Image.partitions(Recipe("i", {"data_partition": "8M"}), Board("b", taken))


def test_kernel_param_replaces_virtual_kernel():
    board = Board("x86-virtio", GPT)
    assert Image().build_depends(Recipe("image-minimal", {}), board) == ["virtual/kernel"]
    assert Image().build_depends(Recipe("image-base", {"kernel": "linux-base"}), board) == ["linux-base"]
    assert Image.boot_recipe(Recipe("i", {"kernel": "linux-base"}), "rpi-firmware") == "rpi-firmware"


def test_parse_size_accepts_the_short_units():
    assert disk.parse_size("8M") == 8 << 20 and disk.parse_size("8MiB") == 8 << 20

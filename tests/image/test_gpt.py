"""buildsys.image.gpt and mbr: our writers, cross-checked with sgdisk and sfdisk."""
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from buildsys.image import gpt, mbr

ROOT = Path(__file__).resolve().parents[2]
def needs(tool):
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} not installed")


def _disk(path: Path, align=4096, sizes=(1_000_000, 300_000)) -> gpt.Table:
    specs = [("esp", gpt.type_guid("esp"), gpt.partition_guid("brd", "esp"), sizes[0]),
             ("root", gpt.type_guid("root", "x86_64"), gpt.partition_guid("brd", "root"), sizes[1])]
    parts, total = gpt.plan(specs, align)
    with open(path, "wb") as f:
        f.truncate(total * gpt.SECTOR)
        gpt.write(f, gpt.disk_guid("img", "brd"), parts, total)
    return gpt.read(path)


def test_roundtrip_and_layout(tmp_path):
    table = _disk(tmp_path / "d.img")
    assert table.disk_guid == gpt.disk_guid("img", "brd")
    esp, root = table.partitions
    assert (esp.name, root.name) == ("esp", "root")
    assert esp.first_lba % 8 == 0 and root.first_lba % 8 == 0 and (esp.last_lba + 1) % 8 == 0
    assert esp.sectors * 512 >= 1_000_000 and root.sectors * 512 >= 300_000
    assert root.type_guid == uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
    assert table.total_sectors == root.last_lba + 1 + 33


def test_deterministic(tmp_path):
    _disk(tmp_path / "a.img")
    _disk(tmp_path / "b.img")
    assert (tmp_path / "a.img").read_bytes() == (tmp_path / "b.img").read_bytes()


def test_guids_are_derived_not_random():
    assert gpt.partition_guid("x86-virtio", "root") == gpt.partition_guid("x86-virtio", "root")
    assert gpt.partition_guid("x86-virtio", "root") != gpt.partition_guid("other", "root")
    assert gpt.disk_guid("a", "b") != gpt.disk_guid("c", "b")
    assert gpt.partition_guid("x86-virtio", "root").version == 5


def test_kernel_cmdline_fragment_names_the_root_partition():
    """The board's kernel fragment and the image's GPT must agree on PARTUUID."""
    text = (ROOT / "recipes/linux/files/cmdline-x86-virtio.cfg").read_text()
    found = re.search(r"root=PARTUUID=([0-9a-f-]+)", text).group(1)
    assert found == str(gpt.partition_guid("x86-virtio", "root"))


@pytest.mark.parametrize("where", ["primary", "backup", "entries"])
def test_corruption_is_detected(tmp_path, where):
    path = tmp_path / "d.img"
    table = _disk(path)
    data = bytearray(path.read_bytes())
    offset = {"primary": 512 + 40, "backup": (table.total_sectors - 1) * 512 + 40, "entries": 2 * 512 + 20}[where]
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        gpt.read(path)


def test_overlap_and_range_errors(tmp_path):
    a = gpt.Partition("a", gpt.TYPES["linux"], uuid.uuid4(), 40, 100)
    b = gpt.Partition("b", gpt.TYPES["linux"], uuid.uuid4(), 100, 200)
    with open(tmp_path / "d", "wb") as f:
        f.truncate(400 * 512)
        with pytest.raises(ValueError, match="overlap"):
            gpt.write(f, uuid.uuid4(), [a, b], 400)
        with pytest.raises(ValueError, match="outside"):
            gpt.write(f, uuid.uuid4(), [gpt.Partition("c", gpt.TYPES["linux"], uuid.uuid4(), 40, 390)], 400)


def test_unknown_type():
    with pytest.raises(ValueError, match="unknown partition type"):
        gpt.type_guid("root", "mips")


@needs("sgdisk")
def test_sgdisk_verifies(tmp_path):
    path = tmp_path / "d.img"
    _disk(path)
    out = subprocess.run(["sgdisk", "-v", str(path)], capture_output=True, text=True)
    assert out.returncode == 0
    assert "No problems found" in out.stdout, out.stdout
    assert "Caution" not in out.stdout and "Warning" not in out.stdout, out.stdout


@needs("sfdisk")
def test_sfdisk_reads_what_we_wrote(tmp_path):
    path = tmp_path / "d.img"
    table = _disk(path)
    dump = subprocess.run(["sfdisk", "--dump", str(path)], capture_output=True, text=True, check=True).stdout
    assert "label: gpt" in dump
    assert f"label-id: {str(table.disk_guid).upper()}" in dump
    for n, p in enumerate(table.partitions, 1):
        line = next(entry for entry in dump.splitlines() if entry.startswith(f"{path}{n} :"))
        assert re.search(rf"start=\s*{p.first_lba},", line)
        assert re.search(rf"size=\s*{p.sectors},", line)
        assert f"uuid={str(p.guid).upper()}" in line and f'name="{p.name}"' in line
        assert f"type={str(p.type_guid).upper()}" in line


@needs("sfdisk")
def test_mbr_writer(tmp_path):
    path = tmp_path / "m.img"
    sig = mbr.disk_signature("img", "rpi")
    parts = [mbr.Partition(mbr.TYPES["fat32-lba"], 8192, 8192, True), mbr.Partition(mbr.TYPES["linux"], 16384, 4096)]
    with open(path, "wb") as f:
        f.truncate(20480 * 512)
        mbr.write(f, sig, parts)
    assert mbr.read(path) == (sig, parts)
    dump = subprocess.run(["sfdisk", "--dump", str(path)], capture_output=True, text=True, check=True).stdout
    assert "label: dos" in dump and f"label-id: 0x{sig:08x}" in dump
    assert re.search(r"start=\s*8192, size=\s*8192, type=c, bootable", dump), dump
    assert mbr.partuuid(sig, 2) == f"{sig:08x}-02"
    with pytest.raises(ValueError, match="overlaps"):
        with open(path, "r+b") as f:
            mbr.write(f, sig, [mbr.Partition(0x83, 100, 50), mbr.Partition(0x83, 120, 50)])

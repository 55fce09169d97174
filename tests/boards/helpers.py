"""Building a board's image once per test module, and reading what is in it:
partition tables, FAT files (mtools, image@@offset), device trees (dtc), the
kernel Image header, the ELF files of the squashfs root."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

from conftest import ROOT, run_buildsys

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
EM_AARCH64 = 183
ARM64_IMAGE_MAGIC = b"ARM\x64"       # at offset 56 of an arm64 Image (Documentation/arm64/booting.rst)


def env_for(build_dir: Path) -> dict[str, str]:
    return {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
            "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir / "cache")}


class Built:
    """A board's deployed image: the disk, its manifest, the deploy dir."""

    def __init__(self, build_dir: Path, board: str):
        self.build_dir, self.board = build_dir, board
        self.deploy = build_dir / "deploy" / board
        self.manifest = json.loads((self.deploy / "manifest.json").read_text())
        self.image = self.deploy / next(f for f in self.manifest["files"] if f.endswith(".img"))
        self.squashfs = self.deploy / next(f for f in self.manifest["files"] if f.endswith(".squashfs"))


def build(board: str, build_dir: Path, *args, **env) -> Built:
    full_env = env_for(build_dir)
    full_env.update(env)
    run_buildsys("--project", ROOT, "build", "--board", board, *args, env=full_env, check=0, timeout=3600)
    return Built(build_dir, board)


def fat_files(image: Path, offset: int) -> list[str]:
    """Every file path on the FAT filesystem at ``offset`` bytes of ``image``."""
    proc = subprocess.run(["mdir", "-/", "-b", "-i", f"{image}@@{offset}", "::/"], capture_output=True, text=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1"), check=True)
    lines = [line.strip() for line in proc.stdout.splitlines()]
    return sorted(line.removeprefix("::").lstrip("/") for line in lines if line and not line.endswith("/"))


def fat_read(image: Path, offset: int, path: str) -> bytes:
    proc = subprocess.run(["mtype", "-i", f"{image}@@{offset}", f"::{path}"], capture_output=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1"), check=True)
    return proc.stdout


def fat_copy(image: Path, offset: int, path: str, dest: Path) -> Path:
    subprocess.run(["mcopy", "-n", "-i", f"{image}@@{offset}", f"::{path}", str(dest)], check=True,
                   env=dict(os.environ, MTOOLS_SKIP_CHECK="1"), capture_output=True)
    return dest


def fat_type(image: Path, offset: int) -> str:
    """FAT12/FAT16/FAT32 from the boot sector's file system type field."""
    with open(image, "rb") as f:
        f.seek(offset)
        boot = f.read(512)
    assert boot[510:512] == b"\x55\xaa", "no boot sector signature"
    for start in (54, 82):
        kind = boot[start:start + 8].decode("ascii", "replace").strip()
        if kind.startswith("FAT"):
            return kind
    raise AssertionError("no FAT type in the boot sector")


def dtc_parses(dtb: Path) -> str:
    """The dtb decompiled to source (dtc fails on a broken blob)."""
    proc = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def is_arm64_image(data: bytes) -> bool:
    return len(data) > 64 and data[56:60] == ARM64_IMAGE_MAGIC


def elf_machines(squashfs: Path, work: Path) -> dict[str, int]:
    """{path: e_machine} for every ELF file in the squashfs."""
    tree = work / "rootfs"
    if tree.exists():
        shutil.rmtree(tree)
    subprocess.run(["unsquashfs", "-no-xattrs", "-q", "-n", "-d", str(tree), str(squashfs)], check=True,
                   capture_output=True)
    out = {}
    for dirpath, _, filenames in os.walk(tree):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as f:
                head = f.read(20)
            if head[:4] == b"\x7fELF":
                order = "<" if head[5] == 1 else ">"
                out["/" + str(path.relative_to(tree))] = struct.unpack_from(order + "H", head, 18)[0]
    return out


def sfdisk_json(image: Path) -> dict:
    """The partition table as util-linux reads it (an independent reader)."""
    proc = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)["partitiontable"]


def extlinux_entries(conf: str) -> dict[str, str]:
    """First value of each keyword of an extlinux.conf (one LABEL here)."""
    entries: dict[str, str] = {}
    for line in conf.splitlines():
        words = line.split(None, 1)
        if len(words) == 2:
            entries.setdefault(words[0], words[1])
    return entries


def ext4_label(image: Path, offset: int) -> str:
    """The volume label of the ext2/3/4 filesystem at ``offset`` bytes of
    ``image`` (the superblock is 1024 bytes in: magic 0xEF53 at 56, label at
    120), read here rather than by the image class's own code."""
    with open(image, "rb") as f:
        f.seek(offset + 1024)
        sb = f.read(1024)
    assert sb[56:58] == b"\x53\xef", "no ext2/3/4 superblock"
    return sb[120:136].rstrip(b"\0").decode()


def squashfs_paths(squashfs: Path) -> list[str]:
    """Every path in the squashfs, as unsquashfs lists it (/bin/busybox...)."""
    proc = subprocess.run(["unsquashfs", "-no-xattrs", "-d", "", "-lc", str(squashfs)], capture_output=True,
                          text=True, check=True)
    return [line for line in proc.stdout.splitlines() if line.startswith("/")]

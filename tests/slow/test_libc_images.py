"""A dynamically linked program (its own shared library, libm, libc) in an
image with virtual/libc and a data partition, from the fixture layer
tests/fixtures/libc, on x86-virtio and qemu-arm64: built, inspected (DT_NEEDED
resolved, development files out, the C library pruned, the ext4 partition)
and booted under plain QEMU, where the program runs."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from buildsys.image import elf, ext4, gpt
from buildsys.qemu import Check, boot_and_check
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
LAYER = ROOT / "tests/fixtures/libc"
IMAGE = "image-hello"
INTERP = {"x86-virtio": "/lib64/ld-linux-x86-64.so.2", "qemu-arm64": "/lib/ld-linux-aarch64.so.1"}
ARCH = {"x86-virtio": "x86_64", "qemu-arm64": "aarch64"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(build_dir: Path, board: str, *args: str) -> Path:
    env = {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR, "BUILDSYS_LAYERS": str(LAYER),
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir.parent / "cache")}
    run_buildsys("--project", ROOT, "build", "-j2", "--board", board, *args, IMAGE, env=env, check=0)
    return build_dir / "deploy" / board


@pytest.fixture(scope="module", params=["x86-virtio", "qemu-arm64"])
def built(request, tmp_path_factory):
    board = request.param
    deploy = build(tmp_path_factory.mktemp(board) / "build", board)
    manifest = json.loads((deploy / "manifest.json").read_text())
    return board, deploy, manifest


def test_rootfs_has_runtime_files_only(built):
    board, deploy, manifest = built
    kept = json.loads((deploy / f"{IMAGE}-{board}.rootfs.json").read_text())
    paths = kept["paths"]
    assert paths["/usr/bin/hello-dyn"] == "hello-dyn"
    assert paths["/usr/lib/libgreet.so.1"] == paths["/usr/lib/libgreet.so.1.0"] == "libgreet-so"
    assert paths[INTERP[board]] == paths["/lib/libc.so.6"] == paths["/lib/libm.so.6"] == "libc"
    assert "/lib/libgcc_s.so.1" in paths              # dlopened by libc (pthread_cancel)
    for gone in ("/usr/include/greet.h", "/usr/lib/libgreet.a", "/usr/lib/pkgconfig/greet.pc",
                 "/usr/lib/libgreet.so", "/lib/libresolv.so.2", "/lib/libutil.so.1"):
        assert gone not in paths and gone in kept["left_out"], gone
    # The manifest's rootfs (and the SBOM) list what the image holds, not the packages.
    listed = {f["path"] for f in manifest["rootfs"]}
    assert "/usr/include/greet.h" not in listed and "/usr/bin/hello-dyn" in listed


def test_manifest_has_the_sha256_of_every_toolchain_file(built):
    board, deploy, manifest = built
    libc = manifest["libc"]["libc"]
    assert set(libc["debian_packages"]) == ({"libc6", "libgcc-s1"} if board == "x86-virtio"
                                            else {"libc6-arm64-cross", "libgcc-s1-arm64-cross"})
    assert INTERP[board] in libc["files"] and all(len(h) == 64 for h in libc["files"].values())
    assert "/lib/libc.so.6" in libc["in_image"] and "/lib/libresolv.so.2" not in libc["in_image"]
    rootfs = {f["path"]: f["sha256"] for f in manifest["rootfs"]}
    assert rootfs["/lib/libc.so.6"] == libc["files"]["/lib/libc.so.6"]


def test_disk_has_a_data_partition_after_root(built, tmp_path):
    board, deploy, _ = built
    image = deploy / f"{IMAGE}-{board}.img"
    table = gpt.read(image)
    names = [p.name for p in table.partitions]
    assert names[-2:] == ["root", "data"]
    root, data = table.partitions[-2:]
    assert root.guid == gpt.partition_guid(board, "root") and data.guid == gpt.partition_guid(board, "data")
    assert data.sectors * 512 >= 8 << 20
    sb = ext4.read_superblock(image, data.offset)
    assert (sb.label, sb.fs_id, sb.blocks * sb.block_size) == ("data", ext4.fs_uuid(board, IMAGE, "data"), 8 << 20)


def test_program_elf_needs_what_the_image_has(built, tmp_path):
    board, deploy, _ = built
    squash = deploy / f"{IMAGE}-{board}.squashfs"
    out = tmp_path / "root"
    unsquash = shutil.which("unsquashfs") or shutil.which("unsquashfs", path="/usr/sbin:/sbin")
    if unsquash is None:
        pytest.skip("no unsquashfs on this host")
    import subprocess
    subprocess.run([unsquash, "-d", str(out), "-no-xattrs", str(squash)], check=True, capture_output=True)
    info = elf.read(out / "usr/bin/hello-dyn")
    assert info.interp == INTERP[board] and set(info.needed) == {"libgreet.so.1", "libm.so.6", "libc.so.6"}
    for soname in info.needed:
        assert elf.find_library(out, soname, elf.search_dirs("/usr/bin/hello-dyn", info, ARCH[board]), info)


def test_program_runs_in_qemu(built, tmp_path):
    board, deploy, _ = built
    disk = tmp_path / "disk.img"
    shutil.copyfile(deploy / f"{IMAGE}-{board}.img", disk)
    if board == "x86-virtio":
        argv = ["qemu-system-x86_64", "-M", "q35", "-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd",
                "-drive", f"file={disk},if=virtio,format=raw", "-nographic", "-no-reboot"]
    else:
        argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-m", "256",
                "-kernel", str(deploy / "Image"), "-drive", f"file={disk},if=none,format=raw,id=d0",
                "-device", "virtio-blk-pci,drive=d0", "-nographic", "-no-reboot"]
    result = boot_and_check(argv, [
        Check("/usr/bin/hello-dyn buildsys 9", r"hello, buildsys, from a shared library\s+sqrt\(9\) = 3\.000"),
        Check("ls /usr/include /usr/lib/libgreet.a 2>&1", r"No such file", status=None),
        Check("cat /proc/partitions", r"\bvda3\s*$"),
    ], tmp_path / "serial.log", timeout=300)
    assert result.ok, f"{result.reason} (serial log {result.log_path})"

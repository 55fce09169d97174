"""qemu-arm64: the arm64 cross build end to end -- GPT disk, boot under QEMU
virt, every program aarch64, the cross toolchain in the manifest, and the
image bit-for-bit reproducible."""
import hashlib
import shutil

import pytest

from buildsys.image import gpt
from buildsys.qemu import Check, boot_and_check
from conftest import ROOT, run_buildsys

from .helpers import EM_AARCH64, build, elf_machines, env_for, fat_copy, fat_files, is_arm64_image

pytestmark = pytest.mark.slow
BOARD = "qemu-arm64"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(BOARD, tmp_path_factory.mktemp(BOARD) / "build")


def test_gpt_layout(built):
    table = gpt.read(built.image)
    assert [p.name for p in table.partitions] == ["boot", "root"]
    boot, root = table.partitions
    assert boot.type_guid == gpt.TYPES["esp"]
    assert root.type_guid == gpt.TYPES["root:aarch64"]
    assert root.guid == gpt.partition_guid(BOARD, "root")
    assert built.image.stat().st_size < 4 * 1024 * 1024


def test_boot_partition_holds_the_arm64_kernel(built, tmp_path):
    boot = gpt.read(built.image).partitions[0]
    assert fat_files(built.image, boot.offset) == ["Image"]
    kernel = fat_copy(built.image, boot.offset, "/Image", tmp_path / "Image").read_bytes()
    assert is_arm64_image(kernel)
    assert kernel == (built.deploy / "Image").read_bytes()


def test_every_elf_is_aarch64(built, tmp_path):
    machines = elf_machines(built.squashfs, tmp_path)
    assert "/bin/busybox" in machines
    assert {path: m for path, m in machines.items() if m != EM_AARCH64} == {}


def test_manifest_records_the_cross_toolchain(built):
    toolchain = built.manifest["toolchain"]
    assert toolchain["driver"] == "aarch64-linux-gnu-gcc"
    assert toolchain["machine"] == "aarch64-linux-gnu"
    assert toolchain["version"].startswith("12.")
    # From the pinned build environment: its Debian package, and the environment's id
    # (which covers every byte of it); a build_env: host project records the driver's sha256.
    assert toolchain["package"] == "gcc-aarch64-linux-gnu"
    assert len(toolchain["buildenv"]) == 64
    assert "toolchain-aarch64" in {r["name"] for r in built.manifest["recipes"]}


def test_boots_under_plain_qemu_virt(built, tmp_path):
    # The kernel as the disk carries it, not the deployed copy.
    boot = gpt.read(built.image).partitions[0]
    kernel = fat_copy(built.image, boot.offset, "/Image", tmp_path / "Image")
    disk = tmp_path / "disk.img"
    shutil.copyfile(built.image, disk)
    argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-m", "256", "-kernel", str(kernel),
            "-drive", f"file={disk},if=none,format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0",
            "-nographic", "-no-reboot"]
    result = boot_and_check(argv, [
        Check("grep ' / ' /proc/mounts", r"^\S+ / squashfs ro[ ,]"),
        Check("cat /proc/cmdline", r"root=PARTUUID=" + str(gpt.partition_guid(BOARD, "root"))),
        Check("uname -m", r"^aarch64\s*$"),
        Check("touch /x 2>&1", r"Read-only file system", status=None),
    ], tmp_path / "serial.log", timeout=240)
    assert result.ok, f"{result.reason} (serial log {result.log_path})"


def test_buildsys_test_command(built):
    proc = run_buildsys("--project", ROOT, "test", "--board", BOARD, env=env_for(built.build_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PASS: {BOARD}" in proc.stderr


def test_reproducible_in_another_dir_and_environment(built, tmp_path):
    other = tmp_path / "a-much-longer-directory-name/for/the/second/arm64/build"
    second = build(BOARD, other, "-j", "1", BUILDSYS_CACHE_DIR=str(other / "cache"), TZ="Asia/Kolkata",
                   LC_ALL="C.UTF-8")
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()   # noqa: E731
    assert digest(second.image) == digest(built.image)
    assert digest(second.squashfs) == digest(built.squashfs)


def test_board_tuning_reaches_the_compiler(built):
    """The board's tune (-mcpu=cortex-a53) is in CFLAGS of every target compile."""
    cmd = built.build_dir / "work" / BOARD / "busybox/src/applets/.applets.o.cmd"
    if not cmd.is_file():
        pytest.skip("busybox came from a shared cache (BUILDSYS_TEST_CACHE_DIR): no compile to inspect")
    text = cmd.read_text()
    assert "aarch64-linux-gnu-gcc" in text and "-mcpu=cortex-a53" in text

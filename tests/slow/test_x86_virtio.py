"""The x86-virtio image, end to end: real kernel and busybox builds, a boot under
a plain QEMU + OVMF command line, and bit-for-bit reproducibility."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from buildsys.qemu import Check, boot_and_check
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_image(build_dir: Path, args=(), umask=-1, **env) -> Path:
    full_env = {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
                "BUILDSYS_CACHE_DIR": str(build_dir / "cache")}
    full_env.update(env)
    run_buildsys("--project", ROOT, "build", *args, env=full_env, check=0, umask=umask)
    deploy = build_dir / "deploy/x86-virtio"
    manifest = json.loads((deploy / "manifest.json").read_text())
    image = deploy / next(f for f in manifest["files"] if f.endswith(".img"))
    assert (deploy / f"{image.name}.sha256").read_text().split()[0] == sha256(image)
    return image


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    """The image every test here looks at.  With BUILDSYS_TEST_CACHE_DIR (CI
    keeps one across runs: the keys cover the whole build environment, so a
    cached artifact is as good as a rebuild) it may come from that cache; the
    reproducibility test below always builds cold."""
    build_dir = tmp_path_factory.mktemp("x86") / "build"
    cache = os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir / "cache")
    return build_dir, build_image(build_dir, BUILDSYS_CACHE_DIR=cache)


def test_image_is_small(first_build):
    _, image = first_build
    assert image.stat().st_size < 2 * 1024 * 1024, f"{image.stat().st_size} bytes"


def test_boots_under_plain_qemu_ovmf(first_build, tmp_path):
    _, image = first_build
    disk = tmp_path / "disk.img"          # the guest must not touch the deployed image
    shutil.copyfile(image, disk)
    argv = ["qemu-system-x86_64", "-M", "q35", "-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd",
            "-drive", f"file={disk},if=virtio,format=raw", "-nographic", "-no-reboot"]
    result = boot_and_check(argv, [
        Check("grep ' / ' /proc/mounts", r"^\S+ / squashfs ro[ ,]"),
        Check("cat /proc/cmdline", r"root=PARTUUID="),
        Check("uname -m", r"^x86_64\s*$"),
        Check("touch /x 2>&1", r"Read-only file system", status=None),
        Check("ls -l /dev/console /dev/null", r"^crw"),
    ], tmp_path / "serial.log", timeout=240)
    assert result.ok, f"{result.reason} (serial log {result.log_path})"


def test_buildsys_test_command(first_build):
    build_dir, _ = first_build
    proc = run_buildsys("--project", ROOT, "test", env={"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
                                                        "BUILDSYS_CACHE_DIR": str(build_dir / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PASS: x86-virtio" in proc.stderr


def _package_hashes(build_dir: Path) -> dict[str, str]:
    """recipe -> hash of its package tree, from the deploy manifest's signatures."""
    manifest = json.loads((build_dir / "deploy/x86-virtio/manifest.json").read_text())
    out = {}
    for entry in manifest["recipes"]:
        tree = build_dir / "packages" / entry["signature"]
        h = hashlib.sha256()
        for path in sorted(tree.rglob("*")):
            h.update(str(path.relative_to(tree)).encode())
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
        out[entry["name"]] = h.hexdigest()
    return out


def test_reproducible_in_another_dir_and_environment(first_build, tmp_path):
    build_dir, image = first_build
    other = tmp_path / "a-much-longer-directory-name/for/the/second/build/of/the/same/image"
    second = build_image(other, args=["-j", "1"], umask=0o077, TZ="America/Los_Angeles",
                         LC_ALL="C.UTF-8", LANG="de_DE.UTF-8")
    if sha256(second) != sha256(image):
        first, again = _package_hashes(build_dir), _package_hashes(other)
        differing = [name for name in first if first[name] != again.get(name)]
        pytest.fail(f"disk images differ; first differing artifacts: {', '.join(differing) or 'disk only'}")

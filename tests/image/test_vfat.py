"""buildsys.image.vfat: mtools argv lists, run with the host's mtools."""
import os
import shutil
import subprocess

import pytest

from buildsys.image import vfat

pytestmark = pytest.mark.skipif(not (shutil.which("mformat") and shutil.which("mcopy")), reason="mtools not installed")
EPOCH = 1_600_000_000


def _make(tmp_path, name):
    src = tmp_path / "BOOTX64.EFI"
    if not src.exists():
        src.write_bytes(os.urandom(1) * 300_000 + b"end")
        os.utime(src, (EPOCH, EPOCH))
    image = tmp_path / f"{name}.vfat"
    files = {"/EFI/BOOT/BOOTX64.EFI": str(src), "/loader/entry.conf": str(src)}
    sectors = vfat.size_sectors([src.stat().st_size] * 2, len(vfat.directories(files)))
    # The host's TZ is ignored: mtools writes local time, env() pins UTC.
    env = {"PATH": os.environ["PATH"], "TZ": "Asia/Tokyo", **vfat.env(EPOCH)}
    for argv in vfat.argvs(str(image), files, sectors, "esp", vfat.serial_for("img/esp")):
        subprocess.run(argv, env=env, check=True, capture_output=True)
    return image


def test_directories_parents_first():
    assert vfat.directories(["/EFI/BOOT/BOOTX64.EFI", "/a.txt", "/EFI/x/y/z"]) == \
        ["EFI", "EFI/BOOT", "EFI/x", "EFI/x/y"]


def test_argvs_shape():
    cmds = vfat.argvs("/build/obj/esp.vfat", {"/EFI/BOOT/BOOTX64.EFI": "/build/obj/k"}, 2048, "esp", "12345678",
                      mformat="/n/mformat", mmd="/n/mmd", mcopy="/n/mcopy")
    assert cmds[0][0] == "/n/mformat" and cmds[0][cmds[0].index("-N") + 1] == "12345678"
    assert cmds[0][cmds[0].index("-T") + 1] == "2048" and cmds[0][cmds[0].index("-v") + 1] == "ESP"
    assert cmds[1] == ["/n/mmd", "-i", "/build/obj/esp.vfat", "::/EFI", "::/EFI/BOOT"]
    assert cmds[2] == ["/n/mcopy", "-m", "-i", "/build/obj/esp.vfat", "/build/obj/k", "::/EFI/BOOT/BOOTX64.EFI"]
    assert vfat.env(5)["TZ"] == "UTC" and vfat.env(5)["SOURCE_DATE_EPOCH"] == "5"


def test_real_image_listing_and_reproducibility(tmp_path):
    image = _make(tmp_path, "a")
    listing = subprocess.run(["mdir", "-i", str(image), "::/EFI/BOOT"], capture_output=True, text=True,
                             env={"PATH": os.environ["PATH"], "TZ": "UTC", "MTOOLS_SKIP_CHECK": "1"}, check=True).stdout
    assert "BOOTX64  EFI" in listing and "300003" in listing.replace(" ", "")
    assert "2020-09-13" in listing                      # the epoch, not today
    serial = vfat.serial_for("img/esp")
    assert f"{serial[:4]}-{serial[4:]}".upper() in listing
    assert "22:26" not in listing and "12:26" in listing     # UTC, not Tokyo time
    assert image.read_bytes() == _make(tmp_path, "b").read_bytes()
    if shutil.which("fsck.vfat"):
        subprocess.run(["fsck.vfat", "-n", str(image)], check=True, capture_output=True)


def test_size_is_tight_but_sufficient(tmp_path):
    image = _make(tmp_path, "c")
    assert image.stat().st_size < 2 * 300_003 + 64 * 1024

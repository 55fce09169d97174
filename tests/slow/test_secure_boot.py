"""UEFI Secure Boot on x86-virtio and qemu-arm64, under plain QEMU command lines: image-base-ab
built in a copy of the project whose local.yaml names a fresh product key
(`buildsys key new --kind secure-boot`) as secure_boot_cert/secure_boot_key,
so the image class signs the slot's UKI (image/authenticode.py) and deploy
writes <stem>.secboot-vars.fd (the certificate as PK, KEK and db, Secure Boot
on); OVMF's Secure Boot build (OVMF_CODE_4M.secboot.fd, SMM, secure pflash),
or on arm64 AAVMF_CODE.fd (its only build, Secure Boot capable; no SMM):

* the signed UKI on esp_a boots, and the firmware's SecureBoot variable says 1;
* the same UKI unsigned, or re-signed by another key, is refused by the
  firmware ("Access Denied" on the serial console) and no kernel starts.

The image's manifest holds the certificate (a recipe value, so in its
signature), never the key's path.  Measured: 83 s on a warm cache (linux-ab
restored): the image build, one boot to a shell (~30 s), two firmware-only
boots that stop at "Access Denied" (~20 s each); arm64: 34.5 s for all three.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pexpect
import pytest

from buildsys import secureboot
from buildsys.image import authenticode, gpt, vfat
from buildsys.image import disk as disk_mod
from buildsys.qemu import Check, boot_and_check
from conftest import copy_project, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
IMAGE, ESP = "image-base-ab", "esp_a"
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
# board -> (the removable-media path of its UKI, its QEMU machine)
BOARDS = {
    "x86-virtio": ("/EFI/BOOT/BOOTX64.EFI", ["qemu-system-x86_64", "-M", "q35,smm=on",
                                             "-global", "driver=cfi.pflash01,property=secure,value=on"]),
    "qemu-arm64": ("/EFI/BOOT/BOOTAA64.EFI", ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53"]),
}
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def secure_qemu(board: str, disk: Path, vars_file: Path) -> list[str]:
    """What a user types (docs/updates.md, "Secure boot")."""
    arch = "aarch64" if board == "qemu-arm64" else "x86_64"
    return [*BOARDS[board][1], "-m", "256",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={secureboot.SECBOOT_CODE[arch]}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}",
            "-drive", f"file={disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-pci,drive=disk0",
            "-nographic", "-no-reboot"]


def partition_bytes(disk: Path, name: str) -> bytes:
    part = next(p for p in gpt.read(disk).partitions if p.name == name)
    with open(disk, "rb") as f:
        f.seek(part.offset)
        return f.read(part.sectors * gpt.SECTOR)


def efi_binary(disk: Path, esp: str, efi_path: str, tmp: Path) -> bytes:
    """The ESP's removable-media binary, read with mtools."""
    (tmp / "esp.vfat").write_bytes(partition_bytes(disk, esp))
    subprocess.run(["mcopy", "-n", "-i", str(tmp / "esp.vfat"), f"::{efi_path}", str(tmp / "out.efi")],
                   check=True, env=MTOOLS_ENV)
    return (tmp / "out.efi").read_bytes()


def with_efi_binary(disk: Path, esp: str, efi_path: str, efi: bytes, out: Path, tmp: Path) -> Path:
    """A copy of ``disk`` whose ESP holds only ``efi`` at the removable path
    (a fresh vfat of the ESP's size, or a MiB more than the binary if that is
    bigger); every partition keeps its name and GUID, so the kernel still
    finds its root by PARTUUID."""
    table = gpt.read(disk)
    sizes, contents = [], []
    for p in table.partitions:
        src = tmp / f"{p.name}.part"
        if p.name == esp:
            (tmp / "new.efi").write_bytes(efi)
            sectors = gpt.align_up(max(p.sectors, (len(efi) + (1 << 20)) // gpt.SECTOR), 8)
            src.write_bytes(bytes(sectors * gpt.SECTOR))
            for argv in vfat.argvs(str(src), {efi_path: str(tmp / "new.efi")}, sectors, "ESP",
                                   vfat.serial_for("secure-boot-test"), create=False):
                subprocess.run(argv, check=True, env=MTOOLS_ENV, capture_output=True)
        else:
            src.write_bytes(partition_bytes(disk, p.name))
        sizes.append((p.name, p.type_guid, p.guid, src.stat().st_size))
        contents.append(src)
    parts, total = gpt.plan(sizes, 4096)
    disk_mod.assemble(out, table.disk_guid, list(zip(parts, contents, strict=True)), total)
    return out


def refused(board: str, disk: Path, vars_template: Path, log: Path, timeout: float = 150) -> str:
    """Boot ``disk`` under Secure Boot until the firmware says what it did with
    the binary: "Access Denied" (refused), or a kernel starting (accepted)."""
    vars_copy = log.with_suffix(".vars.fd")
    shutil.copyfile(vars_template, vars_copy)
    argv = secure_qemu(board, disk, vars_copy)
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=timeout)
    with open(log, "w") as f:
        child.logfile_read = f
        try:
            which = child.expect([r"Access Denied", r"EFI stub: ", r"Linux version \d", pexpect.EOF], timeout=timeout)
        finally:
            child.terminate(force=True)
    return ["refused", "kernel started", "kernel started", "qemu exited"][which]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A product key and someone else's, as `buildsys key new --kind secure-boot` makes them
    (names of the same length: the re-signed binary has the signed one's size)."""
    d = tmp_path_factory.mktemp("sb-keys")
    for name in ("product", "another"):
        r = run_buildsys("key", "new", name, "--kind", "secure-boot", "--out", d)
        assert r.returncode == 0, r.stderr
    return {name: ((d / f"{name}.sb.key").read_bytes(), (d / f"{name}.sb.crt").read_bytes(), d / f"{name}.sb.crt")
            for name in ("product", "another")}


@pytest.fixture(scope="module", params=sorted(BOARDS))
def built(request, tmp_path_factory, keys):
    """(board, disk image, deployed variable store) of image-base-ab signed for the product key."""
    board = request.param
    if shutil.which(BOARDS[board][1][0]) is None:
        pytest.skip(f"{BOARDS[board][1][0]} missing")
    tmp = tmp_path_factory.mktemp(f"sb-build-{board}")
    build_dir = tmp / "build"
    env = {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir / "cache")}
    project = copy_project(tmp / "project", exclude=("tests", "docs", "bench"))
    key_dir = keys["product"][2].parent
    (project / "local.yaml").write_text(f"format: 1\nsecure_boot_cert: {key_dir / 'product.sb.crt'}\n"
                                        f"secure_boot_key: {key_dir / 'product.sb.key'}\n")
    r = run_buildsys("--project", project, "build", "-j2", "--board", board, IMAGE, env=env, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    deploy = build_dir / "deploy" / board
    # The certificate is a value of the image (in its signature); the key appears nowhere.
    manifest = (deploy / "manifest.json").read_text()
    assert "BEGIN CERTIFICATE" in manifest
    for text in (manifest, r.stderr, r.stdout):
        assert "product.sb.key" not in text and "PRIVATE KEY" not in text
    record = json.loads((deploy / f"{IMAGE}-{board}.secboot-vars.json").read_text())
    assert record["cert_sha256"] == secureboot.cert_sha256(keys["product"][1])
    return board, deploy / f"{IMAGE}-{board}.img", deploy / f"{IMAGE}-{board}{secureboot.VARS_SUFFIX}"


def test_the_signed_image_boots_under_secure_boot(built, keys, tmp_path):
    board, disk, vars_file = built
    efi = efi_binary(disk, ESP, BOARDS[board][0], tmp_path)
    (tmp_path / "boot.efi").write_bytes(efi)
    ok = subprocess.run(["sbverify", "--cert", str(keys["product"][2]), str(tmp_path / "boot.efi")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    vars_copy = tmp_path / "vars.fd"           # the firmware writes its variables: never the deployed one
    shutil.copyfile(vars_file, vars_copy)
    log = tmp_path / "boot.log"
    # The firmware's own word: SecureBoot = 1 (efivarfs: 4 attribute bytes, then the value).
    result = boot_and_check(secure_qemu(board, disk, vars_copy),
                            [Check(f"hexdump -C {SECURE_BOOT_VAR}", r"00000000  06 00 00 00 01 ")], log,
                            timeout=300)
    assert result, f"{result.reason} (log {log})"
    assert "Access Denied" not in log.read_text(errors="replace")


@pytest.mark.parametrize("how", ["unsigned", "signed by another key"])
def test_the_firmware_refuses_an_unsigned_or_foreign_binary(built, keys, tmp_path, how):
    board, disk, vars_file = built
    efi_path = BOARDS[board][0]
    efi = authenticode.unsigned(efi_binary(disk, ESP, efi_path, tmp_path))
    if how != "unsigned":
        efi = authenticode.sign(efi, *keys["another"][:2])
    bad = with_efi_binary(disk, ESP, efi_path, efi, tmp_path / "bad.img", tmp_path)
    log = tmp_path / "refused.log"
    outcome = refused(board, bad, vars_file, log)
    text = log.read_text(errors="replace")
    assert outcome == "refused", f"{how}: {outcome}; log {log}: {text[-1500:]}"
    assert not re.search(r"Linux version \d", text)

"""recipes/update-client run on the host: /usr/sbin/update and backend-efi.sh
under busybox sh, against a fake root (sysfs block devices with PARTNAME,
partitions as plain files, efivarfs as a directory of variable files,
/proc/cmdline, /data), with real bundles (bundle.py) and the real minisign.

PATH holds only the busybox applets the device's busybox-base has (from
recipes/busybox/files), so a script using another tool fails here as it
would on the device.  Nothing of the host is touched: every path is under
UPDATE_ROOT, reboot is replaced by an echo, efivarfs is never mounted."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildsys import bundle, minisign

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "recipes" / "update-client" / "files"
GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
PARTS = {"vda1": "esp_a", "vda2": "root_a", "vda3": "esp_b", "vda4": "root_b", "vda5": "data"}
PART_BYTES = 64 * 1024
EPOCH = 315532800

# The host's busybox (Debian's), or the device's own build of busybox-base
# (it runs on an x86_64 host: BUILDSYS_TEST_BUSYBOX=<package dir>/bin/busybox).
BUSYBOX = os.environ.get("BUILDSYS_TEST_BUSYBOX") or shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None or shutil.which("minisign") is None,
                                reason="needs busybox and minisign (apt)")


def device_applets() -> list[str]:
    """The applets busybox-base enables (base config, then the fragment)."""
    enabled = {}
    for name in ("busybox.config", "busybox-base.cfg"):
        for line in (ROOT / "recipes" / "busybox" / "files" / name).read_text().splitlines():
            m = re.match(r"^(?:# )?CONFIG_([A-Z0-9_]+)(=y| is not set)", line)
            if m:
                enabled[m.group(1)] = m.group(2) == "=y"
    host = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    return [a for a in host if enabled.get(a.upper().replace("-", "_"))]


class Device:
    def __init__(self, tmp: Path, key: minisign.SecretKey):
        self.root = tmp / "root"
        r = self.root
        share = r / "usr/share/update"
        share.mkdir(parents=True)
        (share / "layout").write_text("BOOT_A=0001\nBOOT_B=0002\nESP_A=esp_a\nROOT_A=root_a\nESP_B=esp_b\n"
                                      "ROOT_B=root_b\nBACKEND=efi\n")
        # EFI_LOAD_OPTION-like contents (the updater copies them as they are).
        self.boot_var = {s: b"\x07\x00\x00\x00\x01\x00\x00\x00" + f"slot {s}".encode("utf-16-le") for s in "ab"}
        for s in "ab":
            (share / f"boot-{s}.var").write_bytes(self.boot_var[s])
        lib = r / "usr/lib/update"
        lib.mkdir(parents=True)
        shutil.copy(FILES / "backend-efi.sh", lib)
        etc = r / "etc/update"
        (etc / "keys").mkdir(parents=True)
        (etc / "health.d").mkdir()
        (etc / "compatible").write_text("x86-virtio/image-base-ab\n")
        (etc / "version").write_text("1.0\n")
        (etc / "keys" / f"{minisign.key_id_hex(key.key_id)}.pub").write_text(key.public().text())
        for dev, name in PARTS.items():
            d = r / "sys/class/block" / dev
            d.mkdir(parents=True)
            (d / "uevent").write_text(f"MAJOR=254\nMINOR=1\nDEVNAME={dev}\nDEVTYPE=partition\nPARTN=1\n"
                                      f"PARTNAME={name}\n")
            (d / "size").write_text(f"{PART_BYTES // 512}\n")
            (r / "dev").mkdir(exist_ok=True)
            (r / "dev" / dev).write_bytes(bytes(PART_BYTES))
        (r / "dev" / "watchdog").write_bytes(b"")
        self.efivars = r / "sys/firmware/efi/efivars"
        self.efivars.mkdir(parents=True)
        self.set_var("BootOrder", "0000", "0003")      # the firmware's own entries
        (r / "proc").mkdir()
        self.boot("a")
        (r / "data" / "update").mkdir(parents=True)
        (r / "run").mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for applet in device_applets():
            (self.bin / applet).symlink_to(BUSYBOX)
        (self.bin / "minisign").symlink_to(shutil.which("minisign"))
        self.script = tmp / "update"
        shutil.copy(FILES / "update", self.script)

    def set_var(self, name: str, *values: str) -> None:
        data = b"\x07\x00\x00\x00" + b"".join(int(v, 16).to_bytes(2, "little") for v in values)
        (self.efivars / f"{name}-{GUID}").write_bytes(data)

    def var(self, name: str) -> list[str] | None:
        path = self.efivars / f"{name}-{GUID}"
        if not path.exists():
            return None
        data = path.read_bytes()
        assert data[:4] == b"\x07\x00\x00\x00"
        return [f"{int.from_bytes(data[i:i + 2], 'little'):04X}" for i in range(4, len(data), 2)]

    def boot(self, slot: str, version: str | None = None) -> None:
        """What the firmware does on a reset: BootNext is consumed, the kernel gets the slot's command
        line (and the slot's root its /etc/update/version)."""
        (self.efivars / f"BootNext-{GUID}").unlink(missing_ok=True)
        if version:
            (self.root / "etc/update/version").write_text(version + "\n")
        (self.root / "proc" / "cmdline").write_text(f"root=/dev/dm-0 ro panic=5 console=ttyS0 buildsys.slot={slot}\n")

    def run(self, *args: str, check: bool | None = True) -> subprocess.CompletedProcess:
        env = {"PATH": str(self.bin), "UPDATE_ROOT": str(self.root), "UPDATE_REBOOT": "echo REBOOT"}
        out = subprocess.run([BUSYBOX, "sh", str(self.script), *args],
                             capture_output=True, text=True, env=env, timeout=60)
        if check is True:
            assert out.returncode == 0, out.stdout + out.stderr
        elif check is False:
            assert out.returncode != 0, out.stdout + out.stderr
        return out

    def dev(self, name: str) -> bytes:
        dev = next(d for d, n in PARTS.items() if n == name)
        return (self.root / "dev" / dev).read_bytes()

    def status(self) -> dict[str, str]:
        lines = self.run("status").stdout.splitlines()
        return dict(line.split(": ", 1) for line in lines)


def make_bundle(tmp: Path, key: minisign.SecretKey, version: str = "1.1",
                compatible: str = "x86-virtio/image-base-ab", root: bytes = b"hsqs" + b"R" * 20476) -> Path:
    stem = "image-base-ab-x86-virtio"
    deploy = tmp / f"deploy-{version}-{compatible.replace('/', '_')}-{len(root)}"
    deploy.mkdir()
    (deploy / f"{stem}.esp.vfat").write_bytes(b"\xeb\x3c\x90ESP" + b"E" * 8185)
    (deploy / f"{stem}.root.img").write_bytes(root)
    (deploy / f"{stem}.slot.json").write_text(json.dumps({"compatible": compatible, "version": version,
                                                          "root": {"verity_root_hash": "cd" * 32}}))
    (deploy / "manifest.json").write_text(json.dumps({"image": "image-base-ab", "board": "x86-virtio",
                                                      "version": version}))
    out = deploy / "update.bundle"
    bundle.write(bundle.Inputs(deploy, stem), out, key, EPOCH)
    return out


@pytest.fixture
def key():
    return minisign.SecretKey.generate()


@pytest.fixture
def device(tmp_path, key):
    return Device(tmp_path, key)


def test_first_boot_creates_entries_and_commits_the_running_slot(device):
    out = device.run("boot")
    assert "slot a committed" in out.stdout
    for s, n in (("a", "0001"), ("b", "0002")):
        assert (device.efivars / f"Boot{n}-{GUID}").read_bytes() == device.boot_var[s]
    assert device.var("BootOrder") == ["0001", "0002", "0000", "0003"]
    assert device.var("BootNext") is None
    assert device.run("boot").stdout == ""          # the next boots change nothing
    assert device.status() == {"compatible": "x86-virtio/image-base-ab", "booted": "a", "committed": "a",
                               "trial": "none", "slot a": "1.0 (booted, committed)", "slot b": "empty"}
    assert device.run("commit").stdout.strip() == "update: slot a is committed: nothing to do"


def test_refused_bundles_write_nothing(device, key, tmp_path):
    device.run("boot")
    before = {n: device.dev(n) for n in PARTS.values()}

    def refused(bundle_path, message, *extra):
        out = device.run("install", str(bundle_path), *extra, check=False)
        assert message in out.stderr, out.stderr
        assert {n: device.dev(n) for n in PARTS.values()} == before
        assert device.var("BootNext") is None and device.var("BootOrder")[0] == "0001"

    refused(make_bundle(tmp_path, minisign.SecretKey.generate()), "not signed by a trusted key")
    refused(make_bundle(tmp_path, key, compatible="qemu-arm64/image-base-ab"),
            "the bundle is for 'qemu-arm64/image-base-ab', this device is 'x86-virtio/image-base-ab'")
    refused(make_bundle(tmp_path, key, version="0.9"), "version 0.9 is not newer than the running 1.0")
    refused(make_bundle(tmp_path, key, version="1.0"), "version 1.0 is not newer")
    refused(make_bundle(tmp_path, key, version="1.0.1", root=b"x" * (PART_BYTES + 4096)),
            f"root.img is {PART_BYTES + 4096} bytes, partition root_b holds {PART_BYTES}")
    # A manifest changed after signing (the images' hashes, say): the signature fails.
    good = make_bundle(tmp_path, key, version="1.2")
    tampered = tmp_path / "tampered.bundle"
    data = bytearray(good.read_bytes())
    at = data.index(b'"version": "1.2"')
    data[at:at + 16] = b'"version": "9.2"'
    tampered.write_bytes(bytes(data))
    refused(tampered, "not signed by a trusted key")
    refused(tmp_path / "missing.bundle", "no such bundle")
    (tmp_path / "junk.bundle").write_bytes(b"junk" * 1000)
    refused(tmp_path / "junk.bundle", "is not an update bundle")


def test_update_trial_and_commit(device, key, tmp_path):
    device.run("boot")
    device.run("health")        # S99 of the factory boot: records slot a's version
    path = make_bundle(tmp_path, key, version="1.1")
    out = device.run("install", str(path))
    assert "slot b holds 1.1: reboot to try it" in out.stdout
    with tarfile.open(path) as tar:
        esp, root = tar.extractfile("esp.vfat").read(), tar.extractfile("root.img").read()
    assert device.dev("esp_b")[:len(esp)] == esp and device.dev("root_b")[:len(root)] == root
    assert device.dev("esp_a") == bytes(PART_BYTES)          # the running slot is untouched
    assert device.var("BootNext") == ["0002"] and device.var("BootOrder")[0] == "0001"
    status = device.status()
    assert status["trial"] == "slot b is armed (the next boot tries it once)"
    assert status["slot b"] == "1.1" and status["slot a"] == "1.0 (booted, committed)"
    # The firmware boots b once.  S01 starts the watchdog; S99 runs the checks.
    device.boot("b", "1.1")
    assert "trial boot of slot b: watchdog started" in device.run("boot").stdout
    assert (device.root / "dev/watchdog").read_bytes() == b"."
    assert device.status()["trial"].startswith("slot b is running on trial")
    out = device.run("install", str(path), check=False)
    assert "slot b runs on trial: commit it" in out.stderr
    # A failing health check: reboot at once, nothing committed.
    check = device.root / "etc/update/health.d/10-app"
    check.write_text("#!/bin/sh\necho app down >&2\nexit 1\n")
    check.chmod(0o755)
    out = device.run("health", check=False)
    assert "health checks failed: 10-app" in out.stderr and "REBOOT -f" in out.stdout
    assert device.var("BootOrder")[0] == "0001"
    # Passing checks: committed, watchdog stopped.
    check.write_text("#!/bin/sh\nexit 0\n")
    out = device.run("health")
    assert "update: slot b (1.1) committed" in out.stdout
    assert device.var("BootOrder") == ["0002", "0001", "0000", "0003"]
    assert (device.root / "dev/watchdog").read_bytes() == b"V"
    device.boot("b")
    assert device.status()["committed"] == "b" and device.status()["trial"] == "none"
    assert device.status()["slot b"].startswith("1.1 (booted, committed)")
    assert device.status()["slot a"] == "1.0"


def test_failed_trial_falls_back_and_says_so(device, key, tmp_path):
    device.run("boot")
    device.run("install", str(make_bundle(tmp_path, key, version="2")), "--reboot")
    assert device.var("BootNext") == ["0002"]
    # The trial panicked (or hung): the firmware's next boot is BootOrder's, slot a.
    device.boot("a")
    device.run("boot")
    out = device.run("health")
    assert "the trial of slot b (2) did not commit: slot a runs" in out.stderr
    status = device.status()
    assert status["booted"] == "a" and status["committed"] == "a"
    assert status["trial"] == "none (the last trial, slot b version 2, did not commit)"
    assert status["slot b"] == "2 (its trial did not commit)"
    # The next update works (and --force takes an older version).
    device.run("install", str(make_bundle(tmp_path, key, version="0.5")), "--force")
    assert device.var("BootNext") == ["0002"]


def test_interrupted_install_is_marked_and_retried(device, key, tmp_path):
    """A power cut while writing: slot b is 'incomplete', nothing armed, the next install succeeds."""
    device.run("boot")
    (device.root / "data/update/state").write_text("INSTALLING=b\nVERSION=1.1\n")
    assert device.status()["slot b"] == "incomplete (an install was interrupted)"
    assert device.var("BootNext") is None
    device.run("install", str(make_bundle(tmp_path, key, version="1.1")))
    assert device.status()["slot b"] == "1.1"


def test_failed_write_arms_nothing(device, key, tmp_path):
    """A partition that fails writes (here /dev/full: ENOSPC): the install stops, slot b is
    marked incomplete, no trial is armed."""
    device.run("boot")
    path = make_bundle(tmp_path, key, version="1.1")
    dev = device.root / "dev" / "vda4"
    dev.unlink()
    dev.symlink_to("/dev/full")       # writes fail with ENOSPC
    out = device.run("install", str(path), check=False)
    assert "writing root.img" in out.stdout and "failed" in out.stderr
    assert device.var("BootNext") is None
    assert device.status()["slot b"] == "incomplete (an install was interrupted)"


def test_install_from_url(device, key, tmp_path):
    """busybox wget from a real HTTP server on 127.0.0.1."""
    import http.server
    import threading

    path = make_bundle(tmp_path, key, version="1.3")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(path.parent))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        device.run("boot")
        shutil.copy(make_bundle(tmp_path, minisign.SecretKey.generate(), version="1.4"), path.parent / "f.bundle")
        out = device.run("install", f"http://127.0.0.1:{server.server_port}/f.bundle", check=False)
        assert "not signed by a trusted key" in out.stderr
        assert not list((device.root / "data/update").glob("download*"))      # a refused download is not kept
        out = device.run("install", f"http://127.0.0.1:{server.server_port}/update.bundle")
        assert "downloading" in out.stdout and "reboot to try it" in out.stdout
    finally:
        server.shutdown()
    with tarfile.open(path) as tar:
        root = tar.extractfile("root.img").read()
    assert device.dev("root_b")[:len(root)] == root
    assert not (device.root / "data/update/download.bundle").exists()      # removed once installed
    assert device.var("BootNext") == ["0002"]


def test_no_layout_is_one_line(device):
    os.unlink(device.root / "usr/share/update/layout")
    out = device.run("status", check=False)
    assert out.stderr.strip().splitlines() == [f"update: no {device.root}/usr/share/update/layout: this image "
                                               "has no A/B slots"]

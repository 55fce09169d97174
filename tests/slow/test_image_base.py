"""image-base end to end on x86-virtio and qemu-arm64: built with a key pair
made here (BUILDSYS_SSH_AUTHORIZED_KEYS), booted twice from the same disk
under plain QEMU command lines with user networking: /data is ext4 and keeps
a file across the reboot, dropbear's host key is made on the first boot and
is the same on the second, SSH runs a command and scp copies a file each way.
Then `buildsys test --board B image-base` does its own boot and SSH login."""
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from buildsys.qemu import Check, boot_and_check, free_port, ssh_argv, ssh_checks
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
ARCH = {"x86-virtio": "x86_64", "qemu-arm64": "aarch64"}
KEY = "/data/dropbear/dropbear_ed25519_host_key"


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    """A throw-away key pair; the image is built to trust its public half."""
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-base-test", "-f", str(path)],
                   check=True)
    return path


def _env(build_dir: Path, key: Path) -> dict[str, str]:
    # BUILDSYS_TEST_CACHE_DIR (kept across runs in CI) may give the kernels
    # and packages; the image itself is always made (its key is new).
    return {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
            "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir / "cache"),
            "BUILDSYS_SSH_AUTHORIZED_KEYS": f"{key}.pub"}


@pytest.fixture(scope="module", params=["x86-virtio", "qemu-arm64"])
def built(request, tmp_path_factory, key):
    board = request.param
    build_dir = tmp_path_factory.mktemp(board) / "build"
    env = _env(build_dir, key)
    run_buildsys("--project", ROOT, "build", "-j2", "--board", board, "image-base", env=env, check=0)
    deploy = build_dir / "deploy" / board
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert manifest["image"] == "image-base"
    image = deploy / next(f for f in manifest["files"] if f.endswith(".img"))
    return board, build_dir, deploy, image, env


def plain_qemu(board: str, deploy: Path, disk: Path, port: int) -> list[str]:
    """What a user would type: no buildsys involved."""
    net = ["-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=net0"]
    if board == "x86-virtio":
        # No virtio-rng here: the first boot's host key must not need one.
        return ["qemu-system-x86_64", "-M", "q35", "-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd",
                "-drive", f"file={disk},if=virtio,format=raw", *net, "-nographic", "-no-reboot"]
    return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-m", "256", "-kernel", str(deploy / "Image"),
            "-drive", f"file={disk},if=none,format=raw,id=disk0", "-device", "virtio-blk-pci,drive=disk0",
            *net, "-device", "virtio-rng-pci", "-nographic", "-no-reboot"]


def test_image_base_persists_data_and_answers_ssh(built, key, tmp_path):
    board, _, deploy, image, _ = built
    disk = tmp_path / "disk.img"           # the guest must not touch the deployed image
    shutil.copyfile(image, disk)
    token = secrets.token_hex(8)
    fingerprint = "dropbearkey -y -f " + KEY + " | grep -i fingerprint"

    port = free_port()
    first = boot_and_check(plain_qemu(board, deploy, disk, port), [
        Check("grep ' /data ' /proc/mounts", r"^\S+ /data ext4 rw"),
        Check("ls /data/dropbear", r"dropbear_ed25519_host_key"),
        Check(fingerprint, r"(?i)fingerprint"),
        Check("cat /etc/resolv.conf", r"^nameserver "),
        Check("ip -4 addr show eth0", r"inet \d+\.\d+\.\d+\.\d+/"),
        Check(f"echo {token} > /data/home/persist.txt && sync && cat /data/home/persist.txt", rf"^{token}$"),
    ], tmp_path / "serial-1.log", timeout=400, command_timeout=60,
        after=lambda: ssh_checks(port, str(key), tmp_path / "ssh-1", ARCH[board]))
    assert first.ok, f"first boot: {first.reason} (serial log {first.log_path})"
    assert "dropbear: made a new host key" in Path(first.log_path).read_text(errors="replace")

    port = free_port()
    login = ssh_argv(port, str(key), "cat /data/home/persist.txt")

    def ssh_again():
        proc = subprocess.run(login, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or proc.stdout.strip() != token:
            return f"second boot: ssh printed {proc.stdout!r} {proc.stderr[-200:]!r}"
        return None

    second = boot_and_check(plain_qemu(board, deploy, disk, port), [
        Check("grep ' /data ' /proc/mounts", r"^\S+ /data ext4 rw"),
        Check("cat /data/home/persist.txt", rf"^{token}$"),
        Check(fingerprint, r"(?i)fingerprint"),
    ], tmp_path / "serial-2.log", timeout=400, command_timeout=60,
        after=lambda: ssh_checks(port, str(key), tmp_path / "ssh-2", ARCH[board], wait=180) or ssh_again())
    assert second.ok, f"second boot: {second.reason} (serial log {second.log_path})"
    assert "made a new host key" not in Path(second.log_path).read_text(errors="replace")
    assert second.outputs[fingerprint] == first.outputs[fingerprint], "the host key changed across the reboot"


def test_buildsys_test_logs_in_over_ssh(built):
    board, _, _, _, env = built
    proc = run_buildsys("--project", ROOT, "test", "--board", board, "image-base", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PASS: {board}" in proc.stderr and "scp: guest -> host, sha256 matches" in proc.stderr

"""image-examples on x86-virtio and qemu-arm64: built, booted under a plain
QEMU command line with user networking, and each application of the
examples layer run in the guest:

* socat (autotools): a stream from the guest to a socat listening on the
  host's 127.0.0.1 (QEMU user networking maps 10.0.2.2 there), checked byte
  for byte on the host, and one from the host to the guest, checked by its
  sha256 in the guest;
* mosquitto (cmake): the broker started at boot listens on the guest's
  address, not only on the loopback, and runs as nobody; mosquitto_sub in the
  background receives what mosquitto_pub sends;
* iputils (meson): its ping (/usr/bin/ping, not busybox's) to the loopback
  and to the user-network gateway.

Then `buildsys test` on the image: its shell, an SSH login and scp both ways
(image-base's checks).  The host's socat comes from scripts/setup-host.sh."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from boards.helpers import Built, build, env_for
from buildsys.qemu import Check, boot_and_check, free_port
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

BOARDS = ("x86-virtio", "qemu-arm64")
ARCH = {"x86-virtio": "x86_64", "qemu-arm64": "aarch64"}
# Enough lines to take more than a few TCP windows (about 3.4 MB).
UPLOAD_LINES = 500_000
DOWNLOAD_BYTES = 2 * 1024 * 1024
MESSAGE = "hello from mosquitto_pub"


def qemu_argv(board: str, built: Built, disk: Path) -> list[str]:
    """The board's machine with the disk on virtio-blk, the network on
    virtio-net with QEMU's user networking (no port forwards: the guest
    reaches the host's 127.0.0.1 as 10.0.2.2) and an entropy source."""
    net = ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
           "-device", "virtio-rng-pci"]
    if board == "x86-virtio":
        return ["qemu-system-x86_64", "-M", "q35", "-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd",
                "-drive", f"file={disk},if=virtio,format=raw", *net, "-nographic", "-no-reboot"]
    return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-m", "256",
            "-kernel", str(built.deploy / "Image"),
            "-drive", f"file={disk},if=none,format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0",
            *net, "-nographic", "-no-reboot"]


def upload_bytes() -> bytes:
    """What busybox's `seq 1 N` prints."""
    return "".join(f"{i}\n" for i in range(1, UPLOAD_LINES + 1)).encode()


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    """Until 127.0.0.1:port is in LISTEN state (/proc/net/tcp; a test
    connection would use up the listener's only one)."""
    local = f"0100007F:{port:04X}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"host socat exited {proc.returncode}"
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        if any(row[1] == local and row[3] == "0A" for row in rows):
            return
        time.sleep(0.1)
    raise AssertionError(f"host socat is not listening on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    """A throw-away key pair the image trusts: image-base's dropbear wants one."""
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "examples-test", "-f", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module", params=BOARDS)
def built(request, tmp_path_factory, key) -> Built:
    return build(request.param, tmp_path_factory.mktemp(request.param) / "build", "image-examples",
                 BUILDSYS_SSH_AUTHORIZED_KEYS=f"{key}.pub")


def test_image_holds_the_applications(built):
    assert built.image.name == f"image-examples-{built.board}.img"
    names = {r["name"] for r in built.manifest["recipes"]}
    assert {"socat", "mosquitto", "iputils", "libc"} <= names


def test_applications_run_in_the_guest(built, tmp_path):
    if shutil.which("socat") is None:
        pytest.fail("the host has no socat: run scripts/setup-host.sh")
    disk = tmp_path / "disk.img"          # the guest must not touch the deployed image
    shutil.copyfile(built.image, disk)

    # Host ends of the socat checks, on 127.0.0.1 only: one connection each.
    received = tmp_path / "received.bin"
    to_guest = tmp_path / "to-guest.bin"
    to_guest.write_bytes(hashlib.sha256(b"buildsys").digest() * (DOWNLOAD_BYTES // 32))
    sha256_to_guest = hashlib.sha256(to_guest.read_bytes()).hexdigest()
    up_port = down_port = free_port()
    while down_port == up_port:
        down_port = free_port()
    up = subprocess.Popen(["socat", "-u", f"TCP-LISTEN:{up_port},bind=127.0.0.1,reuseaddr", f"CREATE:{received}"])
    down = subprocess.Popen(["socat", "-u", f"OPEN:{to_guest}", f"TCP-LISTEN:{down_port},bind=127.0.0.1,reuseaddr"])
    try:
        wait_listening(up_port, up)
        wait_listening(down_port, down)
        wait = "i=0; while [ $i -lt 60 ]; do {cond} && break; i=$((i+1)); sleep 1; done; "
        checks = [
            Check("uname -m", rf"^{ARCH[built.board]}\s*$"),
            # DHCP from QEMU's user network (S20network), then the broker (S60mosquitto).
            Check(wait.format(cond="ip -4 addr show eth0 | grep -q 'inet 10.0.2.15/'") + "ip -4 addr show eth0",
                  r"inet 10\.0\.2\.15/24"),
            Check(wait.format(cond="[ -s /run/mosquitto/mosquitto.pid ]") +
                  "p=$(cat /run/mosquitto/mosquitto.pid); cat /proc/$p/comm; grep '^Uid:' /proc/$p/status",
                  r"^mosquitto\s*\nUid:\s+65534\s"),
            # socat, guest -> host and host -> guest, through user networking.
            Check(f"seq 1 {UPLOAD_LINES} | socat -u - TCP:10.0.2.2:{up_port} && echo sent", r"^sent$"),
            Check(f"socat -u TCP:10.0.2.2:{down_port} - | sha256sum", f"^{sha256_to_guest}  -"),
            # mosquitto: subscribe on the guest's address (a listener beyond the
            # loopback), publish until the subscriber has its message.
            Check("mosquitto_sub -h 10.0.2.15 -t examples/test -C 1 -W 30 > /tmp/sub.out & s=$!; i=0; "
                  f"while kill -0 $s 2>/dev/null && [ $i -lt 25 ]; do mosquitto_pub -h 10.0.2.15 -t examples/test "
                  f"-m '{MESSAGE}'; i=$((i+1)); sleep 1; done; wait $s; echo \"sub=$?\"; cat /tmp/sub.out",
                  rf"^sub=0\s*\n{MESSAGE}$"),
            # iputils' ping, by its path (busybox-base has a ping applet too).
            Check("/usr/bin/ping -V", r"ping from iputils 20250605"),
            Check("/usr/bin/ping -c 1 -W 5 127.0.0.1", r"1 packets transmitted, 1 received"),
            # QEMU's user network answers echo requests to its gateway itself.
            Check("/usr/bin/ping -c 1 -W 5 10.0.2.2", r"1 packets transmitted, 1 received"),
        ]
        result = boot_and_check(qemu_argv(built.board, built, disk), checks, tmp_path / "serial.log",
                                timeout=300, command_timeout=120)
        assert result.ok, f"{result.reason} (serial log {result.log_path})"
        up.wait(timeout=30)
        assert received.read_bytes() == upload_bytes()
    finally:
        for proc in (up, down):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def test_buildsys_test_command(built, key):
    """`buildsys test` on image-examples: the shell, and SSH with the key (image-base's checks)."""
    proc = run_buildsys("--project", ROOT, "test", "--board", built.board, "image-examples",
                        env={**env_for(built.build_dir), "BUILDSYS_SSH_AUTHORIZED_KEYS": f"{key}.pub"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PASS: {built.board}" in proc.stderr

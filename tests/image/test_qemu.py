"""buildsys.qemu: the serial-console protocol, against a local shell standing in
for the guest (fast), and a real boot when BUILDSYS_TEST_IMAGE names an image (slow)."""
import os
import shutil
from pathlib import Path

import pytest

from buildsys.qemu import Check, board_argv, boot_and_check

ROOT = Path(__file__).resolve().parents[2]
FAKE_GUEST = ["/bin/sh", "-c", "echo 'Booting fake kernel'; sleep 0.2; PS1='# ' exec /bin/sh -i"]


def test_commands_outputs_and_exit(tmp_path):
    log = tmp_path / "serial.log"
    r = boot_and_check(FAKE_GUEST, [Check("echo hello; echo world", r"^world$"), Check("false", status=1),
                                    Check("printf 'a\\nb\\n' | wc -l", r"^\s*2$")],
                       log, timeout=20, poweroff="exit")
    assert r.ok, r.reason
    assert r.outputs["echo hello; echo world"] == "hello\nworld\n"
    assert r.boot_seconds is not None and "Booting fake kernel" in log.read_text()


def test_failing_check_says_why(tmp_path):
    r = boot_and_check(FAKE_GUEST, [Check("uname -s", r"^Plan9$")], tmp_path / "l", timeout=20, poweroff="exit")
    assert not r.ok and "does not match" in r.reason and "Plan9" in r.reason
    r = boot_and_check(FAKE_GUEST, [Check("ls /nonexistent")], tmp_path / "l",
                       timeout=20, poweroff="exit")
    assert not r.ok and "exited" in r.reason


def test_no_prompt_times_out(tmp_path):
    r = boot_and_check(["/bin/sh", "-c", "echo 'Kernel panic'; sleep 30"], [], tmp_path / "l", timeout=1)
    assert not r.ok and "timed out waiting for the shell prompt" in r.reason and "Kernel panic" in r.reason


def test_guest_that_dies(tmp_path):
    r = boot_and_check(["/bin/sh", "-c", "echo 'No working init found'"], [], tmp_path / "l", timeout=10)
    assert not r.ok and "exited" in r.reason and "No working init found" in r.reason


def test_missing_binary(tmp_path):
    r = boot_and_check(["/nonexistent/qemu"], [], tmp_path / "l", timeout=5)
    assert not r.ok and "could not start" in r.reason


def test_board_argv():
    import yaml

    board = yaml.safe_load((ROOT / "board-configs/x86-virtio.yaml").read_text())
    argv = board_argv(board["qemu"], image="/d/i.img")
    assert argv[0] == "qemu-system-x86_64" and "file=/d/i.img,if=virtio,format=raw" in argv
    assert "-nographic" in argv and "/usr/share/ovmf/OVMF.fd" in argv


X86_CHECKS = [
    Check("cat /proc/mounts", r"^/dev/root / squashfs ro[, ]"),
    Check("cat /proc/cmdline", r"root=PARTUUID=\S+ rootfstype=squashfs ro console=ttyS0"),
    Check("uname -m", r"^x86_64$"),
    Check("touch /tmp/ok && ls /tmp", r"^ok$"),
]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BUILDSYS_TEST_IMAGE"),
                    reason="set BUILDSYS_TEST_IMAGE to an x86-virtio disk image")
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 not installed")
def test_boot_x86_virtio_image(tmp_path):
    import yaml

    board = yaml.safe_load((ROOT / "board-configs/x86-virtio.yaml").read_text())
    image = tmp_path / "disk.img"
    shutil.copyfile(os.environ["BUILDSYS_TEST_IMAGE"], image)   # QEMU may write to it; keep the original
    log = Path(os.environ.get("BUILDSYS_TEST_LOG", tmp_path / "serial.log"))
    r = boot_and_check(board_argv(board["qemu"], image=str(image)), X86_CHECKS, log, timeout=300)
    assert r.ok, f"{r.reason} (serial log: {log})"

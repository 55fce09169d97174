"""image-container end to end on x86-virtio and qemu-arm64: built (crun, the
linux-containers kernel, the oci-hello bundle and layers/examples'
oci-clock), booted once under a plain QEMU command line (OVMF on x86,
`-kernel` on arm64), and the containers run with crun on the serial console:

* cgroup2 is mounted with memory and pids handed to the children;
* `container-run clock` (a layer's bundle) runs once: PID 1, its own host
  name, its own cgroup namespace;
* `container-run hello` is a shell inside the container: PID 1 is its own
  /bin/sh, the host name is the bundle's, its pid/mount/uts/ipc/net/cgroup
  namespaces are not the host's, the host's files (/data, /etc/os-release,
  the bundles) are not there, the root is read-only; 8 MiB allocated at once
  is fine, 64 MiB is past linux.resources.memory.limit (32 MiB): dd is
  OOM-killed (status 137), memory.events counts it and the kernel says so.

Warm cache (BUILDSYS_TEST_CACHE_DIR holding the kernel and crun): the image
assembly plus one boot, 40 s here (39.3 s measured).  Cold: the kernel, crun and the
C library first (the image-base test's cost plus the kernel's).
"""
import json
import os
import re
import shutil
from pathlib import Path

import pexpect
import pytest

from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")
LIMIT = 32 * 1024 * 1024            # oci-hello.yaml's memory_limit


@pytest.fixture(scope="module", params=["x86-virtio", "qemu-arm64"])
def image(request, tmp_path_factory) -> tuple[str, Path]:
    board = request.param
    build_dir = tmp_path_factory.mktemp("containers") / "build"
    env = {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir / "cache")}
    run_buildsys("--project", ROOT, "build", "-j2", "--board", board, "image-container", env=env, check=0)
    deploy = build_dir / "deploy" / board
    manifest = json.loads((deploy / "manifest.json").read_text())
    return board, deploy / next(f for f in manifest["files"] if f.endswith(".img"))


def qemu(board: str, deployed: Path, disk: Path) -> tuple[str, list[str]]:
    """The plain QEMU command line of the board: OVMF boots the x86 disk's
    ESP; on arm64 the kernel deployed beside the disk is given to -kernel."""
    if board == "x86-virtio":
        return "qemu-system-x86_64", ["-M", "q35", "-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd",
                                      "-drive", f"file={disk},if=virtio,format=raw", "-nographic", "-no-reboot"]
    return "qemu-system-aarch64", ["-M", "virt", "-cpu", "cortex-a53", "-m", "256",
                                   "-kernel", str(deployed.parent / "Image"),
                                   "-drive", f"file={disk},if=none,format=raw,id=d0",
                                   "-device", "virtio-blk-pci,drive=d0", "-nographic", "-no-reboot"]


class Console:
    """The guest's serial console: commands with numbered markers that only
    the guest's shell joins (as buildsys.qemu does), so the echo of what we
    type never passes for output, and the exit status comes back."""

    def __init__(self, child):
        self.child = child
        self.n = 0

    def run(self, command: str, timeout: float = 60) -> tuple[int, str]:
        self.n += 1
        n = self.n
        self.child.sendline(f'echo "@@B""EGIN-{n}@@"; {command}; echo "@@R""C-{n}=$?@@"')
        self.child.expect(re.compile(rf"@@BEGIN-{n}@@\r*\n(.*?)@@RC-{n}=(\d+)@@", re.S), timeout=timeout)
        return int(self.child.match.group(2)), self.child.match.group(1).replace("\r", "")

    def ok(self, command: str, timeout: float = 60) -> str:
        status, out = self.run(command, timeout)
        assert status == 0, f"{command!r} exited {status}: {out[-500:]!r}"
        return out


def namespaces(console: Console) -> dict[str, str]:
    out = console.ok(" ; ".join(f"readlink /proc/self/ns/{ns}" for ns in NAMESPACES))
    ids = dict(zip(NAMESPACES, out.split(), strict=True))
    assert all(re.fullmatch(rf"{ns}:\[\d+\]", ids[ns]) for ns in NAMESPACES), ids
    return ids


def test_containers_run_isolated_and_limited(image, tmp_path):
    board, deployed = image
    disk = tmp_path / "disk.img"            # the guest must not touch the deployed image
    shutil.copyfile(deployed, disk)
    log_path = tmp_path / "serial.log"
    binary, argv = qemu(board, deployed, disk)
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        child = pexpect.spawn(binary, argv, encoding="utf-8", codec_errors="replace",
                              timeout=300, dimensions=(50, 250))
        child.logfile_read = log
        try:
            child.expect(r"[#$] $", timeout=300)
            host = Console(child)
            host.ok("true")

            # --- the device: cgroup2 for crun ------------------------------------------------
            assert re.search(r"^cgroup2 /sys/fs/cgroup cgroup2 ", host.ok("cat /proc/mounts"), re.M)
            assert set(host.ok("cat /sys/fs/cgroup/cgroup.subtree_control").split()) >= {"memory", "pids"}
            assert host.ok("container-run").split() == ["clock", "hello"]
            host_name = host.ok("hostname").strip()
            host_ns = namespaces(host)
            host_mounts = host.ok("cat /proc/self/mountinfo")
            assert " /data " in host_mounts and host.ok("ls -d /data/home /etc/os-release")

            # --- a layer's bundle, run once ---------------------------------------------------
            out = host.ok("container-run clock")
            # In its own cgroup namespace: its cgroup is its root.
            assert re.search(r"^clock: \S+ pid 1 cgroup 0::/$", out, re.M), out
            assert host.ok("crun list").split()[:4] == ["NAME", "PID", "STATUS", "BUNDLE"]
            assert "clock" not in host.ok("crun list"), "crun run kept the container after it exited"

            # --- a shell in the hello container -----------------------------------------------
            child.sendline("container-run hello")
            inside = Console(child)
            inside.n = host.n
            assert inside.ok("echo $$").strip() == "1"
            assert inside.ok("cat /proc/1/cmdline").strip("\0\n") == "/bin/sh"
            assert inside.ok("hostname").strip() == "hello" != host_name
            # Its processes only: the shell and what it runs.
            assert len(inside.ok("ls /proc | grep '^[0-9]'").split()) <= 3
            own_ns = namespaces(inside)
            for ns in NAMESPACES:
                assert own_ns[ns] != host_ns[ns], f"the container shares the host's {ns} namespace"
            mounts = inside.ok("cat /proc/self/mountinfo")
            assert mounts != host_mounts and " /data " not in mounts
            status, out = inside.run("ls -d /data /etc/os-release /var/lib/containers 2>&1")
            assert status != 0 and out.count("No such file or directory") == 3, out
            status, out = inside.run("touch /new-file 2>&1")
            assert status != 0 and "Read-only file system" in out, out
            assert inside.ok("ls /sys/class/net").split() == ["lo"], "the container sees the host's network"

            # --- the memory limit ---------------------------------------------------------------
            assert int(inside.ok("cat /sys/fs/cgroup/memory.max")) == LIMIT
            inside.ok("dd if=/dev/zero of=/dev/null bs=8M count=4")
            status, out = inside.run("dd if=/dev/zero of=/dev/null bs=64M count=1")
            assert status == 137, f"dd past the memory limit exited {status}: {out!r}"
            events = dict(line.split() for line in inside.ok("cat /sys/fs/cgroup/memory.events").splitlines())
            assert int(events["oom_kill"]) >= 1, events

            # --- back on the device --------------------------------------------------------------
            child.sendline("exit")
            host.n = inside.n
            assert host.ok("hostname").strip() == host_name
            assert namespaces(host) == host_ns
            # Only the parent's own files are left: no container's cgroup directory.
            left = host.ok('for d in /sys/fs/cgroup/containers/*; do [ -d "$d" ] && echo "$d"; done; true')
            assert left.split() == [], f"crun left a container's cgroup: {left!r}"
            child.sendline("poweroff -f")
            child.expect(pexpect.EOF, timeout=60)
        finally:
            if child.isalive():
                child.terminate(force=True)
    serial = log_path.read_text(errors="replace")
    assert "Memory cgroup out of memory" in serial, "the kernel did not report the container's OOM kill"

"""Boot an image in QEMU on a serial console, run commands, check their output.

Used by ``buildsys test`` and the slow tests.  Everything is bounded by
timeouts; the whole serial output goes to a log file; the result says what
failed in one line.

Once the shell answers, ``after`` (e.g. ssh_checks) may talk to the guest
over the network -- QEMU user networking with a host port forwarded to the
guest's port 22 (the boards' ``hostfwd=tcp:127.0.0.1:${ssh_port}-:22``) --
before the guest is powered off.

Reading a command's output on a serial console: the guest echoes what we
type, so markers are built with shell quoting that only the guest's shell
joins -- the echo shows ``@@B""EGIN-1@@`` and only the command's output shows
``@@BEGIN-1@@`` -- and the exit status travels in the end marker.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

# ash's prompt as root ("# ", or "host:/path# " with base-files' profile).
DEFAULT_PROMPT = r"[#$] $"
_seq = itertools.count(1)


@dataclass(frozen=True)
class Check:
    command: str
    expect: str | None = None          # a regex the output must match (re.search, MULTILINE)
    status: int | None = 0             # the exit status it must have; None: any


@dataclass
class Result:
    ok: bool
    reason: str
    log_path: str
    boot_seconds: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


def board_argv(qemu: dict, **paths: str) -> list[str]:
    """A board's ``qemu: {binary, args}`` as an argv, with ``${image}`` (and
    any other ``${name}`` given as a keyword) replaced by a path."""
    if not qemu or not qemu.get("binary"):
        raise ValueError("the board has no qemu settings (qemu: {binary: ..., args: [...]})")

    def sub(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: paths[m.group(1)] if m.group(1) in paths else m.group(0), str(text))

    return [str(qemu["binary"])] + [sub(a) for a in qemu.get("args", [])]


# --- A/B images: UEFI with persistent variables -------------------------------------
# An A/B image switches slots through the firmware's BootNext/BootOrder, so
# its variables must persist across resets and runs: split pflash (the code
# read-only, a writable copy of the variable store), never -bios; and no
# -no-reboot, since reboots are how a slot is tried and rolled back.
UEFI_FIRMWARE = {
    "x86_64": (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    "aarch64": (Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
}


def pflash_args(code: Path | str, vars_file: Path | str) -> list[str]:
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]


def with_pflash(argv: list[str], firmware: list[str]) -> list[str]:
    """A board's QEMU argv with its ``-bios``/``-kernel`` boot replaced by the
    ``firmware`` arguments (pflash drives; a ``-M`` there replaces the
    board's), and without ``-no-reboot``."""
    drop_pairs = {"-bios", "-kernel", "-append"} | ({"-M", "-machine"} if "-M" in firmware else set())
    out, i = [argv[0]], 1
    while i < len(argv):
        if argv[i] in drop_pairs:
            i += 2
            continue
        if argv[i] == "-no-reboot":
            i += 1
            continue
        out.append(argv[i])
        i += 1
    return out[:1] + firmware + out[1:]


def uefi_firmware(arch: str) -> tuple[Path, Path]:
    """The firmware code and the variable-store template for ``arch`` (ValueError when not installed)."""
    if arch not in UEFI_FIRMWARE:
        raise ValueError(f"no UEFI firmware known for {arch}")
    code, template = UEFI_FIRMWARE[arch]
    if not code.is_file() or not template.is_file():
        raise ValueError(f"UEFI firmware for {arch} is not installed ({code}, {template}): "
                         + ("apt install ovmf" if arch == "x86_64" else "apt install qemu-efi-aarch64"))
    return code, template


def _run(child, command: str, timeout: float) -> tuple[int, str]:
    # Numbered markers: a late answer to an earlier command never passes for
    # this one's.  Line ends arrive as \r\r\n (guest tty and host pty both add \r).
    n = next(_seq)
    child.sendline(f'echo "@@B""EGIN-{n}@@"; {command}; echo "@@R""C-{n}=$?@@"')
    child.expect(re.compile(rf"@@BEGIN-{n}@@\r*\n(.*?)@@RC-{n}=(\d+)@@", re.S), timeout=timeout)
    m = child.match
    return int(m.group(2)), m.group(1).replace("\r", "")


def boot_and_check(argv: list[str], checks: list[Check], log_path, timeout: float = 180,
                   prompt: str = DEFAULT_PROMPT, command_timeout: float = 30,
                   poweroff: str = "poweroff -f", poweroff_timeout: float = 30,
                   after: Callable[[], str | None] | None = None) -> Result:
    """Start ``argv`` (a full qemu command line with the serial console on
    stdio), wait up to ``timeout`` s for a shell prompt, run the checks, then
    ``after()`` (None: passed, else why it failed), power off and wait for
    QEMU to exit."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    start = time.monotonic()
    boot = None
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        try:
            child = pexpect.spawn(argv[0], list(argv[1:]), encoding="utf-8", codec_errors="replace",
                                  timeout=timeout, dimensions=(50, 250))
        except pexpect.ExceptionPexpect as e:
            return Result(False, f"could not start {argv[0]}: {e}", str(log_path))
        child.logfile_read = log          # the serial output only, not what we type
        try:
            step = "waiting for the shell prompt"
            child.expect(prompt, timeout=timeout)
            # Something prompt-like may come before the shell is really up
            # (firmware output); a command that answers proves it is.
            step = "waiting for the shell to answer"
            while True:
                try:
                    _run(child, "true", min(5.0, command_timeout))
                    break
                except pexpect.TIMEOUT:
                    if time.monotonic() - start > timeout:
                        raise
            boot = time.monotonic() - start
            for check in checks:
                step = f"running {check.command!r}"
                status, out = _run(child, check.command, command_timeout)
                outputs[check.command] = out
                if check.status is not None and status != check.status:
                    return Result(False, f"{check.command!r} exited {status}, expected {check.status}: "
                                  f"{out.strip()[-200:]!r}", str(log_path), boot, outputs)
                if check.expect and not re.search(check.expect, out, re.M):
                    return Result(False, f"{check.command!r}: output does not match {check.expect!r}: "
                                  f"{out.strip()[-200:]!r}", str(log_path), boot, outputs)
            if after is not None:
                step = "running the checks over the network"
                why = after()
                if why:
                    return Result(False, why, str(log_path), boot, outputs)
            step = f"waiting for QEMU to exit after {poweroff!r}"
            child.sendline(poweroff)
            child.expect(pexpect.EOF, timeout=poweroff_timeout)
            child.close()
            extra = " and the network checks" if after is not None else ""
            return Result(True, f"booted in {boot:.1f} s, {len(checks)} check(s){extra} passed, powered off",
                          str(log_path), boot, outputs)
        except pexpect.TIMEOUT:
            tail = (child.before or "")[-300:].strip().replace("\r", "")
            return Result(False, f"timed out {step}; last output: {tail!r}", str(log_path), boot, outputs)
        except pexpect.EOF:
            tail = (child.before or "")[-300:].strip().replace("\r", "")
            return Result(False, f"QEMU exited while {step}; last output: {tail!r}", str(log_path), boot, outputs)
        finally:
            if child.isalive():
                child.terminate(force=True)


# --- SSH into the guest (QEMU user networking, a forwarded host port) -------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (QEMU binds it right after;
    a race with another program is possible but harmless: QEMU then fails to start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# dropbear has no sftp-server: scp must use the old SCP protocol (-O).  The
# guest's host key is new on every first boot, so it is neither checked nor
# remembered; BatchMode: a key that is refused fails instead of asking for a
# password.
_SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
             "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15"]


def ssh_argv(port: int, identity: str | None, command: str, user: str = "root") -> list[str]:
    ident = ["-i", identity, "-o", "IdentitiesOnly=yes"] if identity else []
    return ["ssh", *_SSH_OPTS, *ident, "-p", str(port), f"{user}@127.0.0.1", command]


def scp_argv(port: int, identity: str | None, src: str, dst: str) -> list[str]:
    ident = ["-i", identity, "-o", "IdentitiesOnly=yes"] if identity else []
    return ["scp", "-O", "-q", *_SSH_OPTS, *ident, "-P", str(port), src, dst]


def _call(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stdout + proc.stderr


def ssh_checks(port: int, identity: str | None, workdir, arch: str, wait: float = 120,
               log: Callable[[str], None] = lambda _: None) -> str | None:
    """Log in as root over SSH, run a command, copy a file to the guest and one
    back, and compare their sha256s; None when all passed, else why not."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    remote = "root@127.0.0.1"
    # The server may still be making its host key (first boot) or the lease
    # may not be there yet: retry the first login for a while.
    deadline = time.monotonic() + wait
    while True:
        status, out = _call(ssh_argv(port, identity, "uname -m"), 30)
        if status == 0:
            break
        if time.monotonic() > deadline:
            return f"ssh -p {port} {remote} failed for {wait:.0f} s: {out.strip()[-300:]!r}"
        time.sleep(2)
    if out.strip() != arch:
        return f"ssh: 'uname -m' printed {out.strip()!r}, expected {arch!r}"
    log(f"ssh: logged in, uname -m = {arch}")
    # Host -> guest.
    up = workdir / "to-guest.bin"
    up.write_bytes(os.urandom(65536))
    status, out = _call(scp_argv(port, identity, str(up), f"{remote}:/tmp/from-host.bin"), 60)
    if status != 0:
        return f"scp to the guest failed: {out.strip()[-300:]!r}"
    status, out = _call(ssh_argv(port, identity, "sha256sum /tmp/from-host.bin"), 30)
    want = hashlib.sha256(up.read_bytes()).hexdigest()
    if status != 0 or out.split()[:1] != [want]:
        return f"the file copied to the guest differs: guest says {out.strip()[-200:]!r}, host {want}"
    log("scp: host -> guest, sha256 matches")
    # Guest -> host: a file the guest made.
    make = "dd if=/dev/urandom of=/tmp/to-host.bin bs=1024 count=64 2>/dev/null && sha256sum /tmp/to-host.bin"
    status, out = _call(ssh_argv(port, identity, make), 30)
    if status != 0 or not out.split():
        return f"making a file in the guest failed: {out.strip()[-300:]!r}"
    guest_sum = out.split()[0]
    down = workdir / "from-guest.bin"
    status, out = _call(scp_argv(port, identity, f"{remote}:/tmp/to-host.bin", str(down)), 60)
    if status != 0:
        return f"scp from the guest failed: {out.strip()[-300:]!r}"
    if hashlib.sha256(down.read_bytes()).hexdigest() != guest_sum:
        return "the file copied from the guest differs from the guest's sha256"
    log("scp: guest -> host, sha256 matches")
    return None

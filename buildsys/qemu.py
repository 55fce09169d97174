"""Boot an image in QEMU on a serial console, run commands, check their output.

Used by ``buildsys test`` and the slow tests.  Everything is bounded by
timeouts; the whole serial output goes to a log file; the result says what
failed in one line.

Reading a command's output on a serial console: the guest echoes what we
type, so markers are built with shell quoting that only the guest's shell
joins -- the echo shows ``@@B""EGIN-1@@`` and only the command's output shows
``@@BEGIN-1@@`` -- and the exit status travels in the end marker.
"""
from __future__ import annotations

import itertools
import re
import time
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
                   poweroff: str = "poweroff -f", poweroff_timeout: float = 30) -> Result:
    """Start ``argv`` (a full qemu command line with the serial console on
    stdio), wait up to ``timeout`` s for a shell prompt, run the checks, power
    off and wait for QEMU to exit."""
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
            step = f"waiting for QEMU to exit after {poweroff!r}"
            child.sendline(poweroff)
            child.expect(pexpect.EOF, timeout=poweroff_timeout)
            child.close()
            return Result(True, f"booted in {boot:.1f} s, {len(checks)} check(s) passed, powered off",
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

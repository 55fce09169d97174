"""`buildsys devshell`: the recipe's tasks up to configure, then a command or
a shell in exactly the sandbox and environment of its steps (the tiny
fixture, real bwrap; the real boards' part is marked slow)."""
import json
import os
import pty
import re
import select
import shutil
import signal
import time
from pathlib import Path

import pytest

from buildsys.commands.devshell import without_new_session
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

# Variables a shell sets by itself: not part of the environment handed over.
_SHELL_OWN = {"PWD", "OLDPWD", "SHLVL", "_"}


@pytest.fixture
def project(tiny):
    """tiny plus ``probe``: autotools (its class adds pkg-config's sysroot,
    CONFIG_SITE, -rpath-link to the steps' environment), configure writing
    the environment it ran in."""
    recipe = tiny / "recipes/probe/probe.yaml"
    recipe.parent.mkdir()
    (recipe.parent / "probe.c").write_text("int main(void) { return 0; }\n")
    recipe.write_text("""format: 1
name: probe
version: "1"
license: MIT
sources:
  - file: probe.c
depends: [libgreet]
class: autotools
env: {PROBE_SETTING: from-the-recipe}
steps:
  configure: |
    env | sort > /build/obj/step.env
""")
    return tiny


def _env(tmp_path):
    return {"BUILDSYS_BUILD_DIR": str(tmp_path / "build")}


def _devshell(project, tmp_path, *args, check=0):
    return run_buildsys("--project", project, "devshell", *args, env=_env(tmp_path), check=check)


def _vars(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in _SHELL_OWN:
            out[key] = value
    return out


def test_command_gets_the_steps_environment_and_stops_after_configure(project, tmp_path):
    proc = _devshell(project, tmp_path, "probe", "--", "sh", "-c", "env | sort > /build/obj/shell.env; pwd")
    assert proc.stdout.strip() == "/build/src"
    work = tmp_path / "build/work/tiny-x86/probe"
    step, shell = _vars((work / "obj/step.env").read_text()), _vars((work / "obj/shell.env").read_text())
    assert shell == step
    assert shell["PKG_CONFIG_SYSROOT_DIR"] == "/build/sysroot"        # the class's part
    assert shell["CONFIG_SITE"] == "/build/stage/config.site"
    assert "-Wl,-rpath-link=/build/sysroot/usr/lib" in shell["LDFLAGS"]
    assert shell["PROBE_SETTING"] == "from-the-recipe"                 # the recipe's part
    assert shell["CC"] == "gcc" and shell["SOURCE_DATE_EPOCH"]        # the base part
    # The recipe stopped after configure: nothing compiled or packaged; its
    # dependency is packaged and staged.
    assert sorted(p.name for p in (work / "stamps").iterdir()) == ["configure", "patch", "unpack"]
    packaged = {json.loads(p.read_text())["pn"] for p in (tmp_path / "build/packages").glob("*.json")}
    assert "libgreet" in packaged and "probe" not in packaged
    assert (work / "sysroot/usr/include/greet.h").is_file()
    assert "/build/src is " + str(work / "src") in proc.stderr
    assert "lost at the next unpack" in proc.stderr


def test_second_devshell_keeps_the_work_dir_and_passes_the_status_on(project, tmp_path):
    _devshell(project, tmp_path, "hello", "--", "touch", "/build/src/edited-by-hand")
    again = _devshell(project, tmp_path, "hello", "--", "sh", "-c", "ls /build/src; exit 7", check=7)
    assert "edited-by-hand" in again.stdout
    assert "hello:unpack" not in again.stderr
    # A build afterwards is the usual one, and packages the recipe.
    run_buildsys("--project", project, "build", "hello", env=_env(tmp_path), check=0)
    assert (tmp_path / "build/work/tiny-x86/hello/stamps/package").is_file()


def test_a_packaged_recipe_is_set_up_in_its_work_dir_again(project, tmp_path):
    run_buildsys("--project", project, "build", "hello", env=_env(tmp_path), check=0)
    run_buildsys("--project", project, "clean", "hello", env=_env(tmp_path), check=0)
    proc = _devshell(project, tmp_path, "hello", "--", "ls", "/build/src", "/build/sysroot/usr/lib")
    assert "hello.c" in proc.stdout and "libgreet.a" in proc.stdout


def test_hostile_command_has_a_steps_limits(project, tmp_path):
    from test_hostile_steps import ATTEMPTS

    lines = ['r() { if sh -c "$2" >/dev/null 2>&1; then echo "SUCCEEDED: $1"; else echo "failed: $1"; fi; }',
             "grep CapEff /proc/self/status", "grep -c : /proc/net/dev"]
    for name, command in dict(ATTEMPTS, **{"reach the network": "exec 3<>/dev/tcp/127.0.0.1/22"}).items():
        command = command.replace("HOSTPID", str(os.getpid())).replace("'", "'\\''")
        lines.append(f"r '{name}' '{command}'")
    proc = _devshell(project, tmp_path, "hello", "--", "bash", "-c", "\n".join(lines))
    assert "SUCCEEDED" not in proc.stdout, proc.stdout
    assert proc.stdout.count("failed: ") == len(ATTEMPTS) + 1
    assert re.search(r"^CapEff:\s+0+$", proc.stdout, re.M)
    assert re.search(r"^1$", proc.stdout, re.M)     # one interface in /proc/net/dev (lo:)
    assert not Path("/usr/bin/buildsys-escape").exists()


def test_unknown_recipe_is_one_line(project, tmp_path):
    proc = _devshell(project, tmp_path, "helo", "--", "true", check=2)
    assert proc.stderr.strip().count("\n") == 0 and "unknown recipe 'helo'" in proc.stderr


class Terminal:
    """buildsys on the other end of a pseudo-terminal, as a user's shell runs it."""

    def __init__(self, argv: list[str], env: dict[str, str], ignore_sigint: bool = False):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:   # the child
            os.environ.update(env)
            if ignore_sigint:   # as a script's background job is started (bash: `cmd &`)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGQUIT, signal.SIG_IGN)
            os.execv(str(ROOT / ".venv/bin/buildsys"), ["buildsys", *argv])
        self.seen = b""

    def until(self, pattern: bytes, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not re.search(pattern, self.seen):
            assert time.monotonic() < end, f"no {pattern!r} in {self.seen[-2000:]!r}"
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    self.seen += os.read(self.fd, 4096)
                except OSError:
                    break

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def status(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def _wait_foreground(cmdline: bytes, timeout: float = 30) -> None:
    """Until a process with this command line is its terminal's foreground process group
    (/proc/PID/stat: pgrp == tpgid; the sandbox's processes are visible from here)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit() or (entry / "cmdline").read_bytes() != cmdline:
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[2] == fields[5]:        # pgrp, tpgid
                return
        time.sleep(0.05)
    raise AssertionError(f"no foreground process {cmdline!r} after {timeout} s")


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["from-a-terminal", "from-a-background-job"])
def test_interactive_shell_on_a_terminal(project, tmp_path, ignore_sigint):
    """A terminal of its own: the prompt names the recipe and board, Ctrl-C
    stops the foreground command and not the shell, exit's status comes back.
    Also when buildsys itself was started with SIGINT ignored (a CI job in a
    script's background), which the shell would otherwise inherit."""
    term = Terminal(["--project", str(project), "devshell", "hello"], _env(tmp_path), ignore_sigint)
    try:
        term.until(rb"\[devshell hello tiny-x86\] /build/src")
        term.type(b"test -t 0 && echo TERMINAL-$((6*7)); sleep 61\n")
        term.until(rb"TERMINAL-42")
        # Ctrl-C before bash made `sleep` the terminal's foreground job would
        # go to bash, which ignores it (a fixed pause lost that race on a loaded machine).
        _wait_foreground(b"sleep\x0061\x00")
        term.type(b"\x03")
        term.type(b"echo STILL-$((6*7))\n")
        term.until(rb"STILL-42", timeout=20)
        term.type(b"exit 5\n")
        assert term.status() == 5
    finally:
        term.close()


def test_a_failed_configure_opens_the_shell_but_runs_no_command(project, tmp_path):
    recipe = project / "recipes/probe/probe.yaml"
    recipe.write_text(recipe.read_text().replace("env | sort > /build/obj/step.env",
                                                 "echo half-done > /build/obj/mark; exit 3"))
    proc = _devshell(project, tmp_path, "probe", "--", "touch", "/build/obj/ran", check=1)
    assert "probe:configure" in proc.stderr
    assert not (tmp_path / "build/work/tiny-x86/probe/obj/ran").exists()
    term = Terminal(["--project", str(project), "devshell", "probe"], _env(tmp_path))
    try:
        term.until(rb"configure failed")
        term.until(rb"\[devshell probe tiny-x86\]")
        term.type(b"cat /build/obj/mark; ls /build/sysroot/usr/include; exit\n")
        term.until(rb"half-done")
        term.until(rb"greet\.h")
        assert term.status() == 0
    finally:
        term.close()


def test_new_session_goes_only_with_a_terminal_of_its_own():
    argv = ["bwrap", "--unshare-all", "--new-session", "--chdir", "/build/src", "--", "sh", "-c", "--new-session"]
    assert without_new_session(argv) == ["bwrap", "--unshare-all", "--chdir", "/build/src", "--", "sh", "-c",
                                         "--new-session"]
    with pytest.raises(AssertionError):
        without_new_session(["bwrap", "--", "sh"])


DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")


@pytest.mark.slow
@pytest.mark.parametrize("board,cc", [("x86-virtio", "gcc"), ("qemu-arm64", "aarch64-linux-gnu-gcc")])
def test_devshell_on_the_real_boards(board, cc, tmp_path):
    """dropbear (autotools, needs zlib) in the pinned build environment: the
    board's compiler, zlib staged, pkg-config and config.site for the board,
    a compile that works there, and a step's limits."""
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(tmp_path / "cache")}
    check = ('echo "CC=$CC"; echo "PKG=$PKG_CONFIG_LIBDIR"; echo "SITE=$CONFIG_SITE"; '
             'ls /build/sysroot/usr/include; test -f /build/obj/config.status && echo CONFIGURED; '
             'test -w /build/src && ! test -w /usr && echo LIMITS-OK; '
             'cd /build/obj && make -j2 dropbear >/dev/null 2>&1 && ${CROSS_COMPILE}readelf -h dropbear | grep Machine')
    proc = run_buildsys("--project", ROOT, "devshell", "-j2", "--board", board, "dropbear", "--", "sh", "-c", check,
                        env=env, check=0, timeout=900)
    assert f"CC={cc}\n" in proc.stdout
    assert "PKG=/build/sysroot/usr/lib/pkgconfig:/build/sysroot/usr/share/pkgconfig" in proc.stdout
    assert "SITE=/build/stage/config.site" in proc.stdout
    assert "zlib.h" in proc.stdout and "CONFIGURED" in proc.stdout and "LIMITS-OK" in proc.stdout
    assert ("AArch64" if board == "qemu-arm64" else "X86-64") in proc.stdout


def test_stop_after_names_a_task_before_package():
    from buildsys.engine import BuildOptions

    assert BuildOptions(stop_after="patch").stop_after == "patch"
    for bad in ("package", "devshell"):
        with pytest.raises(ValueError, match="stop_after must be one of fetch, unpack"):
            BuildOptions(stop_after=bad)


def test_options_after_the_recipe_and_options_in_the_command(project, tmp_path):
    """Everything after -- is the command, whatever options come before it;
    the command's own options (-j2, --version) are not buildsys's."""
    proc = _devshell(project, tmp_path, "hello", "-j", "1", "--", "sh", "-c", 'echo "J=$JOBS"; exit 4', check=4)
    assert "J=1" in proc.stdout
    proc = _devshell(project, tmp_path, "hello", "--", "make", "-j2", "--version")
    assert proc.stdout.startswith("GNU Make")

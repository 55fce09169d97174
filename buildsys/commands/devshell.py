"""`buildsys devshell RECIPE [-- CMD...]`: a shell in a recipe's build sandbox.

The recipe's dependencies are built or restored and its own tasks run up to
and including configure (one engine.build with ``stop_after="configure"``);
then bash (sh when the build environment has no bash) starts in exactly the
sandbox of the recipe's steps: the bwrap argv of ``Context.sandbox_argv``,
the base environment plus what the build class adds to its steps
(``BuildClass.task_env``: pkg-config's sysroot, CONFIG_SITE, the -rpath-link
in LDFLAGS...), cwd /build/src.  ``-- CMD`` runs one command there instead
and exits with its status.

On a terminal the sandbox gets a pseudo-terminal of its own, relayed here,
and is the controlling terminal of its session: job control and Ctrl-C
reach the shell's foreground job and never buildsys.  That is also why
bwrap's --new-session (its guard against TIOCSTI, a sandboxed process typing
into the user's terminal) can go in that case: the only terminal the
sandbox can type into is its own.  Without a terminal the argv is the
steps' own, --new-session included, and the three streams are inherited.
"""
from __future__ import annotations

import os
import sys

from .base import Command, board_option, build_options, jobs

# The task the work dir is left after: sources unpacked and patched,
# dependencies staged, the class's configure done.
LAST_TASK = "configure"


class Devshell(Command):
    name = "devshell"
    takes_command = True        # what follows -- is CMD (see cli._parse)
    help = "a shell in a recipe's build sandbox after its configure (or one command: devshell RECIPE -- CMD)"

    def setup(self, parser):
        parser.add_argument("recipe", help="the recipe (NAME-native: its native variant)")
        board_option(parser)
        build_options(parser, "parallel tasks of the build before, and $JOBS in the shell (default: cores)")
        parser.add_argument("cmd", nargs="*", default=[], metavar="-- CMD",
                            help="run this command in the sandbox instead of a shell; exit with its status")

    def run(self, args):
        from .. import engine
        from ..workspace import Workspace

        ws = Workspace(args)
        recipe = ws.targets([args.recipe])[0]
        options = engine.BuildOptions(jobs=jobs(args), offline=args.offline, stop_after=LAST_TASK)
        result = engine.build(ws, [args.recipe], options)
        if not result.ok:
            # A configure that fails is what one most wants to look into:
            # the shell (never a scripted command) opens on the work dir as
            # that configure left it, its dependencies staged.
            if args.cmd or result.failed != [f"{recipe.pn}:{LAST_TASK}"] or result.session is None:
                return result.status
            print(f"devshell: {recipe.pn}'s {LAST_TASK} failed (above); the shell opens on the work dir as it "
                  "left it", file=sys.stderr)
        session = result.session
        assert session is not None      # stop_after never answers from the plan cache
        terminal = sys.stdin.isatty() and sys.stdout.isatty()
        argv = devshell_argv(session, recipe, args.cmd, terminal)
        paths = session.recipe_paths(recipe)
        print(f"devshell: {recipe.pn} for {ws.board.name}, in the sandbox and environment of its build steps "
              f"(no network, /usr read-only), after {LAST_TASK}", file=sys.stderr)
        print(f"  /build/src is {paths.src} (unpacked and patched: changes there are lost at the next unpack)\n"
              f"  /build/obj is {paths.obj}", file=sys.stderr)
        if not args.cmd:
            print("  leave with `exit`", file=sys.stderr)
        sys.stderr.flush()
        if terminal:
            status = run_on_pty(without_new_session(argv))
        else:
            import subprocess

            status = subprocess.run(argv, env={"PATH": "/usr/bin:/bin"}, close_fds=True).returncode
        return 128 - status if status < 0 else status


def shell_argv(session, interactive: bool) -> list[str]:
    """bash when the build environment has it (else sh), reading no rc file:
    the environment is the steps', not what a bash.bashrc would make of it."""
    root = session.buildenv.root if session.buildenv is not None else "/"
    if os.path.exists(os.path.join(root, "usr/bin/bash")):
        return ["bash", "--norc", "--noprofile"] + (["-i"] if interactive else [])
    return ["sh"] + (["-i"] if interactive else [])


def devshell_argv(session, recipe, command: list[str], terminal: bool) -> list[str]:
    """The bwrap argv of the devshell: the recipe's step sandbox and
    environment (base + the class's task_env), cwd /build/src."""
    from ..classes.base import SANDBOX_SRC

    paths = session.recipe_paths(recipe)
    paths.logs.mkdir(parents=True, exist_ok=True)
    session.prepare_environment()       # the pinned /usr the configure step ran against
    ctx = session.step_context(recipe, "devshell", paths.logs / "devshell.log")
    env = dict(session.resolver.build_class(recipe).task_env(ctx))
    if not command:
        command = shell_argv(session, terminal)
        bash = command[0] == "bash"
        label = f"devshell {recipe.pn} {session.board.name}"
        env["PS1"] = f"[{label}] \\w \\$ " if bash else f"[{label}] $ "
        env["BUILDSYS_DEVSHELL"] = recipe.pn
        if terminal:
            env["TERM"] = os.environ.get("TERM", "xterm")
    return ctx.sandbox_argv(list(command), env, SANDBOX_SRC)


def without_new_session(argv: list[str]) -> list[str]:
    """The argv without bwrap's --new-session, for a sandbox on a private pty
    (see the module's doc); only the options before ``--`` are looked at."""
    end = argv.index("--")
    if "--new-session" not in argv[:end]:
        raise AssertionError("the sandbox argv has no --new-session: check sandbox.bwrap_argv")
    i = argv.index("--new-session")
    return argv[:i] + argv[i + 1:]


def run_on_pty(argv: list[str]) -> int:
    """Run argv with a new pseudo-terminal as its controlling terminal and
    relay it to ours (in raw mode, so Ctrl-C, Ctrl-Z... go to the sandbox's
    foreground job); returns the exit status (negative: killed by signal)."""
    import fcntl
    import selectors
    import signal
    import subprocess
    import termios
    import tty

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    master, slave = os.openpty()

    def copy_size(*_):
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass

    def take_terminal():    # in the child, after setsid: the pty becomes its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # A new terminal session starts with the terminal's signals at their
        # defaults: buildsys started in the background of a script (CI) has
        # SIGINT and SIGQUIT ignored, an ignored signal survives exec, and
        # Ctrl-C would then never stop the shell's foreground job.
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_DFL)

    copy_size()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={"PATH": "/usr/bin:/bin"},
                            start_new_session=True, preexec_fn=take_terminal, close_fds=True)
    os.close(slave)
    saved = termios.tcgetattr(stdin)
    old_winch = signal.signal(signal.SIGWINCH, copy_size)
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    sel.register(stdin, selectors.EVENT_READ)
    try:
        tty.setraw(stdin)
        while True:
            events = sel.select(0.2)
            if not events and proc.poll() is not None:
                break
            for key, _ in events:
                if key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:     # EIO: every process holding the pty's other end has gone
                        data = b""
                    if not data:
                        return proc.wait()
                    _write_all(stdout, data)
                else:
                    typed = os.read(stdin, 65536)
                    if typed:
                        _write_all(master, typed)
                    else:
                        sel.unregister(stdin)
    finally:
        termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        sel.close()
        os.close(master)
    return proc.wait()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]

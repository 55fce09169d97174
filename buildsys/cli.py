"""The command line.  The only module that exits.

The subcommands are plugins in buildsys/commands/ (one module each); this
module parses the command line, runs one and maps errors to exit codes.

Exit codes: 0 success, 1 a build step failed, 2 a user or configuration
error (one line), 3 an internal bug (traceback).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback

from . import __version__

# Command and board_option live in buildsys.commands.base (no import circle);
# re-exported here for plugins written against the old location.
from .commands import COMMANDS, Command, board_option  # noqa: F401
from .errors import BuildsysError, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildsys", description="A meta-build system for embedded Linux.")
    parser.add_argument("--version", action="version", version=f"buildsys {__version__}")
    parser.add_argument("--project", metavar="DIR", help="project directory (default: nearest with buildsys.yaml)")
    parser.add_argument("--build-dir", metavar="DIR",
                        help="build directory (default: <project>/build; env BUILDSYS_BUILD_DIR)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.setup(p)
    return parser


# Global options that take a value (build_parser).
_VALUE_OPTIONS = ("--project", "--build-dir")


def _command_name(argv: list[str]) -> str | None:
    """The subcommand's name: the first argument that is neither a global
    option nor a global option's value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`devshell RECIPE [options] -- CMD...`: everything after the first --
    is the command, whatever options come before it (argparse alone says
    "unrecognized arguments" when an option follows the recipe).  Other
    commands parse the whole line as usual."""
    if "--" in argv:
        i = argv.index("--")
        if getattr(COMMANDS.get(_command_name(argv[:i]) or ""), "takes_command", False):
            args = parser.parse_args(argv[:i])
            args.cmd = argv[i + 1:]
            return args
    return parser.parse_args(argv)


def main(argv=None) -> int:
    try:
        parser = build_parser()
    except UserError as exc:  # pragma: no cover
        print(f"buildsys: {exc}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(parser, argv)
    # A run builds millions of long-lived objects (parsed recipes, graphs) and
    # frees few: with the default thresholds the cyclic GC rescans them all
    # again and again, half the time of parsing 10,000 recipes.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    # Files buildsys itself writes (packages, images) get the same modes
    # whatever the caller's umask: part of "same inputs, same bytes".
    os.umask(0o022)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command].run(args)
    except UserError as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except BuildsysError as exc:
        print(f"{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # noqa: BLE001 -- our bug: show everything
        traceback.print_exc()
        print("buildsys: internal error (a bug in buildsys); please report the traceback above", file=sys.stderr)
        return 3


def entry() -> None:
    status = main()
    # The process ends here: spare the cyclic GC its final walk over every
    # object still alive (graphs hold cycles), half a second for 10,000 recipes.
    gc.freeze()
    sys.exit(status)

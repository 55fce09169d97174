"""The command line.  The only module that exits.

Exit codes: 0 success, 1 a build step failed, 2 a user or configuration
error (one line), 3 an internal bug (traceback).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import BuildsysError, UserError, Where

COMMANDS: dict[str, "Command"] = {}


class Command:
    """A subcommand: ``setup(parser)`` adds its options, ``run(args)`` returns the exit code."""

    name = ""
    help = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            COMMANDS[cls.name] = cls()

    def setup(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args) -> int:
        raise NotImplementedError


def board_option(parser) -> None:
    parser.add_argument("--board", "-b", help="board name (default: the project's default_board, x86-virtio)")


def build_parser() -> argparse.ArgumentParser:
    from . import commands  # noqa: F401  (registers the subcommands)

    parser = argparse.ArgumentParser(prog="buildsys", description="A meta-build system for embedded Linux.")
    parser.add_argument("--version", action="version", version=f"buildsys {__version__}")
    parser.add_argument("--project", metavar="DIR", help="project directory (default: nearest with buildsys.yaml)")
    parser.add_argument("--build-dir", metavar="DIR", help="build directory (default: <project>/build; env BUILDSYS_BUILD_DIR)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.setup(p)
    return parser


class _Parser(argparse.ArgumentParser):
    pass


def main(argv=None) -> int:
    try:
        parser = build_parser()
    except UserError as exc:  # pragma: no cover
        print(f"buildsys: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
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

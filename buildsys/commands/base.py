"""The command plugin interface: a ``Command`` subclass with a ``name``
registers itself in ``COMMANDS`` when its module is imported.

Commands return an exit code and raise ``errors`` exceptions for everything
else; only ``buildsys.cli`` turns those into exit codes and exits.
"""
from __future__ import annotations

import argparse

COMMANDS: dict[str, Command] = {}


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


def board_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", "-b", help="board name (default: the project's default_board, x86-virtio)")


def build_options(parser: argparse.ArgumentParser, jobs_help: str = "parallel tasks (default: cores)") -> None:
    """-j and --offline, as every command that builds takes them (read back with jobs())."""
    parser.add_argument("-j", "--jobs", type=int, default=0, help=jobs_help)
    parser.add_argument("--offline", action="store_true", help="no network: sources must be in the download dir")


def jobs(args) -> int:
    """The -j value, checked: 0 means one task per core."""
    if args.jobs < 0:
        from ..errors import UserError, Where

        raise UserError(f"-j {args.jobs}: the number of parallel tasks cannot be negative", Where("command line"),
                        hint="0 means one per core")
    return args.jobs

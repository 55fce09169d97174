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

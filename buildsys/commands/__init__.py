"""The subcommands, one module each.  Importing this package registers them
all in ``COMMANDS`` (see base.py); ``buildsys.cli`` builds the parser from it.

Every command that builds goes through ``buildsys.engine.build``.  Modules
here import only what the no-op build needs at the top and the rest inside
``run``: ``buildsys build`` with nothing to do must stay a fraction of a second.
"""
from __future__ import annotations

from .base import COMMANDS, Command, board_option

# isort: off
# Registered, and listed by `buildsys --help`, in this order.
from . import layers, layer, recipes, recipe, show, graph, fetch, build, clean, run, test, menuconfig, kconfig, devshell, cache, lock, reproduce, diff, legal_info, size, source, key, bundle, worker  # noqa: E402,F401,E501
# isort: on

__all__ = ["COMMANDS", "Command", "board_option"]

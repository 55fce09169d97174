"""Build classes.  Importing this package registers every class module in it."""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import UserError
from .base import BuildClass

_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


def get(name: str, where=None) -> type[BuildClass]:
    _load_all()
    if name not in BuildClass.registry:
        from ..schema import suggest

        raise UserError(f"unknown build class '{name}'", where,
                        hint=suggest(name, BuildClass.registry) or f"known: {', '.join(sorted(BuildClass.registry))}")
    return BuildClass.registry[name]

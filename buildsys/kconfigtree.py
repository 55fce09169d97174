"""Reading a Kconfig tree to explain why a symbol was dropped (being written)."""
from __future__ import annotations

from pathlib import Path


class TreeError(Exception):
    pass


def load(srctree: Path, arch: str | None):
    raise TreeError("the dependency report is not available yet")


def values_from_config(text: str) -> dict[str, str]:
    return {}

"""Changing one top-level mapping of a project config file (local.yaml)
by editing its text: the rest of the file -- comments, order, layout --
stays as the developer wrote it.  The file is replaced atomically, and put
back if the project no longer loads with the new text.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from . import yamlio
from .fileio import atomic_write

NEW_FILE = "# Per-machine settings (not versioned): see docs/formats.md.\nformat: 1\n"


def _block_span(lines: list[str], key: str) -> tuple[int, int] | None:
    """Lines [start, end) of the top-level ``key:`` block."""
    head = re.compile(rf"^{re.escape(key)}\s*:")
    for i, line in enumerate(lines):
        if head.match(line):
            end = i + 1
            while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1          # blank lines after the block belong to what follows
            return i, end
    return None


def set_mapping(path: Path, key: str, mapping: dict[str, str], check: Callable[[], None]) -> None:
    """Make ``key`` of the YAML file ``path`` the flat mapping ``mapping``
    (removed when empty); ``check`` loads the project and raises if it no
    longer does, and the old text is put back."""
    old = path.read_text() if path.is_file() else None
    lines = (old if old is not None else NEW_FILE).splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # JSON strings are YAML double-quoted scalars: any path survives the trip.
    block = [f"{key}:\n"] + [f"  {json.dumps(k)}: {json.dumps(v)}\n" for k, v in sorted(mapping.items())]
    span = _block_span(lines, key)
    if span is None:
        lines += block if mapping else []
    else:
        lines[span[0]:span[1]] = block if mapping else []
    atomic_write(path, "".join(lines))
    try:
        check()
    except BaseException:
        if old is None:
            path.unlink()
        else:
            atomic_write(path, old)
        raise


def read_mapping(path: Path, key: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    value = yamlio.load(path).get(key)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

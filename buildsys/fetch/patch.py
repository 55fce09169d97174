"""Applying a recipe's patches, in order, with GNU patch.

Each patch is tried with --dry-run first, so a patch that does not apply
leaves the tree as the previous patch left it, and the error can name the file
and hunk.  GNU patch refuses file names with '..' or absolute paths.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import UnpackError

_FILE = re.compile(r"^(?:patching|checking) file '?(.+?)'?$")
_HUNK = re.compile(r"^Hunk #(\d+) FAILED at (\d+)")


def apply_patches(patches, src_dir: Path) -> None:
    for patch in patches:
        path = Path(getattr(patch, "path", patch))
        where = getattr(patch, "where", None)
        if not path.is_file():
            raise UnpackError(f"patch {path.name} does not exist", where, hint=str(path))
        base = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-d", str(src_dir), "-i", str(path)]
        dry = subprocess.run(base + ["--dry-run"], capture_output=True, text=True,
                             env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
        if dry.returncode != 0:
            raise UnpackError(_failure(path, dry.stdout + dry.stderr), where)
        real = subprocess.run(base, capture_output=True, text=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
        if real.returncode != 0:
            raise UnpackError(_failure(path, real.stdout + real.stderr), where)


def _failure(path: Path, output: str) -> str:
    current = None
    for line in output.splitlines():
        m = _FILE.match(line.strip())
        if m:
            current = m.group(1)
            continue
        h = _HUNK.match(line.strip())
        if h:
            return f"patch {path.name} does not apply: {current or '?'}: hunk #{h.group(1)} failed at line {h.group(2)}"
        if "can't find file" in line or "No file to patch" in line:
            return f"patch {path.name} does not apply: a file it patches does not exist ({line.strip()})"
        if "Reversed (or previously applied)" in line:
            return f"patch {path.name} does not apply: {current or '?'}: already applied or reversed"
        if "dangerous" in line.lower():
            return f"patch {path.name} refused: {line.strip()}"
    last = output.strip().splitlines()[-1] if output.strip() else "patch failed"
    return f"patch {path.name} does not apply: {last}"

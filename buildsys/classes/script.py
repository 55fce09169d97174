"""``class: script`` -- the recipe's own ``steps`` and nothing else."""
from __future__ import annotations

from .base import BuildClass


class Script(BuildClass):
    name = "script"
    params = {}
    implicit_depends = ()


class ScriptWithCompiler(BuildClass):
    """``class: script-cc`` -- own steps, with the target toolchain available."""

    name = "script-cc"
    params = {}

"""``class: toolchain`` -- an external (pre-installed) compiler providing virtual/toolchain.

Nothing is built; the class checks the compiler is there, records its identity
(version line and sha256 of the driver binary) in every dependent signature,
and the install step writes that identity into the package for the manifest.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import UserError
from .base import BuildClass, Param


@functools.lru_cache(maxsize=None)
def identity(driver: str) -> dict[str, str]:
    path = shutil.which(driver, path="/usr/bin:/bin")
    if path is None:
        raise UserError(f"compiler '{driver}' is not installed", None,
                        hint="run the project's setup (.ci/setup-host) or apt-get install it")
    real = os.path.realpath(path)
    with open(real, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    version = subprocess.run([path, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    machine = subprocess.run([path, "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    return {"driver": driver, "version": version, "machine": machine, "sha256": digest}


def host_identity() -> dict[str, str]:
    """The build host's compiler, which every native recipe is built with."""
    return identity("gcc")


class Toolchain(BuildClass):
    name = "toolchain"
    implicit_depends = ()
    params = {
        "compiler": Param("str", "gcc", "the compiler driver, without the cross prefix"),
        "expected_version": Param("str", None, "fail unless the compiler has this version (prefix match)"),
    }

    def _driver(self, recipe, board) -> str:
        return board.cross_prefix + recipe.get("compiler", "gcc")

    def signature_extra(self, recipe, board):
        ident = identity(self._driver(recipe, board))
        expected = recipe.get("expected_version")
        if expected and not ident["version"].startswith(expected):
            raise UserError(f"{ident['driver']} is version {ident['version']}, the recipe expects {expected}",
                            recipe.where("expected_version"))
        return {"toolchain": ident}

    def run(self, task, ctx):
        if task == "install":
            out = Path(ctx.paths.dest) / "usr/share/buildsys"
            out.mkdir(parents=True, exist_ok=True)
            ident = identity(self._driver(ctx.recipe, ctx.board))
            (out / f"toolchain-{ctx.recipe.name}.json").write_text(json.dumps(ident, indent=1, sort_keys=True) + "\n")

"""``class: toolchain`` -- an external (pre-installed) compiler providing virtual/toolchain.

Nothing is built; the class checks the compiler is there (and, if the recipe
says, that it has the expected version and target triplet), records its
identity (version, target and sha256 of the driver binary) in every dependent
signature, and the install step writes that identity into the package for the
manifest.

The C library programs need at run time is not here: it is virtual/libc
(class libc, recipes/libc), which takes the same toolchain's glibc runtime
files from the build environment.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import UserError
from ..fileio import sha256_file
from .base import BuildClass, Str


@functools.cache
def identity(driver: str) -> dict[str, str]:
    path = shutil.which(driver, path="/usr/bin:/bin")
    if path is None:
        raise UserError(f"compiler '{driver}' is not installed", None,
                        hint="run the project's setup (.ci/setup-host) or apt-get install it")
    real = os.path.realpath(path)
    digest = sha256_file(real)
    version = subprocess.run([path, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    machine = subprocess.run([path, "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    return {"driver": driver, "version": version, "machine": machine, "sha256": digest}


def host_identity() -> dict[str, str]:
    """The build host's compiler, which every native recipe is built with
    when the project uses ``build_env: host``."""
    return identity("gcc")


# Debian architecture of a build environment -> the triplet of its native gcc.
_NATIVE_TRIPLET = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}


def env_identity(env, driver: str) -> dict[str, str]:
    """The compiler ``driver`` of a pinned build environment: the Debian
    package that ships it (``gcc``, ``gcc-aarch64-linux-gnu``...) and its
    version.  Its bytes are covered by the environment's id."""
    machine, _, name = driver.rpartition("-") if driver.count("-") >= 3 else ("", "", driver)
    package = f"{name}-{machine}" if machine else name
    locked = env.lock.package(package)
    if locked is None:
        raise UserError(f"the build environment has no package {package} (for the compiler {driver})", None,
                        hint=f"add {package} to buildenv.yaml and run 'buildsys lock update'")
    version = locked.version.split(":", 1)[-1]
    return {"driver": driver, "package": package, "version": version,
            "machine": machine or _NATIVE_TRIPLET.get(env.lock.architecture, env.lock.architecture),
            "buildenv": env.id}


def resolve_inside(root: Path, rel: str) -> Path:
    """``root/rel`` with every symlink resolved inside ``root`` (an absolute
    link target means root's /, never the host's)."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    for _ in range(64):
        if not parts:
            return root.joinpath(*done)
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        path = root.joinpath(*done, name)
        if path.is_symlink():
            target = os.readlink(path)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        else:
            done.append(name)
    raise UserError(f"too many symbolic links resolving {rel} in the build environment")


class Toolchain(BuildClass):
    name = "toolchain"
    implicit_depends = ()
    params = {
        "compiler": Str("gcc", "the compiler driver, without the cross prefix"),
        "expected_version": Str(None, "fail unless the compiler has this version (prefix match)"),
        "expected_machine": Str(None, "fail unless -dumpmachine prints this (e.g. aarch64-linux-gnu)"),
    }

    def _driver(self, recipe, board) -> str:
        return board.cross_prefix + recipe.get("compiler", "gcc")

    def _identity(self, recipe, board) -> dict[str, str]:
        """identity() of the board's compiler; a missing one is reported at the
        board's toolchain prefix (or the recipe's compiler), where it is named."""
        try:
            return identity(self._driver(recipe, board))
        except UserError as exc:
            if exc.where is not None:
                raise
            hint: str | None
            if board.cross_prefix and hasattr(board, "where"):
                where, hint = board.where("toolchain", "prefix"), \
                    f"no {self._driver(recipe, board)} on this host: check the prefix, or {exc.hint}"
            else:
                where, hint = recipe.where("compiler"), exc.hint
            raise UserError(exc.message, where, hint=hint) from None

    def signature_extra(self, recipe, board, env=None):
        if env is not None:
            return {"toolchain": self._checked(recipe, self._env_identity(recipe, board, env))}
        # The host's C library (libc.a of static programs included) is in
        # every signature through the host's dpkg status (signature.py).
        return {"toolchain": self._checked(recipe, self._identity(recipe, board))}

    def _env_identity(self, recipe, board, env) -> dict[str, str]:
        try:
            return env_identity(env, self._driver(recipe, board))
        except UserError as exc:
            where = board.where("toolchain", "prefix") if board.cross_prefix and hasattr(board, "where") \
                else recipe.where("compiler")
            raise UserError(exc.message, where, hint=exc.hint) from None

    @staticmethod
    def _checked(recipe, ident: dict[str, str]) -> dict[str, str]:
        expected = recipe.get("expected_version")
        if expected and not ident["version"].startswith(expected):
            raise UserError(f"{ident['driver']} is version {ident['version']}, the recipe expects {expected}",
                            recipe.where("expected_version"))
        machine = recipe.get("expected_machine")
        if machine and ident["machine"] != machine:
            raise UserError(f"{ident['driver']} targets {ident['machine']}, the recipe expects {machine}",
                            recipe.where("expected_machine"), hint="check the board's toolchain: prefix")
        return ident

    def run(self, task, ctx):
        if task == "install":
            out = Path(ctx.paths.dest) / "usr/share/buildsys"
            out.mkdir(parents=True, exist_ok=True)
            env = getattr(ctx, "buildenv", None)
            driver = self._driver(ctx.recipe, ctx.board)
            ident = env_identity(env, driver) if env is not None else identity(driver)
            (out / f"toolchain-{ctx.recipe.name}.json").write_text(json.dumps(ident, indent=1, sort_keys=True) + "\n")



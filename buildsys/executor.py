"""Executing the tasks of one build: what each engine task does, and the
context a build class's steps run in."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import sandbox
from .classes.base import (
    SANDBOX_DEST,
    SANDBOX_FILES,
    SANDBOX_HOME,
    SANDBOX_NATIVE,
    SANDBOX_OBJ,
    SANDBOX_SRC,
    SANDBOX_STAGE,
    SANDBOX_SYSROOT,
    StepContext,
)
from .errors import UserError
from .fileio import atomic_write, remove_tree
from .model import Recipe

TAIL_LINES = 20
# Per-recipe dirs under work/<board>/<recipe>/.  src, obj, dest and home are
# writable by steps; files, stage, sysroot, native and scripts are written by
# the engine only and mounted read-only, so host code can write there freely.
WORK_DIRS = ("src", "obj", "dest", "home", "files", "stage", "sysroot", "native", "scripts")


@dataclass
class BuildPaths:
    build: Path
    dl: Path
    cache: str

    @property
    def work(self) -> Path:
        return self.build / "work"

    @property
    def packages(self) -> Path:
        return self.build / "packages"

    @property
    def deploy(self) -> Path:
        return self.build / "deploy"

    @property
    def records(self) -> Path:
        return self.build / "sigdata"


@dataclass
class RecipePaths:
    work: Path

    def __getattr__(self, name):
        if name in WORK_DIRS:
            return self.work / name
        if name == "logs":
            return self.work / "logs"
        if name == "stamps":
            return self.work / "stamps"
        raise AttributeError(name)


def sources_of(recipe: Recipe) -> list:
    """The recipe's sources (SourceEntry, checked when the recipe was parsed)
    as fetch.Source objects."""
    from .fetch import Source

    out = []
    for entry in recipe.get("sources", []):
        ref = entry.file
        common = dict(strip=entry.strip if entry.strip is not None else (0 if ref is not None else 1),
                      unpack=entry.unpack is not False, dest=entry.dest or "", where=entry.where,
                      filename=entry.name)
        if ref is not None:
            if not ref.path.exists():   # checked at parse time; it may have gone since
                raise UserError(f"file '{ref.raw}' does not exist", ref.where, hint=f"looked for {ref.path}")
            out.append(Source(url=ref.path.resolve().as_uri(), **common))
        elif entry.git is not None:
            out.append(Source(url="git+" + entry.git, rev=entry.rev, allow_branch=bool(entry.allow_branch),
                              **common))
        else:
            out.append(Source(url=entry.url, sha256=entry.sha256, **common))
    return out


class Context(StepContext):
    """The StepContext a class sees; one per task run.

    It gets everything it needs up front (environment, epoch, a lookup of
    package trees) and never calls back into the build session."""

    def __init__(self, recipe: Recipe, board, task: str, jobs: int, paths: RecipePaths, log_path: Path,
                 env: dict[str, str], sde: int, package_trees: Callable[[Recipe, object], list], buildenv=None):
        self.recipe = recipe
        self.board = board
        self.task = task
        self.jobs = jobs
        self.paths = paths
        self.log_path = log_path
        self.env = dict(env)
        self.sde = sde
        self.env["SOURCE_DATE_EPOCH"] = str(sde)
        self._package_trees = package_trees
        self.buildenv = buildenv        # the pinned environment (buildenv.BuildEnv), None: the host's /usr
        self._steps = 0

    def mounts(self) -> list[sandbox.Mount]:
        p = self.paths
        return [
            sandbox.Mount(str(p.src), SANDBOX_SRC, True),
            sandbox.Mount(str(p.obj), SANDBOX_OBJ, True),
            sandbox.Mount(str(p.dest), SANDBOX_DEST, True),
            sandbox.Mount(str(p.home), SANDBOX_HOME, True),
            sandbox.Mount(str(p.files), SANDBOX_FILES, False),
            sandbox.Mount(str(p.stage), SANDBOX_STAGE, False),
            sandbox.Mount(str(p.sysroot), SANDBOX_SYSROOT, False),
            sandbox.Mount(str(p.native), SANDBOX_NATIVE, False),
            sandbox.Mount(str(p.scripts), "/build/scripts", False),
        ]

    def sandbox_argv(self, command: list[str], env=None, cwd: str = SANDBOX_SRC) -> list[str]:
        """The bwrap argv running ``command`` in this task's sandbox."""
        full_env = dict(self.env)
        full_env.update(env or {})
        for path in (self.paths.stage, self.paths.scripts, self.paths.files):
            path.mkdir(parents=True, exist_ok=True)
        root = self.buildenv.root if self.buildenv is not None else None
        return sandbox.bwrap_argv(self.mounts(), full_env, cwd, command, root=root)

    def _run_argv(self, command: list[str], env, cwd, label: str) -> None:
        argv = self.sandbox_argv(command, env, cwd)
        replay = self.paths.logs / f"{self.task}.{label}.replay.sh"
        atomic_write(replay, sandbox.replay_script(argv), mode=0o755)
        with open(self.log_path, "a") as log:
            log.write(f"### {label}: {' '.join(command)}\n")
        status = sandbox.run(argv, self.log_path)
        if status != 0:
            raise StepFailed(status, replay)

    def sh(self, script: str, env=None, cwd: str = SANDBOX_SRC) -> None:
        self._steps += 1
        label = f"step{self._steps}"
        path = self.paths.scripts / f"{self.task}.{label}.sh"
        # scripts/ is the engine's: mounted read-only, never step-writable.
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, script if script.endswith("\n") else script + "\n")
        with open(self.log_path, "a") as log:
            log.write(f"### script {path.name}:\n{script}\n### output:\n")
        self._run_argv(["/bin/sh", "-ex", f"/build/scripts/{path.name}"], env, cwd, label)

    def run(self, argv, env=None, cwd: str = SANDBOX_SRC) -> None:
        self._steps += 1
        self._run_argv(list(argv), env, cwd, f"step{self._steps}")

    def stage_file(self, host_path, name=None) -> str:
        name = name or Path(host_path).name
        self.paths.files.mkdir(parents=True, exist_ok=True)
        self.paths.files.chmod(0o755)
        with open(host_path, "rb") as f:
            atomic_write(self.paths.files / name, f.read())
        return f"{SANDBOX_FILES}/{name}"

    def log(self, text: str) -> None:
        with open(self.log_path, "a") as log:
            log.write(text.rstrip("\n") + "\n")

    def packages(self, names=None) -> list:
        return self._package_trees(self.recipe, names)


class StepFailed(Exception):
    def __init__(self, status: int, replay: Path):
        super().__init__(status)
        self.status = status
        self.replay = replay


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def copy_tree(src: Path, dst: Path) -> None:
    """Merge a package tree into a staging dir (first one wins).

    Copies, never hard links: a step must not be able to reach a file of the
    package store through its sysroot, whatever it does to its mounts."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dst / rel if rel != "." else dst
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            s, d = os.path.join(dirpath, name), target_dir / name
            if os.path.lexists(d):
                continue
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d, follow_symlinks=False)


def clean_dir(path: Path) -> None:
    remove_tree(path)
    path.mkdir(parents=True)

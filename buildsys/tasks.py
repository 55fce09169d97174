"""The engine's own task bodies (fetch, unpack, patch, staging before
configure, install's clean dest, package, restore), in a registry.

A body gets a TaskRun (the session, the recipe, its dirs and its log) and
returns a short note for the progress line, or None.  Tasks without an entry
here belong to the recipe's build class; configure and install run the class
after the engine's part.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from . import artifact, incremental
from .errors import UserError
from .executor import WORK_DIRS, RecipePaths, clean_dir, copy_tree, sources_of
from .fileio import atomic_write
from .model import Recipe

if TYPE_CHECKING:  # pragma: no cover
    from .build import Session


@dataclass
class TaskRun:
    session: Session
    recipe: Recipe
    task: str
    paths: RecipePaths
    log_path: Path

    def log(self, text: str) -> None:
        with open(self.log_path, "a") as log:
            log.write(text.rstrip("\n") + "\n")

    def run_class(self) -> None:
        """The recipe's build class's part of this task, in the sandbox."""
        ctx = self.session.step_context(self.recipe, self.task, self.log_path)
        self.session.resolver.build_class(self.recipe).run(self.task, ctx)


TaskBody = Callable[[TaskRun], "str | None"]
TASK_BODIES: dict[str, TaskBody] = {}


def task(name: str) -> Callable[[TaskBody], TaskBody]:
    def register(fn: TaskBody) -> TaskBody:
        TASK_BODIES[name] = fn
        return fn
    return register


def run_task(run: TaskRun) -> str | None:
    body = TASK_BODIES.get(run.task)
    if body is None:
        run.run_class()
        return None
    return body(run)


@task("fetch")
def fetch(run: TaskRun) -> str | None:
    from .fetch import fetch_many

    sources = sources_of(run.recipe)
    fetched = fetch_many(sources, run.session.fetch_config)
    for source in sources:
        run.log(f"{source.url} -> {fetched[source]}")
    return None


@task("unpack")
def unpack(run: TaskRun) -> str | None:
    from .fetch import fetch, source_date_epoch, unpack

    paths, recipe, session = run.paths, run.recipe, run.session
    # A live-source build the plan lets keep its work dir (incremental.py)
    # syncs the tree into the kept source and object dirs; any other starts clean.
    keep = ("src", "obj") if session.plan_.reuse.get(recipe.pn) in (incremental.SYNC, incremental.SYNC_COMPILE) \
        else ()
    for name in WORK_DIRS:
        if name not in keep:
            clean_dir(getattr(paths, name))
    for stale in paths.stamps.iterdir():
        if stale.name != "unpack.running" and not (keep and stale.name == incremental.WORKDIR_RECORD):
            stale.unlink()
    if not keep:
        (paths.work / "live-sync.json").unlink(missing_ok=True)
    if recipe.get("live_source"):
        _sync_live(run)
    epochs = []
    for source in sources_of(recipe):
        local = fetch(source, session.fetch_config)
        target = paths.src / source.dest if source.dest else paths.src
        target.mkdir(parents=True, exist_ok=True)
        unpack(local, target, source)
        if not source.url.startswith("file:"):
            epoch = source_date_epoch(local)
            if epoch:
                epochs.append(epoch)
    from_deps = paths.work / "source-date-epoch.from-deps"
    from_deps.unlink(missing_ok=True)
    sde = recipe.get("source_date_epoch")
    if sde is None:
        sde = max(epochs) if epochs else session.deps_epoch(recipe)
        if not epochs:
            # Unpack may run before the dependencies are packaged:
            # configure computes the epoch again, once they all are.
            from_deps.touch()
    atomic_write(paths.work / "source-date-epoch", str(int(sde)))
    run.log(f"SOURCE_DATE_EPOCH={sde}")
    return None


def _sync_live(run: TaskRun) -> None:
    from . import livesync, livetree
    from .treedigest import digest_entries

    paths, recipe = run.paths, run.recipe
    tree = Path(recipe.get("live_source"))
    entries = livetree.scan(tree, recipe.where("live_source"))
    want = run.session.sigdata[recipe.pn]["values"]["sources"][0]["live_tree"]
    if digest_entries(entries) != want:
        raise UserError(f"live source {tree} changed after the build was planned", recipe.where("live_source"),
                        hint="build again (edits during a build are picked up by the next one)")
    state = paths.work / "live-sync.json"
    try:
        copied, removed = livesync.sync(tree, paths.src, entries, state)
    except livesync.StartOver as exc:
        run.log(f"live source: starting over ({exc})")
        clean_dir(paths.src)
        clean_dir(paths.obj)
        state.unlink(missing_ok=True)
        copied, removed = livesync.sync(tree, paths.src, entries, state)
    run.log(f"live source {tree}: {copied} file(s) copied, {removed} removed")


@task("patch")
def patch(run: TaskRun) -> str | None:
    from .fetch import apply_patches
    from .legal import check_license_files

    refs = run.recipe.get("patches", [])
    for ref in refs:
        if not ref.path.is_file():
            raise UserError(f"patch '{ref.raw}' does not exist", ref.where)
    if refs:
        apply_patches([ref.path for ref in refs], run.paths.src)
    check_license_files(run.recipe, run.paths.src)   # an upstream license change fails here
    return None


@task("configure")
def configure(run: TaskRun) -> str | None:
    paths, recipe, session = run.paths, run.recipe, run.session
    if (paths.work / "source-date-epoch.from-deps").is_file():
        sde = session.deps_epoch(recipe)
        atomic_write(paths.work / "source-date-epoch", str(int(sde)))
        run.log(f"SOURCE_DATE_EPOCH={sde} (the newest dependency's)")
    # Staging: the dependencies' installed trees, merged, read-only in the sandbox.
    clean_dir(paths.sysroot)
    clean_dir(paths.native)
    if session.plan_.reuse.get(recipe.pn) == incremental.CONFIGURE:
        clean_dir(paths.home)    # unpack, which empties it, did not run: start as a clean build does
    for dep in sorted(nx.ancestors(session.rgraph, recipe.pn)):
        dep_recipe = session.recipe(dep)
        target = paths.native if dep_recipe.variant == "native" else paths.sysroot
        copy_tree(session.package_dir(dep), target)
    if session.plan_.reuse.get(recipe.pn) == incremental.SYNC_COMPILE:
        run.log("configure not run again: only files configure does not read changed in the live source")
        return "kept"
    run.run_class()
    return None


@task("install")
def install(run: TaskRun) -> str | None:
    clean_dir(run.paths.dest)
    clean_dir(run.paths.stage)
    run.run_class()
    return None


@task("package")
def package(run: TaskRun) -> str | None:
    session, recipe = run.session, run.recipe
    sig = session.sigs[recipe.pn]
    sde = session.read_sde(recipe)
    artifact.clamp_mtimes(run.paths.dest, sde)
    meta = session.package_meta_for(recipe, sde)
    session.store.add_built(sig, run.paths.dest, meta, dict(meta, sigdata=session.sigdata[recipe.pn]))
    session.record(recipe)
    return None


@task("restore")
def restore(run: TaskRun) -> str | None:
    session, recipe = run.session, run.recipe
    session.store.restore(session.sigs[recipe.pn], session.package_meta_for(recipe, None))
    session.record(recipe)
    return "restored from cache"

"""The one entry point every command that builds goes through:

    result = engine.build(workspace, ["image-minimal"], BuildOptions(jobs=4))

plans the targets, explains what must run and why, runs it, deploys the
images among the targets and remembers the plan, so that the next build with
nothing changed answers from the plan cache (see plancache.py) without
parsing a recipe.  Progress goes to stderr; failures of build steps come back
in the result (status 1), bad input raises ``UserError`` as everywhere.

This module imports only what that no-op answer needs at the top: the
session, the graph and the fetchers are loaded when there is work to do.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import plancache

if TYPE_CHECKING:  # pragma: no cover
    from .build import Session
    from .workspace import Workspace

# What an incremental rebuild keeps (incremental.py), said after why a recipe runs.
_KEPT = {"configure": " (incremental: sources and object dir kept)",
         "sync": " (incremental: live tree synced, object dir kept)",
         "sync-compile": " (incremental: live tree synced, object dir kept, no configure)"}

# Plan cache entries under this prefix record a deployed dir (relative to the
# deploy root) and the signature its manifest.json must carry.
_DEPLOY = "deploy:"


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = 0                      # parallel tasks; 0: one per core
    keep_going: bool = False           # build all that does not depend on a failure
    offline: bool = False              # no network: sources must be in the download dir
    force: frozenset[str] = frozenset()  # recipes to rebuild even if cached (disables the plan cache)
    # Stop the targets after this task (e.g. "configure", for `buildsys
    # devshell`): their dependencies are built or restored, the targets'
    # work dirs are left unpacked and configured, nothing is packaged or
    # deployed.  A target the package store already has is set up again in
    # its work dir (the store keeps the installed tree, not the sources).
    stop_after: str | None = None
    # The shared cache (docs/shared-cache.md): push what this build makes?
    # None: as the project's shared_cache_mode says; False: --no-push.
    push: bool | None = None
    # A Dask scheduler address: recipes to build go to its workers (cluster.py).
    cluster: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "force", frozenset(self.force))
        if self.jobs < 0:
            raise ValueError(f"jobs must be >= 0, not {self.jobs}")
        if self.stop_after is not None:
            from .classes.base import TASKS  # not at the top: the no-op build does not need it

            if self.stop_after not in TASKS[:-1]:
                raise ValueError(f"stop_after must be one of {', '.join(TASKS[:-1])}, not {self.stop_after!r}")

    @property
    def parallel(self) -> int:
        return self.jobs or os.cpu_count() or 1


@dataclass
class BuildResult:
    status: int                        # 0 built or up to date, 1 a build step failed, 2 bad input
    sigs: dict[str, str]               # target recipe -> signature (session.sigs has every recipe's)
    deployed: list[Path] = field(default_factory=list)  # dirs the image targets were deployed to
    failed: list[str] = field(default_factory=list)     # the tasks that failed
    ran: list[str] = field(default_factory=list)        # recipes with steps to run (restores not counted)
    session: Session | None = None     # None when the plan cache answered

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def from_plan_cache(self) -> bool:
        return self.session is None


def build(ws: Workspace, targets: Iterable[str], options: BuildOptions = BuildOptions()) -> BuildResult:
    """Build the named targets (none: the board's default image) for the workspace's board."""
    names = list(targets)
    key = None
    if not options.force and options.stop_after is None:
        key = plancache.inputs_key(ws.project, ws.board_name, names, _cross_prefixes(ws))
        result = _from_plan(ws, names, key)
        if result is not None:
            print("nothing to do: every target is up to date", file=sys.stderr)
            return result
    return _build(ws, names, options, key)


def _cross_prefixes(ws) -> tuple[str, ...]:
    try:
        return ("", ws.board.cross_prefix)
    except Exception:  # noqa: BLE001 -- the full build reports a bad board properly
        return ("",)


def _from_plan(ws, names: list[str], key: str) -> BuildResult | None:
    """The result of the last build of these targets, if nothing changed and its outputs are in place."""
    plan = plancache.load(ws.paths.build, ws.board_name, names, key)
    if not plan:
        return None
    sigs, deployed = {}, []
    for name, sig in plan["sigs"].items():
        if name.startswith(_DEPLOY):
            out = ws.paths.deploy / name[len(_DEPLOY):]
            try:
                if json.loads((out / "manifest.json").read_text()).get("signature") != sig:
                    return None
            except (OSError, ValueError):
                return None
            deployed.append(out)
        elif (ws.paths.packages / f"{sig}.json").is_file():
            sigs[name] = sig
        else:
            return None
    return BuildResult(status=0, sigs=sigs, deployed=deployed)


def _build(ws, names: list[str], options: BuildOptions, key: str | None) -> BuildResult:
    from .deploy import deploy

    targets = ws.targets(names)
    session = new_session(ws, options)
    session.plan(targets)
    if options.stop_after is None:
        graph = session.execution_graph(set(options.force))
    else:
        # The targets as if forced (set up in their work dirs even when the
        # store has their packages), cut after stop_after; their
        # dependencies as usual.
        stopped = {r.pn for r in targets}
        graph = _stop_after(session, session.execution_graph(set(options.force) | stopped), stopped,
                            options.stop_after)
    ran = sorted({node.rsplit(":", 1)[0] for node in graph.nodes
                  if not node.endswith((":restore", ":fetch"))})
    for pn in ran:
        kept = _KEPT.get(session.plan_.reuse.get(pn, ""), "")
        print(f"{pn}: runs because {session.why(pn)}{kept}", file=sys.stderr)
    sigs = {r.pn: session.sigs[r.pn] for r in targets}
    if session.fetch_config.offline:
        # One error naming every missing file, before any step runs.
        from .executor import sources_of
        from .fetch import fetch_many

        needed = [s for node in sorted(graph.nodes) if node.endswith(":fetch")
                  for s in sources_of(graph.nodes[node]["recipe"])]
        if session.buildenv is not None and graph.number_of_nodes() and not session.buildenv.ready():
            needed += session.buildenv.sources(session.fetch_config)
        fetch_many(needed, session.fetch_config)
    try:
        if graph.number_of_nodes() == 0:
            done = "every target is up to date" if options.stop_after is None else \
                f"{', '.join(sorted(sigs))}: done up to {options.stop_after} in the work dir"
            print(f"nothing to do: {done}", file=sys.stderr)
        else:
            if options.cluster:
                from .cluster import run_on_cluster

                failed = run_on_cluster(session, graph, options)
            else:
                failed = session.run(graph, options.keep_going, options.force)
            if failed:
                print(f"build failed: {', '.join(failed)}", file=sys.stderr)
                # 2 when a task failed on bad input (a hostile archive, a
                # source that changed after it was verified), 1 otherwise.
                return BuildResult(status=session.failure_status, sigs=sigs, failed=list(failed), ran=ran,
                                   session=session)
        if options.stop_after is not None:
            return BuildResult(status=0, sigs=sigs, ran=ran, session=session)
        deployed = list(dict.fromkeys(out for out in (deploy(session, r) for r in targets) if out is not None))
        if key:
            plan = dict(sigs)
            for out in deployed:
                plan[_DEPLOY + out.relative_to(ws.paths.deploy).as_posix()] = json.loads(
                    (out / "manifest.json").read_text())["signature"]
            recipes = [session.recipe(pn) for pn in session.rgraph.nodes]
            plancache.save(ws.paths.build, ws.board_name, names, key, plan, plancache.referenced_files(recipes))
        return BuildResult(status=0, sigs=sigs, deployed=deployed, ran=ran, session=session)
    finally:
        _unlock(session)


def new_session(ws: Workspace, options: BuildOptions = BuildOptions()) -> Session:
    """A build session for the workspace, with its artifact cache: the local
    one, in front of the team's shared cache when the project names one."""
    from .build import Session
    from .sharedcache import artifact_cache

    session = Session(ws.project, ws.board, ws.resolver, ws.paths, options.parallel,
                      ws.fetch_config(options.offline))
    # Session opens the local cache alone; the layered one takes its place.
    # (Session should take it as an argument: build.py is output-shaping, so
    # that waits for the next change that must touch it anyway.)
    session.cache = session.store.cache = artifact_cache(ws, push=options.push)
    return session


def _stop_after(session, graph, pns: set[str], last: str):
    """The execution graph without the tasks of ``pns`` after task ``last``,
    nor those up to ``last`` when the work dir is there from a run of them
    with this signature (its stamps say so).  Plan's own resume needs a
    fetch stamp, which unpack removes; here fetch is no part of the work
    dir's state, and a devshell that unpacked again each time would throw
    away what the user changed in /build/src."""
    from .classes.base import TASKS

    upto = TASKS.index(last) + 1
    for pn in pns:
        stamps = session.recipe_paths(session.recipe(pn)).stamps
        sig = session.sigs[pn]
        done = not any(stamps.glob("*.running")) and all(_stamped(stamps / task, sig) for task in TASKS[1:upto])
        drop = TASKS if done else TASKS[upto:]
        graph.remove_nodes_from([f"{pn}:{task}" for task in drop if f"{pn}:{task}" in graph])
    return graph


def _stamped(stamp: Path, sig: str) -> bool:
    try:
        return not stamp.is_symlink() and stamp.read_text() == sig
    except OSError:
        return False


def _unlock(session) -> None:
    """Let the next build in this process (or another) have the build dir:
    the result keeps the session, and with it the lock, alive."""
    session.unlock()

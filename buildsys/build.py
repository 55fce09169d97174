"""One build session: a Plan (signatures, what to run), the PackageStore
(built and restored trees, the artifact cache), the scheduler running the
task bodies (tasks.py) under a build-dir lock, and what classes see of it."""
from __future__ import annotations

import fcntl
import json
import sys
import time
from pathlib import Path
from typing import IO

import networkx as nx

from . import buildenv, incremental, signature
from .cache import open_cache
from .classes.base import SANDBOX_DEST, SANDBOX_NATIVE, SANDBOX_OBJ, SANDBOX_SRC, SANDBOX_SYSROOT
from .errors import BuildError, UserError, Where
from .executor import BuildPaths, Context, RecipePaths, StepFailed, tail
from .fileio import atomic_write
from .model import Recipe
from .plan import Plan
from .resolve import HOST_ARCH
from .scheduler import TaskFailure, run_graph
from .store import PackageStore, UnusableCacheEntry
from .tasks import TaskRun, run_task

# The kernel's name for the build host's architecture (native builds' ARCH).
_KERNEL_ARCH = {"x86_64": "x86", "i686": "x86", "aarch64": "arm64", "arm": "arm", "riscv64": "riscv"}


class Session:
    def __init__(self, project, board, resolver, paths: BuildPaths, jobs: int, fetch_config, out=None):
        self.project = project
        self.board = board
        self.resolver = resolver
        self.paths = paths
        self.jobs = jobs
        self.fetch_config = fetch_config
        self.cache = open_cache(paths.cache)
        self.store = PackageStore(paths.packages, self.cache)
        self.buildenv = buildenv.for_project(project)      # None: steps see the host's /usr
        self.sigs: dict[str, str] = {}
        self.sigdata: dict[str, dict] = {}
        self.rgraph: nx.DiGraph = nx.DiGraph()    # set by plan()
        self.out = out
        # 2 when a task failed on bad input (a hostile archive, a missing
        # file), 1 when a build step failed.
        self.failure_status = 1
        self.unusable: set[str] = set()     # recipes whose cache entry failed verification
        self._warned_host = False
        self._lock_file: IO[str] | None = None

    # --- planning -------------------------------------------------------------
    def plan(self, targets: list[Recipe]) -> None:
        self.targets = targets
        self.plan_ = Plan(self.resolver, self.board, targets, self.buildenv)
        self.rgraph = self.plan_.rgraph
        self.sigs = self.plan_.sigs
        self.sigdata = self.plan_.sigdata

    def recipe(self, pn: str) -> Recipe:
        return self.rgraph.nodes[pn]["recipe"]

    def work_key(self, recipe: Recipe) -> str:
        return "native" if recipe.variant == "native" else self.board.name

    def recipe_paths(self, recipe: Recipe) -> RecipePaths:
        return RecipePaths(self.paths.work / self.work_key(recipe) / recipe.pn)

    def package_dir(self, pn: str) -> Path:
        return self.store.dir(self.sigs[pn])

    def package_meta(self, pn: str) -> dict:
        return self.store.meta(self.sigs[pn])

    plan_: Plan

    def execution_graph(self, force=frozenset()) -> nx.DiGraph:
        """The tasks this build must run: restore what the cache has, build the rest."""
        return self.plan_.execution_graph(self.store.available, self.cache.contains,
                                          lambda r: self.recipe_paths(r).stamps, force)

    # --- running ----------------------------------------------------------------
    def lock(self) -> None:
        self.paths.build.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.paths.build / ".lock", "w")
        self._lock_file = lock_file
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError("another buildsys is using this build directory", Where(str(self.paths.build)),
                            hint="wait for it, or use another --build-dir") from None
        # We hold the lock: temp dirs left here are from a build that was killed.
        self.store.remove_stale()

    def prepare_environment(self) -> None:
        """Fetch and assemble the pinned build environment (once per lock)."""
        if self.buildenv is None:
            if not self._warned_host:
                self._warned_host = True
                print("note: no buildenv.lock.json: build steps use this host's /usr, and the artifacts are only "
                      "good for this host (see docs/buildenv.md)", file=sys.stderr)
            return
        self.buildenv.ensure(self.fetch_config)

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()     # the flock goes with the file
            self._lock_file = None

    def run(self, graph: nx.DiGraph, keep_going: bool, force=frozenset()) -> list[str]:
        """Run the graph; a restore whose cache entry fails verification is
        not an error: that recipe (and what it needs) is built instead."""
        self.lock()
        self.prepare_environment()
        while True:
            failed = run_graph(graph, self.execute, self.jobs, keep_going)
            retry = {node.rsplit(":", 1)[0] for node in failed if node.rsplit(":", 1)[0] in self.unusable}
            if not failed or len(retry) != len(failed):
                return failed
            graph = self.execution_graph(set(force) | self.unusable)
            print(f"building {', '.join(sorted(retry))} instead of restoring from the cache", file=sys.stderr)

    def execute(self, node: str) -> str | None:
        pn, task = node.rsplit(":", 1)
        recipe = self.recipe(pn)
        paths = self.recipe_paths(recipe)
        paths.logs.mkdir(parents=True, exist_ok=True)
        paths.stamps.mkdir(parents=True, exist_ok=True)
        log_path = paths.logs / f"{task}.log"
        log_path.write_text(f"# {node} signature {self.sigs[pn]}\n")
        started = time.monotonic()
        running = paths.stamps / f"{task}.running"
        running.touch()
        try:
            result = run_task(TaskRun(self, recipe, task, paths, log_path))
        except UnusableCacheEntry as exc:
            self.unusable.add(pn)
            with open(log_path, "a") as log:
                log.write(f"WARNING: {exc}\n")
            raise TaskFailure(f"warning: {pn}: {exc}; building it instead") from None
        except StepFailed as exc:
            raise TaskFailure(self._report(node, log_path, f"exit status {exc.status}", exc.replay)) from None
        except (BuildError, UserError) as exc:
            if isinstance(exc, UserError):
                self.failure_status = 2
            with open(log_path, "a") as log:
                log.write(f"ERROR: {exc}\n")
            raise TaskFailure(self._report(node, log_path, str(exc), None)) from None
        finally:
            running.unlink(missing_ok=True)
        if task != "restore":
            atomic_write(paths.stamps / task, self.sigs[pn])
        if task == "compile":
            # What the object dir now holds: the next build may keep it (incremental.py).
            atomic_write(paths.stamps / incremental.WORKDIR_RECORD, incremental.record(self.sigs[pn], self.sigdata[pn]))
        elapsed = time.monotonic() - started
        with open(log_path, "a") as log:
            log.write(f"# done in {elapsed:.1f}s\n")
        if result is None and elapsed >= 1:
            result = f"{elapsed:.0f}s"
        return result

    def _report(self, node: str, log_path: Path, reason: str, replay: Path | None) -> str:
        lines = [f"ERROR: {node}: {reason}", "--- last lines of the log ---", tail(log_path), "---",
                 f"log: {log_path}"]
        if replay is not None:
            lines.append(f"replay: sh {replay}")
        return "\n".join(lines)

    # --- what task bodies ask -----------------------------------------------------
    def deps_epoch(self, recipe: Recipe) -> int:
        """For recipes without archives (images, layer files): the newest dependency's, or the project's."""
        epochs = [self.package_meta(d).get("source_date_epoch", 0) for d in self.rgraph.predecessors(recipe.pn)]
        return max(epochs + [int(self.project.settings.get("source_date_epoch") or 315532800)])

    def read_sde(self, recipe: Recipe) -> int:
        path = self.recipe_paths(recipe).work / "source-date-epoch"
        return int(path.read_text()) if path.is_file() else int(self.project.settings["source_date_epoch"])

    def package_meta_for(self, recipe: Recipe, sde) -> dict:
        meta = {"pn": recipe.pn, "name": recipe.name, "version": recipe.version, "variant": recipe.variant,
                "signature": self.sigs[recipe.pn], "license": recipe.get("license"),
                "sources": [{k: v for k, v in s.items() if k in ("url", "sha256", "git", "rev")}
                            if "file" not in s else {"file": s["file"].layer_relative,
                                                     "sha256": signature.file_hash(s["file"].path)}
                            for s in recipe.get("sources", [])]}
        if sde is not None:
            meta["source_date_epoch"] = sde
        return meta

    def record(self, recipe: Recipe) -> None:
        """Remember the inputs of this build, to explain the next rebuild."""
        path = self.paths.records / self.work_key(recipe) / f"{recipe.pn}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(self.sigdata[recipe.pn], sort_keys=True))

    def why(self, pn: str) -> str:
        recipe = self.recipe(pn)
        path = self.paths.records / self.work_key(recipe) / f"{pn}.json"
        old = json.loads(path.read_text()) if path.is_file() else None
        return signature.explain(old, self.sigdata[pn])

    def step_context(self, recipe: Recipe, task: str, log_path: Path) -> Context:
        return Context(recipe, self.board, task, self.jobs, self.recipe_paths(recipe), log_path,
                       self.base_env(recipe), self.read_sde(recipe), self.package_trees, self.buildenv)

    # --- for classes -------------------------------------------------------------
    def package_trees(self, recipe: Recipe, names=None) -> list:
        if names is None:
            chosen = [self.recipe(d) for d in self.rgraph.predecessors(recipe.pn)]
        else:
            chosen = self.resolver.install_closure(list(names), recipe)
        return [(r, self.package_dir(r.pn)) for r in chosen]

    def base_env(self, recipe: Recipe) -> dict[str, str]:
        native = recipe.variant == "native"
        prefix = "" if native else self.board.cross_prefix
        tune = "" if native else " ".join(self.board.get("tune", []))
        inc_root = SANDBOX_NATIVE if native else SANDBOX_SYSROOT
        env = {
            "PATH": f"{SANDBOX_NATIVE}/usr/bin:{SANDBOX_NATIVE}/usr/sbin:{SANDBOX_NATIVE}/bin"
                    ":/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": "/build/home", "TZ": "UTC", "LC_ALL": "C", "LANG": "C",
            "JOBS": str(self.jobs),
            "ARCH": _KERNEL_ARCH.get(HOST_ARCH, HOST_ARCH) if native else self.board.kernel_arch,
            "BUILDSYS_ARCH": self.resolver.variables(recipe)["arch"],
            "CROSS_COMPILE": prefix,
            "CC": f"{prefix}gcc", "CXX": f"{prefix}g++", "AR": f"{prefix}ar", "LD": f"{prefix}ld",
            "NM": f"{prefix}nm", "OBJCOPY": f"{prefix}objcopy", "STRIP": f"{prefix}strip",
            "RANLIB": f"{prefix}ranlib",
            "CFLAGS": f"-O2 -pipe {tune}".strip(),
            "CPPFLAGS": f"-I{inc_root}/usr/include",
            "LDFLAGS": f"-L{inc_root}/usr/lib",
            "SYSROOT": SANDBOX_SYSROOT, "NATIVE": SANDBOX_NATIVE, "DESTDIR": SANDBOX_DEST,
            "S": SANDBOX_SRC, "B": SANDBOX_OBJ,
            "PN": recipe.pn, "PV": recipe.version,
        }
        env.update({k: str(v) for k, v in (recipe.get("env") or {}).items()})
        return env

"""One build: signatures, what to restore or run, running it, deploying images."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import networkx as nx

from . import artifact, signature
from .cache import open_cache, sha256_file
from .classes.base import SANDBOX_DEST, SANDBOX_NATIVE, SANDBOX_OBJ, SANDBOX_SRC, SANDBOX_SYSROOT, TASKS
from .errors import BuildError, UserError, Where
from .executor import (WORK_DIRS, BuildPaths, Context, RecipePaths, StepFailed, clean_dir, link_tree, sources_of,
                       tail)
from .graph import recipe_graph, task_graph
from .model import Recipe
from .scheduler import TaskFailure, run_graph


class Session:
    def __init__(self, project, board, resolver, paths: BuildPaths, jobs: int, fetch_config, out=None):
        self.project = project
        self.board = board
        self.resolver = resolver
        self.paths = paths
        self.jobs = jobs
        self.fetch_config = fetch_config
        self.cache = open_cache(paths.cache)
        self.sigs: dict[str, str] = {}
        self.sigdata: dict[str, dict] = {}
        self.rgraph: nx.DiGraph | None = None
        self.out = out
        self._lock_file = None

    # --- planning -------------------------------------------------------------
    def plan(self, targets: list[Recipe]) -> None:
        self.targets = targets
        self.rgraph = recipe_graph(self.resolver, targets)
        for pn in nx.topological_sort(self.rgraph):
            recipe = self.rgraph.nodes[pn]["recipe"]
            build_class = self.resolver.build_class(recipe)
            deps = {d: self.sigs[d] for d in self.rgraph.predecessors(pn)}
            data = signature.sigdata(recipe, self.board, build_class.version(),
                                     build_class.signature_extra(recipe, self.board), deps)
            self.sigdata[pn] = data
            self.sigs[pn] = signature.digest(data)

    def recipe(self, pn: str) -> Recipe:
        return self.rgraph.nodes[pn]["recipe"]

    def work_key(self, recipe: Recipe) -> str:
        return "native" if recipe.variant == "native" else self.board.name

    def recipe_paths(self, recipe: Recipe) -> RecipePaths:
        return RecipePaths(self.paths.work / self.work_key(recipe) / recipe.pn)

    def package_dir(self, pn: str) -> Path:
        return self.paths.packages / self.sigs[pn]

    def package_meta(self, pn: str) -> dict:
        path = self.paths.packages / f"{self.sigs[pn]}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _available_locally(self, pn: str) -> bool:
        return (self.paths.packages / f"{self.sigs[pn]}.json").is_file() and self.package_dir(pn).is_dir()

    def execution_graph(self, force: set[str] = frozenset()) -> nx.DiGraph:
        """The tasks this build must run: restore what the cache has, build the rest."""
        full = task_graph(self.rgraph)
        nodes: set[str] = set()
        restore: set[str] = set()
        visited: set[str] = set()
        stack = [r.pn for r in self.targets]
        while stack:
            pn = stack.pop()
            if pn in visited:
                continue
            visited.add(pn)
            if pn not in force and self._available_locally(pn):
                continue
            if pn not in force and self.cache.contains(self.sigs[pn]):
                restore.add(pn)
                continue
            nodes.update(self._tasks_to_run(pn))
            stack.extend(self.rgraph.predecessors(pn))
        graph = full.subgraph(nodes).copy()
        for pn in restore:
            node = f"{pn}:restore"
            graph.add_node(node, recipe=self.recipe(pn), task="restore")
            for user in self.rgraph.successors(pn):
                if f"{user}:configure" in graph:
                    graph.add_edge(node, f"{user}:configure")
        return graph

    def _tasks_to_run(self, pn: str) -> list[str]:
        """All tasks, minus a prefix already done for this signature (a build killed midway resumes)."""
        stamps = self.recipe_paths(self.recipe(pn)).stamps
        sig = self.sigs[pn]
        start = 0
        if stamps.is_dir() and any(stamps.glob("*.running")):
            # A task was killed midway: its half-written outputs (truncated
            # objects with fresh times) could fool make, so start afresh.
            return [f"{pn}:{task}" for task in TASKS]
        for i, task in enumerate(TASKS[:-1]):
            stamp = stamps / task
            if stamp.is_file() and stamp.read_text() == sig:
                start = i + 1
            else:
                break
        return [f"{pn}:{task}" for task in TASKS[start:]]

    # --- running ----------------------------------------------------------------
    def lock(self) -> None:
        self.paths.build.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.paths.build / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError("another buildsys is using this build directory", Where(str(self.paths.build)),
                            hint="wait for it, or use another --build-dir") from None
        # We hold the lock: temp dirs left here are from a build that was killed.
        if self.paths.packages.is_dir():
            for stale in self.paths.packages.glob(".*"):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)

    def run(self, graph: nx.DiGraph, keep_going: bool) -> list[str]:
        self.lock()
        return run_graph(graph, self.execute, self.jobs, keep_going)

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
            note = getattr(self, f"_task_{task}", None)
            if note is not None:
                result = note(recipe, paths, log_path)
            else:
                ctx = Context(self, recipe, task, log_path)
                self.resolver.build_class(recipe).run(task, ctx)
                result = None
        except StepFailed as exc:
            raise TaskFailure(self._report(node, log_path, f"exit status {exc.status}", exc.replay)) from None
        except (BuildError, UserError) as exc:
            with open(log_path, "a") as log:
                log.write(f"ERROR: {exc}\n")
            raise TaskFailure(self._report(node, log_path, str(exc), None)) from None
        finally:
            running.unlink(missing_ok=True)
        if task != "restore":
            (paths.stamps / task).write_text(self.sigs[pn])
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

    # --- the engine's own tasks ---------------------------------------------------
    def _task_fetch(self, recipe, paths, log_path):
        from .fetch import fetch_many

        sources = sources_of(recipe)
        fetched = fetch_many(sources, self.fetch_config)
        with open(log_path, "a") as log:
            for source in sources:
                log.write(f"{source.url} -> {fetched[source]}\n")
        return None

    def _task_unpack(self, recipe, paths, log_path):
        from .fetch import fetch, source_date_epoch, unpack

        for name in WORK_DIRS:
            clean_dir(getattr(paths, name))
        for stale in paths.stamps.iterdir():
            if stale.name != "unpack.running":
                stale.unlink()
        epochs = []
        for source in sources_of(recipe):
            local = fetch(source, self.fetch_config)
            target = paths.src / source.dest if source.dest else paths.src
            target.mkdir(parents=True, exist_ok=True)
            unpack(local, target, source)
            if not source.url.startswith("file:"):
                epoch = source_date_epoch(local)
                if epoch:
                    epochs.append(epoch)
        (paths.work / "source-date-epoch.from-deps").unlink(missing_ok=True)
        sde = recipe.get("source_date_epoch")
        if sde is None:
            sde = max(epochs) if epochs else self._deps_epoch(recipe)
            if not epochs:
                # Unpack may run before the dependencies are packaged:
                # configure computes the epoch again, once they all are.
                (paths.work / "source-date-epoch.from-deps").touch()
        (paths.work / "source-date-epoch").write_text(str(int(sde)))
        with open(log_path, "a") as log:
            log.write(f"SOURCE_DATE_EPOCH={sde}\n")
        return None

    def _deps_epoch(self, recipe: Recipe) -> int:
        """For recipes without archives (images, layer files): the newest dependency's, or the project's."""
        epochs = [self.package_meta(d).get("source_date_epoch", 0) for d in self.rgraph.predecessors(recipe.pn)]
        return max(epochs + [int(self.project.settings.get("source_date_epoch") or 315532800)])

    def read_sde(self, recipe: Recipe) -> int:
        path = self.recipe_paths(recipe).work / "source-date-epoch"
        return int(path.read_text()) if path.is_file() else int(self.project.settings["source_date_epoch"])

    def _task_patch(self, recipe, paths, log_path):
        from .fetch import apply_patches

        patches = [ref.path for ref in recipe.get("patches", [])]
        for ref in recipe.get("patches", []):
            if not ref.path.is_file():
                raise UserError(f"patch '{ref.raw}' does not exist", ref.where)
        if patches:
            apply_patches(patches, paths.src)
        return None

    def _task_configure(self, recipe, paths, log_path):
        if (paths.work / "source-date-epoch.from-deps").is_file():
            sde = self._deps_epoch(recipe)
            (paths.work / "source-date-epoch").write_text(str(int(sde)))
            with open(log_path, "a") as log:
                log.write(f"SOURCE_DATE_EPOCH={sde} (the newest dependency's)\n")
        # Staging: the dependencies' installed trees, merged, read-only in the sandbox.
        clean_dir(paths.sysroot)
        clean_dir(paths.native)
        for dep in nx.ancestors(self.rgraph, recipe.pn):
            dep_recipe = self.recipe(dep)
            target = paths.native if dep_recipe.variant == "native" else paths.sysroot
            link_tree(self.package_dir(dep), target)
        ctx = Context(self, recipe, "configure", log_path)
        self.resolver.build_class(recipe).run("configure", ctx)
        return None

    def _task_install(self, recipe, paths, log_path):
        clean_dir(paths.dest)
        ctx = Context(self, recipe, "install", log_path)
        self.resolver.build_class(recipe).run("install", ctx)
        return None

    def _task_package(self, recipe, paths, log_path):
        pn, sig = recipe.pn, self.sigs[recipe.pn]
        sde = self.read_sde(recipe)
        artifact.clamp_mtimes(paths.dest, sde)
        self.paths.packages.mkdir(parents=True, exist_ok=True)
        meta = self._meta(recipe, sde)
        with tempfile.TemporaryDirectory(dir=self.paths.packages, prefix=".pack-") as tmp:
            archive = Path(tmp) / f"{sig}.tar.lz4"
            artifact.pack(paths.dest, archive)
            self.cache.put(sig, archive, dict(meta, sigdata=self.sigdata[pn]))
            staged = Path(tmp) / "tree"
            artifact.unpack(archive, staged)
            self._publish(sig, staged, meta)
        self._record(recipe)
        return None

    def _task_restore(self, recipe, paths, log_path):
        pn, sig = recipe.pn, self.sigs[recipe.pn]
        self.paths.packages.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.paths.packages, prefix=".restore-") as tmp:
            archive = Path(tmp) / f"{sig}.tar.lz4"
            if not self.cache.get(sig, archive):
                raise BuildError(f"cache entry {sig} disappeared or failed verification; run the build again")
            staged = Path(tmp) / "tree"
            artifact.unpack(archive, staged)
            meta = self._meta(recipe, None)
            self._publish(sig, staged, meta)
        self._record(recipe)
        return "restored from cache"

    def _meta(self, recipe: Recipe, sde) -> dict:
        meta = {"pn": recipe.pn, "name": recipe.name, "version": recipe.version, "variant": recipe.variant,
                "signature": self.sigs[recipe.pn], "license": recipe.get("license"),
                "sources": [{k: v for k, v in s.items() if k in ("url", "sha256", "git", "rev")}
                            if "file" not in s else {"file": s["file"].layer_relative,
                                                     "sha256": signature.file_hash(s["file"].path)}
                            for s in recipe.get("sources", [])]}
        if sde is not None:
            meta["source_date_epoch"] = sde
        return meta

    def _publish(self, sig: str, tree: Path, meta: dict) -> None:
        final = self.paths.packages / sig
        if final.exists():
            shutil.rmtree(final)
        os.replace(tree, final)
        if "source_date_epoch" not in meta:
            cached = self._cache_meta(sig)
            meta["source_date_epoch"] = cached.get("source_date_epoch", 0)
        tmp = self.paths.packages / f".{sig}.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp, self.paths.packages / f"{sig}.json")

    def _cache_meta(self, sig: str) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "meta.json"
            try:
                if self.cache._get_raw(f"{sig}.json", dest):
                    return json.loads(dest.read_text())
            except (OSError, ValueError):
                pass
        return {}

    def _record(self, recipe: Recipe) -> None:
        """Remember the inputs of this build, to explain the next rebuild."""
        path = self.paths.records / self.work_key(recipe) / f"{recipe.pn}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.sigdata[recipe.pn], sort_keys=True))
        os.replace(tmp, path)

    def why(self, pn: str) -> str:
        recipe = self.recipe(pn)
        path = self.paths.records / self.work_key(recipe) / f"{pn}.json"
        old = json.loads(path.read_text()) if path.is_file() else None
        return signature.explain(old, self.sigdata[pn])

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
            "PATH": f"{SANDBOX_NATIVE}/usr/bin:{SANDBOX_NATIVE}/usr/sbin:{SANDBOX_NATIVE}/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": "/build/home", "TZ": "UTC", "LC_ALL": "C", "LANG": "C",
            "JOBS": str(self.jobs),
            "ARCH": "x86" if native else self.board.kernel_arch,
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

"""`buildsys build --cluster ADDR`: the recipes to build go to Dask workers.

The client planned the build as usual (engine._build).  Here it restores
what the caches have, sends every recipe to build to the scheduler as soon as
the recipes it needs are done (whole recipes: all their tasks, on one worker,
job.py), and restores the targets from the shared cache once the workers
pushed them, for the deploy and the plan cache.  What it prints is a local
build's: the bar, one line per task (streamed from the workers), and on a
failure the remote log's tail, where it is, and how to replay it here.

Retries: Dask gives a recipe whose worker was lost to another worker, up to
the scheduler's ``distributed.scheduler.allowed-failures`` (default 3); a
failed build step comes back as a result and is not retried.
"""
from __future__ import annotations

import contextlib
import queue
import sys
import time
import uuid
from concurrent.futures import CancelledError, ThreadPoolExecutor

import networkx as nx

from ..errors import UserError, Where
from ..scheduler import TaskFailure
from . import resources, snapshot
from .job import build_recipe
from .progress import Progress

CONNECT_TIMEOUT = "15s"
RESUBMIT = 3       # times a recipe the scheduler cancelled is sent again
WATCH = 10.0        # seconds between checks that some worker can still build the project


def _pn(node: str) -> str:
    return node.rsplit(":", 1)[0]


def run_on_cluster(session, graph: nx.DiGraph, options) -> list[str]:
    project = session.project
    # Errors point at the cluster setting when the address is the setting's.
    from_settings = options.cluster == project.settings.get("cluster")
    where = (project.settings_where.get("cluster") if from_settings else None) or Where("--cluster")
    to_build = sorted({_pn(n) for n in graph.nodes if not n.endswith(":restore")})
    _check(session, to_build, where)
    session.lock()
    progress = Progress(graph.number_of_nodes() + sum(1 for r in session.targets if r.pn in to_build))
    try:
        failed, unusable = _restore(session, sorted(n for n in graph.nodes if n.endswith(":restore")), progress)
        if failed and not options.keep_going:
            return failed
        to_build = sorted(set(to_build) | unusable)
        tasks = {pn: sum(1 for n in graph.nodes if _pn(n) == pn) for pn in to_build}
        if to_build:
            failed += _ClusterRun(session, options, where, to_build, tasks, progress).run()
        if not failed:
            # What the workers pushed, into this build dir's store (deploy
            # restores the rest).  The shared cache remembers what it did
            # not have when the build was planned: it has it now.
            session.cache.forget()
            for recipe in session.targets:
                if recipe.pn in to_build:
                    failed += _restore_target(session, recipe.pn, progress)
        return failed
    finally:
        progress.close()


def _check(session, to_build: list[str], where: Where) -> None:
    from ..sharedcache import LayeredCache

    if not isinstance(session.cache, LayeredCache):
        raise UserError("a cluster build needs the shared cache (the workers push there, this machine restores "
                        "from there): the project has no shared_cache", where,
                        hint="set shared_cache in buildsys.yaml or local.yaml, or BUILDSYS_SHARED_CACHE "
                             "(docs/shared-cache.md), or build here with --no-cluster")
    live = [pn for pn in to_build if session.recipe(pn).get("live_source")]
    if live:
        raise UserError(f"{', '.join(live)} build(s) from a live source on this machine, which the workers do not "
                        "have", where, hint="build with --no-cluster, or stop the live source (buildsys source)")


def _restore(session, nodes: list[str], progress: Progress) -> tuple[list[str], set[str]]:
    """Run the restore tasks here; (failed tasks, recipes to build instead: their cache entry is unusable)."""
    failed: list[str] = []
    unusable: set[str] = set()

    def one(node: str) -> None:
        try:
            note = session.execute(node)
        except TaskFailure as exc:
            if _pn(node) in session.unusable:
                unusable.add(_pn(node))
                progress.task(node, "unusable: built on the cluster instead")
                progress.say(exc.report)
            else:
                failed.append(node)
                progress.task(node, failed=True)
                progress.say(exc.report)
            return
        progress.task(node, note or "")

    with ThreadPoolExecutor(max_workers=max(1, session.jobs)) as pool:
        list(pool.map(one, nodes))
    return failed, unusable


def _restore_target(session, pn: str, progress: Progress) -> list[str]:
    node = f"{pn}:restore"
    try:
        progress.task(node, session.execute(node) or "")
    except TaskFailure as exc:
        progress.task(node, failed=True)
        progress.say(exc.report)
        progress.say("the workers built it, but this machine cannot use their artifact: is their signing key "
                     "in trusted_keys, and the shared cache reachable? (docs/cluster.md)")
        return [node]
    return []


def _priorities(session, to_build: set[str]) -> dict[str, int]:
    """The scheduler's priority of each recipe (higher sooner): the longest
    chain of work it starts, each recipe weighing 1 plus its sources' MiB in
    the download dir when this machine has them (a kernel's 140 MB tarball
    says more about its build time than anything else known here).  With
    recipes built whole, a long one queued behind short ones is the
    cluster's main loss against a local build, which starts unpacking the
    kernel at once."""
    from ..executor import sources_of

    def weight(pn: str) -> int:
        size = 0
        with contextlib.suppress(Exception):    # only a hint: a missing or odd source counts 0
            for source in sources_of(session.recipe(pn)):
                with contextlib.suppress(OSError):
                    size += (session.fetch_config.dl_dir / source.name).lstat().st_size
        return 1 + size // (1 << 20)

    rgraph = session.rgraph
    out: dict[str, int] = {}
    for pn in reversed(list(nx.topological_sort(rgraph))):
        if pn in to_build:
            after = [out[s] for s in rgraph.successors(pn) if s in out]
            out[pn] = weight(pn) + max(after, default=0)
    return out


def _slots(workers: list[dict]) -> int:
    """Recipes the workers build at once (no worker: one is kept queued in the scheduler, for the next)."""
    return max(1, sum(int((w.get("resources") or {}).get(resources.SLOT, 0)) for w in workers))


class _ClusterRun:
    """One build's recipes on the cluster: submit when ready, print what comes back."""

    def __init__(self, session, options, where: Where, to_build: list[str], tasks: dict[str, int],
                 progress: Progress):
        self.session = session
        self.options = options
        self.where = where
        self.to_build = set(to_build)
        self.tasks = tasks
        self.progress = progress
        rgraph = session.rgraph
        self.deps = {pn: {d for d in rgraph.predecessors(pn) if d in self.to_build} for pn in to_build}
        self.priority = _priorities(session, self.to_build)
        self.topic = f"buildsys-{uuid.uuid4().hex}"
        self.events: queue.Queue = queue.Queue()
        self.streamed: dict[str, int] = {pn: 0 for pn in to_build}
        self.counted: dict[str, set[str]] = {pn: set() for pn in to_build}   # tasks on the bar already
        self.builder: dict[str, str] = {}       # pn -> the worker its lines come from
        self._watched = time.monotonic()
        self.resubmitted: dict[str, int] = {}
        self._said_waiting = False
        self.slots = 1          # build slots of the workers that can take these recipes (_check_workers)
        # No pinned environment: steps see the host's /usr, and only a host like this one builds the same.
        self.need = resources.needed(host_env=session.buildenv is None)

    def run(self) -> list[str]:
        from distributed import Client, Variable, wait

        address = self.options.cluster
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {address}: {exc}", self.where,
                            hint="is it running (docs/cluster.md)? or build here with --no-cluster") from None
        futures: dict = {}
        # The snapshot lives in the scheduler (a Dask Variable), not on a
        # worker: data scattered to workers is lost with them, and with it
        # every recipe waiting for it.  A worker fetches it once per digest.
        var = Variable(f"buildsys-snapshot-{uuid.uuid4().hex}", client=client)
        try:
            self._check_workers(client, address)
            snap = snapshot.make(self.session.project, skip=self._local_dirs())
            var.set(snap.data)
            client.subscribe_topic(self.topic, lambda event: self.events.put(event[1]))
            failed: list[str] = []
            done: set[str] = set()
            stop = False
            while True:
                if not stop:
                    # No more in flight than the workers have slots, the
                    # highest priority first: a recipe queued in the
                    # scheduler waits there even when a longer one becomes
                    # ready after it (Dask does not preempt).
                    ready = [pn for pn in self.to_build - done - set(futures.values()) - {_pn(f) for f in failed}
                             if self.deps[pn] <= done]
                    ready.sort(key=lambda pn: (-self.priority[pn], pn))
                    for pn in ready[:max(0, self.slots - len(futures))]:
                        futures[self._submit(client, pn, snap.digest, var.name)] = pn
                if not futures:
                    break
                with contextlib.suppress(TimeoutError, CancelledError), client.as_current():
                    wait(list(futures), timeout=0.5, return_when="FIRST_COMPLETED")
                self._drain()
                self._watch_workers(client)
                for future in [f for f in futures if f.status in ("finished", "error", "cancelled")]:
                    pn = futures.pop(future)
                    if future.status == "cancelled" and self.resubmitted.get(pn, 0) < RESUBMIT:
                        # Cancelled by the scheduler, not by a step (a lost input): send it again.
                        self.resubmitted[pn] = self.resubmitted.get(pn, 0) + 1
                        futures[self._submit(client, pn, snap.digest, var.name)] = pn
                        continue
                    node = self._finished(pn, future)
                    # Its result read: let it go, or the scheduler would run the recipe
                    # again if the worker holding the result were lost.
                    future.release()
                    if node is None:
                        done.add(pn)
                    else:
                        failed.append(node)
                        stop = stop or not self.options.keep_going
                if stop and not futures:
                    break
            skipped = self.to_build - done - {_pn(f) for f in failed}
            if failed and skipped:
                print(f"{len(skipped)} recipe(s) not built because of the failure", file=sys.stderr)
            return failed
        except KeyboardInterrupt:
            client.cancel(list(futures))
            raise
        finally:
            with contextlib.suppress(Exception):     # the scheduler may be gone: nothing left to clean
                var.delete()
            client.close()

    def _local_dirs(self) -> list:
        paths = self.session.paths
        out = [paths.build, paths.dl]
        if not str(paths.cache).startswith(("http://", "https://")):
            out.append(paths.cache)
        return out

    def _able(self, client) -> tuple[list[dict], int]:
        """The workers that can build this project, and how many there are in all."""
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        return [w for w in workers.values() if resources.can_run(w.get("resources") or {}, self.need)], len(workers)

    def _watch_workers(self, client) -> None:
        """Every WATCH seconds: the recipes wait in the scheduler while no worker can take them; say so once."""
        now = time.monotonic()
        if now - self._watched < WATCH:
            return
        self._watched = now
        able, _ = self._able(client)
        self.slots = _slots(able)
        if not able and not self._said_waiting:
            self.progress.say("waiting: no worker that can build this project is connected any more "
                              "(start one, or Ctrl-C and build with --no-cluster)")
        self._said_waiting = not able

    def _check_workers(self, client, address: str) -> None:
        able, count = self._able(client)
        self.slots = _slots(able)
        cores = "+".join(str(int((w.get("resources") or {}).get(resources.CORES, 0))) for w in able)
        print(f"cluster {address}: {len(able)} of {count} worker(s) can build this project"
              + (f" ({cores} cores)" if able else "") + f"; dashboard {client.dashboard_link}", file=sys.stderr)
        if not able:
            raise UserError(f"no worker of the Dask scheduler at {address} can build this project exactly "
                            f"(it needs {', '.join(sorted(self.need))})", self.where,
                            hint="start `buildsys worker` on a host like this one (docs/cluster.md), "
                                 "or build here with --no-cluster")

    def _submit(self, client, pn: str, digest: str, snapshot_var: str):
        job = {"pn": pn, "board": self.session.board.name, "signature": self.session.sigs[pn], "snapshot": digest,
               "snapshot_var": snapshot_var, "topic": self.topic, "force": pn in self.options.force,
               "offline": self.options.offline}
        return client.submit(build_recipe, job, key=f"buildsys-{pn}-{uuid.uuid4().hex[:12]}",
                             pure=False, resources=self.need, priority=self.priority[pn], retries=0)

    def _drain(self) -> None:
        """Print the task lines the workers sent while their recipes run."""
        while True:
            try:
                msg = self.events.get_nowait()
            except queue.Empty:
                return
            pn = msg.get("pn") if isinstance(msg, dict) else None
            if pn in self.streamed:
                self.streamed[pn] += 1
                self._line(pn, msg.get("task", "?"), msg.get("note", ""), msg.get("on", "?"))

    def _line(self, pn: str, task: str, note: str, worker: str) -> None:
        if self.builder.setdefault(pn, worker) != worker:
            self.progress.say(f"{pn}: {self.builder[pn]} was lost: built again on {worker}")
            self.builder[pn] = worker
        self.progress.task(f"{pn}:{task}", ", ".join(x for x in (note, f"on {worker}") if x),
                           count=task not in self.counted[pn])
        self.counted[pn].add(task)

    def _finished(self, pn: str, future) -> str | None:
        """Report a recipe that came back; the failed task's name, or None."""
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 -- a lost worker too often (KilledWorker), or a worker bug
            from distributed.scheduler import KilledWorker

            why = ("its workers were lost while building it, as many times as the scheduler allows "
                   "(allowed-failures)") if isinstance(exc, KilledWorker) else \
                f"internal error on the worker: {type(exc).__name__}: {exc}"
            self.progress.task(f"{pn}:build", failed=True)
            self.progress.say(f"ERROR: {pn}: {why}\n{self._replay(pn)}")
            self.progress.skip(self.tasks.get(pn, 1) - 1)
            return f"{pn}:build"
        self._drain()
        lines = result.get("lines", [])
        for task, note in lines[self.streamed[pn]:]:
            self._line(pn, task, note, result.get("worker", "?"))
        self.streamed[pn] = max(self.streamed[pn], len(lines))
        if result.get("status") == "ok":
            self.progress.skip(self.tasks.get(pn, 0) - len(self.counted[pn]))
            return None
        if result.get("exit") == 2:
            self.session.failure_status = 2
        report = result.get("report", "")
        task = next((line.split(":", 3)[2].strip() for line in report.splitlines()
                     if line.startswith(f"ERROR: {pn}:") and line.count(":") >= 3), "build")
        node = f"{pn}:{task}" if task.isidentifier() else f"{pn}:build"
        self.progress.task(node, f"on {result.get('worker', '?')}", failed=True)
        where = f"worker: {result.get('worker', '?')}"
        if result.get("log"):
            where += f", log (on the worker): {result['log']}"
        self.progress.say(f"{report}\n{where}\n{self._replay(pn)}")
        self.progress.skip(self.tasks.get(pn, 1) - len(self.counted[pn]) - 1)
        return node

    def _replay(self, pn: str) -> str:
        board = self.session.board.name
        return (f"replay here: buildsys build {pn} --board {board} --no-cluster"
                f"   (or step by step: buildsys devshell {pn} --board {board})")

"""What a worker does with one recipe: the function the client submits.

It runs in a thread (one per build slot) of the Dask worker started by `buildsys worker`
(worker.py), which says where its dir is and how many cores a build gets
through the environment.  The recipe is built by the ordinary engine
(`engine.build`, as `buildsys build PN` would): its dependencies restored
from the shared cache, the sandbox, the signed push, the build dir lock.  It
runs in the worker's own process, not a child: a child costs 0.3 s a recipe
in interpreter start and imports, more than a small recipe's whole build,
and the parsed recipes stay warm between recipes.  A killed worker takes its
builds with it (bwrap runs every step with --die-with-parent), and leaves
nothing half-written in a cache (the caches write a temp file and rename
it, the metadata last).

A build step that fails is a result, not an exception: Dask retries
exceptions and lost workers, and a failed step would only fail again.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from ..errors import BuildsysError

if TYPE_CHECKING:  # pragma: no cover
    from ..workspace import Workspace

# The per-task lines a build prints (scheduler.py): "[3/12] zlib:compile (4s)".
_LINE = re.compile(r"^\[\d+/\d+\] (?P<node>\S+?)(?P<failed> FAILED)?(?: \((?P<note>.*)\))?$")
REPORT_LINES = 60


class WorkerConfig:
    """The worker's own settings: its command line (through the environment
    `buildsys worker` sets) and BUILDSYS_* variables."""

    def __init__(self, environ=os.environ):
        self.dir = Path(environ.get("BUILDSYS_WORKER_DIR") or Path.cwd() / "buildsys-worker").absolute()
        self.cores = int(environ.get("BUILDSYS_WORKER_CORES") or os.cpu_count() or 1)
        self.name = environ.get("BUILDSYS_WORKER_NAME") or os.uname().nodename
        self.dl_dir = environ.get("BUILDSYS_DL_DIR") or str(self.dir / "downloads")
        self.environ = environ

    @property
    def build_dir(self) -> Path:
        """Slot 0's build dir (slot.py: one per recipe built at once)."""
        return self.dir / "build"

    def local_settings(self) -> dict[str, object]:
        """Added to the snapshot's local.yaml: a worker pushes what it builds
        (the client may be read-only).  Its key and its way to the shared cache
        come from its environment (BUILDSYS_SIGNING_KEY, BUILDSYS_SHARED_CACHE),
        which the build inherits."""
        return {"shared_cache_mode": "read-write"}

    def build_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items()
               # The client's layers and keys are in the snapshot; the build dir is ours.
               if k not in ("BUILDSYS_LAYERS", "BUILDSYS_SSH_AUTHORIZED_KEYS", "BUILDSYS_BUILD_DIR")}
        env.update(BUILDSYS_CACHE_DIR=str(self.dir / "cache"), BUILDSYS_DL_DIR=self.dl_dir)
        return env


def plan_signature(project_dir: Path, board: str, pn: str, config: WorkerConfig,
                   build_dir: Path | None = None) -> tuple[str, Workspace]:
    """The recipe's signature as this worker plans it, and the workspace (the build reuses its parsed recipes)."""
    from .. import buildenv
    from ..plan import Plan
    from ..workspace import Workspace

    env = config.build_env()
    ws = Workspace(SimpleNamespace(project=str(project_dir), build_dir=str(build_dir or config.build_dir), board=board),
                   environ=env)
    recipe = ws.targets([pn])[0]
    return Plan(ws.resolver, ws.board, [recipe], buildenv.for_project(ws.project, env)).sigs[recipe.pn], ws


def _snapshot_bytes(name: str) -> bytes:
    """The client's snapshot, from the scheduler (client.py keeps it in a Dask Variable)."""
    from distributed import Variable, get_client

    return Variable(name, client=get_client()).get(timeout=120)


def build_recipe(job: dict, snapshot: bytes | None = None) -> dict:
    """Build ``job["pn"]`` for ``job["board"]`` from the snapshot (``snapshot``, else fetched once per digest
    from ``job["snapshot_var"]``); a result dict (never raises for a failed step)."""
    from . import snapshot as snapshots

    config = WorkerConfig()
    started = time.monotonic()
    result: dict = {"pn": job["pn"], "worker": config.name, "status": "ok", "lines": [], "report": "",
                    "log": None, "exit": 0}
    emit = _emitter(job.get("topic"))
    try:
        under, settings = config.dir / "projects", config.local_settings()
        project_dir = snapshots.unpacked(job["snapshot"], under, settings)
        if project_dir is None:
            data = snapshot if snapshot is not None else _snapshot_bytes(job["snapshot_var"])
            project_dir = snapshots.unpack(data, job["snapshot"], under, settings)
    except BuildsysError as exc:
        return dict(result, status="failed", exit=getattr(exc, "exit_code", 1),
                    report=f"ERROR: {job['pn']}: the worker cannot unpack the project: {exc}")
    with build_slot(config) as build_dir:
        return _plan_and_build(job, config, project_dir, build_dir, result, emit, started)


def _plan_and_build(job: dict, config: WorkerConfig, project_dir: Path, build_dir: Path, result: dict,
                    emit: Callable[[dict], None], started: float) -> dict:
    try:
        sig, ws = plan_signature(project_dir, job["board"], job["pn"], config, build_dir)
    except BuildsysError as exc:
        return dict(result, status="failed", exit=getattr(exc, "exit_code", 1),
                    report=f"ERROR: {job['pn']}: the worker cannot plan it: {exc}")
    if sig != job["signature"]:
        return dict(result, status="refused", exit=2,
                    report=f"ERROR: {job['pn']}: worker {config.name} plans signature {sig[:12]}, the client "
                           f"{job['signature'][:12]}: it would not build the same bytes, so it refuses "
                           "(a different buildsys version on the worker?)")
    output: list[str] = []

    def on_line(line: str) -> None:
        output.append(line)
        match = _LINE.match(line)
        if match and match["node"].rsplit(":", 1)[0] == job["pn"] and not match["failed"]:
            task = match["node"].rsplit(":", 1)[1]
            result["lines"].append([task, match["note"] or ""])
            emit({"pn": job["pn"], "task": task, "note": match["note"] or "", "on": config.name})

    status = _build_here(ws, job, config, on_line)
    result["seconds"] = round(time.monotonic() - started, 1)
    if status != 0:
        result.update(status="failed", exit=status, report=failure_report(output))
        logs = [line[len("log: "):] for line in output if line.startswith("log: ")]
        result["log"] = logs[-1] if logs else None
    return result


_slots_lock = threading.Lock()
_busy: set[int] = set()


@contextlib.contextmanager
def build_slot(config: WorkerConfig) -> Iterator[Path]:
    """A build dir no other recipe of this worker is using: a build dir has one
    build at a time (its lock), and a worker with --slots N builds N recipes at
    once.  What one slot built, another restores from the worker's local cache."""
    with _slots_lock:
        slot = next(i for i in range(len(_busy) + 1) if i not in _busy)
        _busy.add(slot)
    try:
        yield config.build_dir if slot == 0 else config.dir / f"build-{slot}"
    finally:
        with _slots_lock:
            _busy.discard(slot)


def _build_here(ws: Workspace, job: dict, config: WorkerConfig, on_line: Callable[[str], None]) -> int:
    """Build the recipe with the engine in this thread; what it prints goes to ``on_line``, a line at a
    time, and to the worker's log.  The exit status `buildsys build` would give."""
    from .. import engine

    options = engine.BuildOptions(jobs=config.cores, offline=bool(job.get("offline")),
                                  force=frozenset([job["pn"]] if job.get("force") else []))
    with _StderrLines.capture(on_line):
        try:
            return engine.build(ws, [job["pn"]], options).status
        except BuildsysError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return exc.exit_code
        except Exception as exc:  # noqa: BLE001 -- a bug: reported to the client, the worker goes on
            print(f"ERROR: {job['pn']}: internal error on the worker: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 3


class _StderrLines:
    """The worker's sys.stderr: what a build thread prints also goes, line by
    line, to that thread's sink (the engine prints its task lines and failure
    reports to sys.stderr; Dask's own logging keeps the stream it was given)."""

    _local = threading.local()

    def __init__(self, real):
        self.real = real

    @classmethod
    def capture(cls, sink: Callable[[str], None]):
        if not isinstance(sys.stderr, cls):
            sys.stderr = cls(sys.stderr)

        @contextlib.contextmanager
        def scope():
            cls._local.sink, cls._local.partial = sink, ""
            try:
                yield
            finally:
                if cls._local.partial:
                    sink(cls._local.partial)
                cls._local.sink = None
        return scope()

    def write(self, text: str) -> int:
        sink = getattr(self._local, "sink", None)
        if sink is not None:
            *lines, self._local.partial = (self._local.partial + text).split("\n")
            for line in lines:
                sink(line)
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False            # no progress bar in a worker's log: the client draws its own

    def __getattr__(self, name):
        return getattr(self.real, name)


def failure_report(output: list[str]) -> str:
    """What the build said about its failure: from its first ERROR line (the
    log's tail, the log and replay paths), else its last lines."""
    start = next((i for i, line in enumerate(output) if line.startswith("ERROR: ")), None)
    lines = output[start:] if start is not None else output[-20:]
    # The client says itself what did not run and what failed; paths are the worker's.
    lines = [line.replace("replay: ", "replay on the worker: ", 1) if line.startswith("replay: ") else line
             for line in lines
             if not line.startswith("build failed: ") and "not run because of the failure" not in line]
    return "\n".join(lines[-REPORT_LINES:])


def _emitter(topic: str | None) -> Callable[[dict], None]:
    """Send a task line to the client as it happens (Dask's event log; best effort)."""
    if not topic:
        return lambda msg: None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return lambda msg: None

    def emit(msg: dict) -> None:
        try:
            worker.log_event(topic, msg)
        except Exception:  # noqa: BLE001 -- the final result carries the lines anyway
            pass
    return emit

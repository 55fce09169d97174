"""What a worker does with one recipe: the function the client submits.

It runs in a thread of the Dask worker started by `buildsys worker`
(worker.py), which says where its dir is and how many cores a build gets
through the environment.  The recipe is built by the ordinary engine, in a
`buildsys build PN --no-cluster` child process: the same code as a local
build (dependencies restored from the shared cache, the sandbox, the signed
push), its build dir lock, and a process that dies with the worker
(PR_SET_PDEATHSIG; bwrap runs steps with --die-with-parent), so a killed
worker leaves no step running and nothing half-written in a cache (the
caches write a temp file and rename it, the metadata last).

A build step that fails is a result, not an exception: Dask retries
exceptions and lost workers, and a failed step would only fail again.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from ..errors import BuildsysError

# The per-task lines a build prints (scheduler.py): "[3/12] zlib:compile (4s)".
_LINE = re.compile(r"^\[\d+/\d+\] (?P<node>\S+?)(?P<failed> FAILED)?(?: \((?P<note>.*)\))?$")
_PR_SET_PDEATHSIG = 1
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
        return self.dir / "build"

    def local_settings(self) -> dict[str, object]:
        """Added to the snapshot's local.yaml: a worker pushes what it builds
        (the client may be read-only).  Its key and its way to the shared cache
        come from its environment (BUILDSYS_SIGNING_KEY, BUILDSYS_SHARED_CACHE),
        which the build inherits."""
        return {"shared_cache_mode": "read-write"}

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items()
               # The client's layers and keys are in the snapshot; the build dir is ours.
               if k not in ("BUILDSYS_LAYERS", "BUILDSYS_SSH_AUTHORIZED_KEYS", "BUILDSYS_BUILD_DIR")}
        env.update(BUILDSYS_CACHE_DIR=str(self.dir / "cache"), BUILDSYS_DL_DIR=self.dl_dir)
        return env


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the worker thread that started it goes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def plan_signature(project_dir: Path, board: str, pn: str, config: WorkerConfig) -> str:
    """The recipe's signature as this worker plans it."""
    from .. import buildenv
    from ..plan import Plan
    from ..workspace import Workspace

    env = config.child_env()
    ws = Workspace(SimpleNamespace(project=str(project_dir), build_dir=str(config.build_dir), board=board),
                   environ=env)
    recipe = ws.targets([pn])[0]
    return Plan(ws.resolver, ws.board, [recipe], buildenv.for_project(ws.project, env)).sigs[recipe.pn]


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
        sig = plan_signature(project_dir, job["board"], job["pn"], config)
    except BuildsysError as exc:
        return dict(result, status="failed", exit=getattr(exc, "exit_code", 1),
                    report=f"ERROR: {job['pn']}: the worker cannot plan it: {exc}")
    if sig != job["signature"]:
        return dict(result, status="refused", exit=2,
                    report=f"ERROR: {job['pn']}: worker {config.name} plans signature {sig[:12]}, the client "
                           f"{job['signature'][:12]}: it would not build the same bytes, so it refuses "
                           "(a different buildsys version on the worker?)")
    argv = [sys.executable, "-m", "buildsys", "--project", str(project_dir), "--build-dir", str(config.build_dir),
            "build", job["pn"], "--board", job["board"], "--no-cluster", "-j", str(config.cores)]
    if job.get("force"):
        argv += ["--force", job["pn"]]
    if job.get("offline"):
        argv.append("--offline")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", env=config.child_env(), preexec_fn=_die_with_parent)
    output: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        output.append(line)
        match = _LINE.match(line)
        if match and match["node"].rsplit(":", 1)[0] == job["pn"] and not match["failed"]:
            task = match["node"].rsplit(":", 1)[1]
            result["lines"].append([task, match["note"] or ""])
            emit({"pn": job["pn"], "task": task, "note": match["note"] or "", "on": config.name})
    status = proc.wait()
    result["seconds"] = round(time.monotonic() - started, 1)
    if status != 0:
        result.update(status="failed", exit=status, report=failure_report(output))
        logs = [line[len("log: "):] for line in output if line.startswith("log: ")]
        result["log"] = logs[-1] if logs else None
    return result


def failure_report(output: list[str]) -> str:
    """What the child said about its failure: from its first ERROR line (the
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

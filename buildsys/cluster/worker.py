"""`buildsys worker`: a Dask worker with build slots and this host's resources.

A plain distributed.Worker in this process (no nanny: one process, so a
`kill -9` of the worker takes its build with it -- bwrap's --die-with-parent
stops the step -- and the scheduler hands its recipe to another worker).
The job (job.py) builds in this process and reads the worker's settings
from the environment this sets.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from ..errors import UserError, Where
from . import resources


def serve(scheduler: str, directory: Path, cores: int, name: str | None, slots: int = 2) -> int:
    """Run until the scheduler goes away or the process is stopped."""
    directory = directory.absolute()
    key = os.environ.get("BUILDSYS_SIGNING_KEY")
    if not key:
        raise UserError("a worker signs what it pushes to the shared cache: BUILDSYS_SIGNING_KEY is not set",
                        Where("BUILDSYS_SIGNING_KEY"), hint="buildsys key new makes one; see docs/cluster.md")
    from ..signing import load_secret

    signer = load_secret(Path(key).expanduser().absolute(), Where("BUILDSYS_SIGNING_KEY"))   # a bad key: now
    os.environ["BUILDSYS_SIGNING_KEY"] = str(Path(key).expanduser().absolute())   # the builds run elsewhere
    directory.mkdir(parents=True, exist_ok=True)
    name = name or f"{os.uname().nodename}-{os.getpid()}"
    os.environ.update(BUILDSYS_WORKER_DIR=str(directory), BUILDSYS_WORKER_CORES=str(cores),
                      BUILDSYS_WORKER_NAME=name)
    from .job import WorkerConfig

    # The builds run in this process: what they read of the environment is
    # the worker's (its cache and download dirs), never a client's leftovers.
    build_env = WorkerConfig().build_env()
    os.environ.clear()
    os.environ.update(build_env)
    declared = resources.worker_resources(cores, slots)
    print(f"buildsys worker {name}: {scheduler}, dir {directory}, {slots} slot(s) of {cores} core(s), "
          f"signs as {signer.name}, resources {', '.join(sorted(declared))}", file=sys.stderr, flush=True)
    return asyncio.run(_run(scheduler, directory, name, declared, slots))


async def _run(scheduler: str, directory: Path, name: str, declared: dict[str, float], slots: int) -> int:
    import dask.config
    from distributed import Worker

    # Dask's statistical profiler walks every thread's stack 100 times a
    # second under the GIL: it made the kernel's unpack (Python, in a slot's
    # thread) 2-3 times slower.  The dashboard's profile page is not worth it.
    dask.config.set({"distributed.worker.profile.enabled": False})
    try:
        # A thread per slot: recipes built at once, each with all the worker's cores (job.build_slot).
        worker = await Worker(scheduler, nthreads=slots, name=name, resources=declared,
                              local_directory=str(directory / "dask"), validate=False)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", Where("command line"),
                        hint="start one with `dask scheduler` (docs/cluster.md)") from None
    await worker.finished()
    return 0

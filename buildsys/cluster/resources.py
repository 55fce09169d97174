"""Dask resources: what a worker can build exactly, and what a recipe needs.

A worker has build slots (``buildsys``: recipes it builds at once, each with
the worker's cores, as a local build runs tasks of several recipes at once)
and names the host it runs on: its architecture (native
recipes and the pinned build environment's binaries run on it) and its
toolchain identity, which only ``build_env: host`` projects depend on (their
signatures hash the host compiler and dpkg database, signature.py
host_environment).  A project with a pinned environment takes that from its
lock, so the architecture is enough.  The scheduler gives a recipe only to a
worker holding every resource it asks for; the worker's signature check
(job.py) is the last word.
"""
from __future__ import annotations

import hashlib
import json

from ..resolve import HOST_ARCH

SLOT = "buildsys"
CORES = "cores"


def arch_resource(arch: str = HOST_ARCH) -> str:
    return f"arch-{arch}"


def toolchain_resource() -> str:
    """This host's toolchain as a ``build_env: host`` signature sees it."""
    from ..signature import host_environment

    digest = hashlib.sha256(json.dumps(host_environment(), sort_keys=True).encode()).hexdigest()
    return f"toolchain-{digest[:16]}"


def worker_resources(cores: int = 1, slots: int = 1) -> dict[str, float]:
    """What ``buildsys worker`` declares (``cores``: what a recipe build gets there; for the record, no
    recipe asks for it)."""
    return {SLOT: slots, arch_resource(): slots, toolchain_resource(): slots, CORES: cores}


def needed(host_env: bool) -> dict[str, float]:
    """What a recipe of this client's project asks for: ``host_env`` when it
    builds against the host's /usr (then only an identical host will do)."""
    out: dict[str, float] = {SLOT: 1, arch_resource(): 1}
    if host_env:
        out[toolchain_resource()] = 1
    return out


def can_run(worker: dict[str, float], need: dict[str, float]) -> bool:
    return all(worker.get(name, 0) >= amount for name, amount in need.items())

"""Benchmark: assembling the pinned build environment, and checking its seal.

    .venv/bin/python bench/buildenv.py [--project DIR] [--runs N]

Assembles the project's buildenv.lock.json into a fresh store N times (the
.debs come from the download dir, BUILDSYS_DL_DIR or ~/.cache/buildsys/downloads,
fetched once first) and times the seal check every build does before it uses
the tree.  Prints wall and CPU seconds, best of N.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buildsys import buildenv  # noqa: E402
from buildsys.fetch import FetchConfig, fetch_many  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lock = buildenv.load_lock(Path(args.project) / buildenv.LOCK_NAME)
    dl = Path(os.environ.get("BUILDSYS_DL_DIR") or Path.home() / ".cache/buildsys/downloads")
    config = FetchConfig.from_settings(dl, {})
    fetch_many(buildenv.BuildEnv(lock, Path(tempfile.gettempdir())).sources(config), config)
    size = sum(p.size for p in lock.packages)
    print(f"lock: {len(lock.packages)} packages, {size / 1e6:.0f} MB of .debs, environment {lock.id[:12]}")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=dl.parent) as store:
            env = buildenv.BuildEnv(lock, Path(store))
            for name in ("assemble (cold store)", "seal check (every build)"):
                wall, used = time.perf_counter(), cpu()
                env.ensure(config) if name.startswith("assemble") else env.ready()
                result = (time.perf_counter() - wall, cpu() - used)
                best[name] = min(best.get(name, result), result)
            files = sum(len(f) for _, _, f in os.walk(env.root))
            buildenv._remove(env.root)
    for name, (wall, used) in best.items():
        print(f"{name:<28} {wall:6.2f} s wall  {used:6.2f} s cpu   (best of {args.runs}; {files} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

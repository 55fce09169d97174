#!/usr/bin/env python3
"""Benchmark: parse+resolve+graph of N synthetic recipes, and a no-op build.

    .venv/bin/python bench/run.py                      # N = 1,000 and 10,000, in a temp dir
    .venv/bin/python bench/run.py -n 2000 --keep /tmp/bench --no-build

Each figure is the best of --repeat runs, each a fresh `buildsys` process as a
user would run it; "cpu" is that process's user+sys time, which a concurrent
build on the machine disturbs much less than the wall time.  The no-op build
is measured on a tree of the same shape whose recipes have no sources and
empty steps, after one real build of it.  Rows:

  cold, no cache     `graph` with BUILDSYS_PARSE_CACHE=0: every file parsed
  cold, fills cache  `graph` with the parse cache deleted before each run
  warm parse cache   `graph` again: parsed files come from the cache
  no-op build        `build` when nothing changed (the plan cache answers)
  no-op, re-plan     `build` after touching one recipe: nothing is rebuilt,
                     but everything is resolved and signed again
"""
import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILDSYS = [sys.executable, "-m", "buildsys"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv, env, repeat, before=None) -> tuple[float, float]:
    """Best wall and best cpu seconds of ``repeat`` runs (``before()`` runs untimed first)."""
    walls, cpus = [], []
    for _ in range(repeat):
        if before:
            before()
        cpu, start = _cpu(), time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(map(str, argv))}\n{proc.stderr[-2000:]}")
    return min(walls), min(cpus)


def generate(tree: Path, n: int, *extra: str) -> None:
    if not tree.exists():
        subprocess.run([sys.executable, HERE / "gen_recipes.py", tree, "-n", str(n), *extra], check=True,
                       stdout=subprocess.DEVNULL)


def measure(work: Path, n: int, repeat: int, build: bool) -> dict[str, tuple[float, float]]:
    rows: dict[str, tuple[float, float]] = {}
    tree = work / f"parse-{n}"
    generate(tree, n)
    env = dict(os.environ, BUILDSYS_BUILD_DIR=str(tree / "build"))
    graph = BUILDSYS + ["--project", str(tree), "graph", "--format", "json", "-o", os.devnull]
    cache = tree / "build" / "parse-cache.pickle"
    rows["graph, cold, no cache"] = timed(graph, dict(env, BUILDSYS_PARSE_CACHE="0"), repeat)
    rows["graph, cold, fills cache"] = timed(graph, env, repeat, before=lambda: cache.unlink(missing_ok=True))
    rows["graph, warm parse cache"] = timed(graph, env, repeat)
    if not build:
        return rows
    tree = work / f"build-{n}"
    generate(tree, n, "--buildable")
    env = dict(os.environ, BUILDSYS_BUILD_DIR=str(tree / "build"))
    cmd = BUILDSYS + ["--project", str(tree), "build"]
    shutil.rmtree(tree / "build", ignore_errors=True)   # a first build starts from nothing
    rows["first build (7 tasks a recipe)"] = timed(cmd + ["-j", str(os.cpu_count())], env, 1)
    rows["no-op build"] = timed(cmd, env, repeat)
    touch = lambda: os.utime(tree / "recipes/pkg00000.yaml")  # noqa: E731 -- new mtime, same content
    rows["no-op build, re-plan"] = timed(cmd, env, repeat, before=touch)
    return rows


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores {model}, Python {platform.python_version()}"


def table(results: dict[int, dict[str, tuple[float, float]]]) -> str:
    sizes = sorted(results)
    names = list(dict.fromkeys(name for n in sizes for name in results[n]))
    width = max(len(name) for name in names) + 2
    head = "".ljust(width) + "".join(f"{f'{n:,} recipes':>18}" for n in sizes)
    sub = "".ljust(width) + "".join(f"{'wall':>9}{'cpu':>9}" for _ in sizes)
    lines = [head, sub]
    for name in names:
        cells = []
        for n in sizes:
            wall, cpu = results[n].get(name, (None, None))
            cells.append(f"{wall:>8.2f}s{cpu:>8.2f}s" if wall is not None else f"{'-':>9}{'-':>9}")
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, nargs="+", default=[1000, 10000], help="recipe counts (default 1000 10000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (trees are reused)")
    parser.add_argument("--no-build", action="store_true", help="skip the build rows (the first build of 10,000 "
                        "recipes takes minutes)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="buildsys-bench-"))
    try:
        load = os.getloadavg()[0]
        results = {n: measure(work, n, args.repeat, not args.no_build) for n in args.n}
        print(f"buildsys bench: {machine()}; best of {args.repeat}; "
              f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
        print(table(results))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

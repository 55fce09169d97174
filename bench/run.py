#!/usr/bin/env python3
"""Benchmark: parse+resolve+graph of N synthetic recipes, and a no-op build.

    python3 bench/run.py            # N=10000, in a temp dir
    python3 bench/run.py -n 2000 --keep /tmp/bench

Prints one line per measurement (best of --repeat runs, each a fresh
`buildsys` process, as a user would run it).  The no-op build is measured on a
tree of the same shape whose recipes have no sources and empty steps, after
one real build of it.
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(argv, env, repeat):
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"failed: {' '.join(argv)}\n{proc.stderr[-2000:]}")
        best = elapsed if best is None else min(best, elapsed)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="buildsys-bench-"))
    buildsys = [sys.executable, "-m", "buildsys"]
    env = dict(os.environ)
    try:
        parse_tree, build_tree = work / "parse", work / "build-tree"
        for tree, extra in ((parse_tree, []), (build_tree, ["--buildable"])):
            if not tree.exists():
                subprocess.run([sys.executable, HERE / "gen_recipes.py", tree, "-n", str(args.n), *extra], check=True)
        print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
        t = timed(buildsys + ["--project", str(parse_tree), "graph", "--format", "json", "-o", os.devnull],
                  env, args.repeat)
        print(f"parse+resolve+graph, {args.n} recipes, cold (no caches of ours): {t:.2f} s")
        t = timed(buildsys + ["--project", str(parse_tree), "recipes"], env, args.repeat)
        print(f"`buildsys recipes`, {args.n} recipes: {t:.2f} s")
        benv = dict(env, BUILDSYS_BUILD_DIR=str(build_tree / "build"))
        start = time.perf_counter()
        proc = subprocess.run(buildsys + ["--project", str(build_tree), "build", "-j", str(os.cpu_count())],
                              env=benv, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        print(f"first build of {args.n} empty recipes ({7 * (args.n + 2)} tasks): {time.perf_counter() - start:.1f} s")
        t = timed(buildsys + ["--project", str(build_tree), "build"], benv, args.repeat)
        print(f"no-op build, {args.n} recipes: {t:.2f} s")
        os.utime(build_tree / "recipes/pkg00000.yaml")
        t = timed(buildsys + ["--project", str(build_tree), "build"], benv, 1)
        print(f"no-op build after touching one recipe (full re-plan, nothing rebuilt): {t:.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

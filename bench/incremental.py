"""Benchmark: incremental rebuilds of a bootable image.

    .venv/bin/python bench/incremental.py [--board x86-virtio] [--work DIR] [--runs N]

In a copy of this project (its local.yaml is edited, yours is not) with one
extra layer: a kernel config fragment appended to ``linux`` and a small C
program, ``benchapp``, built by class make from a live working tree and
added to image-minimal.  After one clean build of the kernel in the work
dir, it times N times each:

* **kernel fragment**: one line of the fragment changes
  (``CONFIG_LOCALVERSION``, a new value every run, so no cache has it),
  then ``buildsys build image-minimal`` -- kernel configured and compiled in
  its kept object dir, image assembled again;
* **live-source app**: one line of benchapp's main.c changes, then the same
  build -- the tree synced, make recompiles one file, image assembled again.

Downloads and the artifact cache are shared with your builds
(BUILDSYS_DL_DIR, BUILDSYS_CACHE_DIR; defaults under ~/.cache/buildsys), so
only the kernel is compiled from nothing.  Prints wall seconds per run and
which tasks ran.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import copy_project, write_tree  # noqa: E402

APP_C = '#include <stdio.h>\nint main(void) {\n    puts("benchapp run 0");\n    return 0;\n}\n'
APP_MK = "benchapp: main.c\n\t$(CC) $(CFLAGS) -static -o $@ main.c\ninstall:\n" \
         "\tinstall -D -m 0755 benchapp $(DESTDIR)/usr/bin/benchapp\n"
LAYER = {
    "layer.yaml": "format: 1\nname: bench\npriority: 50\n",
    "recipes/linux/linux.append.yaml": "format: 1\nconfig_fragments+: [files/bench.cfg]\n",
    "recipes/linux/files/bench.cfg": 'CONFIG_LOCALVERSION="-bench"\n',
    "recipes/benchapp/benchapp.yaml": "format: 1\nname: benchapp\nversion: '1'\nlicense: MIT\n"
                                      "sources:\n  - file: files/app\nclass: make\n",
    "recipes/benchapp/files/app/main.c": APP_C,
    "recipes/benchapp/files/app/Makefile": APP_MK,
    "recipes/image-minimal/image-minimal.append.yaml": "format: 1\npackages+: [benchapp]\n",
}


def buildsys(project: Path, env: dict, *args: str) -> tuple[float, list[str]]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(project), *args],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"buildsys {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed, re.findall(r"^\[\d+/\d+\] (\S+)", proc.stderr, re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="x86-virtio")
    parser.add_argument("--work", help="work dir (default: a new temp dir; reuse one to skip the clean build)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="buildsys-bench-incremental-"))
    project = work / "project"
    if not project.is_dir():
        copy_project(project, exclude=("tests", "bench", "build"))
        write_tree(project / "layers/bench", LAYER)
    app = work / "app"
    if not app.is_dir():
        write_tree(app, {"main.c": APP_C, "Makefile": APP_MK})
    cache = Path.home() / ".cache/buildsys"
    env = dict(os.environ, BUILDSYS_BUILD_DIR=str(work / "build"),
               BUILDSYS_DL_DIR=os.environ.get("BUILDSYS_DL_DIR", str(cache / "downloads")),
               BUILDSYS_CACHE_DIR=os.environ.get("BUILDSYS_CACHE_DIR", str(cache / "cache")))
    board = ["--board", args.board]
    buildsys(project, env, "source", "benchapp", "--local", str(app))
    fragment = project / "layers/bench/recipes/linux/files/bench.cfg"
    stamps = work / "build/work" / args.board / "linux/stamps"
    if not (stamps / "compile").is_file():
        print("clean kernel build in the work dir (once)...", file=sys.stderr)
        elapsed, _ = buildsys(project, env, "build", *board, "--force", "linux", "image-minimal")
        print(f"  clean build: {elapsed:.1f} s", file=sys.stderr)
    results: dict[str, list[float]] = {"kernel fragment": [], "live-source app": []}
    tag = f"{time.time_ns():x}"
    for run in range(1, args.runs + 1):
        fragment.write_text(f'CONFIG_LOCALVERSION="-bench{tag}{run}"\n')
        elapsed, ran = buildsys(project, env, "build", *board, "image-minimal")
        assert "linux:compile" in ran and "linux:unpack" not in ran, ran
        results["kernel fragment"].append(elapsed)
        print(f"kernel fragment run {run}: {elapsed:.1f} s  ({', '.join(t for t in ran if t.startswith('linux'))})")
        (app / "main.c").write_text(APP_C.replace("run 0", f"run {tag}{run}"))
        elapsed, ran = buildsys(project, env, "build", *board, "image-minimal")
        assert "benchapp:compile" in ran, ran
        results["live-source app"].append(elapsed)
        print(f"live-source app run {run}: {elapsed:.1f} s  ({len(ran)} tasks)")
    print(f"\n{'change':<18} {'best':>7} {'median':>7}  (wall seconds, {args.runs} runs, board {args.board})")
    for name, times in results.items():
        times.sort()
        print(f"{name:<18} {times[0]:>7.1f} {times[len(times) // 2]:>7.1f}")
    print(f"\nwork dir: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: a build here vs the same build on a Dask cluster (docs/cluster.md).

    .venv/bin/python bench/cluster.py                  # the buildable synthetic tree, 100 recipes
    .venv/bin/python bench/cluster.py --work 2000      # ... each compiling 2,000 generated C functions
    .venv/bin/python bench/cluster.py -n 300 --image   # and the x86-virtio image (cold: minutes each)
    .venv/bin/python bench/cluster.py --warm-cache ~/.cache/buildsys/cache   # + the image's fresh-machine restore

Every run starts cold: a new build dir, an empty local cache, and for the
cluster runs an empty shared cache (a throw-away nginx, scripts/cache-server.py)
and new worker dirs, so each worker builds what it is given from nothing.
The scheduler and the workers run on this machine (127.0.0.1), as separate
machines would except that they share its cores: the two-worker row says
how many cores each worker had.  Rows, per project:

  local               `buildsys build -j CORES`, no cluster, no shared cache
  cluster, 1 worker   `buildsys build --cluster` with one worker (--cores CORES)
  cluster, 2 workers  the same with two workers (--cores CORES/2 each)
  fresh machine       a new build dir and local cache against the shared cache the
                      two-worker run filled: `buildsys build`, everything restored
  fresh machine, image  (--warm-cache DIR) the x86-virtio image restored by a new
                      build dir from a shared cache seeded from DIR (`buildsys cache
                      push`, signed), best of 3, without the cold builds of --image

Downloads come from BUILDSYS_DL_DIR (default ~/.cache/buildsys/downloads);
pinned build environments from the usual store (not counted: not an artifact).
"""
import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILDSYS = [sys.executable, "-m", "buildsys"]
DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")

# The real servers the tests use (tests/servers.py): one way to start them.
_spec = importlib.util.spec_from_file_location("servers", ROOT / "tests" / "servers.py")
assert _spec is not None and _spec.loader is not None
servers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(servers)
stop = servers.stop_group


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDSYS_")}
    env["BUILDSYS_DL_DIR"] = DL_DIR
    return env


@contextlib.contextmanager
def nginx(work: Path):
    shutil.rmtree(work / "nginx-root", ignore_errors=True)
    with servers.nginx_cache(work, work / "nginx-root") as url:
        yield f"{url}/artifacts"


@contextlib.contextmanager
def workers(address: str, work: Path, count: int, cores: int, env: dict):
    from distributed import Client

    procs = []
    try:
        for i in range(count):
            d = work / f"worker-{i + 1}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            log = open(d / "worker.log", "w")
            procs.append(subprocess.Popen([*BUILDSYS, "worker", address, "--dir", str(d), "--cores", str(cores),
                                           "--name", f"bench-{i + 1}"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        with Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(count, timeout=120)
        yield
    finally:
        for proc in procs:
            stop(proc)
        # Until the scheduler has seen them go, the next run could be sent to them.
        with Client(address, timeout="30s", set_as_default=False) as client:
            deadline = time.monotonic() + 60
            while client.scheduler_info(n_workers=-1)["workers"] and time.monotonic() < deadline:
                time.sleep(0.2)


def build(project: Path, build_dir: Path, env: dict, args=()) -> tuple[float, str]:
    """Wall seconds of one cold `buildsys build` and its output."""
    shutil.rmtree(build_dir, ignore_errors=True)
    env = dict(env, BUILDSYS_BUILD_DIR=str(build_dir), BUILDSYS_CACHE_DIR=str(build_dir / "cache"))
    start = time.perf_counter()
    proc = subprocess.run([*BUILDSYS, "--project", str(project), "build", *args], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    (build_dir.parent / f"{build_dir.name}.log").write_text(proc.stderr)     # what it printed, to look at after
    if proc.returncode != 0:
        sys.exit(f"failed: buildsys build {' '.join(args)} in {project}\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def restored(output: str) -> str:
    tasks = re.findall(r"^\[\d+/\d+\] (\S+)", output, re.M)
    restores = sum(t.endswith(":restore") for t in tasks)
    return f"{restores} restore task(s), {len(tasks) - restores} other"


def measure(name: str, project: Path, work: Path, cores: int, key: Path, public: str) -> list[tuple[str, str, str]]:
    rows = []
    env = base_env()
    wall, _ = build(project, work / "local", env, ["-j", str(cores)])
    rows.append((name, "local", f"{wall:8.1f} s"))
    per_worker = max(1, cores // 2)
    for count, worker_cores in ((1, cores), (2, per_worker)):
        with nginx(work) as shared, servers.dask_scheduler(work) as address:
            worker_env = dict(env, BUILDSYS_SIGNING_KEY=str(key), BUILDSYS_SHARED_CACHE=shared)
            client_env = dict(env, BUILDSYS_SHARED_CACHE=shared, BUILDSYS_TRUSTED_KEYS=public)
            with workers(address, work, count, worker_cores, worker_env):
                wall, _ = build(project, work / f"client-{count}", client_env, ["--cluster", address])
            rows.append((name, f"cluster, {count} worker(s) x {worker_cores} core(s)", f"{wall:8.1f} s"))
            if count == 2:
                wall, out = build(project, work / "fresh", client_env, ["--no-push"])
                rows.append((name, "fresh machine, warm shared cache", f"{wall:8.1f} s  ({restored(out)})"))
    return rows


def image_restore(work: Path, warm: Path, key: Path, public: str) -> list[tuple[str, str, str]]:
    env = base_env()
    with nginx(work) as shared:
        push = subprocess.run([*BUILDSYS, "--project", str(ROOT), "--build-dir", str(work / "seed"), "cache", "push"],
                              env=dict(env, BUILDSYS_CACHE_DIR=str(warm), BUILDSYS_SIGNING_KEY=str(key),
                                       BUILDSYS_SHARED_CACHE=shared), capture_output=True, text=True)
        if push.returncode != 0:
            sys.exit(f"failed: buildsys cache push from {warm}\n{push.stderr[-3000:]}")
        client_env = dict(env, BUILDSYS_SHARED_CACHE=shared, BUILDSYS_TRUSTED_KEYS=public)
        runs = [build(ROOT, work / "fresh", client_env, ["--no-push"]) for _ in range(3)]
    wall, out = min(runs)
    return [("x86-virtio image", "fresh machine, cache seeded by cache push", f"{wall:8.1f} s  ({restored(out)})")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="recipes in the synthetic tree (default 100)")
    parser.add_argument("--work", type=int, default=0, metavar="N",
                        help="each synthetic recipe compiles N generated C functions (gen_recipes.py --work; "
                             "default 0: empty steps, the cluster's pure overhead)")
    parser.add_argument("--image", action="store_true", help="also the x86-virtio image of this checkout (cold)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores for a build (default all)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--warm-cache", type=Path, help="a local cache holding the x86-virtio image's artifacts: "
                        "time a fresh machine's restore of the image from a shared cache seeded from it")
    args = parser.parse_args()
    work = (args.keep or Path(tempfile.mkdtemp(prefix="buildsys-bench-cluster-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    try:
        tree = work / f"tree-{args.n}-{args.work}"
        if not tree.exists():
            subprocess.run([sys.executable, HERE / "gen_recipes.py", tree, "-n", str(args.n), "--buildable",
                            "--work", str(args.work)], check=True, stdout=subprocess.DEVNULL)
        keys = work / "keys"
        if not (keys / "bench.secret").exists():
            subprocess.run([*BUILDSYS, "key", "new", "bench", "--out", str(keys)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        public = (keys / "bench.public").read_text().strip()
        load = os.getloadavg()[0]
        what = f"synthetic, {args.n} recipes" + (f" x {args.work} C functions" if args.work else ", empty steps")
        rows = measure(what, tree, work / "synthetic", args.cores, keys / "bench.secret",
                       public)
        if args.image:
            rows += measure("x86-virtio image", ROOT, work / "image", args.cores, keys / "bench.secret", public)
        if args.warm_cache:
            rows += image_restore(work / "image-restore", args.warm_cache.expanduser().absolute(),
                                  keys / "bench.secret", public)
        print(f"buildsys cluster bench: {os.cpu_count()} cores here, builds -j {args.cores}; scheduler, nginx and "
              f"workers on 127.0.0.1 (the workers share this machine's cores); load average {load:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after")
        width = max(len(r[0]) for r in rows) + 2, max(len(r[1]) for r in rows) + 2
        for project, what, wall in rows:
            print(project.ljust(width[0]) + what.ljust(width[1]) + wall)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

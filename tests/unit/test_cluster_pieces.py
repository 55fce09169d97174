"""The cluster's pieces: the project snapshot, resources, a worker's refusal
of a recipe it would plan differently, and -- with a real scheduler on
127.0.0.1 and the tiny project, seconds each -- no able worker, and a failed
step's report.  (tests/slow/test_cluster.py builds the real image on two
workers behind nginx.)"""
import io
import os
import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from buildsys.cluster import job, resources, snapshot
from buildsys.errors import UserError
from buildsys.plan import Plan
from buildsys.workspace import Workspace
from tests.conftest import run_buildsys, write_tree

LAYER = {
    "layer.yaml": "format: 1\nname: extra\n",
    "recipes/extra/extra.yaml": "format: 1\nname: extra\nversion: '1'\nlicense: MIT\nclass: script\n"
                                "sources:\n  - file: files/data.txt\nsteps:\n  install: |\n"
                                "    install -D data.txt ${destdir}/usr/share/data.txt\n",
    "recipes/extra/files/data.txt": "outside the project\n",
}


def _ws(root, build):
    return Workspace(SimpleNamespace(project=str(root), build_dir=str(build), board=None), environ={})


def _names(snap):
    with tarfile.open(fileobj=io.BytesIO(snap.data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def _member_text(snap, name):
    with tarfile.open(fileobj=io.BytesIO(snap.data)) as tar:
        return tar.extractfile(name).read().decode()


@pytest.fixture
def project(tiny, tmp_path):
    """The tiny project with a layer outside it and per-machine settings in local.yaml."""
    outside = write_tree(tmp_path / "elsewhere" / "extra-layer", LAYER)
    (tiny / "local.yaml").write_text(
        "format: 1\n"
        f"layers: ['{outside}']\n"
        "signing_key: /home/me/.config/buildsys/me.key\n"
        "cache: /var/cache/mine\n"
        "cluster: tcp://127.0.0.1:8786\n"
        "shared_cache: http://127.0.0.1:8080/cache\n"
        "trusted_keys: ['farm:dKnOyGyUf4TftRC1dj2I1ApOpRE1WRF2XAUk18qJ06U=']\n")
    return tiny


def test_same_project_same_digest_wherever_it_is(project, tmp_path):
    one = snapshot.make(_ws(project, tmp_path / "b1").project, skip=[project / "build"])
    assert snapshot.make(_ws(project, tmp_path / "b1").project).digest == one.digest
    # Another checkout of the same files: same snapshot (names are project-relative, no times).
    copy = shutil.copytree(project, tmp_path / "copy" / "tiny")
    assert snapshot.make(_ws(copy, tmp_path / "b2").project).digest == one.digest
    # A changed file: another snapshot.
    (project / "recipes" / "hello" / "files" / "hello.c").write_text("int main(void) { return 1; }\n")
    assert snapshot.make(_ws(project, tmp_path / "b1").project).digest != one.digest


def test_layer_outside_the_project_is_in_it(project, tmp_path):
    snap = snapshot.make(_ws(project, tmp_path / "b").project)
    names = _names(snap)
    assert "layers/extra/recipes/extra/files/data.txt" in names
    assert "recipes/hello/hello.yaml" in names
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in names.values())
    assert yaml.safe_load(_member_text(snap, "buildsys.yaml"))["layers"] == []


def test_per_machine_settings_are_stripped(project, tmp_path):
    snap = snapshot.make(_ws(project, tmp_path / "b").project)
    local = yaml.safe_load(_member_text(snap, "local.yaml"))
    for key in ("signing_key", "cache", "cluster", "layers", "live_sources"):
        assert key not in local
    assert local["trusted_keys"] == ["farm:dKnOyGyUf4TftRC1dj2I1ApOpRE1WRF2XAUk18qJ06U="]
    assert local["shared_cache"] == "http://127.0.0.1:8080/cache" and local["format"] == 1


def test_unpacked_snapshot_plans_the_same_signatures(project, tmp_path):
    ws = _ws(project, tmp_path / "b")
    targets = ws.targets(["hello", "extra"])
    want = Plan(ws.resolver, ws.board, targets).sigs
    snap = snapshot.make(ws.project)
    mine = {"shared_cache": "http://10.0.0.1/cache", "signing_key": "/srv/worker.key"}
    root = snapshot.unpack(snap.data, snap.digest, tmp_path / "worker" / "projects", mine)
    # Once per digest and worker settings: the second call finds it.
    assert snapshot.unpack(snap.data, snap.digest, tmp_path / "worker" / "projects", mine) == root
    assert not list((tmp_path / "worker" / "projects").glob(".unpack-*"))
    local = yaml.safe_load((root / "local.yaml").read_text())
    assert local["signing_key"] == "/srv/worker.key" and local["shared_cache"] == "http://10.0.0.1/cache"
    there = _ws(root, tmp_path / "wb")
    assert Plan(there.resolver, there.board, there.targets(["hello", "extra"])).sigs == want


def test_damaged_snapshot_is_refused(project, tmp_path):
    snap = snapshot.make(_ws(project, tmp_path / "b").project)
    with pytest.raises(Exception, match="damaged"):
        snapshot.unpack(snap.data + b"x", snap.digest, tmp_path / "w", {})


@pytest.mark.parametrize("member", ["../escaped", "/etc/escaped", "link-out"])
def test_hostile_snapshot_is_refused_and_nothing_lands_outside(tmp_path, member):
    """A snapshot whose sha256 matches (sent by whoever can submit work) but
    whose members leave the tree: refused on every Python (Debian 12's 3.11.2
    has no tarfile filters), nothing written outside, no unpacked dir left."""
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link-out":
            info.type, info.linkname = tarfile.SYMTYPE, "../../.."
            tar.addfile(info)
            info = tarfile.TarInfo("link-out/escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    data = buf.getvalue()
    under = tmp_path / "a" / "b" / "projects"
    with pytest.raises(UserError, match="unsafe or damaged"):
        snapshot.unpack(data, hashlib.sha256(data).hexdigest(), under, {})
    assert not list(tmp_path.rglob("escaped")) and not Path("/etc/escaped").exists()
    assert list(under.iterdir()) == []


def test_resources():
    arch = resources.arch_resource()
    worker = resources.worker_resources()
    assert worker[resources.SLOT] == 1 and arch in worker
    pinned, host = resources.needed(host_env=False), resources.needed(host_env=True)
    assert set(pinned) == {resources.SLOT, arch}
    assert resources.toolchain_resource() in host
    assert resources.can_run(worker, pinned) and resources.can_run(worker, host)
    other_host = dict(worker)
    del other_host[resources.toolchain_resource()]
    assert resources.can_run(other_host, pinned) and not resources.can_run(other_host, host)
    assert not resources.can_run({resources.SLOT: 1, "arch-riscv64": 1}, pinned)


def test_worker_refuses_a_signature_it_would_not_build(project, tmp_path, monkeypatch):
    ws = _ws(project, tmp_path / "b")
    snap = snapshot.make(ws.project)
    sig = Plan(ws.resolver, ws.board, ws.targets(["hello"])).sigs["hello"]
    monkeypatch.setenv("BUILDSYS_WORKER_DIR", str(tmp_path / "worker"))
    monkeypatch.setenv("BUILDSYS_WORKER_NAME", "w-test")
    monkeypatch.delenv("BUILDSYS_LAYERS", raising=False)
    job_ = {"pn": "hello", "board": ws.board.name, "signature": "0" * 64, "snapshot": snap.digest}
    result = job.build_recipe(job_, snap.data)
    assert result["status"] == "refused" and result["worker"] == "w-test"
    assert f"plans signature {sig[:12]}" in result["report"] and "refuses" in result["report"]
    assert not (tmp_path / "worker" / "build" / "packages").exists()   # nothing was built


def test_failure_report_starts_at_the_error():
    out = ["[1/3] a:fetch", "[2/3] a:compile FAILED", "ERROR: a:compile: exit status 2", "--- last lines ---",
           "cc: error", "---", "log: /w/build/work/b/a/logs/compile.log", "build failed: a:compile"]
    assert job.failure_report(out).splitlines()[0] == "ERROR: a:compile: exit status 2"
    assert job.failure_report(["x"] * 100).count("\n") == 19


def test_cluster_build_needs_the_shared_cache(tiny, tmp_path):
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", "--cluster", "tcp://127.0.0.1:9",
                        check=2)
    lines = proc.stderr.strip().splitlines()
    assert "a cluster build needs the shared cache" in lines[-1] and lines[-1].startswith("--cluster: ")
    assert "Traceback" not in proc.stderr


def test_live_sources_stay_off_the_cluster(tiny, tmp_path):
    live = write_tree(tmp_path / "hello-live", {"hello.c": "int main(void) { return 0; }\n"})
    (tiny / "local.yaml").write_text(f"format: 1\nshared_cache: {tmp_path / 'shared'}\ncluster: tcp://127.0.0.1:9\n"
                                     f"live_sources:\n  hello: {live}\n")
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", "hello", check=2)
    last = proc.stderr.strip().splitlines()[-1]
    assert "hello build(s) from a live source" in last and "local.yaml:3:" in last and "--no-cluster" in last


def test_no_worker_that_builds_exactly(tiny, tmp_path):
    """A real scheduler with one worker of another architecture: the client
    says no worker can build the project, instead of waiting for one forever."""
    import subprocess
    import sys

    from distributed import Client

    from servers import cache_server

    port = cache_server.free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--dashboard-address", ":0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        cache_server.wait_listening("127.0.0.1", port, scheduler, timeout=30)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-nanny", "--resources", "buildsys=1,arch-riscv64=1", "--dashboard-address",
                                   ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Client(address, timeout="20s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=30)
        (tiny / "local.yaml").write_text(f"format: 1\nshared_cache: {tmp_path / 'shared'}\n")
        proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", "--cluster", address, check=2)
        assert "0 of 1 worker(s) can build this project" in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        needs = ", ".join(sorted(resources.needed(host_env=True)))     # tiny builds against the host's /usr
        assert last.startswith(f"--cluster: no worker of the Dask scheduler at {address} can build this project "
                               f"exactly (it needs {needs})"), last
    finally:
        for proc_ in (worker, scheduler):
            if proc_ is not None:
                proc_.terminate()
                proc_.wait(timeout=30)


def test_a_failed_step_on_a_worker_is_reported_with_its_log_and_a_replay_command(tiny, tmp_path):
    """A real scheduler and `buildsys worker`: hello's compile fails on the
    worker; the client exits 1 with the remote log's tail, the worker and its
    log path, and the command that replays it here.  libgreet, built before
    it, went to the shared cache signed by the worker's key."""
    import subprocess
    import sys

    from distributed import Client

    from servers import dask_scheduler, stop_group

    recipe = tiny / "recipes/hello/hello.yaml"
    recipe.write_text(recipe.read_text().replace("$CC $CFLAGS", "echo BROKEN-ON-PURPOSE >&2; exit 7; $CC $CFLAGS"))
    key = tmp_path / "keys"
    run_buildsys("key", "new", "farm", "--out", key)
    shared = tmp_path / "shared"
    env = dict(os.environ, BUILDSYS_SIGNING_KEY=str(key / "farm.secret"), BUILDSYS_SHARED_CACHE=str(shared))
    with dask_scheduler(tmp_path) as address:
        with open(tmp_path / "worker.log", "w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "buildsys", "worker", address, "--dir",
                                       str(tmp_path / "w"), "--cores", "1", "--name", "w-one"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with Client(address, timeout="20s", set_as_default=False) as client:
                client.wait_for_workers(1, timeout=60)
            proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "client", "build", "hello",
                                "--cluster", address, check=1,
                                env={"BUILDSYS_SHARED_CACHE": str(shared),
                                     "BUILDSYS_TRUSTED_KEYS": (key / "farm.public").read_text().strip()})
        finally:
            stop_group(worker)
    err = proc.stderr
    assert "libgreet:package (on w-one)" in err
    assert "hello:compile FAILED" in err
    assert "BROKEN-ON-PURPOSE" in err                     # the remote log's tail
    assert "worker: w-one, log (on the worker): " in err
    assert "replay here: buildsys build hello --board tiny-x86 --no-cluster" in err
    assert list(shared.rglob("*.json")), "libgreet was not pushed"

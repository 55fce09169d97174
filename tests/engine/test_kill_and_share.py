"""Builds killed at any point finish on the next run; builds in several build
dirs share one cache at the same time."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")


def _env(tmp_path, build: str, cache: str = "cache") -> dict:
    env = dict(os.environ)
    env.update({"BUILDSYS_BUILD_DIR": str(tmp_path / build), "BUILDSYS_CACHE_DIR": str(tmp_path / cache),
                "BUILDSYS_DL_DIR": str(tmp_path / "dl")})
    return env


def _start(tiny, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "buildsys", "--project", str(tiny), "build"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _app(build: Path) -> str:
    app = next(build.glob("packages/*/usr/bin/hello"))
    return subprocess.run([str(app)], capture_output=True, text=True).stdout


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.6])
def test_killed_build_finishes_next_time(tiny, tmp_path, delay):
    env = _env(tmp_path, "build")
    proc = _start(tiny, env)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)          # the build and every step it started
    proc.wait()
    again = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(tiny), "build"], env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _app(tmp_path / "build") == "hello from libgreet\n"
    # Nothing half-written is left behind in the package store or the cache.
    assert not list((tmp_path / "build/packages").glob(".*"))
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    for p in leftovers:      # only a dead build's temp files may remain, and nothing reads them
        assert not p.name.endswith((".json", ".tar.lz4"))


def test_concurrent_builds_share_one_cache(tiny, tmp_path):
    procs = [_start(tiny, _env(tmp_path, f"build{i}")) for i in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    # A build that finds the target in the cache restores only the target:
    # compare that package, which every build has, by signature and content.
    apps = [next((tmp_path / f"build{i}/packages").glob("*/usr/bin/hello")) for i in range(3)]
    assert len({a.relative_to(a.parents[2]).as_posix() for a in apps}) == 1
    assert len({a.parents[2].name for a in apps}) == 1
    assert len({a.read_bytes() for a in apps}) == 1
    for i in range(3):
        assert _app(tmp_path / f"build{i}") == "hello from libgreet\n"


def test_a_tampered_cache_entry_is_rebuilt_not_used(tiny, tmp_path):
    first = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(tiny), "build"],
                           env=_env(tmp_path, "build1"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    archives = sorted((tmp_path / "cache").rglob("*.tar.lz4"))
    assert archives
    for archive in archives:                 # same size, other bytes
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0xFF
        archive.write_bytes(bytes(data))
    second = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(tiny), "build"],
                            env=_env(tmp_path, "build2"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "instead of restoring from the cache" in second.stderr
    assert "hello:compile" in second.stderr
    assert _app(tmp_path / "build2") == _app(tmp_path / "build1")


def test_a_build_stopped_after_compile_resumes_at_install(tiny, tmp_path):
    """The stamps say unpack..compile were done for this signature (unpack
    removed fetch's stamp): the next run starts at install, not at unpack."""
    env = _env(tmp_path, "build")
    first = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(tiny), "build", "libgreet"], env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    stamps = tmp_path / "build/work/tiny-x86/libgreet/stamps"
    assert not (stamps / "fetch").exists() and (stamps / "compile").is_file()
    sig = (stamps / "package").read_text()
    for name in ("install", "package"):
        (stamps / name).unlink()
    for path in (tmp_path / "build/packages").glob(sig + "*"):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    env["BUILDSYS_CACHE_DIR"] = str(tmp_path / "empty-cache")
    again = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(tiny), "build", "libgreet"], env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "libgreet:install" in again.stderr and "libgreet:package" in again.stderr
    assert "libgreet:compile" not in again.stderr and "libgreet:unpack" not in again.stderr

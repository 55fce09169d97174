"""The sandbox: no network, no writes outside the step's dirs, a clean environment."""
import os
from pathlib import Path

import pytest

from conftest import run_buildsys

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")


def one_step_project(tiny, script: str) -> None:
    recipe = tiny / "recipes/probe/probe.yaml"
    recipe.parent.mkdir()
    body = "\n".join("    " + line for line in script.splitlines())
    recipe.write_text(f"format: 1\nname: probe\nversion: '1'\nsteps:\n  compile: |\n{body}\n")


def build(tiny, tmp_path):
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_CACHE_DIR": str(tmp_path / "cache"),
           "BUILDSYS_DL_DIR": str(tmp_path / "dl")}
    return run_buildsys("--project", tiny, "build", "probe", env=env)


def test_network_is_unreachable(tiny, tmp_path):
    one_step_project(tiny, "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 22), timeout=3)\"")
    proc = build(tiny, tmp_path)
    assert proc.returncode == 1
    assert "Network is unreachable" in proc.stderr or "Connection refused" in proc.stderr


def test_writes_outside_leave_no_trace(tiny, tmp_path):
    marker = f"buildsys-escape-{os.getpid()}"
    home = Path(os.path.expanduser("~"))
    one_step_project(tiny, f"touch /tmp/{marker} || true\n"
                           f"touch {home}/{marker} || true\n"
                           f"touch {tmp_path}/{marker} || true\n"
                           f"echo x > /usr/{marker} || true\n"
                           "touch $HOME/allowed")
    proc = build(tiny, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (Path("/tmp") / marker).exists()
    assert not (home / marker).exists()
    assert not (tmp_path / marker).exists()
    assert not (Path("/usr") / marker).exists()


def test_environment_is_clean(tiny, tmp_path, monkeypatch):
    one_step_project(tiny, "env | sort > /build/dest/env.txt; umask > /build/dest/umask.txt")
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_CACHE_DIR": str(tmp_path / "cache"),
           "SECRET_TOKEN": "leak", "TZ": "Asia/Tokyo"}
    # compile writes into /build/dest, which install cleans: check in the compile step itself
    recipe = tiny / "recipes/probe/probe.yaml"
    recipe.write_text(recipe.read_text().replace("  compile: |", "  install: |"))
    proc = run_buildsys("--project", tiny, "build", "probe", env=env)
    assert proc.returncode == 0, proc.stderr
    pkg = next(p for p in (tmp_path / "build/packages").iterdir() if (p / "env.txt").exists())
    text = (pkg / "env.txt").read_text()
    assert "SECRET_TOKEN" not in text
    assert "TZ=UTC" in text and "LC_ALL=C" in text and "SOURCE_DATE_EPOCH=" in text
    assert "HOME=/build/home" in text
    assert (pkg / "umask.txt").read_text().strip() == "0022"

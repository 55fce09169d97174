"""Real builds of the tiny fixture (a C library and an app linking it) in the real sandbox."""
import re
import subprocess
from pathlib import Path

import pytest

from conftest import run_buildsys

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")


def env_for(tmp_path, name="build", **extra):
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / name), "BUILDSYS_DL_DIR": str(tmp_path / "dl"),
           "BUILDSYS_CACHE_DIR": str(tmp_path / "cache"), "BUILDSYS_OFFLINE": "1"}
    env.update(extra)
    return env


def ran_tasks(stderr: str) -> list[str]:
    return re.findall(r"^\[\d+/\d+\] (\S+)", stderr, re.M)


def app_output(build: Path) -> str:
    # packages/ keeps every signature's output; the newest is the last build's
    pkgs = [p for p in (build / "packages").iterdir() if (p / "usr/bin/hello").exists()]
    assert pkgs
    newest = max(pkgs, key=lambda p: p.stat().st_mtime_ns)
    return subprocess.run([newest / "usr/bin/hello"], capture_output=True, text=True, check=True).stdout


def test_build_noop_rebuild_and_restore(tiny, tmp_path):
    env = env_for(tmp_path)
    first = run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    tasks = ran_tasks(first.stderr)
    # order: the library is packaged before the app is configured
    assert tasks.index("libgreet:package") < tasks.index("hello:configure")
    assert tasks.index("toolchain-host:package") < tasks.index("hello:configure")
    assert "hello: runs because no earlier build of this recipe" in first.stderr
    assert app_output(tmp_path / "build") == "hello from libgreet\n"
    logs = list((tmp_path / "build/work/tiny-x86/hello/logs").glob("*.log"))
    assert {p.name for p in logs} >= {"compile.log", "install.log", "package.log"}

    # nothing changed: no step runs
    second = run_buildsys("--project", tiny, "build", env=env, check=0)
    assert ran_tasks(second.stderr) == []
    assert "nothing to do" in second.stderr

    # edit the app: only the app rebuilds, and the log says why
    hello_c = tiny / "recipes/hello/files/hello.c"
    hello_c.write_text(hello_c.read_text().replace("puts(greeting())", "printf(\"%s!\\n\", greeting())"))
    third = run_buildsys("--project", tiny, "build", env=env, check=0)
    assert {t.split(":")[0] for t in ran_tasks(third.stderr)} == {"hello"}
    assert "hello: runs because value 'sources' changed" in third.stderr

    # edit the library: library and app rebuild, the toolchain does not
    greet_c = tiny / "recipes/libgreet/files/greet.c"
    greet_c.write_text(greet_c.read_text().replace("hello from libgreet", "hi from libgreet"))
    fourth = run_buildsys("--project", tiny, "build", env=env, check=0)
    assert {t.split(":")[0] for t in ran_tasks(fourth.stderr)} == {"hello", "libgreet"}
    assert "dependency libgreet changed" in fourth.stderr
    assert app_output(tmp_path / "build") == "hi from libgreet!\n"

    # a fresh build dir on the warm cache: restores, runs no step
    fifth = run_buildsys("--project", tiny, "build", env=env_for(tmp_path, "build2"), check=0)
    assert ran_tasks(fifth.stderr) == ["hello:restore"]
    assert app_output(tmp_path / "build2") == "hi from libgreet!\n"


def test_signatures_do_not_depend_on_paths(tiny, tmp_path):
    import shutil

    elsewhere = tmp_path / "a/much/longer/path/to/the/project"
    shutil.copytree(tiny, elsewhere)
    run_buildsys("--project", tiny, "build", env=env_for(tmp_path, "b1"), check=0)
    two = run_buildsys("--project", elsewhere, "build", env=env_for(tmp_path, "b2", TZ="Asia/Tokyo"), check=0)
    # the second project, other dir, hits the first one's cache entirely
    assert ran_tasks(two.stderr) == ["hello:restore"]


def test_failure_prints_tail_log_and_replay(tiny, tmp_path):
    recipe = tiny / "recipes/hello/hello.yaml"
    recipe.write_text(recipe.read_text().replace("-lgreet", "-lgreet && echo about-to-fail && false"))
    proc = run_buildsys("--project", tiny, "build", env=env_for(tmp_path))
    assert proc.returncode == 1
    assert "hello:compile FAILED" in proc.stderr
    assert "about-to-fail" in proc.stderr
    log = re.search(r"^log: (\S+)", proc.stderr, re.M).group(1)
    assert Path(log).is_file()
    replay = re.search(r"^replay: sh (\S+)", proc.stderr, re.M).group(1)
    again = subprocess.run(["sh", replay], capture_output=True, text=True)
    assert again.returncode != 0 and "about-to-fail" in again.stdout + again.stderr


def test_keep_going_builds_independent_work(tiny, tmp_path):
    broken = tiny / "recipes/broken/broken.yaml"
    broken.parent.mkdir()
    broken.write_text("format: 1\nname: broken\nversion: '1'\nsteps:\n  compile: exit 3\n")
    proc = run_buildsys("--project", tiny, "build", "-k", "broken", "hello", env=env_for(tmp_path))
    assert proc.returncode == 1
    assert "broken:compile FAILED" in proc.stderr
    assert "hello:package" in ran_tasks(proc.stderr)

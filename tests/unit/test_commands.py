"""The command layer: the registry, `cache` size parsing, and engine.build on the tiny fixture."""
import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildsys import engine
from buildsys.classes.base import Param
from buildsys.classes.script import Script
from buildsys.commands import COMMANDS, Command
from buildsys.commands.cache import format_size, parse_size, usage
from buildsys.commands.menuconfig import config_diff, menuconfig_argv
from buildsys.commands.run import built_image, qemu_argv
from buildsys.errors import UserError
from buildsys.workspace import Workspace
from conftest import run_buildsys

ALL = ["layers", "layer", "recipes", "recipe", "show", "graph", "fetch", "build", "clean", "run", "test", "menuconfig",
       "kconfig", "devshell", "cache", "lock", "reproduce", "diff", "legal-info", "size", "source", "key", "bundle",
       "worker"]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


# --- sizes --------------------------------------------------------------------------
@pytest.mark.parametrize("text, size", [
    ("0", 0), ("1024", 1024), ("1024B", 1024), ("1024 b", 1024),
    ("500M", 500 << 20), ("500m", 500 << 20), ("2G", 2 << 30), ("2Gi", 2 << 30), ("1.5GiB", 3 << 29),
    ("1.5G", 3 << 29), ("0.5K", 512), (".5K", 512), ("1.K", 1024), ("3T", 3 << 40), ("1E", 1 << 60),
    ("800MB", 800_000_000), ("1.5GB", 1_500_000_000), ("2kB", 2000), (" 7M ", 7 << 20),
    ("0.1K", 102),  # whole bytes, rounded down
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1", "-1G", "1.5", "1.5B", "2X", "2GiBs", "1e9", "1,5G", "G2", "inf",
                                  "nan", "1 2", "２G", "0x10"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size():
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.50 KiB"
    assert format_size(500 << 20) == "500.0 MiB"
    assert format_size(3 << 29) == "1.50 GiB"


def test_usage_counts_complete_entries(tmp_path):
    assert usage(tmp_path / "absent") == (0, 0)
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab/abc.tar.lz4").write_bytes(b"x" * 100)
    (tmp_path / "ab/abc.json").write_bytes(b"{}")
    (tmp_path / "ab/abd.tar.lz4").write_bytes(b"y" * 10)  # no sidecar yet: incomplete
    (tmp_path / "ab/.abe.json.1.tmp").write_bytes(b"z")
    assert usage(tmp_path) == (1, 113)


# --- the registry ---------------------------------------------------------------------
def test_registry_has_every_command_and_help_lists_them():
    assert list(COMMANDS)[:len(ALL)] == ALL
    assert all(isinstance(c, Command) and c.help for c in COMMANDS.values())
    proc = run_buildsys("--help", check=0)
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("    ") and line.split()]
    assert [name for name in listed if name in COMMANDS] == ALL


def test_commands_do_not_import_cli():
    code = "import sys, buildsys.commands; print('buildsys.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_plugin_registers_itself():
    class Hello(Command):
        name = "test-plugin-hello"
        help = "say hello"

        def run(self, args):
            return 0

    try:
        assert isinstance(COMMANDS["test-plugin-hello"], Hello)
        from buildsys import cli

        assert "test-plugin-hello" in cli.build_parser().format_help()
    finally:
        del COMMANDS["test-plugin-hello"]


def test_config_diff():
    before = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_D=\"x\"\n"
    after = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"x\"\nCONFIG_E=1\n# comment\n"
    assert config_diff(before, after) == ["CONFIG_B=y", "# CONFIG_C is not set", "CONFIG_E=1"]


# --- engine.build on the tiny fixture -------------------------------------------------------
class TinyImage(Script):
    """A stand-in image class: deploys what its own install step writes (no kernel, no squashfs)."""

    name = "test-commands-image"
    installs_packages = True
    params = {"packages": Param("list", [], "recipes the image installs")}


IMAGE = """format: 1
name: tiny-image
version: "1"
license: MIT
class: test-commands-image
packages: [hello]
steps:
  install: |
    mkdir -p ${destdir}
    echo disk > ${destdir}/tiny-image.img
"""


def workspace(project: Path, tmp_path: Path, **extra) -> Workspace:
    env = dict(os.environ, BUILDSYS_DL_DIR=str(tmp_path / "dl"), BUILDSYS_CACHE_DIR=str(tmp_path / "cache"),
               BUILDSYS_OFFLINE="1", **extra)
    return Workspace(argparse.Namespace(project=str(project), build_dir=str(tmp_path / "build"), board=None), env)


def test_build_options_are_frozen_and_normalized():
    options = engine.BuildOptions(jobs=3, force=["a", "a", "b"])
    assert options.force == frozenset({"a", "b"}) and options.parallel == 3
    assert engine.BuildOptions().parallel == (os.cpu_count() or 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.jobs = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        engine.BuildOptions(jobs=-1)


@needs_bwrap
def test_engine_build_then_noop_from_the_plan_cache(tiny, tmp_path):
    result = engine.build(workspace(tiny, tmp_path), [], engine.BuildOptions(jobs=2))
    assert result.ok and result.status == 0 and result.failed == []
    assert result.session is not None and not result.from_plan_cache
    assert result.sigs == {"hello": result.session.sigs["hello"]}
    assert result.ran == ["hello", "libgreet", "toolchain-host"]
    assert result.deployed == []  # hello is no image
    assert (tmp_path / "build/packages" / f"{result.sigs['hello']}.json").is_file()

    again = engine.build(workspace(tiny, tmp_path), [], engine.BuildOptions())
    assert again.ok and again.from_plan_cache and again.session is None
    assert again.sigs == result.sigs and again.ran == [] and again.failed == []

    # --force skips the plan cache and runs the recipe again
    forced = engine.build(workspace(tiny, tmp_path), [], engine.BuildOptions(force={"hello"}))
    assert forced.ok and not forced.from_plan_cache and forced.ran == ["hello"]
    assert forced.sigs == result.sigs

    # a changed recipe: planned again, only it runs
    hello_c = tiny / "recipes/hello/files/hello.c"
    hello_c.write_text(hello_c.read_text().replace("puts(greeting())", "puts(greeting()); puts(\"!\")"))
    changed = engine.build(workspace(tiny, tmp_path), [], engine.BuildOptions())
    assert changed.ok and not changed.from_plan_cache and changed.ran == ["hello"]
    assert changed.sigs["hello"] != result.sigs["hello"]


@needs_bwrap
def test_engine_build_reports_failed_tasks(tiny, tmp_path):
    (tiny / "recipes/broken.yaml").write_text(
        "format: 1\nname: broken\nversion: '1'\nlicense: MIT\nclass: script\nsteps:\n  compile: exit 3\n")
    result = engine.build(workspace(tiny, tmp_path), ["broken", "hello"],
                          engine.BuildOptions(jobs=2, keep_going=True))
    assert not result.ok and result.status == 1
    assert result.failed == ["broken:compile"]
    assert "broken" in result.ran and result.deployed == []
    assert not (tmp_path / "build/plans").exists() or not list((tmp_path / "build/plans").iterdir())
    # still failing: no plan cache answers for a failed build
    assert engine.build(workspace(tiny, tmp_path), ["broken"], engine.BuildOptions()).status == 1


@needs_bwrap
def test_engine_deploys_images_and_the_plan_cache_checks_the_deploy_dir(tiny, tmp_path):
    (tiny / "recipes/tiny-image.yaml").write_text(IMAGE)
    board = tiny / "board-configs/tiny-x86.yaml"
    board.write_text(board.read_text().replace("default_image: hello", "default_image: tiny-image"))
    ws = workspace(tiny, tmp_path)
    out = tmp_path / "build/deploy/tiny-x86"

    result = engine.build(ws, [], engine.BuildOptions(jobs=2))
    assert result.ok and result.deployed == [out]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["signature"] == result.sigs["tiny-image"] and "tiny-image.img" in manifest["files"]

    noop = engine.build(workspace(tiny, tmp_path), [], engine.BuildOptions())
    assert noop.from_plan_cache and noop.deployed == [out]

    # what run and test boot: the deployed disk image, even from the plan cache
    ws = workspace(tiny, tmp_path)
    assert built_image(ws) == (0, out / "tiny-image.img")
    with pytest.raises(UserError, match="cannot be emulated"):
        qemu_argv(ws, out / "tiny-image.img")

    # the deploy dir is gone: planned again, nothing runs, deployed again
    shutil.rmtree(out)
    again = engine.build(workspace(tiny, tmp_path), [], engine.BuildOptions())
    assert again.ok and not again.from_plan_cache and again.ran == [] and again.deployed == [out]
    assert (out / "tiny-image.img").read_text() == "disk\n"


@needs_bwrap
def test_menuconfig_argv_runs_make_in_the_recipes_sandbox(tiny, tmp_path):
    from buildsys.build import Session

    ws = workspace(tiny, tmp_path)
    recipe = ws.targets(["libgreet"])[0]
    session = Session(ws.project, ws.board, ws.resolver, ws.paths, 1, ws.fetch_config())
    session.plan([recipe])
    argv = menuconfig_argv(session, recipe, out_of_tree=True)
    assert Path(argv[0]).name == "bwrap"
    assert argv[-4:] == ["make", "ARCH=x86", "O=/build/obj", "menuconfig"]
    assert "TERM" in argv


# --- the commands through the CLI ---------------------------------------------------------
def cli_env(tmp_path, cache=None):
    return {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_DL_DIR": str(tmp_path / "dl"),
            "BUILDSYS_CACHE_DIR": cache or str(tmp_path / "cache"), "BUILDSYS_OFFLINE": "1"}


@pytest.mark.parametrize("size", ["5X", "1.5", "-2G", ""])
def test_cache_gc_bad_size_is_one_line_exit_2(tiny, tmp_path, size):
    proc = run_buildsys("--project", tiny, "cache", "gc", f"--max-size={size}", env=cli_env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("--max-size: bad size")


def test_cache_on_a_server_is_refused(tiny, tmp_path):
    for argv in (["gc", "--max-size", "1G"], ["info"]):
        proc = run_buildsys("--project", tiny, "cache", *argv,
                            env=cli_env(tmp_path, cache="http://user:secret@127.0.0.1:9/cache"))
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert "\n" not in line and "only on a local cache" in line and "secret" not in line


def test_cache_info_and_bad_jobs(tiny, tmp_path):
    (tmp_path / "cache/ab").mkdir(parents=True)
    (tmp_path / "cache/ab/abc.json").write_text("{}")
    proc = run_buildsys("--project", tiny, "cache", "info", env=cli_env(tmp_path), check=0)
    assert "entries: 1" in proc.stdout and str(tmp_path / "cache") in proc.stdout
    proc = run_buildsys("--project", tiny, "build", "-j", "-1", env=cli_env(tmp_path), check=2)
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cache_gc_trims_a_local_cache(tiny, tmp_path):
    shard = tmp_path / "cache/ab"
    shard.mkdir(parents=True)
    for i, sig in enumerate(("ab" + "1" * 62, "ab" + "2" * 62)):
        (shard / f"{sig}.tar.lz4").write_bytes(b"x" * 1000)
        (shard / f"{sig}.json").write_text("{}")
        os.utime(shard / f"{sig}.json", (1_700_000_000 + i, 1_700_000_000 + i))  # the second used last
    env = cli_env(tmp_path)
    proc = run_buildsys("--project", tiny, "cache", "gc", "--max-size", "1M", env=env, check=0)
    assert proc.stdout.startswith("removed 0 entries, freed 0 B;")
    assert "1.96 KiB in 2 entries" in proc.stdout  # 2004 bytes
    proc = run_buildsys("--project", tiny, "cache", "gc", "--max-size", "1500", env=env, check=0)
    assert proc.stdout.startswith("removed 1 entry, freed 1002 B;") and "1002 B in 1 entry" in proc.stdout
    assert (shard / f"ab{'2' * 62}.json").is_file() and not (shard / f"ab{'1' * 62}.json").exists()
    proc = run_buildsys("--project", tiny, "cache", "gc", "--max-size", "0", env=env, check=0)
    assert "0 B in 0 entries" in proc.stdout

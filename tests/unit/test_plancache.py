"""The no-op fast path (buildsys/plancache.py): a saved plan is used only when
every input is as it was -- recipe and layer files, boards, layer configs, the
project file, the targets, the layers named in the environment, the compiler --
and a damaged plan file is ignored, never a crash."""
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from buildsys import plancache
from buildsys.layers import load_project
from conftest import FIXTURES, run_buildsys, write_tree

SIGS = {"hello": "a" * 64, "libgreet": "b" * 64}


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.delenv("BUILDSYS_LAYERS", raising=False)
    root = tmp_path / "p"
    shutil.copytree(FIXTURES / "tiny", root)
    write_tree(root, {
        "layers/extra/layer.yaml": "format: 1\nname: extra\npriority: 5\n",
        "layers/extra/recipes/hello/hello.append.yaml": "format: 1\nenv+: {EXTRA: '1'}\n",
        "layers/extra/recipes/hello/files/extra.txt": "extra\n",
        "layers/extra/board-configs/other.yaml": "format: 1\nname: other\narch: x86_64\n",
    })
    return root


def key(root, board="tiny-x86", targets=(), prefixes=("",)):
    """inputs_key as the build command computes it: on a freshly loaded project."""
    return plancache.inputs_key(load_project(root), board, list(targets), prefixes)


def touch_edit(path: Path, text: str | None = None):
    """Change a file's content (or only its mtime), so that its stat surely differs."""
    old = path.stat()
    if text is not None:
        path.write_text(text)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 2_000_000_000))


def test_save_then_load(tmp_path, proj):
    build = tmp_path / "build"
    k = key(proj)
    assert plancache.load(build, "tiny-x86", [], k) is None          # nothing saved yet
    plancache.save(build, "tiny-x86", [], k, SIGS)
    plan = plancache.load(build, "tiny-x86", [], k)
    assert plan is not None and plan["sigs"] == SIGS
    assert [p.name for p in (build / "plans").iterdir() if p.suffix != ".json"] == []   # no temp file left
    # another input state, board or target list does not get this plan
    assert plancache.load(build, "tiny-x86", [], "0" * 64) is None
    assert plancache.load(build, "other", [], k) is None
    assert plancache.load(build, "tiny-x86", ["hello"], k) is None


def test_plans_of_several_target_lists_live_side_by_side(tmp_path, proj):
    build = tmp_path / "build"
    k_all, k_lib = key(proj), key(proj, targets=["libgreet"])
    plancache.save(build, "tiny-x86", [], k_all, SIGS)
    plancache.save(build, "tiny-x86", ["libgreet"], k_lib, {"libgreet": "b" * 64})
    assert plancache.load(build, "tiny-x86", [], k_all)["sigs"] == SIGS
    assert plancache.load(build, "tiny-x86", ["libgreet"], k_lib)["sigs"] == {"libgreet": "b" * 64}


def test_key_is_stable_when_nothing_changed(proj, monkeypatch):
    first = key(proj)
    assert key(proj) == first
    # environment that does not change what is built does not matter
    monkeypatch.setenv("BUILDSYS_PREMIRRORS", "http://mirror.example.lan/x")
    monkeypatch.setenv("BUILDSYS_OFFLINE", "1")
    monkeypatch.setenv("BUILDSYS_PARSE_CACHE", "0")
    assert key(proj) == first


@pytest.mark.parametrize("change", [
    "edit a recipe",
    "touch a recipe",
    "add a recipe",
    "remove a recipe",
    "edit a layer file",
    "add a layer file",
    "edit an append",
    "edit a layer's recipe file",
    "edit a board",
    "add a board",
    "edit the project file",
    "add local.yaml",
    "edit a layer's layer.yaml",
    "add a layer",
])
def test_any_input_change_changes_the_key(proj, change):
    before = key(proj)
    hello = proj / "recipes/hello/hello.yaml"
    if change == "edit a recipe":
        touch_edit(hello, hello.read_text().replace("1.0", "1.1"))
    elif change == "touch a recipe":
        touch_edit(hello)
    elif change == "add a recipe":
        write_tree(proj, {"recipes/new/new.yaml": "format: 1\nname: new\n"})
    elif change == "remove a recipe":
        shutil.rmtree(proj / "recipes/toolchain-host")
    elif change == "edit a layer file":
        touch_edit(proj / "recipes/libgreet/files/greet.c", "/* edited */\n")
    elif change == "add a layer file":
        write_tree(proj, {"recipes/libgreet/files/new.h": "#define NEW 1\n"})
    elif change == "edit an append":
        touch_edit(proj / "layers/extra/recipes/hello/hello.append.yaml", "format: 1\nenv+: {EXTRA: '2'}\n")
    elif change == "edit a layer's recipe file":
        touch_edit(proj / "layers/extra/recipes/hello/files/extra.txt", "more\n")
    elif change == "edit a board":
        board = proj / "board-configs/tiny-x86.yaml"
        touch_edit(board, board.read_text().replace("-march=x86-64", "-march=x86-64-v2"))
    elif change == "add a board":
        write_tree(proj, {"board-configs/new.yaml": "format: 1\nname: new\narch: x86_64\n"})
    elif change == "edit the project file":
        touch_edit(proj / "buildsys.yaml", "format: 1\ndefault_board: tiny-x86\nsource_date_epoch: 1700000001\n")
    elif change == "add local.yaml":
        write_tree(proj, {"local.yaml": "format: 1\nsource_date_epoch: 1\n"})
    elif change == "edit a layer's layer.yaml":
        # a priority change can change which recipe or board wins
        touch_edit(proj / "layers/extra/layer.yaml", "format: 1\nname: extra\npriority: 50\n")
    elif change == "add a layer":
        write_tree(proj, {"layers/more/layer.yaml": "format: 1\nname: more\n"})
    assert key(proj) != before, change


def test_board_targets_and_layers_from_the_environment_change_the_key(tmp_path, proj, monkeypatch):
    base = key(proj)
    assert key(proj, board="other") != base
    assert key(proj, targets=["hello"]) != base
    layer = write_tree(tmp_path / "envlayer", {"layer.yaml": "format: 1\nname: envlayer\n"})
    monkeypatch.setenv("BUILDSYS_LAYERS", str(layer))
    with_layer = key(proj)
    assert with_layer != base
    # and a file in that layer counts like any other
    write_tree(layer, {"recipes/x/x.yaml": "format: 1\nname: x\n"})
    assert key(proj) != with_layer


def test_the_compiler_changes_the_key(tmp_path, proj, monkeypatch):
    bindir = tmp_path / "bin"
    gcc = write_tree(bindir, {"fake-linux-gnu-gcc": "#!/bin/sh\necho 12\n"}) / "fake-linux-gnu-gcc"
    gcc.chmod(gcc.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    prefixes = ("", "fake-linux-gnu-")
    before = key(proj, prefixes=prefixes)
    assert before != key(proj, prefixes=("",))
    touch_edit(gcc, "#!/bin/sh\necho 13.1\n")             # the compiler was upgraded
    assert key(proj, prefixes=prefixes) != before


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")
def test_a_layer_file_outside_recipes_dir_invalidates_the_plan(tmp_path, proj):
    """Recipes may name any file of their layer; the saved plan checks each
    one it used, so editing it is never answered by "nothing to do"."""
    write_tree(proj, {"common/shared.h": "#define A 1\n"})
    hello = proj / "recipes/hello/hello.yaml"
    hello.write_text(hello.read_text().replace("  - file: files/hello.c\n",
                                               "  - file: files/hello.c\n  - file: ../../common/shared.h\n"))
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "b"), "BUILDSYS_CACHE_DIR": str(tmp_path / "c")}
    run_buildsys("--project", proj, "build", env=env, check=0)
    again = run_buildsys("--project", proj, "build", env=env, check=0)
    assert "nothing to do" in again.stderr
    touch_edit(proj / "common/shared.h", "#define A 2\n")
    third = run_buildsys("--project", proj, "build", env=env, check=0)
    assert "nothing to do" not in third.stderr and "hello: runs because" in third.stderr


@pytest.mark.parametrize("content", [
    b"",                                   # empty: killed before the first byte
    b'{"key": "',                          # half-written
    b"\xff\xfe\x00garbage",                # not even text
    b"[]",                                 # JSON, but not a plan
    b"null",
    b'"a string"',
    b'{"sigs": {}}',                       # no key
    b'{"key": "KEY"}',                     # the right key but no signatures
    b'{"key": "KEY", "sigs": ["hello"]}',  # signatures of the wrong shape
    b'{"key": "KEY", "sigs": {"hello": 1}}',
])
def test_a_damaged_plan_file_is_ignored(tmp_path, proj, content):
    build = tmp_path / "build"
    k = key(proj)
    plancache.save(build, "tiny-x86", [], k, SIGS)
    path = next((build / "plans").glob("*.json"))
    path.write_bytes(content.replace(b"KEY", k.encode()))
    assert plancache.load(build, "tiny-x86", [], k) is None
    # and the next save repairs it
    plancache.save(build, "tiny-x86", [], k, SIGS)
    assert plancache.load(build, "tiny-x86", [], k)["sigs"] == SIGS


def test_an_unreadable_plan_is_ignored(tmp_path, proj):
    build = tmp_path / "build"
    k = key(proj)
    plancache.save(build, "tiny-x86", [], k, SIGS)
    path = next((build / "plans").glob("*.json"))
    path.unlink()
    path.mkdir()                           # not a file at all
    assert plancache.load(build, "tiny-x86", [], k) is None


def test_a_leftover_temp_file_does_not_count(tmp_path, proj):
    build = tmp_path / "build"
    k = key(proj)
    plancache.save(build, "tiny-x86", [], k, SIGS)
    path = next((build / "plans").glob("*.json"))
    data = path.read_text()
    path.unlink()
    path.with_suffix(".tmp").write_text(data)   # a save killed before its rename
    assert plancache.load(build, "tiny-x86", [], k) is None


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")
def test_build_command_survives_a_damaged_plan(tmp_path, proj):
    """End to end: the real CLI with the tiny fixture (the plan is the build's
    no-op fast path; a damaged one means the slow path, not a crash)."""
    shutil.rmtree(proj / "layers")
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_CACHE_DIR": str(tmp_path / "cache")}
    run_buildsys("--project", proj, "build", env=env, check=0)
    plans = list((tmp_path / "build/plans").glob("*.json"))
    assert len(plans) == 1 and json.loads(plans[0].read_text())["sigs"]
    again = run_buildsys("--project", proj, "build", env=env, check=0)
    assert "nothing to do" in again.stderr
    for content in ("[]", '{"key": '):
        plans[0].write_text(content)
        proc = run_buildsys("--project", proj, "build", env=env, check=0)
        assert "nothing to do" in proc.stderr      # planned the slow way: every package is in place
    # an edited recipe is noticed although the plan file says all is built
    hello = proj / "recipes/hello/files/hello.c"
    touch_edit(hello, hello.read_text() + "\n/* edited */\n")
    proc = run_buildsys("--project", proj, "build", env=env, check=0)
    assert "hello: runs because" in proc.stderr

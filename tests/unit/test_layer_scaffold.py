"""`buildsys layer create`: a layer that loads into this project and whose example resolves as written."""
from __future__ import annotations

import os
import shutil
from argparse import Namespace
from pathlib import Path

import pytest

from buildsys import layerscaffold
from buildsys.cli import main
from buildsys.errors import UserError
from buildsys.workspace import Workspace
from conftest import ROOT, copy_project, run_buildsys

FILES = ["README.md", "layer.yaml", "recipes/images/image-base.append.yaml", "recipes/mine-hello/files/Makefile",
         "recipes/mine-hello/files/hello.c", "recipes/mine-hello/mine-hello.yaml"]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_create_writes_a_layer_that_this_project_loads(tmp_path, capsys):
    layer = tmp_path / "meta-mine"
    assert main(["layer", "create", str(layer), "--name", "mine", "--priority", "12"]) == 0
    assert _tree(layer) == FILES
    assert f"created layer 'mine' in {layer}: 6 files" in capsys.readouterr().out
    assert (layer / "layer.yaml").read_text().startswith("format: 1\nname: mine\n")
    # Added to this project (through BUILDSYS_LAYERS: the checkout's files stay as they are).
    environ = dict(os.environ, BUILDSYS_LAYERS=str(layer))
    ws = Workspace(Namespace(project=str(ROOT), build_dir=str(tmp_path / "build"), board="x86-virtio"), environ)
    mine = {la.name: la for la in ws.project.layers}["mine"]
    assert mine.priority == 12 and mine.path == layer
    hello = ws.resolver.recipe("mine-hello")
    assert hello.class_name == "make" and hello.layer.name == "mine"
    assert [s.file.layer_relative for s in hello.values["sources"]] == ["recipes/mine-hello/files/hello.c",
                                                                        "recipes/mine-hello/files/Makefile"]
    assert "mine-hello" in ws.resolver.recipe("image-base").values["packages"]
    # qemu-arm64 too: nothing in the example is x86's.
    ws = Workspace(Namespace(project=str(ROOT), build_dir=str(tmp_path / "build"), board="qemu-arm64"), environ)
    assert ws.resolver.recipe("mine-hello").class_name == "make"


def test_create_takes_the_directory_name_and_an_empty_directory(tmp_path):
    (tmp_path / "meta-two").mkdir()
    name, written = layerscaffold.create(tmp_path / "meta-two")
    assert name == "meta-two" and len(written) == 6
    assert (tmp_path / "meta-two/recipes/meta-two-hello/meta-two-hello.yaml").is_file()


@pytest.mark.parametrize("args, message", [
    (["--name", "core"], "--name: the layer name 'core' is reserved for the project's own recipes"),
    (["--name", "a b"], "--name: 'a b' is not a layer name (letters, digits, '.', '_', '+', '-'; a letter or digit "
                        "first)"),
    (["--name=-x"], "--name: '-x' is not a layer name"),
    (["--name", "x/y"], "--name: 'x/y' is not a layer name"),
])
def test_create_refuses_bad_names(tmp_path, capsys, args, message):
    assert main(["layer", "create", str(tmp_path / "l"), *args]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "l").exists()


def test_create_refuses_a_non_empty_directory_and_a_file(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine\n")
    assert main(["layer", "create", str(tmp_path / "full")]) == 2
    assert capsys.readouterr().err == (f"{tmp_path}/full: directory exists and is not empty (name a new or empty "
                                       "directory; a layer is never written over files)\n")
    assert _tree(tmp_path / "full") == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is not a directory"):
        layerscaffold.create(tmp_path / "file")
    with pytest.raises(UserError, match="the layer name 'core' is reserved"):
        layerscaffold.create(tmp_path / "core")


def test_layer_yaml_names_follow_the_same_rule(tmp_path, capsys):
    root = tmp_path / "proj"
    (root / "layers/bad").mkdir(parents=True)
    (root / "buildsys.yaml").write_text("format: 1\n")
    (root / "layers/bad/layer.yaml").write_text("format: 1\nname: my layer\n")
    assert main(["--project", str(root), "layers"]) == 2
    assert capsys.readouterr().err.startswith(f"{root}/layers/bad/layer.yaml:2:7: 'my layer' is not a layer name")


@pytest.mark.slow
def test_the_example_builds_for_x86_virtio(tmp_path):
    """The scaffold's program builds as written: layer create, layer add, build, and it is an x86-64 program."""
    project = copy_project(tmp_path / "proj", exclude=("tests", "bench", "docs", "layers", "build"))
    dl = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
    cache = os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(Path.home() / ".cache/buildsys/cache")
    env = {"BUILDSYS_DL_DIR": dl, "BUILDSYS_CACHE_DIR": cache, "BUILDSYS_BUILD_DIR": str(tmp_path / "build")}
    run_buildsys("layer", "create", tmp_path / "meta-mine", "--name", "mine", cwd=project, env=env, check=0)
    run_buildsys("layer", "add", "../meta-mine", cwd=project, env=env, check=0)
    assert "  - ../meta-mine\n" in (project / "buildsys.yaml").read_text()
    run_buildsys("build", "-j2", "mine-hello", cwd=project, env=env, check=0, timeout=600)
    [program] = (tmp_path / "build/packages").glob("*/usr/bin/mine-hello")
    assert program.read_bytes()[:4] == b"\x7fELF" and program.read_bytes()[18] == 62    # EM_X86_64
    shutil.rmtree(tmp_path / "build/work", ignore_errors=True)

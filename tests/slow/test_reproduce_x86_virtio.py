"""`buildsys reproduce` and `buildsys diff` on a real x86-virtio image: one full build, its rebuild from
nothing, and a second build that differs in one busybox config symbol (busybox and the image only)."""
import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import copy_project, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reproduce_and_diff_x86_virtio(tmp_path):
    # A copy of the project (no git, so no commit to check): it is edited below.
    project = copy_project(tmp_path / "project", exclude=("tests", "bench", "docs"))
    build = tmp_path / "build"
    # The first build may come from CI's kept cache (exact keys); `reproduce` rebuilds cold regardless.
    env = {"BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build / "cache")}
    run_buildsys("--project", project, "--build-dir", build, "build", env=env, check=0)
    deploy = build / "deploy/x86-virtio"
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert manifest["manifest_format"] == 2 and manifest["project"]["commit"] is None
    assert manifest["kernel_config"]["recipe"] == "linux"
    assert manifest["kernel_config"]["symbols"]["CONFIG_SQUASHFS"] == "y"
    core = next(layer for layer in manifest["project"]["layers"] if layer["name"] == "core")
    assert core["files"]["recipes/busybox/busybox.yaml"] == sha256(project / "recipes/busybox/busybox.yaml")
    assert "recipes/busybox/files/busybox.config" in core["files"]
    image = deploy / next(name for name in manifest["files"] if name.endswith(".img"))

    # from nothing, in another build dir, without the cache: the same bytes
    proc = run_buildsys("--project", project, "--build-dir", build, "reproduce", "--work-dir", tmp_path / "rebuild",
                        deploy, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert proc.stdout == f"reproduced: sha256 {sha256(image)}\n"
    assert not (tmp_path / "rebuild").exists()

    # a recipe value changed after the build: not the tree the image came from
    busybox = project / "recipes/busybox/busybox.yaml"
    original = busybox.read_text()
    assert 'env: {KCONFIG_NOTIMESTAMP: "1"}' in original
    busybox.write_text(original.replace('env: {KCONFIG_NOTIMESTAMP: "1"}', 'env: {KCONFIG_NOTIMESTAMP: "1", X: "1"}'))
    proc = run_buildsys("--project", project, "--build-dir", build, "reproduce", deploy, env=env, check=2)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"{busybox}: differs (sha256 "), line
    busybox.write_text(original)

    # one busybox config symbol off: a second build (busybox and the image run, the rest from the cache)
    config = project / "recipes/busybox/files/busybox.config"
    assert "CONFIG_SEQ=y\n" in config.read_text()
    config.write_text(config.read_text().replace("CONFIG_SEQ=y\n", "# CONFIG_SEQ is not set\n"))
    build2 = tmp_path / "build2"
    run_buildsys("--project", project, "--build-dir", build2, "build", env=env, check=0)
    proc = run_buildsys("diff", deploy, build2 / "deploy/x86-virtio", check=0)
    text = proc.stdout
    assert "recipes: 0 added, 0 removed, 2 changed" in text, text
    busybox_line = next(line for line in text.splitlines() if line.startswith("  ~ busybox "))
    assert "value 'config' changed" in busybox_line and busybox_line.endswith("output changed")
    assert any(line.startswith("  ~ image-minimal ") and "dependency busybox changed" in line
               for line in text.splitlines())
    assert any(line.startswith("  - /") and line.split()[1].endswith("/seq") for line in text.splitlines()), text
    assert any(line.startswith("  ~ /bin/busybox ") for line in text.splitlines()), text
    assert "kernel config: 0 symbols changed" in text
    assert "  ~ image-minimal-x86-virtio.img " in text
    assert "linux" not in text.split("root filesystem:")[0]

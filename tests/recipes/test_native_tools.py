"""The native host-tool recipes (xz, squashfs-tools, mtools) and toolchain-host resolve.

They are copied into a scratch project (with the tiny fixture's board) and
resolved by the real CLI; the build itself is proven by hand for now (see the
recipes' comments), until the fetcher can download them in a slow test.
"""
import shutil

import pytest

from conftest import FIXTURES, ROOT, run_buildsys, write_tree

RECIPES = ("xz", "squashfs-tools", "mtools", "toolchain-host")


@pytest.fixture
def project(tmp_path):
    root = write_tree(tmp_path / "p", {"buildsys.yaml": "format: 1\ndefault_board: tiny-x86\n"})
    shutil.copytree(FIXTURES / "tiny" / "board-configs", root / "board-configs")
    for name in RECIPES:
        shutil.copytree(ROOT / "recipes" / name, root / "recipes" / name)
    return root


def show(project, name):
    return run_buildsys("--project", project, "show", name, check=0).stdout


@pytest.mark.parametrize("name", ["xz-native", "squashfs-tools-native", "mtools-native"])
def test_native_only(project, name):
    out = show(project, name)
    assert "variants: [native]" in out
    assert "sha256: " in out
    proc = run_buildsys("--project", project, "show", name[: -len("-native")])
    assert proc.returncode == 2, proc.stdout + proc.stderr  # no target variant


def test_squashfs_tools_links_our_liblzma(project):
    out = show(project, "squashfs-tools-native")
    assert "# build depends: xz-native" in out
    assert "XZ_SUPPORT=1" in out and "GZIP_SUPPORT=0" in out and "COMP_DEFAULT=xz" in out
    assert "--disable-shared" in show(project, "xz-native")  # static: no runtime dependency


def test_mtools_minimal(project):
    out = show(project, "mtools-native")
    assert "--disable-floppyd" in out and "--without-x" in out
    assert "debian:mtools/" in out


def test_toolchain_host(project):
    out = show(project, "toolchain-host")
    assert "provides: [virtual/toolchain]" in out
    assert "class: toolchain" in out and "compiler: gcc" in out

"""A changed kernel config fragment rebuilds incrementally (the unpacked
source and object dir are kept, Kbuild recompiles what the change touches),
and the result is byte for byte the kernel a clean build gives.

One clean kernel build (config A), then two incremental ones: A -> B, and
B -> A with A's package removed and empty caches, so nothing can be
restored.  The last must equal the clean build of A.
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from buildsys.treedigest import tree_digest
from conftest import copy_project, run_buildsys, write_tree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")]

FRAGMENT_A = "# CONFIG_PRINTK_TIME is not set\n"
FRAGMENT_B = "CONFIG_PRINTK_TIME=y\n"


def ran(stderr: str) -> set[str]:
    return set(re.findall(r"^\[\d+/\d+\] (\S+?)(?: \(|$)", stderr, re.M))


def test_fragment_change_is_incremental_and_equals_clean_build(tmp_path):
    project = copy_project(tmp_path / "project", exclude=("tests", "bench", "layers"))
    fragment = tmp_path / "project/layers/kcfg/recipes/linux/files/bench.cfg"
    write_tree(tmp_path / "project/layers/kcfg", {
        "layer.yaml": "format: 1\nname: kcfg\npriority: 50\n",
        "recipes/linux/linux.append.yaml": "format: 1\nconfig_fragments+: [files/bench.cfg]\n",
        "recipes/linux/files/bench.cfg": FRAGMENT_A,
    })
    build = tmp_path / "build"
    cache = os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(tmp_path / "cache")
    env = {"BUILDSYS_BUILD_DIR": str(build), "BUILDSYS_CACHE_DIR": cache}
    # Clean build of A in this work dir (--force: never restored).
    first = run_buildsys("--project", project, "build", "-j2", "--force", "linux", "linux", env=env, check=0)
    assert "linux:compile" in ran(first.stderr)
    stamps = build / "work/x86-virtio/linux/stamps"
    sig_a = (stamps / "package").read_text()
    clean_a = tree_digest(build / "packages" / sig_a)

    # A -> B: no unpack, no patch; configure and compile in the kept object dir.
    fragment.write_text(FRAGMENT_B)
    empty = {"BUILDSYS_CACHE_DIR": str(tmp_path / "empty-cache-1")}
    second = run_buildsys("--project", project, "build", "-j2", "linux", env={**env, **empty}, check=0)
    tasks = ran(second.stderr)
    assert {"linux:configure", "linux:compile"} <= tasks and not {"linux:unpack", "linux:patch"} & tasks, \
        second.stderr
    config = (build / "packages" / (stamps / "package").read_text() / "boot/config").read_text()
    assert "CONFIG_PRINTK_TIME=y" in config

    # B -> A again, with A's package gone and no cache to restore it from:
    # rebuilt incrementally, it must be the clean build's bytes.
    for path in (build / "packages").glob(sig_a + "*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(build / "plans", ignore_errors=True)
    fragment.write_text(FRAGMENT_A)
    empty = {"BUILDSYS_CACHE_DIR": str(tmp_path / "empty-cache-2")}
    third = run_buildsys("--project", project, "build", "-j2", "linux", env={**env, **empty}, check=0)
    assert "linux:compile" in ran(third.stderr) and "linux:unpack" not in ran(third.stderr)
    assert (stamps / "package").read_text() == sig_a
    assert tree_digest(build / "packages" / sig_a) == clean_a

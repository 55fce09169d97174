"""crun (recipes/crun) with libseccomp and libcap, cross-built for x86-virtio
and qemu-arm64 together with the C library:

* the program is an ELF of the board's machine and interpreter, stripped,
  needing only libseccomp, libcap and libc;
* the packages hold run-time files only (no man pages, no libcrun, no tools);
* merged into one tree the way an image merges them, and without the
  development files the image leaves out (image.finalize's default
  rootfs_exclude), every library the program and its libraries need resolves
  there (the image's own closure, finalize.needed_closure), never on the host;
* on x86_64, `crun --version`, run with that tree as its root (bwrap), prints
  the recipe's version and +CAP +SECCOMP +EBPF: the project's glibc loads it.

Warm cache (BUILDSYS_TEST_CACHE_DIR holding crun, libseccomp, libcap, libc):
about 12 s for both boards.  Cold: 1 to 2.5 min per board on two shared
cores, crun's configure (15-30 s) and compile (20-100 s) being most of it.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from buildsys.image import elf, finalize
from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
ARCH = {"x86-virtio": "x86_64", "qemu-arm64": "aarch64"}
INTERP = {"x86-virtio": "/lib64/ld-linux-x86-64.so.2", "qemu-arm64": "/lib/ld-linux-aarch64.so.1"}
RECIPES = ("crun", "libseccomp", "libcap", "libc")
VERSION = str(yaml.safe_load((ROOT / "recipes/crun/crun.yaml").read_text())["version"])


def files(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*") if not p.is_dir() or p.is_symlink()}


@pytest.fixture(scope="module", params=list(ARCH))
def built(request, tmp_path_factory):
    """(board, {recipe: package tree}, the trees merged as an image root
    without development files, {path left out: pattern})."""
    board = request.param
    work = tmp_path_factory.mktemp(board)
    build_dir = work / "build"
    env = {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(work / "cache")}
    run_buildsys("--project", ROOT, "build", "-j2", "--board", board, *RECIPES, env=env, check=0, timeout=1200)
    # A build dir of one board: one package of each recipe.
    trees: dict[str, Path] = {}
    for meta in (build_dir / "packages").glob("*.json"):
        pn = json.loads(meta.read_text())["pn"]
        if pn in RECIPES:
            assert pn not in trees, f"two packages of {pn}"
            trees[pn] = meta.with_suffix("")
    assert set(trees) == set(RECIPES), trees
    root = work / "root"
    root.mkdir()
    for pn in RECIPES:
        shutil.copytree(trees[pn], root, symlinks=True, dirs_exist_ok=True)
    left_out = finalize.exclude(root, finalize.DEFAULT_EXCLUDE)
    return board, trees, root, left_out


def test_crun_is_a_stripped_program_of_the_board(built):
    board, trees, _, _ = built
    crun = trees["crun"] / "usr/bin/crun"
    info = elf.read(crun)
    assert info is not None and info.machine == elf.MACHINES[ARCH[board]] and info.bits == 64
    assert info.interp == INTERP[board]
    assert set(info.needed) == {"libseccomp.so.2", "libcap.so.2", "libc.so.6"}
    assert not info.runpath and not info.rpath
    readelf = shutil.which("readelf")
    if readelf:             # binutils reads any machine's section table
        sections = subprocess.run([readelf, "-S", "-W", str(crun)], check=True, capture_output=True,
                                  text=True).stdout
        assert ".symtab" not in sections and ".debug_info" not in sections
    print(f"{board}: crun {crun.stat().st_size} bytes")


def test_packages_hold_runtime_files_only(built):
    _, trees, _, _ = built
    assert files(trees["crun"]) == {"usr/bin/crun"}
    seccomp, cap = files(trees["libseccomp"]), files(trees["libcap"])
    # The development files stay in the packages (crun builds against them);
    # the image leaves them out (rootfs_exclude).  No tools, no man pages.
    assert {"usr/lib/libseccomp.so.2", "usr/include/seccomp.h"} <= seccomp
    assert {"usr/lib/libcap.so.2", "usr/include/sys/capability.h"} <= cap
    assert not [f for f in seccomp | cap if f.startswith(("usr/bin", "usr/sbin", "sbin", "usr/share"))]
    assert not [f for f in cap if "psx" in f]


def test_every_needed_library_resolves_in_the_image_root(built):
    board, _, root, left_out = built
    # What the image drops: the headers, .pc files and libfoo.so links crun was built with.
    assert {"/usr/include", "/usr/lib/libcap.so", "/usr/lib/libseccomp.so", "/usr/lib/pkgconfig"} <= set(left_out)
    elves = {path: info for path, _, info in elf.walk(root)}
    assert all(info.machine == elf.MACHINES[ARCH[board]] for info in elves.values()), elves
    used, missing = finalize.needed_closure(root, ARCH[board], ["/usr/bin/crun"],
                                            elf.preloaded(root, elves.values()))
    assert missing == []
    wanted = ["/usr/bin/crun", "/usr/lib/libcap.so.2", "/usr/lib/libseccomp.so.2", "/lib/libc.so.6", INTERP[board]]
    assert {elf.resolve(root, path) for path in wanted} <= used


def test_x86_crun_version_runs_on_the_projects_glibc(built):
    board, _, root, _ = built
    if board != "x86-virtio":
        pytest.skip("the aarch64 program runs in QEMU (image-container's test)")
    bwrap = shutil.which("bwrap")
    assert bwrap, "buildsys builds in bwrap: it is there wherever this test built anything"
    # The merged packages are the whole root: no host library can stand in.
    # crun makes its state dir (/run/crun) even for --version ("Failed to get
    # state directory" on a read-only root): the image needs a writable /run.
    for mountpoint in ("proc", "dev", "run"):
        (root / mountpoint).mkdir(exist_ok=True)
    proc = subprocess.run([bwrap, "--ro-bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run",
                           "--unshare-all", "--die-with-parent", "/usr/bin/crun", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"crun version {VERSION}", proc.stdout
    assert "rundir: /run/crun" in lines
    features = lines[-1].split()
    for want in ("+CAP", "+SECCOMP", "+EBPF", "+YAJL"):
        assert want in features, proc.stdout
    assert "+SYSTEMD" not in features and "+CRIU" not in features

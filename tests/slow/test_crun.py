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
  the recipe's version and +CAP +SECCOMP +EBPF: the project's glibc loads it;
* on x86_64 as root, `crun run` runs a container (namespaces, pivot_root into
  a copy of that root) whose process is crun --version, and a seccomp
  filter in config.json that fails write() silences it.  unshare(1) gives it
  a private mount namespace with a cgroup2 /sys/fs/cgroup (crun refuses a
  hybrid host); the host's mounts are not touched.

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


def _run_container(root: Path, bundle: Path, config: dict, name: str) -> subprocess.CompletedProcess:
    """`crun run` of ``bundle`` with ``config``, crun itself loaded from the
    merged root by its own loader, in a mount namespace whose /sys/fs/cgroup
    is a cgroup2 mount (crun refuses a hybrid v1/v2 host).  No cgroup is made
    (--cgroup-manager=disabled): the host's hierarchy is not ours to write."""
    (bundle / "config.json").write_text(json.dumps(config))
    crun = (f"{root}/lib64/ld-linux-x86-64.so.2 --library-path {root}/lib:{root}/usr/lib {root}/usr/bin/crun"
            f" --root {bundle.parent}/state --cgroup-manager=disabled")
    return subprocess.run(["unshare", "--mount", "sh", "-c",
                           f"mount -t cgroup2 none /sys/fs/cgroup || exit 77; exec {crun} run -b {bundle} {name}"],
                          capture_output=True, text=True, timeout=60)


def test_x86_crun_runs_a_container_with_a_seccomp_filter(built, tmp_path):
    """Namespaces, pivot_root, capabilities and a seccomp filter (libseccomp)
    on the build host's kernel: the container's process is crun --version
    from the same root; a filter making write() fail silences it."""
    board, _, root, _ = built
    if board != "x86-virtio":
        pytest.skip("the aarch64 program runs in QEMU (image-container's test)")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("crun run needs root and unshare(1)")
    bundle = tmp_path / "bundle"
    shutil.copytree(root, bundle / "rootfs", symlinks=True)
    for mountpoint in ("proc", "dev", "sys", "run", "tmp"):
        (bundle / "rootfs" / mountpoint).mkdir(exist_ok=True)
    spec = subprocess.run([f"{root}/lib64/ld-linux-x86-64.so.2", "--library-path", f"{root}/lib:{root}/usr/lib",
                           f"{root}/usr/bin/crun", "spec"], cwd=bundle, capture_output=True, text=True)
    assert spec.returncode == 0, spec.stderr
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(args=["/usr/bin/crun", "--version"], terminal=False)
    config["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]})
    plain = _run_container(root, bundle, config, "plain")
    if plain.returncode == 77:
        pytest.skip(f"cannot mount cgroup2 here: {plain.stderr.strip()}")
    assert plain.returncode == 0 and plain.stdout.startswith(f"crun version {VERSION}\n"), plain
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                  "syscalls": [{"names": ["write", "writev"], "action": "SCMP_ACT_ERRNO",
                                                "errnoRet": 1}]}
    filtered = _run_container(root, bundle, config, "filtered")
    assert filtered.returncode == 0 and filtered.stdout == "", filtered

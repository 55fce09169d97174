"""The board layers without building: per-board kernel choices come from
appends and overrides (and `buildsys show` says where), the hard-coded
PARTUUIDs match the disk layouts, and the core works without the layers."""
import re
import subprocess
from pathlib import Path

import pytest

from buildsys.image import disk, gpt, mbr
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board
from conftest import ROOT, copy_project, run_buildsys

BOARDS = ("qemu-arm64", "raspberrypi3", "raspberrypi4", "jetson-agx-orin-devkit", "jetson-orin-nano-devkit")
# The Ethernet fragment each layer board adds to linux-base (image-base's kernel).
ETHERNET = {"raspberrypi3": "net-raspberrypi3.cfg", "raspberrypi4": "net-raspberrypi4.cfg",
            "jetson-agx-orin-devkit": "tegra234-pcie-r8169.cfg", "jetson-orin-nano-devkit": "tegra234-pcie-r8169.cfg"}


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT)


@pytest.mark.parametrize("board", BOARDS)
def test_board_resolves_to_an_aarch64_cross_build(project, board):
    b = load_board(project, board)
    resolver = Resolver(project, b)
    linux = resolver.recipe("linux")
    assert b.arch == "aarch64" and b.cross_prefix == "aarch64-linux-gnu-"
    assert linux.get("kernel_image") == "Image"
    names = [Path(f.path).name for f in linux.get("config_fragments")]
    assert names[:3] == ["base.cfg", "squashfs-xz.cfg", "arm64.cfg"]
    table, _, parts = disk.parse_layout(b.get("disk"), board)
    assert sum(p.filesystem == "squashfs" for p in parts) == 1


@pytest.mark.parametrize("board", BOARDS)
def test_built_in_cmdline_names_the_boards_root(project, board):
    """The fragments hard-code PARTUUIDs; they must be the ones the image
    class derives (it checks again at build time)."""
    b = load_board(project, board)
    linux = Resolver(project, b).recipe("linux")
    table, _, parts = disk.parse_layout(b.get("disk"), board)
    root = next(i for i, p in enumerate(parts) if p.filesystem == "squashfs")
    want = mbr.partuuid(mbr.disk_signature(board), root + 1) if table == "mbr" else \
        str(gpt.partition_guid(board, parts[root].name))
    for frag in linux.get("config_fragments"):
        m = re.search(r'^CONFIG_CMDLINE=".*root=PARTUUID=([0-9a-f-]+)', Path(frag.path).read_text(), re.M)
        if m:
            assert m.group(1) == want, frag.path



@pytest.mark.parametrize("board", BOARDS)
def test_every_kernel_file_the_disk_takes_is_built(project, board):
    """A dtb the layout copies must be one the kernel recipe builds (else the
    image fails late, after the kernel, with "no such file")."""
    b = load_board(project, board)
    linux = Resolver(project, b).recipe("linux")
    built = {linux.get("kernel_image")} | {Path(d).name for d in linux.get("dtbs")}
    _, _, parts = disk.parse_layout(b.get("disk"), board)
    taken = {src.split(":", 1)[1].removeprefix("boot/") for p in parts for src in p.files.values()
             if src.startswith("virtual/kernel:")}
    assert taken and taken <= built, taken - built


def test_orin_nano_moves_to_6_12_and_the_agx_orin_stays(project):
    core = Resolver(project, load_board(project, "qemu-arm64")).recipe("linux")
    nano = Resolver(project, load_board(project, "jetson-orin-nano-devkit")).recipe("linux")
    agx = Resolver(project, load_board(project, "jetson-agx-orin-devkit")).recipe("linux")
    assert nano.get("version") == "6.12.107"
    assert [s.url for s in nano.get("sources")] == ["debian:linux/linux_6.12.107.orig.tar.xz"]
    assert nano.get("dtbs") == ["nvidia/tegra234-p3768-0000+p3767-0005.dtb"]
    # Same license texts in 6.12 (checked by sha256 when it is unpacked).
    assert nano.get("license_files") == core.get("license_files")
    assert agx.get("version") == core.get("version") and agx.get("sources") == core.get("sources")
    assert agx.get("dtbs") == ["nvidia/tegra234-p3737-0000+p3701-0000.dtb"]


@pytest.mark.parametrize("board", sorted(ETHERNET))
def test_linux_base_is_the_boards_kernel_plus_its_ethernet(project, board):
    """linux-base extends linux, so the board's appends of linux (fragments,
    dtbs, the Nano's version) reach it; the layer's linux-base append adds the
    Ethernet driver, and linux itself (image-minimal's) does not get it."""
    resolver = Resolver(project, load_board(project, board))
    linux, base = resolver.recipe("linux"), resolver.recipe("linux-base")
    for key in ("version", "sources", "dtbs", "kernel_image"):
        assert base.get(key) == linux.get(key), key
    minimal = [f.path for f in linux.get("config_fragments")]
    fragments = [f.path for f in base.get("config_fragments")]
    assert set(minimal) <= set(fragments)
    names = [Path(f).name for f in fragments]
    assert names[-1] == ETHERNET[board] and ETHERNET[board] not in [Path(f).name for f in minimal]
    # Every Ethernet fragment line is a plain "=y": the kernel class checks it
    # survives into .config, and a module would need an initramfs we lack.
    lines = [line for line in Path(fragments[-1]).read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all(re.fullmatch(r"CONFIG_[A-Z0-9_]+=y", line) for line in lines), lines

def test_show_names_the_append_and_its_lines(tmp_path):
    # Its own build dir: the checkout's build/ (parse cache) is the user's, not the tests'.
    proc = run_buildsys("--project", ROOT, "show", "linux", "--board", "raspberrypi4",
                        env={"BUILDSYS_BUILD_DIR": str(tmp_path / "build")}, check=0)
    out = proc.stdout
    assert "# append: layers/raspberrypi/recipes/linux/linux.append.yaml" in out
    assert re.search(r"dtbs: \[broadcom/bcm2711-rpi-4-b.dtb\]\n\s+# appended at "
                     r"layers/raspberrypi/recipes/linux/linux.append.yaml:\d+ \[board:raspberrypi4\]", out)
    assert re.search(r"appended at recipes/linux/linux.yaml:\d+ \[arch:aarch64\]", out)


def test_core_works_without_the_board_layers(tmp_path):
    # Only the project's own files: after `make run` the checkout's build/ holds
    # dangling links into the sandbox (and gigabytes nobody needs here).
    copy = copy_project(tmp_path / "project", exclude=("layers", "tests"))
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build")}
    proc = run_buildsys("--project", copy, "show", "linux", "--board", "x86-virtio", env=env, check=0)
    assert "# append:" not in proc.stdout
    assert "kernel_image: bzImage" in proc.stdout
    proc = run_buildsys("--project", copy, "recipes", env=env, check=0)
    assert "rpi-firmware" not in proc.stdout
    assert run_buildsys("--project", copy, "show", "linux", "--board", "raspberrypi3", env=env).returncode == 2
    # The core's own arm64 board stays.
    run_buildsys("--project", copy, "show", "linux", "--board", "qemu-arm64", env=env, check=0)


@pytest.mark.parametrize("with_git", [True, False])
def test_the_project_copy_leaves_build_output_behind(tmp_path, with_git):
    """What the copy above relies on: after `make run` the checkout has build/
    with links into the sandbox's /build (dangling here), a held .lock and a
    venv; the copy takes the project's own files only, with or without git."""
    src = tmp_path / "src"
    (src / "recipes/a/files").mkdir(parents=True)
    (src / "recipes/a/a.yaml").write_text("format: 1\nname: a\n")
    (src / "recipes/a/files/link.txt").symlink_to("a-target.txt")      # a project's own dangling link: skipped
    (src / "build/work/a/obj").mkdir(parents=True)
    (src / "build/work/a/obj/source").symlink_to("/build/src/nowhere")
    (src / "build/.lock").write_text("")
    (src / "build/deploy").mkdir()
    (src / "build/deploy/image.img").write_bytes(b"\0" * 1024)
    (src / ".venv/bin").mkdir(parents=True)
    (src / ".venv/bin/python").symlink_to("/nonexistent/python3")
    (src / "buildsys.yaml").write_text("format: 1\n")
    (src / ".gitignore").write_text("build/\n.venv/\n")
    if with_git:
        subprocess.run(["git", "init", "-q", str(src)], check=True)
        subprocess.run(["git", "-C", str(src), "add", "buildsys.yaml", ".gitignore"], check=True)
    copy = copy_project(tmp_path / "copy", root=src)
    files = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    assert files == [".gitignore", "buildsys.yaml", "recipes", "recipes/a", "recipes/a/a.yaml"]

"""`buildsys size` and size_budget: the compression estimate, per-package sizes
of hand-made package trees, the budget's failure message, the SVG (well-formed
XML), the PNG through graphviz, and the command on a built tiny image."""
import argparse
import json
import os
import random
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from buildsys import size
from buildsys.classes.base import Param
from buildsys.classes.script import Script
from buildsys.cli import build_parser
from buildsys.commands import COMMANDS
from buildsys.errors import BuildError
from buildsys.image.disk import PartSpec
from buildsys.schema import Size
from buildsys.workspace import Workspace

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
SVG = "{http://www.w3.org/2000/svg}"


def noise(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def tree(root: Path, files: dict[str, bytes], links: dict[str, str] = {}) -> Path:  # noqa: B006
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return root


# --- the estimate ---------------------------------------------------------------------------
def test_estimate_compressed():
    zeros = size.estimate_compressed([bytes(1 << 20)])
    assert 0 < zeros < (1 << 20) // 100                # 8 blocks of zeros: a few hundred bytes
    rand = noise(300_000)
    assert size.estimate_compressed([rand]) == len(rand)   # incompressible blocks are stored as they are
    text = b"the quick brown fox jumps over the lazy dog\n"
    small = [text * 3 for _ in range(1000)]             # 1000 small files: their tails share fragment blocks
    packed = size.estimate_compressed(small)
    alone = sum(size.estimate_compressed([f]) for f in small)
    assert packed < alone // 20
    assert size.estimate_compressed(small, compressor="gzip") > 0
    assert size.estimate_compressed([]) == 0


def test_package_sizes_of_hand_made_trees(tmp_path):
    big = tree(tmp_path / "big", {"usr/lib/libbig.so": bytes(1 << 20), "usr/share/a": b"a" * 10})
    busy = tree(tmp_path / "busy", {"bin/busybox": noise(200_000)},
                {"bin/sh": "busybox", "bin/ls": "busybox", "bin/planted": "/etc/passwd"})
    sizes, files = size.package_sizes([("big", big), ("busy", busy)])
    by = {p.pn: p for p in sizes}
    assert by["big"].files == 2 and by["big"].links == 0 and by["big"].installed == (1 << 20) + 10
    assert by["busy"].files == 1 and by["busy"].links == 3 and by["busy"].installed == 200_000
    # the random binary takes more room compressed than a megabyte of zeros: listed first
    assert [p.pn for p in sizes] == ["busy", "big"]
    assert by["busy"].compressed >= 200_000 and by["big"].compressed < 10_000
    # largest files first; links are not files (and /etc/passwd was not read)
    assert [(f.path, f.size, f.package) for f in files] == [
        ("/usr/lib/libbig.so", 1 << 20, "big"), ("/bin/busybox", 200_000, "busy"), ("/usr/share/a", 10, "big")]


# --- the budget ---------------------------------------------------------------------------
def report(tmp_path: Path, disk: int, budget: int | None) -> size.Report:
    sizes, files = size.package_sizes([("busybox", tree(tmp_path / "bb", {"bin/busybox": noise(300_000)})),
                                       ("base-files", tree(tmp_path / "bf", {"etc/passwd": b"root:x:0:0\n"}))])
    kernel = size.FileSize("/EFI/BOOT/BOOTX64.EFI", 900_000, "linux", "esp", "boot/bzImage")
    return size.Report("image-minimal", "x86-virtio", sizes, files, [kernel], [kernel],
                       disk=("image-minimal-x86-virtio.img", disk),
                       rootfs=("image-minimal-x86-virtio.squashfs", 320_000), budget=budget)


def test_over_budget_names_the_largest_contributors(tmp_path):
    r = report(tmp_path, 1_300_000, 1 << 20)
    with pytest.raises(BuildError) as err:
        size.check_budget(r, "set at image-minimal.yaml:9:14")
    lines = str(err.value).splitlines()
    assert lines[0] == ("image-minimal-x86-virtio.img is 1.24 MiB (1300000 bytes), over its size_budget of "
                        "1.00 MiB (1048576 bytes, set at image-minimal.yaml:9:14) by 251424 bytes; "
                        "the largest contributors:")
    assert lines[1] == "   878.9 KiB  esp:/EFI/BOOT/BOOTX64.EFI (linux boot/bzImage)"
    assert lines[2].endswith("rootfs: busybox (293.0 KiB installed, compressed estimate)")
    assert "rootfs: base-files" in lines[3]
    assert lines[-1].startswith("  largest files: /bin/busybox 293.0 KiB (busybox), /etc/passwd 11 B")
    size.check_budget(report(tmp_path / "2", 1 << 20, 1 << 20))      # at the budget: fine
    size.check_budget(report(tmp_path / "3", 5 << 20, None))         # no budget: fine


def test_size_budget_is_a_size_setting():
    from buildsys.classes.image import Image

    setting = Image.params["size_budget"]
    assert isinstance(setting, Size) and setting.default is None
    assert "disk image" in setting.doc


class BudgetImage(Script):
    """A stand-in with the image class's parameters, for a resolved recipe."""

    name = "test-size-budget-image"
    installs_packages = True
    params = {"packages": Param("list", [], ""), "size_budget": Size(None, ""),
              "rootfs_compressor": Param("str", "xz", ""), "rootfs_block_size": Param("int", 131072, "")}


class PackagesContext:
    """What the image class's install step hands check_image_budget: the
    recipe, the board, and the package trees (here: hand-made ones)."""

    def __init__(self, recipe, board, trees):
        self.recipe, self.board, self.trees = recipe, board, trees

    def packages(self, names):
        return [(r, t) for r, t in self.trees if r.name in names or f"virtual/{r.name}" in names]


def test_the_image_class_check_on_real_files(tiny, tmp_path):
    (tiny / "recipes/img.yaml").write_text("format: 1\nname: img\nversion: '1'\nclass: test-size-budget-image\n"
                                           "packages: [hello]\nsize_budget: 64KiB\n")
    ws = Workspace(argparse.Namespace(project=str(tiny), build_dir=str(tmp_path / "b"), board=None))
    img, hello = ws.resolver.recipe("img"), ws.resolver.recipe("hello")
    kernel = ws.resolver.recipe("libgreet")        # stands in for the kernel package: a tree with boot/
    trees = [(hello, tree(tmp_path / "hello", {"usr/bin/hello": noise(40_000)})),
             (kernel, tree(tmp_path / "kernel", {"boot/bzImage": noise(30_000, 2)}))]
    ctx = PackagesContext(img, ws.board, trees)
    specs = [PartSpec("esp", "esp", "vfat", files={"/EFI/BOOT/BOOTX64.EFI": "libgreet:boot/bzImage"}),
             PartSpec("root", "root", "squashfs")]
    disk, squash = tmp_path / "img-tiny-x86.img", tmp_path / "img-tiny-x86.squashfs"
    squash.write_bytes(bytes(45_056))
    disk.write_bytes(bytes(80_000))
    with pytest.raises(BuildError) as err:
        size.check_image_budget(ctx, specs, disk, squash)
    text = str(err.value)
    assert text.startswith("img-tiny-x86.img is 78.1 KiB (80000 bytes), over its size_budget of 64.0 KiB (65536 "
                           f"bytes, set at {tiny / 'recipes/img.yaml'}:6:14) by 14464 bytes")
    assert "rootfs: hello (39.1 KiB installed, compressed estimate)" in text
    assert "esp:/EFI/BOOT/BOOTX64.EFI (libgreet boot/bzImage)" in text
    disk.write_bytes(bytes(60_000))
    size.check_image_budget(ctx, specs, disk, squash)       # under the budget


# --- pictures -------------------------------------------------------------------------------
def test_svg_is_well_formed_and_escapes_names(tmp_path):
    r = report(tmp_path, 1_300_000, 1 << 20)
    r.boot.append(size.FileSize("/a&b<c>.dtb", 1000, "linux", "esp", "boot/a&b<c>.dtb"))
    root = ET.fromstring(size.svg(r))
    assert root.tag == f"{SVG}svg"
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "esp:/a&b<c>.dtb (linux)" in labels and "busybox" in labels
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    # the disk, two boot files, and two bars (installed, compressed) per package
    assert len(bars) == 1 + 2 + 2 * 2
    widths = {rect.find(f"{SVG}title").text: float(rect.get("width")) for rect in bars}
    assert widths["disk image-minimal-x86-virtio.img: 1300000 bytes (disk)"] == 420      # the longest bar


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz")
def test_png_through_graphviz(tmp_path):
    import subprocess

    png = subprocess.run(["dot", "-Tpng"], input=size.dot(report(tmp_path, 1_300_000, None)).encode(),
                         capture_output=True, check=True).stdout
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 300 and height > 100


# --- the command on a built image -------------------------------------------------------------
class SizeImage(Script):
    name = "test-size-image"
    installs_packages = True
    params = {"packages": Param("list", [], "recipes the image installs")}


@needs_bwrap
def test_size_command_on_a_built_image(tiny, tmp_path, monkeypatch, capsys):
    (tiny / "recipes/tiny-image.yaml").write_text(
        "format: 1\nname: tiny-image\nversion: '1'\nlicense: MIT\nclass: test-size-image\n"
        "packages: [hello, libgreet]\nsteps:\n  install: |\n    mkdir -p ${destdir}\n"
        "    head -c 5000 /dev/zero > ${destdir}/tiny-image.img\n")
    for key, value in {"BUILDSYS_BUILD_DIR": tmp_path / "build", "BUILDSYS_DL_DIR": tmp_path / "dl",
                       "BUILDSYS_CACHE_DIR": tmp_path / "cache", "BUILDSYS_OFFLINE": "1"}.items():
        monkeypatch.setenv(key, str(value))

    def run(*argv):
        return COMMANDS["size"].run(build_parser().parse_args(["--project", str(tiny), "size", *argv]))

    assert run("tiny-image", "--svg", str(tmp_path / "size.svg")) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "tiny-image for tiny-x86"
    assert lines[1].split()[:3] == ["disk", "image", "tiny-image.img"] and "4.9 KiB" in lines[1]
    table = {line.split()[0]: line.split() for line in lines if line.startswith("  ") and len(line.split()) >= 6}
    manifest = json.loads((tmp_path / "build/deploy/tiny-x86/manifest.json").read_text())
    rootfs = {f["path"]: f for f in manifest["rootfs"]}
    assert table["hello"][1:3] == ["1", "0"] and table["libgreet"][1:3] == ["2", "0"]
    assert f"/usr/bin/hello {size.human(rootfs['/usr/bin/hello']['size'])} hello" in " ".join(out.split())
    assert "largest files in the root filesystem" in out
    ET.parse(tmp_path / "size.svg")

    # up to date: the plan cache answers the build, the report is the same
    assert run("tiny-image") == 0
    assert capsys.readouterr().out == out
    with pytest.raises(Exception, match="'hello' is not an image"):
        run("hello")

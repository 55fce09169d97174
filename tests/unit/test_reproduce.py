"""Manifest format 2 and `buildsys reproduce`, on the tiny fixture with a stand-in image class.

The stand-in image (a script class that installs packages) makes a squashfs of
its sysroot with the host's mksquashfs and a fake disk file; a fake kernel
recipe provides virtual/kernel with a boot/config.  That is enough for a real
deploy dir with a format 2 manifest, in seconds instead of minutes."""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from buildsys import engine, reproduce, treedigest
from buildsys.classes.base import Param
from buildsys.classes.script import Script
from buildsys.errors import UserError
from buildsys.provenance import config_symbols, git_state
from buildsys.workspace import Workspace
from conftest import run_buildsys

needs_tools = pytest.mark.skipif(shutil.which("bwrap") is None or shutil.which("mksquashfs") is None,
                                 reason="needs bubblewrap and squashfs-tools")


class ReproImage(Script):
    """A stand-in image class: deploys what its own install step writes."""

    name = "test-reproduce-image"
    installs_packages = True
    params = {"packages": Param("list", [], "recipes the image installs")}


IMAGE = """format: 1
name: tiny-image
version: "1"
license: MIT
class: test-reproduce-image
packages: [hello, virtual/kernel]
steps:
  install: |
    mkdir -p ${destdir}
    mksquashfs /build/sysroot ${destdir}/tiny-image.squashfs -all-root -noappend -quiet -no-progress -processors 1
    cat /build/sysroot/usr/bin/hello > ${destdir}/tiny-image.img
"""

KERNEL = """format: 1
name: fake-kernel
version: "6.1"
license: GPL-2.0-only
class: script
toolchain: false
provides: [virtual/kernel]
sources:
  - file: files/config
steps:
  install: |
    install -D -m 0644 config ${destdir}/boot/config
"""

CONFIG = """#
# Linux/x86 6.1 Kernel Configuration
#
CONFIG_SQUASHFS=y
CONFIG_SQUASHFS_XZ=y
# CONFIG_MODULES is not set
CONFIG_CMDLINE="console=ttyS0"
"""

NOISY = """format: 1
name: noisy
version: "1"
license: MIT
class: script
toolchain: false
steps:
  install: |
    mkdir -p ${destdir}/etc
    echo stable > ${destdir}/etc/stable
    head -c 16 /dev/urandom | od -An -tx1 > ${destdir}/etc/noise
"""


def image_project(tiny: Path, packages=("hello", "virtual/kernel")) -> Path:
    """The tiny fixture plus the stand-in image and kernel, the image as the board's default."""
    (tiny / "recipes/tiny-image.yaml").write_text(IMAGE.replace("[hello, virtual/kernel]",
                                                                f"[{', '.join(packages)}]"))
    (tiny / "recipes/fake-kernel/files").mkdir(parents=True)
    (tiny / "recipes/fake-kernel/fake-kernel.yaml").write_text(KERNEL)
    (tiny / "recipes/fake-kernel/files/config").write_text(CONFIG)
    (tiny / "recipes/noisy.yaml").write_text(NOISY)
    board = tiny / "board-configs/tiny-x86.yaml"
    board.write_text(board.read_text().replace("default_image: hello", "default_image: tiny-image")
                     .replace("preferred_providers:\n", "preferred_providers:\n  virtual/kernel: fake-kernel\n"))
    return tiny


def env_for(tmp_path: Path, **extra) -> dict:
    return dict(os.environ, BUILDSYS_DL_DIR=str(tmp_path / "dl"), BUILDSYS_CACHE_DIR=str(tmp_path / "cache"),
                BUILDSYS_OFFLINE="1", **extra)


def workspace(project: Path, build: Path, env: dict, board=None) -> Workspace:
    return Workspace(argparse.Namespace(project=str(project), build_dir=str(build), board=board), env)


def build_image(project: Path, build: Path, env: dict) -> tuple[Path, engine.BuildResult]:
    result = engine.build(workspace(project, build, env), [], engine.BuildOptions(jobs=2))
    assert result.ok, result
    return result.deployed[0], result


def run_reproduce(project: Path, deploy: Path, env: dict, **options) -> tuple[int, str]:
    path = reproduce.manifest_path(deploy)
    manifest = reproduce.load_manifest(path, need_format=2)
    ws = workspace(project, deploy.parent.parent, env, board=manifest["board"])
    out = io.StringIO()
    status = reproduce.reproduce(ws, path, manifest, reproduce.Options(jobs=2, **options), out)
    return status, out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- tree digests ---------------------------------------------------------------------------
def test_tree_digest_covers_paths_types_modes_links_and_content(tmp_path):
    def make(root: Path) -> Path:
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/tool").write_bytes(b"\x7fELF tool")
        (root / "usr/bin/tool").chmod(0o755)
        (root / "etc").mkdir()
        (root / "etc/conf").write_text("a=1\n")
        os.symlink("tool", root / "usr/bin/alias")
        return root

    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    os.utime(b / "etc/conf", (1, 1))                      # times are not content
    assert treedigest.tree_digest(a) == treedigest.tree_digest(b)
    base = treedigest.tree_digest(a)
    (b / "etc/conf").chmod(0o600)
    assert treedigest.tree_digest(b) != base
    (b / "etc/conf").chmod(0o644)
    os.unlink(b / "usr/bin/alias")
    os.symlink("other", b / "usr/bin/alias")
    assert treedigest.tree_digest(b) != base
    os.unlink(b / "usr/bin/alias")
    os.symlink("tool", b / "usr/bin/alias")
    (b / "etc/conf").write_text("a=2\n")                   # same size, other content
    assert treedigest.tree_digest(b) != base
    (b / "etc/new").write_text("")
    changes = treedigest.compare(treedigest.entries(a), treedigest.entries(b))
    assert [(c.path, c.what) for c in changes] == [("etc/conf", "changed"), ("etc/new", "added")]
    line = changes[0].line()
    assert line.startswith("  changed  etc/conf  4 bytes sha256 ") and "->" in line
    # a link to a directory is a link, never walked into
    os.symlink("/etc", b / "hostetc")
    entry = next(e for e in treedigest.entries(b) if e.path == "hostetc")
    assert entry.kind == "link" and entry.target == "/etc"
    assert not any(e.path.startswith("hostetc/") for e in treedigest.entries(b))


def test_config_symbols():
    assert config_symbols(CONFIG) == {"CONFIG_CMDLINE": '"console=ttyS0"', "CONFIG_MODULES": None,
                                      "CONFIG_SQUASHFS": "y", "CONFIG_SQUASHFS_XZ": "y"}


def test_dependency_order_and_sigdata_diff():
    def entry(name, deps, **values):
        return {"name": name, "tree_sha256": name, "signature": name,
                "sigdata": {"deps": {d: "s" for d in deps}, "values": values}}

    manifest = {"recipes": [entry("image", ["busybox", "linux"]), entry("linux", ["toolchain"]),
                            entry("busybox", ["toolchain"]), entry("toolchain", [])], "files": {}}
    assert reproduce.dependency_order(manifest) == ["toolchain", "busybox", "linux", "image"]
    old = {"values": {"env": {"A": "1"}, "version": "1.0"}, "deps": {"x": "1" * 64}}
    new = {"values": {"env": {"A": "2", "B": "3"}, "version": "1.0"}, "deps": {"x": "1" * 64}}
    assert reproduce.sigdata_diff(old, new) == [("values.env.A", "1", "2"),
                                                ("values.env.B", reproduce.ABSENT, "3")]
    lines = reproduce.format_sigdata_diff(old, new)
    assert "manifest" in lines[0] and "rebuild" in lines[0]
    assert lines[2].split() == ["values.env.B", "(absent)", '"3"']
    assert "not deterministic" in reproduce.format_sigdata_diff(old, old)[0]


def test_compare_names_the_first_recipe_in_dependency_order():
    def manifest(trees, files):
        return {"recipes": [{"name": n, "tree_sha256": t, "signature": n,
                             "sigdata": {"deps": {"lib": "s"} if n == "app" else {}}} for n, t in trees.items()],
                "files": {n: {"sha256": s, "size": 1} for n, s in files.items()}}

    old = manifest({"app": "1", "lib": "1"}, {"x.img": "a"})
    assert reproduce.compare(old, old).same
    cmp = reproduce.compare(old, manifest({"app": "2", "lib": "2"}, {"x.img": "b"}))
    assert cmp.recipes == ["lib", "app"] and cmp.files == ["x.img"] and not cmp.same
    cmp = reproduce.compare(old, manifest({"app": "1"}, {"x.img": "a", "y": "c"}))
    assert cmp.only_old == ["lib"] and cmp.files == ["y"]


# --- the manifest ---------------------------------------------------------------------------
@needs_tools
def test_manifest_format_2_from_a_tiny_build(tiny, tmp_path):
    project = image_project(tiny)
    deploy, result = build_image(project, tmp_path / "build", env_for(tmp_path))
    session = result.session
    assert session is not None
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert manifest["manifest_format"] == 2
    # the keys format 1 had are still there
    assert {"image", "board", "arch", "version", "signature", "toolchain", "recipes", "files"} <= set(manifest)
    names = [r["name"] for r in manifest["recipes"]]
    assert names == ["fake-kernel", "hello", "libgreet", "tiny-image", "toolchain-host"]
    for entry in manifest["recipes"]:
        pn = entry["name"]
        assert entry["sigdata"] == json.loads(json.dumps(session.sigdata[pn]))
        assert entry["tree_sha256"] == treedigest.tree_digest(session.package_dir(pn))
        assert entry["archive_sha256"] == session.cache.get_meta(session.sigs[pn])["sha256"]
        assert entry["layer"] == "core"
    project_record = manifest["project"]
    assert project_record["commit"] is None and project_record["dirty"] is None      # not a git checkout
    assert project_record["settings"] == {"source_date_epoch": 1700000000}
    [core] = project_record["layers"]
    assert core["name"] == "core" and core["priority"] == 0 and core["path"] == "."
    read = ["board-configs/tiny-x86.yaml", "buildsys.yaml", "recipes/fake-kernel/fake-kernel.yaml",
            "recipes/fake-kernel/files/config", "recipes/hello/files/hello.c", "recipes/hello/hello.yaml",
            "recipes/libgreet/files/Makefile", "recipes/libgreet/files/greet.c", "recipes/libgreet/files/greet.h",
            "recipes/libgreet/libgreet.yaml", "recipes/tiny-image.yaml", "recipes/toolchain-host/toolchain-host.yaml"]
    assert sorted(core["files"]) == read                     # not noisy.yaml: the image does not need it
    assert all(core["files"][rel] == sha256(project / rel) for rel in read)
    assert manifest["kernel_config"] == {"recipe": "fake-kernel", "symbols": config_symbols(CONFIG)}
    # path-free: nothing names the project or build dir
    text = (deploy / "manifest.json").read_text()
    assert str(tmp_path) not in text


def test_git_state(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a").write_text("a")
    subprocess.run([*git, "add", "a"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "b").write_text("b")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}


# --- reproduce ------------------------------------------------------------------------------
@needs_tools
def test_reproduce_rebuilds_from_nothing_and_finds_the_same_bytes(tiny, tmp_path):
    project = image_project(tiny)
    env = env_for(tmp_path)
    deploy, _ = build_image(project, tmp_path / "build", env)
    manifest = json.loads((deploy / "manifest.json").read_text())
    work = tmp_path / "rebuild"
    status, out = run_reproduce(project, deploy, env, work_dir=work)
    assert status == 0, out
    assert out == f"reproduced: sha256 {sha256(deploy / 'tiny-image.img')}\n"
    assert out.split()[-1] == manifest["files"]["tiny-image.img"]["sha256"]
    assert not work.exists()                                # removed when it reproduced
    # the rebuild used a fresh cache of its own, not the configured one
    entries = sorted(p.name for p in (tmp_path / "cache").rglob("*.json"))
    assert len(entries) == len(manifest["recipes"])

    # a file the build did not read, added since: a new append
    append = project / "recipes/hello/hello.append.yaml"
    append.write_text("format: 1\nenv: {GREETING: hi}\n")
    with pytest.raises(UserError) as exc:
        run_reproduce(project, deploy, env)
    assert str(exc.value).startswith(f"{append}: read by a build now, but not by the image's build")
    append.unlink()

    # through the CLI: exit 2 on bad input before any work, here a changed file
    hello = project / "recipes/hello/files/hello.c"
    hello.write_text(hello.read_text() + "/* changed */\n")
    proc = run_buildsys("--project", project, "--build-dir", tmp_path / "build", "reproduce", deploy, env=env)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"{hello}: differs (sha256 ") and "not the file the image was built from" in line
    with pytest.raises(UserError, match="differs"):
        run_reproduce(project, deploy, env)


@needs_tools
def test_reproduce_names_the_first_recipe_that_differs(tiny, tmp_path):
    project = image_project(tiny, packages=("hello", "noisy"))
    env = env_for(tmp_path)
    deploy, result = build_image(project, tmp_path / "build", env)
    assert result.session is not None
    work = tmp_path / "rebuild"
    status, out = run_reproduce(project, deploy, env, work_dir=work)
    assert status == 1, out
    lines = out.splitlines()
    assert lines[0].startswith("first recipe whose output differs: noisy (tree sha256 ")
    assert "  (identical: same inputs, different output -- the build is not deterministic)" in lines
    files = next(i for i, line in enumerate(lines) if line.startswith("files ("))
    assert str(result.session.package_dir("noisy")) in lines[files]       # the original tree, from the build dir
    assert lines[files + 1].startswith("  changed  etc/noise  49 bytes sha256 ")
    assert not any("etc/stable" in line for line in lines)
    assert "also differ: tiny-image" in lines
    assert any(line.startswith("deployed file tiny-image.squashfs: ") for line in lines)
    assert lines[-1] == f"not reproduced; the rebuild is kept in {work}"
    assert (work / "deploy/tiny-x86/manifest.json").is_file()

    # the original build dir gone: the original tree comes from the artifact cache
    shutil.rmtree(tmp_path / "build/packages")
    shutil.rmtree(work)
    status, out = run_reproduce(project, deploy, env, work_dir=work)
    assert status == 1 and "files (the cache entry " in out and "  changed  etc/noise" in out


@needs_tools
def test_reproduce_refuses_other_inputs(tiny, tmp_path):
    project = image_project(tiny)
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], check=True)
    env = env_for(tmp_path)
    deploy, _ = build_image(project, tmp_path / "build", env)      # the build dir is outside the checkout
    record = json.loads((deploy / "manifest.json").read_text())["project"]
    assert record["dirty"] is False and len(record["commit"]) == 40

    def refused(match: str) -> None:
        with pytest.raises(UserError, match=match):
            run_reproduce(project, deploy, env)

    # uncommitted changes where the image came from a clean checkout
    (project / "NOTES").write_text("x\n")
    refused("uncommitted changes; the image was built from a clean checkout")
    # another commit
    subprocess.run([*git, "add", "NOTES"], check=True)
    subprocess.run([*git, "commit", "-qm", "notes"], check=True)
    refused(f"the project is at commit .*, the image was built from {record['commit'][:12]}")
    # a file the build read, changed: named before the commit
    (project / "buildsys.yaml").write_text((project / "buildsys.yaml").read_text().replace("1700000000", "1"))
    refused("buildsys.yaml: differs")


def test_reproduce_bad_input_is_one_line_exit_2(tiny, tmp_path):
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build")}
    proc = run_buildsys("--project", tiny, "reproduce", tmp_path / "nowhere", env=env, check=2)
    assert proc.stderr == f"{tmp_path / 'nowhere'}: no such deploy dir or manifest (name an image's deploy dir, " \
                          "e.g. build/deploy/<board>, or its manifest.json)\n"
    (tmp_path / "empty").mkdir()
    proc = run_buildsys("--project", tiny, "reproduce", tmp_path / "empty", env=env, check=2)
    assert proc.stderr.startswith(f"{tmp_path / 'empty'}: no manifest.json in ")
    bad = tmp_path / "manifest.json"
    bad.write_text('{"image": "x",\n  "board": }\n')
    proc = run_buildsys("--project", tiny, "reproduce", bad, env=env, check=2)
    assert proc.stderr.startswith(f"{bad}:2:12: not a JSON manifest: Expecting value")
    bad.write_text(json.dumps({"image": "x", "board": "tiny-x86", "recipes": [], "files": {}}))
    proc = run_buildsys("--project", tiny, "reproduce", bad, env=env, check=2)
    assert proc.stderr.startswith(f"{bad}:1:1: manifest format 1 lacks the signature inputs")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_buildsys("--project", tiny, "reproduce", "-j", "-1", bad, env=env, check=2)
    assert len(proc.stderr.strip().splitlines()) == 1
    bad.write_text(json.dumps({"image": "x", "board": "tiny-x86", "recipes": [], "files": {}, "manifest_format": 2,
                               "project": {"layers": [{"name": "core"}]}}))
    proc = run_buildsys("--project", tiny, "reproduce", bad, env=env, check=2)
    assert proc.stderr == f"{bad}:1:1: the manifest's project record is missing or malformed\n"
    bad.write_text(json.dumps({"image": "x", "board": "rpi", "recipes": [], "files": {}, "manifest_format": 2,
                               "project": {"layers": []}}))
    proc = run_buildsys("--project", tiny, "reproduce", bad, env=env, check=2)
    assert proc.stderr.startswith(f"{bad}: the image was built for board 'rpi', which this project does not have")
    bad.write_text(json.dumps({"image": "x", "board": "rpi", "recipes": ["busybox"], "files": {}}))
    proc = run_buildsys("diff", bad, bad, env=env, check=2)
    assert proc.stderr == f"{bad}:1:1: a recipe or file entry of the manifest is malformed\n"

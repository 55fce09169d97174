"""License files (checked after patch) and `buildsys legal-info`, on the tiny
fixture with a GPL recipe whose source archive is put in the download dir."""
import argparse
import csv
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from buildsys.classes.base import Param
from buildsys.classes.script import Script
from buildsys.cli import build_parser
from buildsys.commands import COMMANDS
from buildsys.errors import UserError
from buildsys.legal import check_license_files, is_copyleft
from buildsys.workspace import Workspace
from conftest import run_buildsys

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

COPYING = b"GNU GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n"
NOTICE = b"thing is (c) its authors\n"
PATCHED = b"GNU GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n(patched)\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LegalImage(Script):
    """A stand-in image class (legal-info plans, it builds nothing)."""

    name = "test-legal-image"
    installs_packages = True
    params = {"packages": Param("list", [], "recipes the image installs")}


def archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


THING = """format: 1
name: thing
version: "1.0"
license: GPL-2.0-or-later
sources:
  - url: https://example.org/thing-1.0.tar.gz
    sha256: {archive_sha}
patches: [files/0001-fix.patch]
license_files:
  - {{path: COPYING, sha256: {copying_sha}}}
  - {{path: doc/NOTICE, sha256: {notice_sha}}}
class: script
"""


@pytest.fixture
def legal_project(tiny, tmp_path):
    """tiny + a GPL recipe 'thing' (archive in the download dir, a patch) + an image of hello and thing."""
    data = archive({"thing-1.0/COPYING": COPYING, "thing-1.0/doc/NOTICE": NOTICE, "thing-1.0/thing.c": b"int x;\n"})
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "thing-1.0.tar.gz").write_bytes(data)
    (tiny / "recipes/thing/files").mkdir(parents=True)
    patch = "--- a/thing.c\n+++ b/thing.c\n@@ -1 +1 @@\n-int x;\n+int y;\n"
    (tiny / "recipes/thing/files/0001-fix.patch").write_text(patch)
    (tiny / "recipes/thing/thing.yaml").write_text(THING.format(archive_sha=sha(data), copying_sha=sha(COPYING),
                                                                notice_sha=sha(NOTICE)))
    (tiny / "recipes/legal-image.yaml").write_text("format: 1\nname: legal-image\nversion: '1'\nlicense: MIT\n"
                                                   "class: test-legal-image\npackages: [hello, thing]\n")
    return tiny


def legal_info(project: Path, tmp_path: Path, monkeypatch, *extra: str) -> int:
    for key, value in {"BUILDSYS_BUILD_DIR": tmp_path / "build", "BUILDSYS_DL_DIR": tmp_path / "dl",
                       "BUILDSYS_CACHE_DIR": tmp_path / "cache", "BUILDSYS_OFFLINE": "1"}.items():
        monkeypatch.setenv(key, str(value))
    args = build_parser().parse_args(["--project", str(project), "legal-info", "legal-image", *extra])
    return COMMANDS["legal-info"].run(args)


def rows(path: Path) -> dict[str, dict]:
    return {row["PACKAGE"]: row for row in csv.DictReader(path.open())}


def test_legal_info_writes_manifest_licenses_and_gpl_sources(legal_project, tmp_path, monkeypatch):
    assert legal_info(legal_project, tmp_path, monkeypatch) == 0
    out = tmp_path / "build/legal-info/tiny-x86"
    target = rows(out / "manifest.csv")
    assert set(target) == {"hello", "thing"}
    assert target["thing"] == {"PACKAGE": "thing", "VERSION": "1.0", "LICENSE": "GPL-2.0-or-later",
                               "LICENSE FILES": "COPYING doc/NOTICE", "SOURCE ARCHIVE": "thing-1.0.tar.gz",
                               "SOURCE SITE": "https://example.org/thing-1.0.tar.gz", "ROLE": "rootfs"}
    assert target["hello"]["SOURCE ARCHIVE"] == "recipes/hello/files/hello.c"
    assert target["hello"]["SOURCE SITE"] == "layer core"     # the project itself
    assert set(rows(out / "host-manifest.csv")) == {"libgreet", "toolchain-host"}   # built with, not shipped
    # license texts, read from the archive (nothing was built)
    assert (out / "licenses/thing-1.0/COPYING").read_bytes() == COPYING
    assert (out / "licenses/thing-1.0/doc/NOTICE").read_bytes() == NOTICE
    # GPL: the exact archive, the patch and its order, the recipe; MIT hello: none
    src = out / "sources/thing-1.0"
    assert (src / "thing-1.0.tar.gz").read_bytes() == (tmp_path / "dl/thing-1.0.tar.gz").read_bytes()
    assert (src / "patches/0001-fix.patch").is_file() and (src / "patches/series").read_text() == "0001-fix.patch\n"
    assert (src / "recipe/thing.yaml").read_text() == (legal_project / "recipes/thing/thing.yaml").read_text()
    assert not (out / "sources/hello-1.0").exists()
    # every file is in legal-info.sha256 with its sha256
    listed = dict(reversed(line.split("  ", 1)) for line in (out / "legal-info.sha256").read_text().splitlines())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"legal-info.sha256"}
    assert set(listed) == files
    assert all(sha((out / name).read_bytes()) == digest for name, digest in listed.items())

    # again, into the same directory: replaced, not mixed
    (out / "licenses/stale").write_text("old")
    assert legal_info(legal_project, tmp_path, monkeypatch) == 0
    assert not (out / "licenses/stale").exists()


def test_legal_info_refuses_a_directory_it_did_not_write(legal_project, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="exists and is not a legal-info directory"):
        legal_info(legal_project, tmp_path, monkeypatch, "-o", str(mine))
    assert (mine / "notes.txt").read_text() == "keep me"
    assert legal_info(legal_project, tmp_path, monkeypatch, "-o", str(tmp_path / "new")) == 0
    assert (tmp_path / "new/manifest.csv").is_file()


def test_a_changed_license_file_in_the_archive_is_named(legal_project, tmp_path, monkeypatch):
    thing = legal_project / "recipes/thing/thing.yaml"
    thing.write_text(thing.read_text().replace(sha(NOTICE), "f" * 64))
    with pytest.raises(UserError) as err:
        legal_info(legal_project, tmp_path, monkeypatch)
    text = str(err.value)
    assert f"thing: license file doc/NOTICE changed: expected sha256 {'f' * 64}, actual {sha(NOTICE)}" in text
    assert text.startswith(f"{thing}:11:")
    assert "unpatched sources" in text          # the recipe has patches: say where the text came from


def test_the_patched_source_tree_is_preferred(legal_project, tmp_path, monkeypatch):
    thing = legal_project / "recipes/thing/thing.yaml"
    thing.write_text(thing.read_text().replace(sha(COPYING), sha(PATCHED)))
    src = tmp_path / "build/work/tiny-x86/thing/src"      # as the patch task leaves it
    src.mkdir(parents=True)
    (src / "COPYING").write_bytes(PATCHED)
    assert legal_info(legal_project, tmp_path, monkeypatch) == 0
    assert (tmp_path / "build/legal-info/tiny-x86/licenses/thing-1.0/COPYING").read_bytes() == PATCHED


def test_offline_with_the_archive_missing(legal_project, tmp_path, monkeypatch):
    (tmp_path / "dl/thing-1.0.tar.gz").unlink()
    with pytest.raises(UserError, match="offline"):
        legal_info(legal_project, tmp_path, monkeypatch)


def test_legal_info_names_an_image(legal_project, tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDSYS_BUILD_DIR", str(tmp_path / "build"))
    args = build_parser().parse_args(["--project", str(legal_project), "legal-info", "hello"])
    with pytest.raises(UserError, match="'hello' is not an image"):
        COMMANDS["legal-info"].run(args)


@pytest.mark.parametrize("expr, want", [
    ("GPL-2.0-only", True), ("LGPL-2.1-or-later", True), ("MIT OR GPL-3.0-or-later", True),
    ("GPL-3.0-or-later WITH GCC-exception-3.1", True), ("AGPL-3.0-only", True),
    ("MIT", False), ("0BSD", False), ("LicenseRef-NOTGPL", False), (None, False), ("", False),
])
def test_is_copyleft(expr, want):
    assert is_copyleft(expr) is want


# --- the check after patch ------------------------------------------------------------------
def recipe_with_license_files(tiny: Path, lines: str):
    (tiny / "recipes/lic.yaml").write_text(f"format: 1\nname: lic\nversion: '1'\nlicense_files:\n{lines}")
    args = argparse.Namespace(project=str(tiny), build_dir=None, board=None)
    return Workspace(args).resolver.recipe("lic")


def test_check_license_files(tiny, tmp_path):
    r = recipe_with_license_files(tiny, f"  - {{path: COPYING, sha256: {sha(COPYING)}}}\n"
                                        f"  - {{path: doc/NOTICE, sha256: {sha(NOTICE)}}}\n")
    src = tmp_path / "src"
    (src / "doc").mkdir(parents=True)
    (src / "COPYING").write_bytes(COPYING)
    (src / "doc/NOTICE").write_bytes(NOTICE)
    check_license_files(r, src)

    (src / "doc/NOTICE").write_bytes(b"new terms\n")
    with pytest.raises(UserError) as err:
        check_license_files(r, src)
    assert str(err.value) == (
        f"{tiny / 'recipes/lic.yaml'}:6:32: lic: license file doc/NOTICE changed: expected sha256 {sha(NOTICE)}, "
        f"actual {sha(b'new terms' + bytes([10]))} (read the new text; if the license is still acceptable, put the "
        "new sha256 in license_files)")

    (src / "doc/NOTICE").unlink()
    with pytest.raises(UserError, match=r"lic.yaml:6:\d+: lic: license file doc/NOTICE is not in the source"):
        check_license_files(r, src)


def test_check_license_files_follows_no_link(tiny, tmp_path):
    """The source tree is step-writable: a license file that is a link (even to
    a file with the right content) or sits below a linked dir is refused."""
    r = recipe_with_license_files(tiny, f"  - {{path: doc/COPYING, sha256: {sha(COPYING)}}}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "COPYING").write_bytes(COPYING)
    src = tmp_path / "src"
    (src / "doc").mkdir(parents=True)
    os.symlink(outside / "COPYING", src / "doc/COPYING")
    with pytest.raises(UserError, match="is not a regular file in the source"):
        check_license_files(r, src)
    shutil.rmtree(src / "doc")
    os.symlink(outside, src / "doc")
    with pytest.raises(UserError, match="is not a regular file in the source"):
        check_license_files(r, src)


@needs_bwrap
def test_a_license_change_fails_the_build_after_patch(tiny, tmp_path):
    hello = tiny / "recipes/hello/hello.yaml"
    hello.write_text(hello.read_text().replace("license: MIT\n", "license: MIT\nlicense_files:\n"
                                               f"  - {{path: hello.c, sha256: {'1' * 64}}}\n"))
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_DL_DIR": str(tmp_path / "dl"),
           "BUILDSYS_CACHE_DIR": str(tmp_path / "cache"), "BUILDSYS_OFFLINE": "1"}
    proc = run_buildsys("--project", tiny, "build", "hello", env=env, check=2)
    actual = sha((tiny / "recipes/hello/files/hello.c").read_bytes())
    assert "ERROR: hello:patch:" in proc.stderr
    assert (f"{hello}:6:29: hello: license file hello.c changed: expected sha256 {'1' * 64}, actual {actual}"
            in proc.stderr)

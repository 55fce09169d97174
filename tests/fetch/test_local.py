"""file:// sources (files and directories) and local_checksum."""
import shutil

import pytest

from buildsys.errors import ChecksumError, FetchError
from buildsys.fetch import Source, fetch, local_checksum, unpack

from .helpers import sha256, tree


def make_dir(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.txt").write_text("b\n")
    return root


def test_local_file_is_returned_as_is(tmp_path, make_config):
    local = tmp_path / "fix.patch"
    local.write_text("patch\n")
    assert fetch(Source(f"file://{local}"), make_config()) == local


def test_local_directory_is_returned_as_is(tmp_path, make_config):
    local = make_dir(tmp_path / "files")
    assert fetch(Source(f"file://{local}"), make_config()) == local


def test_unpack_copies_a_plain_file(tmp_path):
    local = tmp_path / "fix.patch"
    local.write_text("patch\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(local, dest, Source(f"file://{local}"))
    assert (dest / "fix.patch").read_text() == "patch\n"
    assert local.read_text() == "patch\n"


def test_unpack_copies_a_directory(tmp_path):
    local = make_dir(tmp_path / "files")
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(local, dest, Source(f"file://{local}"))
    copied = dest / "files" if (dest / "files").is_dir() else dest
    assert tree(copied) == tree(local)
    assert (local / "a.txt").exists()


def test_local_checksum_of_file_is_its_sha256(tmp_path):
    local = tmp_path / "f"
    local.write_bytes(b"content")
    assert local_checksum(local) == sha256(b"content")


def test_local_checksum_of_file_changes_with_content(tmp_path):
    local = tmp_path / "f"
    local.write_bytes(b"one")
    before = local_checksum(local)
    local.write_bytes(b"two")
    assert local_checksum(local) != before


def test_local_checksum_of_directory_changes_with_content(tmp_path):
    local = make_dir(tmp_path / "files")
    before = local_checksum(local)
    assert local_checksum(local) == before
    (local / "sub" / "b.txt").write_text("changed\n")
    assert local_checksum(local) != before


def test_local_checksum_of_directory_changes_when_a_file_is_added(tmp_path):
    local = make_dir(tmp_path / "files")
    before = local_checksum(local)
    (local / "sub" / "new.txt").write_text("")
    assert local_checksum(local) != before


def test_local_checksum_of_directory_changes_when_a_file_is_renamed(tmp_path):
    local = make_dir(tmp_path / "files")
    before = local_checksum(local)
    (local / "a.txt").rename(local / "c.txt")
    assert local_checksum(local) != before


def test_local_checksum_of_directory_depends_on_content_not_location(tmp_path):
    local = make_dir(tmp_path / "files")
    copy = tmp_path / "elsewhere" / "files-copy"
    shutil.copytree(local, copy)
    assert local_checksum(copy) == local_checksum(local)


def test_missing_local_file_is_a_fetch_error(tmp_path, make_config):
    with pytest.raises(FetchError) as info:
        fetch(Source(f"file://{tmp_path}/absent.patch"), make_config())
    assert "absent.patch" in str(info.value)


def test_local_file_with_wrong_sha256_is_refused(tmp_path, make_config):
    """A sha256 written in a recipe is checked, whatever the scheme."""
    local = tmp_path / "vendor-1.0.tar.gz"
    local.write_bytes(b"content")
    with pytest.raises(ChecksumError) as info:
        fetch(Source(f"file://{local}", sha256="4" * 64), make_config())
    assert f"sha256: {sha256(b'content')}" in str(info.value)

"""Sources are verified on every use: a download rewritten in place after it was
verified (same size, mtime put back) is refused by unpack, naming the file and
both sha256, and nothing of it reaches the source tree."""
import os
import tarfile

import pytest

from buildsys.errors import ChecksumError, UserError
from buildsys.fetch import Source, fetch, is_fetched, unpack
from buildsys.fetch.checksum import verified

from .helpers import compress, sha256, tar_bytes, tree, write_zip

GOOD = {"pkg-1.0/README": b"the real readme\n", "pkg-1.0/src/main.c": b"int main(void) { return 0; }\n"}
EVIL = {"pkg-1.0/README": b"the evil readme\n", "pkg-1.0/src/main.c": b"int main(void) { return 1; }\n"}


def rewrite_in_place(path, data: bytes) -> None:
    """Same size, same inode, mtime restored: everything a stat-based record looks at but ctime."""
    st = path.stat()
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def served(server, name, data) -> Source:
    server.files[f"/files/{name}"] = data
    return Source(server.url(f"/files/{name}"), sha256=sha256(data))


def same_size_tar(files, kind, size=None) -> bytes:
    data = compress(tar_bytes(list(files.items())), kind)
    return data if size is None else data.ljust(size, b"\0")


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tar.xz", "tar.bz2", "tar.lz4", "tar.zst"])
def test_archive_rewritten_in_place_after_fetch_is_refused(server, make_config, tmp_path, kind):
    good, evil = same_size_tar(GOOD, kind), same_size_tar(EVIL, kind)
    size = max(len(good), len(evil))        # pad both to one size (tar readers stop at the end marker)
    good, evil = good.ljust(size, b"\0"), evil.ljust(size, b"\0")
    source = served(server, f"pkg-1.0.{kind}", good)
    path = fetch(source, make_config())
    rewrite_in_place(path, evil)

    dest = tmp_path / "src"
    with pytest.raises(ChecksumError) as info:
        unpack(path, dest, source)
    message = str(info.value)
    assert str(path) in message
    assert f"expected {sha256(good)}" in message and f"got {sha256(evil)}" in message
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    assert tree(dest) == {}, "nothing of the changed file may reach the source tree"


def test_plain_file_rewritten_in_place_is_refused(server, make_config, tmp_path):
    good, evil = b"#!/bin/sh\necho good\n", b"#!/bin/sh\nrm -rf /\n\n"
    source = Source(served(server, "setup.sh", good).url, sha256=sha256(good), unpack=False)
    path = fetch(source, make_config())
    rewrite_in_place(path, evil)
    with pytest.raises(ChecksumError) as info:
        unpack(path, tmp_path / "src", source)
    assert f"expected {sha256(good)}" in str(info.value) and f"got {sha256(evil)}" in str(info.value)
    assert tree(tmp_path / "src") == {}


def test_zip_rewritten_in_place_is_refused(server, make_config, tmp_path):
    good = write_zip(tmp_path / "good.zip", GOOD).read_bytes()
    evil = write_zip(tmp_path / "evil.zip", EVIL).read_bytes()
    assert len(good) == len(evil)
    source = served(server, "pkg-1.0.zip", good)
    path = fetch(source, make_config())
    rewrite_in_place(path, evil)
    with pytest.raises(ChecksumError):
        unpack(path, tmp_path / "src", source)
    assert tree(tmp_path / "src") == {}


def test_unchanged_download_unpacks_and_merges_with_what_is_there(server, make_config, tmp_path):
    source = served(server, "pkg-1.0.tar.gz", same_size_tar(GOOD, "tar.gz"))
    path = fetch(source, make_config())
    dest = tmp_path / "src"
    (dest / "src").mkdir(parents=True)
    (dest / "src" / "other.c").write_bytes(b"from another source\n")
    unpack(path, dest, source)
    assert {k: v for k, v in tree(dest).items() if v != "dir"} == {
        "README": GOOD["pkg-1.0/README"], "src/main.c": GOOD["pkg-1.0/src/main.c"],
        "src/other.c": b"from another source\n"}


def test_fetch_notices_the_change_and_downloads_again(server, make_config, capsys):
    """The record of a verified download holds ctime and inode, which a rewrite
    cannot put back: fetch hashes again, warns and replaces the file."""
    good, evil = same_size_tar(GOOD, "tar"), same_size_tar(EVIL, "tar")
    source = served(server, "pkg-1.0.tar", good)
    config = make_config()
    path = fetch(source, config)
    assert verified(path, source.sha256)
    rewrite_in_place(path, evil)
    assert not is_fetched(source, config)
    assert fetch(source, config).read_bytes() == good
    assert "no longer has the recipe's sha256" in capsys.readouterr().err
    assert len(server.gets("/files/pkg-1.0.tar")) == 2


def test_source_without_sha256_is_unpacked_unchecked(tmp_path):
    """Layer files and git tarballs have nothing to compare with (they are hashed into the signature)."""
    archive = tmp_path / "pkg.tar"
    archive.write_bytes(tar_bytes([("pkg/a", b"a\n")]))
    unpack(archive, tmp_path / "src", Source(f"file://{archive}"))
    assert (tmp_path / "src" / "a").read_bytes() == b"a\n"


def test_local_directory_with_sha256_is_checked(tmp_path):
    from buildsys.fetch import local_checksum

    local = tmp_path / "files"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "x").write_bytes(b"x\n")
    source = Source(local.as_uri(), sha256=local_checksum(local), strip=0)
    unpack(local, tmp_path / "src", source)
    assert (tmp_path / "src" / "sub" / "x").read_bytes() == b"x\n"
    (local / "sub" / "x").write_bytes(b"y\n")
    with pytest.raises(ChecksumError):
        unpack(local, tmp_path / "src2", source)
    assert tree(tmp_path / "src2") == {}


def test_epoch_is_recorded_only_for_a_verified_archive(server, make_config, tmp_path):
    from buildsys.fetch import source_date_epoch

    info = tarfile.TarInfo("pkg/a")
    info.mtime = 1_234_567_890
    source = served(server, "dated.tar", tar_bytes([info]))
    path = fetch(source, make_config())
    unpack(path, tmp_path / "src", source)
    assert source_date_epoch(path) == 1_234_567_890


def test_a_change_in_bytes_the_tar_reader_never_needs_is_refused_too(server, make_config, tmp_path):
    """Hashing covers the whole file: the padding after the end-of-archive marker as well."""
    good = same_size_tar(GOOD, "tar")
    assert good.endswith(b"\0" * 1024)
    source = served(server, "pkg-1.0.tar", good)
    path = fetch(source, make_config())
    rewrite_in_place(path, good[:-1] + b"\1")
    with pytest.raises(ChecksumError):
        unpack(path, tmp_path / "src", source)

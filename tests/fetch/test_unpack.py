"""Unpacking: formats, strip, unpack=False, hostile archives, source_date_epoch."""
import os
import tarfile

import pytest

from buildsys.errors import UnpackError
from buildsys.fetch import Source, source_date_epoch, unpack

from .helpers import TOP_FILES, ZIP_SYMLINK, special, tree, write_tar, write_zip

TAR_KINDS = ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.lz4", "tar.zst"]


def good_archive(directory, kind):
    path = directory / f"pkg-1.0.{kind}"
    if kind == "zip":
        return write_zip(path, TOP_FILES)
    return write_tar(path, list(TOP_FILES.items()), kind)


def src(path, **kw):
    return Source(f"file://{path}", **kw)


def files_of(root):
    return {rel: data for rel, data in tree(root).items() if data != "dir"}


# --- well-formed archives ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", TAR_KINDS + ["zip"])
def test_strip_1_puts_files_directly_into_dest(workspace, kind):
    archive = good_archive(workspace.archives, kind)
    unpack(archive, workspace.dest, src(archive))
    assert files_of(workspace.dest) == {"README": b"read me\n", "src/main.c": TOP_FILES["pkg-1.0/src/main.c"]}


def test_zip_without_unix_file_type_bits_is_a_regular_zip(workspace):
    """ZipFile.writestr(name, data) stores permissions 0o600 but no S_IFREG bit; so do other tools."""
    archive = write_zip(workspace.archives / "pkg-1.0.zip", TOP_FILES, unix_mode=None)
    unpack(archive, workspace.dest, src(archive))
    assert files_of(workspace.dest) == {"README": b"read me\n", "src/main.c": TOP_FILES["pkg-1.0/src/main.c"]}


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_strip_0_keeps_the_top_directory(workspace, kind):
    archive = good_archive(workspace.archives, kind)
    unpack(archive, workspace.dest, src(archive, strip=0))
    assert files_of(workspace.dest) == TOP_FILES


def test_unpack_false_copies_the_archive_as_is(workspace):
    archive = good_archive(workspace.archives, "tar.gz")
    unpack(archive, workspace.dest, src(archive, unpack=False))
    assert tree(workspace.dest) == {"pkg-1.0.tar.gz": archive.read_bytes()}


def test_symlink_inside_the_tree_is_kept(workspace):
    archive = write_tar(workspace.archives / "links.tar.gz", [
        ("pkg/bin/busybox", b"\x7fELF"),
        special("pkg/bin/sh", tarfile.SYMTYPE, "busybox"),
        special("pkg/sbin/init", tarfile.SYMTYPE, "../bin/busybox"),
    ], "tar.gz")
    unpack(archive, workspace.dest, src(archive))
    assert os.readlink(workspace.dest / "bin" / "sh") == "busybox"
    assert (workspace.dest / "sbin" / "init").read_bytes() == b"\x7fELF"


def test_executable_bit_is_kept(workspace):
    info = tarfile.TarInfo("pkg/configure")
    info.mode, info.size = 0o755, 0
    archive = write_tar(workspace.archives / "exec.tar.gz", [info], "tar.gz")
    unpack(archive, workspace.dest, src(archive))
    assert os.access(workspace.dest / "configure", os.X_OK)


# --- hostile archives: UnpackError and nothing written outside dest ---------------------------

def hostile_tars(ws):
    """name -> (members, strip): each tries to write into the sentinel dir next to dest."""
    return {
        "dotdot": ([("../sentinel/evil", b"evil\n")], 0),
        "dotdot-after-strip": ([("pkg/ok.txt", b"ok\n"), ("pkg/../../sentinel/evil", b"evil\n")], 1),
        "absolute": ([(str(ws.sentinel / "evil"), b"evil\n")], 0),
        "symlink-escape": ([special("link", tarfile.SYMTYPE, "../sentinel"), ("link/evil", b"evil\n")], 0),
        "absolute-symlink": ([special("link", tarfile.SYMTYPE, str(ws.sentinel)), ("link/evil", b"evil\n")], 0),
        "hardlink-etc-passwd": ([special("passwd", tarfile.LNKTYPE, "/etc/passwd")], 0),
        "hardlink-dotdot": ([special("passwd", tarfile.LNKTYPE, "../../../../../../../../etc/passwd")], 0),
        "char-device": ([special("null", tarfile.CHRTYPE)], 0),
        "block-device": ([special("sda", tarfile.BLKTYPE)], 0),
        "fifo": ([special("pipe", tarfile.FIFOTYPE)], 0),
    }


HOSTILE = ["dotdot", "dotdot-after-strip", "absolute", "symlink-escape", "absolute-symlink",
           "hardlink-etc-passwd", "hardlink-dotdot", "char-device", "block-device", "fifo"]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_tar_is_refused(workspace, case):
    members, strip = hostile_tars(workspace)[case]
    archive = write_tar(workspace.archives / f"{case}.tar.gz", members, "tar.gz")
    with pytest.raises(UnpackError):
        unpack(archive, workspace.dest, src(archive, strip=strip))
    assert workspace.outside_dest() == ["sentinel"]
    passwd = workspace.dest / "passwd"
    assert not (passwd.exists() and os.path.samefile(passwd, "/etc/passwd"))
    for path in workspace.dest.rglob("*"):
        assert not (path.is_char_device() or path.is_block_device() or path.is_fifo()), path


def test_hostile_tar_names_the_archive_and_member(workspace):
    archive = write_tar(workspace.archives / "bad.tar.gz", [("../sentinel/evil", b"evil\n")], "tar.gz")
    with pytest.raises(UnpackError) as info:
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert "bad.tar.gz" in str(info.value)
    assert "evil" in str(info.value)


@pytest.mark.parametrize("name", ["../sentinel/evil", "pkg/../../sentinel/evil"])
def test_zip_with_dotdot_is_refused(workspace, name):
    archive = write_zip(workspace.archives / "bad.zip", {"pkg/ok.txt": b"ok\n", name: b"evil\n"})
    with pytest.raises(UnpackError):
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert workspace.outside_dest() == ["sentinel"]


def test_zip_with_absolute_path_is_refused(workspace):
    archive = write_zip(workspace.archives / "bad.zip", {str(workspace.sentinel / "evil"): b"evil\n"})
    with pytest.raises(UnpackError):
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert workspace.outside_dest() == ["sentinel"]


def links_leading_outside(dest):
    real = os.path.realpath(dest)
    return [str(p.relative_to(dest)) for p in dest.rglob("*")
            if p.is_symlink() and os.path.commonpath([os.path.realpath(p), real]) != real]


def test_tar_symlink_chain_that_leads_outside_is_refused(workspace):
    """Each link looks harmless by itself: b -> ../.. is the top, a -> b/../sentinel then leaves."""
    archive = write_tar(workspace.archives / "chain.tar.gz", [
        special("d1/d2/b", tarfile.SYMTYPE, "../.."),
        special("d1/d2/a", tarfile.SYMTYPE, "b/../sentinel"),
    ], "tar.gz")
    with pytest.raises(UnpackError):
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert links_leading_outside(workspace.dest) == []


def test_zip_symlink_chain_that_leads_outside_is_refused(workspace):
    archive = write_zip(workspace.archives / "chain.zip", {
        "d1/d2/b": (b"../..", ZIP_SYMLINK),
        "d1/d2/a": (b"b/../sentinel", ZIP_SYMLINK),
    })
    with pytest.raises(UnpackError):
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert links_leading_outside(workspace.dest) == []


def test_zip_symlink_leading_outside_is_refused(workspace):
    archive = write_zip(workspace.archives / "link.zip", {"link": (b"../sentinel", ZIP_SYMLINK),
                                                          "link/evil": b"evil\n"})
    with pytest.raises(UnpackError):
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert workspace.outside_dest() == ["sentinel"]


def test_zip_symlink_inside_the_tree_is_kept(workspace):
    archive = write_zip(workspace.archives / "ok.zip", {"pkg/bin/busybox": b"\x7fELF",
                                                        "pkg/bin/sh": (b"busybox", ZIP_SYMLINK)})
    unpack(archive, workspace.dest, src(archive))
    assert os.readlink(workspace.dest / "bin" / "sh") == "busybox"


# --- source_date_epoch ------------------------------------------------------------------------

def test_source_date_epoch_is_newest_member_mtime(workspace):
    old, new = tarfile.TarInfo("pkg/old"), tarfile.TarInfo("pkg/new")
    old.mtime, new.mtime = 1_000_000_000, 1_200_000_000
    archive = write_tar(workspace.archives / "dates.tar.xz", [new, old], "tar.xz")
    assert source_date_epoch(archive) == 1_200_000_000


# --- errors name the member as stored, and are bad input (exit 2) -----------------------------

@pytest.mark.parametrize("members, expected", [
    ([special("pkg-1.0/link", tarfile.SYMTYPE, "/etc")], ["'pkg-1.0/link'", "'/etc'"]),
    ([special("pkg-1.0/up", tarfile.SYMTYPE, "../..")], ["'pkg-1.0/up'", "'../..'"]),
    ([special("pkg-1.0/passwd", tarfile.LNKTYPE, "/etc/passwd")], ["'pkg-1.0/passwd'", "'/etc/passwd'"]),
    ([("pkg-1.0/a", b"a"), special("pkg-1.0/b", tarfile.LNKTYPE, "pkg-1.0/../../../etc/passwd")],
     ["'pkg-1.0/b'", "'pkg-1.0/../../../etc/passwd'"]),
    ([special("pkg-1.0/b", tarfile.LNKTYPE, "other")], ["'pkg-1.0/b'", "'other'"]),
    ([special("pkg-1.0/dev/null", tarfile.CHRTYPE)], ["'pkg-1.0/dev/null'", "device"]),
    ([("pkg-1.0/../evil", b"x")], ["'pkg-1.0/../evil'"]),
])
def test_errors_name_the_member_as_stored_in_the_archive(workspace, members, expected):
    archive = write_tar(workspace.archives / "pkg-1.0.tar.gz", members, "tar.gz")
    with pytest.raises(UnpackError) as info:
        unpack(archive, workspace.dest, src(archive, strip=1))
    message = str(info.value)
    assert message.startswith(f"{archive}: member "), message
    for part in expected:
        assert part in message, message
    assert info.value.exit_code == 2 and "\n" not in message
    assert workspace.outside_dest() == ["sentinel"]
    assert tree(workspace.dest) == {}, "nothing of a refused archive is left in the tree"


def test_symlink_chain_written_in_reverse_order_is_refused(workspace):
    """a -> b/../../sentinel is harmless while b does not exist; b -> .. written
    afterwards makes it lead outside.  Every link is checked again at the end."""
    archive = write_tar(workspace.archives / "chain.tar.gz", [
        special("d1/a", tarfile.SYMTYPE, "b/../../sentinel"),
        special("d1/b", tarfile.SYMTYPE, ".."),
    ], "tar.gz")
    with pytest.raises(UnpackError) as info:
        unpack(archive, workspace.dest, src(archive, strip=0))
    assert "'d1/a'" in str(info.value)
    assert links_leading_outside(workspace.dest) == []
    assert tree(workspace.dest) == {}


def test_file_member_over_a_link_that_came_to_lead_outside_writes_nothing_outside(workspace):
    archive = write_tar(workspace.archives / "chain.tar.gz", [
        special("d1/a", tarfile.SYMTYPE, "b/../../sentinel/evil"),
        special("d1/b", tarfile.SYMTYPE, ".."),
        ("d1/a", b"evil\n"),
    ], "tar.gz")
    try:
        unpack(archive, workspace.dest, src(archive, strip=0))
    except UnpackError:
        pass
    assert workspace.outside_dest() == ["sentinel"]
    assert links_leading_outside(workspace.dest) == []


def test_file_member_replaces_an_earlier_link_instead_of_writing_through_it(workspace):
    archive = write_tar(workspace.archives / "relink.tar.gz", [
        ("pkg/target", b"original\n"),
        special("pkg/link", tarfile.SYMTYPE, "target"),
        ("pkg/link", b"replacement\n"),
    ], "tar.gz")
    unpack(archive, workspace.dest, src(archive))
    assert (workspace.dest / "target").read_bytes() == b"original\n"
    assert not (workspace.dest / "link").is_symlink()
    assert (workspace.dest / "link").read_bytes() == b"replacement\n"


def test_hard_link_inside_the_tree_is_kept_after_strip(workspace):
    archive = write_tar(workspace.archives / "hard.tar.gz", [
        ("pkg-1.0/a", b"shared\n"),
        special("pkg-1.0/b", tarfile.LNKTYPE, "pkg-1.0/a"),
    ], "tar.gz")
    unpack(archive, workspace.dest, src(archive))
    assert os.path.samefile(workspace.dest / "a", workspace.dest / "b")

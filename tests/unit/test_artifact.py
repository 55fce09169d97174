"""Package archives: pack/unpack round trip, any symlink target, and extraction
that never follows a link (hand-made hostile lz4 tars, as artifact.pack writes)."""
import io
import os
import stat
import tarfile

import lz4.frame
import pytest

from buildsys import artifact
from buildsys.errors import UnpackError, UserError

MTIME = 1_600_000_000


def member(name, kind=tarfile.REGTYPE, data=b"", linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, MTIME
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def lz4_tar(path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.write_bytes(lz4.frame.compress(buf.getvalue()))
    return path


@pytest.fixture
def canary(tmp_path):
    """A directory outside every destination, which must stay exactly as it is."""
    path = tmp_path / "canary-dir"
    path.mkdir()
    (path / "victim").write_bytes(b"untouched\n")
    os.utime(path, (MTIME, MTIME))
    return path


def canary_state(path):
    return sorted((p.name, p.read_bytes()) for p in path.iterdir()), stat.S_IMODE(path.stat().st_mode), \
        path.stat().st_mtime


def test_round_trip_keeps_links_modes_and_times(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "bin/busybox").write_bytes(b"\x7fELF")
    os.chmod(tree / "bin/busybox", 0o4755)
    os.symlink("/bin/busybox", tree / "bin/sh")                 # absolute: normal in a root filesystem
    os.symlink("../../lib/libc.so", tree / "usr/bin/x")         # leads above the package: normal too
    os.symlink("/etc", tree / "etc")                            # a link to a host dir is stored, never followed
    artifact.clamp_mtimes(tree, MTIME)
    archive = tmp_path / "p.tar.lz4"
    artifact.pack(tree, archive)
    out = tmp_path / "out"
    artifact.unpack(archive, out)
    assert os.readlink(out / "bin/sh") == "/bin/busybox"
    assert os.readlink(out / "usr/bin/x") == "../../lib/libc.so"
    assert os.readlink(out / "etc") == "/etc"
    assert stat.S_IMODE((out / "bin/busybox").stat().st_mode) == 0o4755
    assert (out / "bin/busybox").stat().st_mtime == MTIME
    assert (out / "bin/sh").lstat().st_mtime == MTIME
    assert (out / "bin").stat().st_mtime == MTIME
    with tarfile.open(fileobj=lz4.frame.open(archive), mode="r|") as tar:
        names = [m.name for m in tar]
    assert "etc/passwd" not in names, "pack must not follow a link to a host dir"


def test_absolute_symlink_is_kept_and_not_followed(tmp_path, canary):
    before = canary_state(canary)
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("bin", tarfile.DIRTYPE, mode=0o755),
        member("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox"),
        member("evil", tarfile.SYMTYPE, linkname=str(canary)),
    ])
    artifact.unpack(archive, tmp_path / "out")
    assert os.readlink(tmp_path / "out/bin/sh") == "/bin/busybox"
    assert os.readlink(tmp_path / "out/evil") == str(canary)
    assert canary_state(canary) == before


def test_member_below_a_link_is_refused(tmp_path, canary):
    """evil -> /tmp/canary-dir, then evil/file: nothing may appear in the canary dir."""
    before = canary_state(canary)
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("evil", tarfile.SYMTYPE, linkname=str(canary)),
        member("evil/file", data=b"planted\n"),
    ])
    with pytest.raises(UnpackError) as info:
        artifact.unpack(archive, tmp_path / "out")
    assert "member 'evil/file' would be written through the link 'evil'" in str(info.value)
    assert str(archive) in str(info.value)
    assert canary_state(canary) == before


@pytest.mark.parametrize("kind", [tarfile.DIRTYPE, tarfile.SYMTYPE])
def test_member_below_a_link_below_a_dir_is_refused(tmp_path, canary, kind):
    before = canary_state(canary)
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("usr", tarfile.DIRTYPE, mode=0o755),
        member("usr/lib", tarfile.SYMTYPE, linkname=str(canary)),
        member("usr/lib/sub/deeper", kind, linkname="x"),
    ])
    with pytest.raises(UnpackError):
        artifact.unpack(archive, tmp_path / "out")
    assert canary_state(canary) == before


def test_file_member_replaces_a_link_instead_of_writing_through_it(tmp_path, canary):
    before = canary_state(canary)
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("victim", tarfile.SYMTYPE, linkname=str(canary / "victim")),
        member("victim", data=b"replaced\n", mode=0o600),
    ])
    artifact.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out/victim").is_symlink()
    assert (tmp_path / "out/victim").read_bytes() == b"replaced\n"
    assert canary_state(canary) == before


def test_directory_member_replaces_a_link_and_its_mode_lands_on_the_new_dir(tmp_path, canary):
    before = canary_state(canary)
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("d", tarfile.SYMTYPE, linkname=str(canary)),
        member("d", tarfile.DIRTYPE, mode=0o700),
    ])
    artifact.unpack(archive, tmp_path / "out")
    assert (tmp_path / "out/d").is_dir() and not (tmp_path / "out/d").is_symlink()
    assert stat.S_IMODE((tmp_path / "out/d").stat().st_mode) == 0o700
    assert canary_state(canary) == before


@pytest.mark.parametrize("linkname, reason", [
    ("/etc/passwd", "outside the tree"),
    ("../../etc/passwd", "outside the tree"),
    ("link", "which is a link"),
    ("via/passwd", "which goes through a link"),
    ("missing", "does not hold before it"),
    ("dir", "not a regular file"),
])
def test_hard_link_to_outside_or_to_a_link_is_refused(tmp_path, linkname, reason):
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("dir", tarfile.DIRTYPE, mode=0o755),
        member("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        member("via", tarfile.SYMTYPE, linkname="/etc"),
        member("passwd", tarfile.LNKTYPE, linkname=linkname),
    ])
    with pytest.raises(UnpackError) as info:
        artifact.unpack(archive, tmp_path / "out")
    message = str(info.value)
    assert f"member 'passwd' is a hard link to '{linkname}'" in message and reason in message, message
    passwd = tmp_path / "out/passwd"
    assert not (passwd.exists() and os.path.samefile(passwd, "/etc/passwd"))


def test_hard_link_to_an_earlier_file_is_kept(tmp_path):
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("a", data=b"shared\n"),
        member("sub/b", tarfile.LNKTYPE, linkname="a"),
    ])
    artifact.unpack(archive, tmp_path / "out")
    assert os.path.samefile(tmp_path / "out/a", tmp_path / "out/sub/b")


@pytest.mark.parametrize("name", ["/etc/evil", "../evil", "a/../../evil"])
def test_names_outside_the_tree_are_refused(tmp_path, name):
    archive = lz4_tar(tmp_path / "a.tar.lz4", [member(name, data=b"x")])
    with pytest.raises(UnpackError) as info:
        artifact.unpack(archive, tmp_path / "out")
    assert f"member '{name}'" in str(info.value)
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_special_files_are_refused(tmp_path, kind):
    archive = lz4_tar(tmp_path / "a.tar.lz4", [member("dev/x", kind)])
    with pytest.raises(UnpackError) as info:
        artifact.unpack(archive, tmp_path / "out")
    assert "member 'dev/x' is a device, fifo or other special file" in str(info.value)


def test_errors_are_bad_input_on_one_line(tmp_path):
    archive = lz4_tar(tmp_path / "a.tar.lz4", [member("../evil", data=b"x")])
    with pytest.raises(UserError) as info:
        artifact.unpack(archive, tmp_path / "out")
    assert isinstance(info.value, UnpackError) and info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_truncated_or_corrupt_archive_is_an_unpack_error(tmp_path):
    good = lz4_tar(tmp_path / "a.tar.lz4", [member("a", data=os.urandom(100_000))])
    (tmp_path / "short.tar.lz4").write_bytes(good.read_bytes()[:5000])
    (tmp_path / "junk.tar.lz4").write_bytes(b"not an archive at all")
    for name in ("short.tar.lz4", "junk.tar.lz4"):
        with pytest.raises(UnpackError, match="corrupt package archive"):
            artifact.unpack(tmp_path / name, tmp_path / f"out-{name}")


def test_read_only_directories_get_their_mode_last(tmp_path):
    archive = lz4_tar(tmp_path / "a.tar.lz4", [
        member("ro", tarfile.DIRTYPE, mode=0o555),
        member("ro/file", data=b"x", mode=0o444),
    ])
    artifact.unpack(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/ro").stat().st_mode) == 0o555
    assert (tmp_path / "out/ro/file").read_bytes() == b"x"
    os.chmod(tmp_path / "out/ro", 0o755)


def test_check_tree_refuses_special_files(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr").mkdir(parents=True)
    os.symlink("/nowhere", tree / "usr/dangling")       # fine: links may point anywhere
    artifact.check_tree(tree)
    os.mkfifo(tree / "usr/pipe")
    with pytest.raises(UnpackError) as info:
        artifact.check_tree(tree)
    assert "'usr/pipe' is a fifo" in str(info.value) and info.value.exit_code == 2
    with pytest.raises(UnpackError):
        artifact.pack(tree, tmp_path / "p.tar.lz4")

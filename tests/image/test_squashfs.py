"""buildsys.image.squashfs: pseudo definitions and the mksquashfs argv, checked
with a real (tiny) mksquashfs run and `unsquashfs -lln`."""
import os
import shutil
import subprocess

import pytest

from buildsys import rootfs
from buildsys.image import squashfs
from buildsys.image.squashfs import Entry

needs_tools = pytest.mark.skipif(not (shutil.which("mksquashfs") and shutil.which("unsquashfs")),
                                 reason="squashfs-tools not installed")
EPOCH = 1_600_000_000


def test_pseudo_text_is_sorted_and_formatted():
    text = squashfs.pseudo_text([
        Entry("/dev/null", "c", 0o666, 0, 0, 1, 3),
        Entry("/bin/su", "m", 0o4755, 0, 0),
        Entry("/dev/console", "c", 0o600, 0, 5, 5, 1),
        Entry("/var/empty", "d", 0o755, 0, 0),
    ])
    assert text == ("bin/su m 4755 0 0\ndev/console c 600 0 5 5 1\ndev/null c 666 0 0 1 3\n"
                    "var/empty d 755 0 0\n")


def test_pseudo_conflicting_entries_name_both_owners():
    with pytest.raises(ValueError, match="given twice: by busybox and base-files"):
        squashfs.pseudo_text([Entry("/bin/x", "m", 0o755, owner="busybox"),
                              Entry("/bin/x", "m", 0o700, owner="base-files")])


def test_pseudo_rejects_spaces_and_bad_kinds():
    with pytest.raises(ValueError, match="spaces"):
        squashfs.pseudo_text([Entry("/a b", "m", 0o644)])
    with pytest.raises(ValueError, match="unknown permission type"):
        squashfs.pseudo_text([Entry("/a", "x", 0o644)])


def test_argv():
    argv = squashfs.mksquashfs_argv("/build/obj/rootfs", "/build/obj/r.sqfs", "/build/obj/p", "xz", 65536,
                                    mksquashfs="/build/native/usr/bin/mksquashfs")
    assert argv[:3] == ["/build/native/usr/bin/mksquashfs", "/build/obj/rootfs", "/build/obj/r.sqfs"]
    for flag in ("-noappend", "-no-xattrs", "-all-root"):
        assert flag in argv
    assert argv[argv.index("-comp") + 1] == "xz" and argv[argv.index("-b") + 1] == "65536"
    assert argv[argv.index("-pf") + 1] == "/build/obj/p"
    # Time comes from SOURCE_DATE_EPOCH only: 4.5/4.6 refuse it with these.
    assert "-mkfs-time" not in argv and "-all-time" not in argv
    assert squashfs.env(EPOCH) == {"SOURCE_DATE_EPOCH": str(EPOCH)}
    assert "-all-root" not in squashfs.mksquashfs_argv("a", "b", None, all_root=False)
    with pytest.raises(ValueError, match="compressor"):
        squashfs.mksquashfs_argv("a", "b", None, "brotli")
    with pytest.raises(ValueError, match="block size"):
        squashfs.mksquashfs_argv("a", "b", None, "xz", 1000)


def _tree(root):
    (root / "bin").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "tmp").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + b"x" * 5000)
    os.chmod(root / "bin" / "busybox", 0o755)
    os.symlink("busybox", root / "bin" / "sh")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames + ["."]:
            os.utime(os.path.join(dirpath, n), (EPOCH, EPOCH), follow_symlinks=False)


def _build(tmp_path, name, entries, all_root=True):
    tree = tmp_path / "tree"
    if not tree.exists():
        _tree(tree)
    if not all_root:
        entries = rootfs.full_table(tree, entries)
    pseudo = tmp_path / f"{name}.pseudo"
    pseudo.write_text(squashfs.pseudo_text(entries))
    out = tmp_path / f"{name}.sqfs"
    argv = squashfs.mksquashfs_argv(str(tree), str(out), str(pseudo), "xz", 131072, all_root=all_root)
    env = {"PATH": os.environ["PATH"], **squashfs.env(EPOCH)}
    subprocess.run(argv, env=env, check=True, capture_output=True)
    listing = subprocess.run(["unsquashfs", "-lln", str(out)], capture_output=True, text=True, check=True).stdout
    return out, {line.split()[-1] if "->" not in line else line.split()[-3]: line.split()
                 for line in listing.splitlines() if line.startswith(("d", "-", "l", "c", "b"))}


@needs_tools
def test_real_mksquashfs_owners_modes_devices(tmp_path):
    entries = [Entry("/dev/console", "c", 0o600, 0, 0, 5, 1), Entry("/dev/null", "c", 0o666, 0, 0, 1, 3),
               Entry("/tmp", "m", 0o1777), Entry("/bin/busybox", "m", 0o4755)]
    out, ls = _build(tmp_path, "a", entries)
    assert ls["squashfs-root/dev/console"][:4] == ["crw-------", "0/0", "5,", "1"]
    assert ls["squashfs-root/dev/null"][:4] == ["crw-rw-rw-", "0/0", "1,", "3"]
    assert ls["squashfs-root/tmp"][0] == "drwxrwxrwt"
    assert ls["squashfs-root/bin/busybox"][:2] == ["-rwsr-xr-x", "0/0"]
    assert ls["squashfs-root/bin/sh"][0].startswith("l")
    # Every time is the epoch (2020-09-13 12:26 UTC).
    assert {v[-2] if v[0][0] != "l" else v[-4] for v in ls.values()} == {"12:26"}
    again, _ = _build(tmp_path, "b", entries)
    assert out.read_bytes() == again.read_bytes()


@needs_tools
def test_real_mksquashfs_non_root_owner(tmp_path):
    """-all-root would override the owner, so the full table is used instead."""
    out, ls = _build(tmp_path, "c", [Entry("/bin/busybox", "m", 0o755, 1000, 100)], all_root=False)
    assert ls["squashfs-root/bin/busybox"][:2] == ["-rwxr-xr-x", "1000/100"]
    assert ls["squashfs-root/bin/sh"][1] == "0/0"
    assert ls["squashfs-root/dev"][1] == "0/0"

"""buildsys.rootfs: merging package trees, conflicts, times, permission tables."""
import os

import pytest

from buildsys import rootfs
from buildsys.errors import UserError

EPOCH = 1_600_000_000


def _pkg(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], path)
        elif content == "/":
            path.mkdir(exist_ok=True)
        else:
            path.write_text(content)
    return root


def test_merge_shares_directories_and_sets_times(tmp_path):
    a = _pkg(tmp_path / "a", {"bin/busybox": "bb", "bin/sh": "->busybox", "etc/x": "1"})
    b = _pkg(tmp_path / "b", {"etc/passwd": "root", "tmp": "/"})
    os.chmod(a / "bin/busybox", 0o755)
    dest = tmp_path / "root"
    owners = rootfs.merge([("busybox", a), ("base-files", b)], dest, EPOCH)
    assert owners["/bin/busybox"] == "busybox" and owners["/etc/passwd"] == "base-files"
    assert os.readlink(dest / "bin/sh") == "busybox"
    assert (dest / "bin/busybox").stat().st_mode & 0o777 == 0o755
    assert (dest.stat().st_mode & 0o777) == 0o755
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames + filenames:
            assert os.lstat(os.path.join(dirpath, n)).st_mtime == EPOCH
    # Copies, not links: the package trees keep their own times.
    assert (a / "etc/x").stat().st_mtime != EPOCH


def test_conflict_names_both_packages_and_the_path(tmp_path):
    a = _pkg(tmp_path / "a", {"etc/hostname": "x"})
    b = _pkg(tmp_path / "b", {"etc/hostname": "y"})
    with pytest.raises(UserError) as e:
        rootfs.merge([("busybox", a), ("base-files", b)], tmp_path / "root", EPOCH)
    text = str(e.value)
    assert "/etc/hostname" in text and "busybox" in text and "base-files" in text


def test_conflict_directory_against_symlink(tmp_path):
    a = _pkg(tmp_path / "a", {"lib": "->usr/lib"})
    b = _pkg(tmp_path / "b", {"lib/libc.so": "x"})
    with pytest.raises(UserError, match="/lib is installed by both"):
        rootfs.merge([("a", a), ("b", b)], tmp_path / "root", EPOCH)


def test_permission_entries_and_checks(tmp_path):
    table = [{"path": "/dev/console", "type": "c", "major": 5, "minor": 1, "mode": "0600"},
             {"path": "/tmp", "mode": "1777"}, {"path": "/bin/su", "mode": "4755", "uid": 0}]
    entries = rootfs.permission_entries("base-files", table)
    assert [(e.path, e.kind, e.mode) for e in entries] == [("/dev/console", "c", 0o600), ("/tmp", "m", 0o1777),
                                                           ("/bin/su", "m", 0o4755)]
    tree = _pkg(tmp_path / "t", {"tmp": "/", "dev": "/", "bin/su": "x"})
    rootfs.check_entries(tree, entries)
    with pytest.raises(UserError, match="no package installs"):
        rootfs.check_entries(tree, rootfs.permission_entries("p", [{"path": "/nope", "mode": "0644"}]))
    with pytest.raises(UserError, match="a package installs that path"):
        rootfs.check_entries(tree, rootfs.permission_entries("p", [{"path": "/bin/su", "type": "c", "major": 1,
                                                                    "minor": 1}]))


@pytest.mark.parametrize("item, message", [
    ({"mode": "0644"}, "needs at least 'path'"),
    ({"path": "/x", "mode": "rwx"}, "not octal"),
    ({"path": "/x", "type": "p"}, "permissions type"),
    ({"path": "/x", "type": "c"}, "needs major and minor"),
    ({"path": "/x", "owner": "root"}, "unknown key"),
])
def test_permission_entry_errors(item, message):
    with pytest.raises(UserError, match=message):
        rootfs.permission_entries("pkg", [item])

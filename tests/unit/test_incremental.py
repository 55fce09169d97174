"""Which earlier work dir a rebuild may keep (incremental.py), syncing a live
tree into a step-writable source dir (livesync.py), and editing local.yaml
(configedit.py)."""
import os
from pathlib import Path

import pytest

from buildsys import configedit, incremental, livesync, livetree
from buildsys.errors import BuildError, UserError
from conftest import write_tree


def sigdata(**values):
    base = {"engine": "e", "buildenv": {"id": "b"}, "recipe": "linux", "class": {"name": "kernel", "version": "1"},
            "target": {"arch": "x86_64"}, "extra": {}, "deps": {"toolchain": "t"},
            "values": {"sources": [{"url": "u", "sha256": "s"}], "config_fragments": ["a"], "env": {}}}
    base["values"].update(values)
    return base


def live(digest="d1", configure="c1", **values):
    return sigdata(sources=[{"live_tree": digest, "live_configure": configure}], **values)


@pytest.mark.parametrize("old,new,class_name,expected", [
    (sigdata(), sigdata(config_fragments=["b"]), "kernel", incremental.CONFIGURE),
    (sigdata(), sigdata(config_fragments=["b"]), "kconfig", incremental.CONFIGURE),
    (sigdata(), sigdata(config_fragments=["b"]), "make", None),           # make does not track its inputs
    (sigdata(), sigdata(env={"CFLAGS": "-O3"}), "kernel", None),         # not a tracked value
    (sigdata(), sigdata(sources=[{"url": "u2", "sha256": "s2"}]), "kernel", None),   # new sources: clean
    (sigdata(), sigdata(patches=["p"]), "kernel", None),
    (live("d1"), live("d2"), "make", incremental.SYNC_COMPILE),           # a .c file: no configure
    (live("d1"), live("d2"), "autotools", incremental.SYNC_COMPILE),
    (live("d1"), live("d2", "c2"), "meson", None),                        # meson.build changed: clean
    (live("d1"), live("d2", "c2"), "make", None),                         # a Makefile's flags: clean
    (live("d1"), live("d2", "c2"), "kernel", incremental.SYNC),           # Kbuild configures in place
    (live("d1"), live("d2", config_fragments=["b"]), "kernel", incremental.SYNC),
    (live("d1"), live("d2", config_fragments=["b"]), "make", None),
    (live("d1"), live("d2", env={"X": "1"}), "make", None),
    (sigdata(), live("d2"), "make", None),                                # archive -> live: clean
    (live("d1"), sigdata(), "make", None),                                # live -> archive (reset): clean
    (None, sigdata(), "kernel", None),
])
def test_reuse(old, new, class_name, expected):
    assert incremental.reuse(old, new, class_name) == expected


@pytest.mark.parametrize("key,value", [("engine", "e2"), ("buildenv", {"id": "c"}), ("deps", {"toolchain": "u"}),
                                       ("target", {"arch": "aarch64"}), ("class", {"name": "kernel", "version": "2"}),
                                       ("extra", {"toolchain": "x"})])
def test_any_other_input_change_is_a_clean_build(key, value):
    new = sigdata(config_fragments=["b"])
    new[key] = value
    assert incremental.reuse(sigdata(), new, "kernel") is None


def test_record_round_trip_and_damage(tmp_path):
    (tmp_path / incremental.WORKDIR_RECORD).write_text(incremental.record("sig", sigdata()))
    assert incremental.read_record(tmp_path) == sigdata()
    (tmp_path / incremental.WORKDIR_RECORD).write_text("{not json")
    assert incremental.read_record(tmp_path) is None
    (tmp_path / incremental.WORKDIR_RECORD).unlink()
    (tmp_path / incremental.WORKDIR_RECORD).symlink_to(tmp_path / "elsewhere")
    assert incremental.read_record(tmp_path) is None


def _sync(tree: Path, src: Path, state: Path):
    return livesync.sync(tree, src, livetree.scan(tree), state)


def test_sync_copies_only_changes_and_keeps_build_products(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.c": "a\n", "sub/b.c": "b\n", ".git/HEAD": "ref\n"})
    os.symlink("a.c", tree / "link.c")
    src, state = tmp_path / "src", tmp_path / "state.json"
    src.mkdir()
    assert _sync(tree, src, state) == (2, 0)
    assert (src / "sub/b.c").read_text() == "b\n" and os.readlink(src / "link.c") == "a.c"
    assert not (src / ".git").exists()
    assert os.stat(src / "a.c").st_mtime_ns == os.stat(tree / "a.c").st_mtime_ns
    (src / "a.o").write_text("object")            # a build product of an in-tree build
    before = os.stat(src / "sub/b.c")
    (tree / "a.c").write_text("a2\n")
    assert _sync(tree, src, state) == (1, 0)
    assert (src / "a.c").read_text() == "a2\n" and (src / "a.o").read_text() == "object"
    assert os.stat(src / "sub/b.c").st_ino == before.st_ino
    (tree / "sub/b.c").unlink()
    assert _sync(tree, src, state) == (0, 1)
    assert not (src / "sub/b.c").exists()


def test_sync_recopies_a_file_a_step_changed_even_with_its_old_mtime(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.c": "a\n"})
    src, state = tmp_path / "src", tmp_path / "state.json"
    src.mkdir()
    _sync(tree, src, state)
    st = os.stat(src / "a.c")
    (src / "a.c").write_text("x\n")               # same size; mtime put back: only ctime tells
    os.utime(src / "a.c", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _sync(tree, src, state) == (1, 0)
    assert (src / "a.c").read_text() == "a\n"


def test_sync_edit_gets_a_newer_time_even_from_an_older_file(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.c": "a\n"})
    src, state = tmp_path / "src", tmp_path / "state.json"
    src.mkdir()
    _sync(tree, src, state)
    first = os.stat(src / "a.c").st_mtime_ns
    (tree / "a.c").write_text("b\n")
    os.utime(tree / "a.c", ns=(first - 10**9, first - 10**9))     # restored from an old backup
    _sync(tree, src, state)
    assert os.stat(src / "a.c").st_mtime_ns > first


def test_sync_never_follows_planted_links(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.c": "a\n", "sub/b.c": "b\n"})
    src, state = tmp_path / "src", tmp_path / "state.json"
    src.mkdir()
    _sync(tree, src, state)
    outside = write_tree(tmp_path / "outside", {"b.c": "host file\n", "a.c": "host a\n"})
    (src / "a.c").unlink()
    (src / "a.c").symlink_to(outside / "a.c")     # a file replaced by a link: replaced, not followed
    (tree / "a.c").write_text("a2\n")
    _sync(tree, src, state)
    assert (outside / "a.c").read_text() == "host a\n" and not (src / "a.c").is_symlink()
    (src / "sub/b.c").unlink()
    (src / "sub").rmdir()
    (src / "sub").symlink_to(outside)             # a dir replaced by a link: replaced too
    (tree / "sub/b.c").write_text("b2\n")
    _sync(tree, src, state)
    assert (outside / "b.c").read_text() == "host file\n"
    assert not (src / "sub").is_symlink() and (src / "sub/b.c").read_text() == "b2\n"
    # A link planted *below* a dir the sync must walk through makes it start over.
    (tree / "sub/deep").mkdir()
    (tree / "sub/deep/c.c").write_text("c\n")
    _sync(tree, src, state)
    (src / "sub/deep/c.c").unlink()
    (src / "sub/deep").rmdir()
    (src / "sub/deep").symlink_to(outside)
    (tree / "sub/deep/c.c").write_text("c2\n")
    try:
        _sync(tree, src, state)
    except livesync.StartOver:
        pass
    assert sorted(os.listdir(outside)) == ["a.c", "b.c"]


def test_sync_refuses_a_tree_that_changed_after_planning(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.c": "a\n"})
    src, state = tmp_path / "src", tmp_path / "state.json"
    src.mkdir()
    planned = livetree.scan(tree)
    (tree / "a.c").write_text("edited meanwhile\n")
    with pytest.raises(BuildError, match="changed during the build"):
        livesync.sync(tree, src, planned, state)
    assert not (src / "a.c").exists()


def test_live_tree_refuses_special_files(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.c": "a\n"})
    os.mkfifo(tree / "pipe")
    with pytest.raises(UserError, match="not a file, directory or symlink"):
        livetree.scan(tree)


def test_configure_digest_follows_build_files_only(tmp_path):
    tree = write_tree(tmp_path / "tree", {"main.c": "a\n", "CMakeLists.txt": "x\n", "sub/meson.build": "m\n",
                                          "m4/ax_foo.m4": "f\n", "README": "r\n"})
    first = livetree.digests(tree)
    write_tree(tree, {"main.c": "b\n", "README": "s\n"})
    second = livetree.digests(tree)
    assert second["live_tree"] != first["live_tree"] and second["live_configure"] == first["live_configure"]
    for name in ("sub/meson.build", "m4/ax_foo.m4", "CMakeLists.txt"):
        write_tree(tree, {name: "changed\n"})
        third = livetree.digests(tree)
        assert third["live_configure"] != second["live_configure"], name
        second = third


def test_digest_ignores_git_and_sees_modes(tmp_path):
    tree = write_tree(tmp_path / "tree", {"a.sh": "echo\n"})
    first = livetree.digest(tree)
    write_tree(tree, {".git/HEAD": "x\n"})
    assert livetree.digest(tree) == first
    os.chmod(tree / "a.sh", 0o755)
    assert livetree.digest(tree) != first


def test_configedit_keeps_comments_and_removes_empty_block(tmp_path):
    path = tmp_path / "local.yaml"
    path.write_text("# mine\nformat: 1\nlive_sources:\n  old: /x\n\n# keep me\noffline: false\n")
    configedit.set_mapping(path, "live_sources", {"a b": "/with space/dir", "old": "/x"}, lambda: None)
    text = path.read_text()
    assert text.startswith("# mine\nformat: 1\nlive_sources:\n") and "# keep me\noffline: false\n" in text
    assert configedit.read_mapping(path, "live_sources") == {"a b": "/with space/dir", "old": "/x"}
    configedit.set_mapping(path, "live_sources", {}, lambda: None)
    assert "live_sources" not in path.read_text() and "# keep me" in path.read_text()


def test_configedit_puts_the_old_text_back_when_the_project_breaks(tmp_path):
    path = tmp_path / "local.yaml"
    path.write_text("format: 1\n")

    def broken():
        raise UserError("no", None)

    with pytest.raises(UserError):
        configedit.set_mapping(path, "live_sources", {"a": "/b"}, broken)
    assert path.read_text() == "format: 1\n"
    with pytest.raises(UserError):
        configedit.set_mapping(tmp_path / "new.yaml", "live_sources", {"a": "/b"}, broken)
    assert not (tmp_path / "new.yaml").exists()


def test_git_work_tree_leaves_out_what_git_ignores(tmp_path):
    import subprocess

    tree = write_tree(tmp_path / "tree", {"main.c": "a\n", ".gitignore": "hello\nbuild/\n", "new.c": "n\n"})
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "add", "main.c", ".gitignore"], check=True)
    first = livetree.digest(tree)
    write_tree(tree, {"hello": "a host binary\n", "build/x.o": "object\n"})
    assert livetree.digest(tree) == first
    assert [e.path for e in livetree.scan(tree)] == [".gitignore", "main.c", "new.c"]
    write_tree(tree, {"new2.c": "untracked, not ignored\n"})
    assert livetree.digest(tree) != first

"""Live source (`buildsys source RECIPE --local DIR`) and incremental
rebuilds, with real builds of the tiny fixture in the real sandbox: an edit
recompiles only what it touches, and the result is the bytes of a clean build."""
import os
import re
from pathlib import Path

import pytest

from buildsys.treedigest import tree_digest
from conftest import run_buildsys, write_tree

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")

MAKEFILE = """\
all: libgreet.a
libgreet.a: greet.o extra.o
\t$(AR) rcD $@ $^
%.o: %.c greet.h
\t$(CC) $(CFLAGS) -c -o $@ $<
install:
\tinstall -D -m 0644 libgreet.a $(DESTDIR)/usr/lib/libgreet.a
\tinstall -D -m 0644 greet.h $(DESTDIR)/usr/include/greet.h
"""
EXTRA_C = "int greet_extra(void) { return 42; }\n"


def env_for(tmp_path, name="build"):
    return {"BUILDSYS_BUILD_DIR": str(tmp_path / name), "BUILDSYS_DL_DIR": str(tmp_path / "dl"),
            "BUILDSYS_CACHE_DIR": str(tmp_path / f"cache-{name}"), "BUILDSYS_OFFLINE": "1"}


def package_of(build: Path, pn: str, board: str = "tiny-x86") -> Path:
    sig = (build / "work" / board / pn / "stamps" / "package").read_text()
    return build / "packages" / sig


def live_tree(tmp_path: Path, tiny: Path) -> Path:
    files = tiny / "recipes/libgreet/files"
    return write_tree(tmp_path / "greet-src", {"greet.c": (files / "greet.c").read_text(),
                                               "greet.h": (files / "greet.h").read_text(),
                                               "extra.c": EXTRA_C, "Makefile": MAKEFILE})


def test_source_local_populates_and_reset(tiny, tmp_path):
    env = env_for(tmp_path)
    tree = tmp_path / "work/libgreet"
    out = run_buildsys("--project", tiny, "source", "libgreet", "--local", tree, env=env, check=0).stdout
    assert "libgreet now builds from" in out
    assert (tree / "greet.c").read_text() == (tiny / "recipes/libgreet/files/greet.c").read_text()
    assert (tree / ".git").is_dir()
    assert "live_sources" in (tiny / "local.yaml").read_text()
    listed = run_buildsys("--project", tiny, "source", env=env, check=0).stdout
    assert re.search(rf"^libgreet\s+{re.escape(str(tree))}$", listed, re.M)
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    run_buildsys("--project", tiny, "source", "libgreet", "--reset", env=env, check=0)
    assert "libgreet" not in (tiny / "local.yaml").read_text()
    assert (tree / "greet.c").is_file()             # the working tree is left alone
    again = run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert "libgreet: runs because value 'sources' changed" in again.stderr


def test_live_edit_recompiles_only_what_changed_and_equals_clean_build(tiny, tmp_path):
    tree = live_tree(tmp_path, tiny)
    env = env_for(tmp_path)
    run_buildsys("--project", tiny, "source", "libgreet", "--local", tree, env=env, check=0)
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    src = tmp_path / "build/work/tiny-x86/libgreet/src"
    extra_o, greet_o = os.stat(src / "extra.o"), os.stat(src / "greet.o")

    greet = tree / "greet.c"
    greet.write_text(greet.read_text().replace("hello from", "howdy from"))
    second = run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert "libgreet: runs because value 'sources' changed" in second.stderr
    assert "libgreet:unpack" in second.stderr
    log = (tmp_path / "build/work/tiny-x86/libgreet/logs/unpack.log").read_text()
    assert "1 file(s) copied, 0 removed" in log
    configure_log = (tmp_path / "build/work/tiny-x86/libgreet/logs/configure.log").read_text()
    assert "configure not run again" in configure_log      # only a .c file changed
    after_extra, after_greet = os.stat(src / "extra.o"), os.stat(src / "greet.o")
    assert (after_extra.st_ino, after_extra.st_mtime_ns) == (extra_o.st_ino, extra_o.st_mtime_ns), \
        "extra.o was rebuilt though extra.c did not change"
    assert after_greet.st_mtime_ns != greet_o.st_mtime_ns
    incremental = tree_digest(package_of(tmp_path / "build", "libgreet"))

    # The same tree built clean elsewhere: the same package bytes.
    clean = run_buildsys("--project", tiny, "build", "-j", "2", env=env_for(tmp_path, "clean"), check=0)
    assert "libgreet:compile" in clean.stderr
    assert tree_digest(package_of(tmp_path / "clean", "libgreet")) == incremental

    # A file removed from the tree goes from the source dir too.
    (tree / "extra.h").write_text("/* unused */\n")
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert (src / "extra.h").is_file()
    (tree / "extra.h").unlink()
    greet.write_text(greet.read_text() + "/* new content: not in any store */\n")
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert not (src / "extra.h").exists()
    assert os.stat(src / "extra.o").st_ino == extra_o.st_ino

    # A changed Makefile (flags make would not notice) is a clean build.
    (tree / "Makefile").write_text(MAKEFILE.replace("$(CFLAGS)", "$(CFLAGS) -O1"))
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert os.stat(src / "extra.o").st_mtime_ns != extra_o.st_mtime_ns


def test_planted_link_in_source_dir_is_not_followed(tiny, tmp_path):
    tree = live_tree(tmp_path, tiny)
    env = env_for(tmp_path)
    run_buildsys("--project", tiny, "source", "libgreet", "--local", tree, env=env, check=0)
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    src = tmp_path / "build/work/tiny-x86/libgreet/src"
    canary = tmp_path / "canary"
    canary.write_text("untouched\n")
    # What a hostile step could leave: its synced file replaced by a link to a host file.
    (src / "greet.c").unlink()
    (src / "greet.c").symlink_to(canary)
    (tree / "greet.c").write_text((tree / "greet.c").read_text() + "/* edited */\n")
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert canary.read_text() == "untouched\n"
    assert not (src / "greet.c").is_symlink()


def test_incremental_false_builds_clean(tiny, tmp_path):
    tree = live_tree(tmp_path, tiny)
    env = env_for(tmp_path)
    run_buildsys("--project", tiny, "source", "libgreet", "--local", tree, env=env, check=0)
    local = tiny / "local.yaml"
    local.write_text(local.read_text() + "incremental: false\n")
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    extra_o = tmp_path / "build/work/tiny-x86/libgreet/src/extra.o"
    before = os.stat(extra_o).st_mtime_ns
    (tree / "greet.c").write_text((tree / "greet.c").read_text() + "/* edited */\n")
    run_buildsys("--project", tiny, "build", "-j", "2", env=env, check=0)
    assert os.stat(extra_o).st_mtime_ns != before      # rebuilt: the work dir was not kept


def test_live_sources_in_buildsys_yaml_is_refused(tiny, tmp_path):
    project = tiny / "buildsys.yaml"
    project.write_text(project.read_text() + f"live_sources:\n  libgreet: {tmp_path}\n")
    proc = run_buildsys("--project", tiny, "build", env=env_for(tmp_path), check=2)
    assert re.search(r"buildsys.yaml:\d+:\d+: live_sources belongs in local.yaml", proc.stderr)
    assert "Traceback" not in proc.stderr


def test_live_source_missing_dir_is_one_line(tiny, tmp_path):
    (tiny / "local.yaml").write_text(f"format: 1\nlive_sources:\n  libgreet: {tmp_path}/nowhere\n")
    proc = run_buildsys("--project", tiny, "build", env=env_for(tmp_path), check=2)
    assert re.search(r"local.yaml:\d+:\d+: live source of .libgreet. is", proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1

"""Libraries in images: DT_NEEDED resolution and its error messages, the
development files left out of the rootfs, and the C library pruned to what
the programs need.  The ELF files are real ones, made with the host's gcc."""
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildsys.classes.image import Image, check_elves
from buildsys.errors import BuildError
from buildsys.image import elf, finalize

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or os.uname().machine != "x86_64",
                                reason="needs the host's x86_64 gcc")
INTERP = "/lib64/ld-linux-x86-64.so.2"


def gcc(*args, cwd):
    subprocess.run(["gcc", *args], cwd=cwd, check=True, capture_output=True)


def shared_lib(tmp: Path, soname: str, needs=(), body="int f(void) { return 1; }") -> Path:
    """A small shared object with this DT_SONAME and these DT_NEEDED, no libc."""
    src = tmp / f"{soname}.c"
    src.write_text(body + "\n")
    out = tmp / f"build-{soname}"
    # --no-as-needed: keep each DT_NEEDED although nothing is called from it.
    gcc("-shared", "-nostdlib", "-fPIC", "-o", str(out), str(src), f"-Wl,-soname,{soname}",
        "-Wl,--no-as-needed", *[f"-l:{n}" for n in needs], f"-L{tmp}", cwd=tmp)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Fake C library sonames, a libfoo.so.1, a program needing libfoo and
    libc, and one finding its library through RUNPATH=$ORIGIN/../lib."""
    tmp = tmp_path_factory.mktemp("elves")
    libs = {name: shared_lib(tmp, name) for name in ("libc.so.6", "libm.so.6", "libresolv.so.2",
                                                       "libgcc_s.so.1")}
    for name, path in libs.items():
        shutil.copyfile(path, tmp / name)           # -l:NAME links against these
    libs["libfoo.so.1"] = shared_lib(tmp, "libfoo.so.1", needs=["libm.so.6"])
    shutil.copyfile(libs["libfoo.so.1"], tmp / "libfoo.so.1")
    (tmp / "main.c").write_text("int main(void) { return 0; }\n")
    prog = tmp / "prog"
    gcc("-o", str(prog), "main.c", "-nostdlib", "-Wl,-e,main", f"-Wl,--dynamic-linker={INTERP}",
        "-Wl,--no-as-needed", "-l:libfoo.so.1", "-l:libc.so.6", f"-L{tmp}", f"-Wl,-rpath-link,{tmp}", cwd=tmp)
    app = tmp / "app"
    gcc("-o", str(app), "main.c", "-nostdlib", "-Wl,-e,main", f"-Wl,--dynamic-linker={INTERP}",
        "-Wl,--no-as-needed", "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../lib", "-l:libfoo.so.1",
        f"-L{tmp}", f"-Wl,-rpath-link,{tmp}", cwd=tmp)
    return SimpleNamespace(libs=libs, prog=prog, app=app)


def make_tree(root: Path, files: dict[str, Path]) -> Path:
    for path, src in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return root


def full_tree(tmp_path, built) -> Path:
    return make_tree(tmp_path / "rootfs", {
        "/usr/bin/prog": built.prog, "/usr/lib/libfoo.so.1": built.libs["libfoo.so.1"],
        "/lib/libc.so.6": built.libs["libc.so.6"], "/lib/libm.so.6": built.libs["libm.so.6"],
        "/lib/libresolv.so.2": built.libs["libresolv.so.2"], "/lib/libgcc_s.so.1": built.libs["libgcc_s.so.1"],
        INTERP: built.libs["libc.so.6"]})


# --- reading ELF files -----------------------------------------------------------


def test_reads_interpreter_needed_soname_and_runpath(built):
    prog = elf.read(built.prog)
    assert prog.machine == 62 and prog.bits == 64 and prog.interp == INTERP
    assert prog.needed == ("libfoo.so.1", "libc.so.6")
    foo = elf.read(built.libs["libfoo.so.1"])
    assert foo.soname == "libfoo.so.1" and foo.needed == ("libm.so.6",) and foo.interp is None
    app = elf.read(built.app)
    assert app.runpath == ("$ORIGIN/../lib",) and app.rpath == ()
    assert elf.search_dirs("/opt/app/bin/app", app, "x86_64")[0] == "/opt/app/lib"


def test_not_an_elf_and_truncated_elf(tmp_path, built):
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert elf.read(tmp_path / "script") is None
    (tmp_path / "cut").write_bytes(built.prog.read_bytes()[:200])
    with pytest.raises(ValueError):
        elf.read(tmp_path / "cut")


# --- the DT_NEEDED check ------------------------------------------------------------


def test_complete_tree_passes(tmp_path, built):
    check_elves(full_tree(tmp_path, built), "x86_64")


def test_missing_library_names_program_library_and_provider(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / "usr/lib/libfoo.so.1").unlink()
    asked = []

    def providers(soname, info):
        asked.append(soname)
        return ["libfoo"]

    with pytest.raises(BuildError) as exc:
        check_elves(tree, "x86_64", {"/usr/bin/prog": "prog"}, {}, providers)
    message = str(exc.value)
    assert message.startswith("/usr/bin/prog (from prog) needs libfoo.so.1, which is not in the image")
    assert "/lib, /usr/lib" in message
    assert "libfoo installs it: add it to the image's packages or to prog's rdepends" in message
    assert asked == ["libfoo.so.1"]


def test_missing_library_nobody_installs(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / "usr/lib/libfoo.so.1").unlink()
    with pytest.raises(BuildError, match="no recipe this build knows installs it"):
        check_elves(tree, "x86_64", providers=lambda soname, info: [])


def test_missing_libc_library_points_at_virtual_libc(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / "lib/libm.so.6").unlink()          # needed by libfoo.so.1: transitively by prog
    with pytest.raises(BuildError, match=r"/usr/lib/libfoo.so.1 needs libm.so.6.*virtual/libc: add libc"):
        check_elves(tree, "x86_64")


def test_missing_interpreter_points_at_libc_not_a_toolchain(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / INTERP.lstrip("/")).unlink()
    with pytest.raises(BuildError) as exc:
        check_elves(tree, "x86_64")
    assert f"needs the interpreter {INTERP}" in str(exc.value)
    assert "virtual/libc" in str(exc.value) and "toolchain" not in str(exc.value)


def test_library_dropped_by_rootfs_exclude_says_so(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / "usr/lib/libfoo.so.1").unlink()
    with pytest.raises(BuildError, match="rootfs_exclude pattern 'lib.*' dropped /usr/lib/libfoo.so.1: add it "
                                         "to rootfs_keep"):
        check_elves(tree, "x86_64", excluded={"/usr/lib/libfoo.so.1": "lib*"})


def test_runpath_origin_and_links_resolve_inside_the_tree(tmp_path, built):
    tree = full_tree(tmp_path, built)
    make_tree(tree, {"/opt/app/bin/app": built.app, "/opt/app/lib/libfoo.so.1.0": built.libs["libfoo.so.1"]})
    for p in ("usr/lib/libfoo.so.1", "usr/bin/prog"):
        (tree / p).unlink()
    with pytest.raises(BuildError, match="/opt/app/bin/app needs libfoo.so.1.*searches /opt/app/lib, "):
        check_elves(tree, "x86_64")
    # A relative link in the RUNPATH dir; an absolute one means the image's /, not the host's.
    (tree / "opt/app/lib/libfoo.so.1").symlink_to("libfoo.so.1.0")
    check_elves(tree, "x86_64")
    (tree / "opt/app/lib/libfoo.so.1").unlink()
    (tree / "opt/app/lib/libfoo.so.1").symlink_to("/opt/app/lib/libfoo.so.1.0")
    check_elves(tree, "x86_64")


def test_a_non_elf_file_with_the_soname_does_not_count(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / "usr/lib/libfoo.so.1").write_text("not a library\n")
    with pytest.raises(BuildError, match="needs libfoo.so.1"):
        check_elves(tree, "x86_64")


def test_wrong_machine_is_refused(tmp_path, built):
    tree = full_tree(tmp_path, built)
    with pytest.raises(BuildError, match=r"^/lib/libc.so.6 is an ELF for machine 62, not aarch64 \(183\)$"):
        check_elves(tree, "aarch64")


# --- development files out of the rootfs -------------------------------------------


def _dev_tree(root: Path) -> Path:
    files = ["usr/include/foo.h", "usr/include/foo/bar.h", "usr/lib/libfoo.a", "usr/lib/libfoo.la",
             "usr/lib/libfoo.so.1.0", "usr/lib/libplugin.so", "usr/lib/pkgconfig/foo.pc",
             "usr/share/pkgconfig/bar.pc", "usr/share/man/man1/foo.1", "usr/share/doc/foo/LICENSE",
             "usr/share/doc/foo/README", "usr/lib/cmake/Foo/FooConfig.cmake", "usr/share/aclocal/foo.m4",
             "usr/share/info/foo.info", "usr/bin/foo", "etc/foo.conf"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(f)
    (root / "usr/lib/libfoo.so.1").symlink_to("libfoo.so.1.0")
    (root / "usr/lib/libfoo.so").symlink_to("libfoo.so.1")
    return root


def _left(root: Path) -> list[str]:
    return sorted("/" + str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink())


def test_default_exclusion_keeps_runtime_files_only(tmp_path):
    root = _dev_tree(tmp_path / "rootfs")
    gone = finalize.exclude(root, finalize.DEFAULT_EXCLUDE)
    assert _left(root) == ["/etc/foo.conf", "/usr/bin/foo", "/usr/lib/libfoo.so.1", "/usr/lib/libfoo.so.1.0",
                           "/usr/lib/libplugin.so"]      # a real file called lib*.so is a library, not a dev link
    assert gone["/usr/lib/libfoo.so"] == "lib*.so@"
    assert gone["/usr/include/foo/bar.h"] == gone["/usr/include"] == "/usr/include"
    assert gone["/usr/lib/libfoo.la"] == "*.la" and gone["/usr/lib/cmake/Foo/FooConfig.cmake"] == "/usr/lib/cmake"
    assert not (root / "usr/include").exists() and not (root / "usr/share/man").exists()
    assert (root / "usr/lib").is_dir()


def test_rootfs_keep_wins(tmp_path):
    root = _dev_tree(tmp_path / "rootfs")
    gone = finalize.exclude(root, finalize.DEFAULT_EXCLUDE, ["/usr/share/doc/*/LICENSE", "libfoo.a"])
    left = _left(root)
    assert "/usr/share/doc/foo/LICENSE" in left and "/usr/lib/libfoo.a" in left
    assert "/usr/share/doc/foo/README" in gone and "/usr/share/doc" not in gone   # not empty: stays


def test_exclusion_never_follows_a_link(tmp_path):
    outside = tmp_path / "outside"
    (outside / "include").mkdir(parents=True)
    (outside / "include/keep.h").write_text("x")
    root = tmp_path / "rootfs"
    (root / "usr").mkdir(parents=True)
    (root / "usr/include").symlink_to(outside / "include")
    finalize.exclude(root, finalize.DEFAULT_EXCLUDE)
    assert not os.path.lexists(root / "usr/include") and (outside / "include/keep.h").is_file()


# --- the C library down to what the programs need ------------------------------------


LIBC_FILES = ("/lib/libc.so.6", "/lib/libm.so.6", "/lib/libresolv.so.2", "/lib/libgcc_s.so.1", INTERP)


def test_prune_keeps_the_needed_closure_and_dlopened_libgcc(tmp_path, built):
    tree = full_tree(tmp_path, built)
    owners = {p: "libc" for p in LIBC_FILES} | {"/usr/bin/prog": "prog", "/usr/lib/libfoo.so.1": "libfoo"}
    gone = finalize.prune_unneeded(tree, "x86_64", owners, {"libc"}, {"libc.so.6": ["libgcc_s.so.1"]})
    assert gone == ["/lib/libresolv.so.2"]              # libm stays: libfoo needs it
    check_elves(tree, "x86_64")
    assert (tree / "lib/libgcc_s.so.1").is_file() and (tree / INTERP.lstrip("/")).is_file()


def test_prune_drops_everything_when_nothing_is_dynamic(tmp_path, built):
    tree = full_tree(tmp_path, built)
    for p in ("usr/bin/prog", "usr/lib/libfoo.so.1"):
        (tree / p).unlink()
    (tree / "lib/libc.so").symlink_to("libc.so.6")
    owners = {p: "libc" for p in (*LIBC_FILES, "/lib/libc.so")}
    gone = finalize.prune_unneeded(tree, "x86_64", owners, {"libc"})
    assert sorted(gone) == sorted((*LIBC_FILES, "/lib/libc.so"))
    assert not os.path.lexists(tree / "lib/libc.so")


def test_image_class_finalizes_with_its_params(tmp_path, built):
    tree = full_tree(tmp_path, built)
    (tree / "usr/include").mkdir()
    (tree / "usr/include/foo.h").write_text("")
    owners = {p: "libc" for p in LIBC_FILES} | {"/usr/bin/prog": "prog", "/usr/lib/libfoo.so.1": "libfoo",
                                                  "/usr/include/foo.h": "libfoo"}
    libc = SimpleNamespace(pn="libc", get=lambda k, d=None: ["virtual/libc"] if k == "provides" else d)
    other = SimpleNamespace(pn="libfoo", get=lambda k, d=None: d)
    logged = []

    def ctx_for(values):
        return SimpleNamespace(recipe=SimpleNamespace(get=lambda k, d=None: values.get(k, d)),
                               board=SimpleNamespace(arch="x86_64"), log=logged.append)

    gone = Image().finalize_tree(ctx_for({}), tree, [(libc, tmp_path), (other, tmp_path)], owners)
    assert gone["/usr/include"] == "/usr/include" and gone["/lib/libresolv.so.2"] == "prune_libc (libc)"
    assert any("dropped /lib/libresolv.so.2" in line for line in logged)
    tree2 = full_tree(tmp_path / "2", built)
    gone = Image().finalize_tree(ctx_for({"prune_libc": False, "rootfs_exclude": []}), tree2,
                                 [(libc, tmp_path), (other, tmp_path)], owners)
    assert gone == {} and (tree2 / "lib/libresolv.so.2").is_file()


def test_providers_searches_the_build_dirs_package_store(tmp_path, built):
    store = tmp_path / "packages"
    for sig, pn, variant, lib in (("a1", "libfoo", "target", built.libs["libfoo.so.1"]),
                                  ("b2", "libfoo-native", "native", built.libs["libfoo.so.1"]),
                                  ("c3", "notalib", "target", None)):
        make_tree(store / sig, {"/usr/lib/libfoo.so.1": lib} if lib else {})
        (store / f"{sig}.json").write_text(f'{{"pn": "{pn}", "variant": "{variant}"}}')
    (store / "c3/usr/lib").mkdir(parents=True)
    (store / "c3/usr/lib/libfoo.so.1").write_text("not an ELF")
    ctx = SimpleNamespace(board=SimpleNamespace(arch="x86_64"))
    info = elf.read(built.prog)
    trees = [(SimpleNamespace(pn="busybox"), store / "c3")]
    assert Image.providers(ctx, trees, "libfoo.so.1", info) == ["libfoo"]
    assert Image.providers(ctx, trees, "libbar.so.1", info) == []


def test_libc_needing_the_loader_finds_it_in_lib64(tmp_path, built):
    """glibc's libc.so.6 has DT_NEEDED ld-linux-x86-64.so.2, which is in
    /lib64 (off the search path): ld.so is loaded first and satisfies it."""
    tmp = tmp_path / "build"
    tmp.mkdir()
    loader = shared_lib(tmp, "ld-linux-x86-64.so.2")
    shutil.copyfile(loader, tmp / "ld-linux-x86-64.so.2")
    libc = shared_lib(tmp, "libc.so.6", needs=["ld-linux-x86-64.so.2"])
    tree = full_tree(tmp_path, built)
    make_tree(tree, {"/lib/libc.so.6": libc, INTERP: loader})
    check_elves(tree, "x86_64")
    owners = {p: "libc" for p in LIBC_FILES} | {"/usr/bin/prog": "prog", "/usr/lib/libfoo.so.1": "libfoo"}
    assert finalize.prune_unneeded(tree, "x86_64", owners, {"libc"}) == ["/lib/libgcc_s.so.1",
                                                                          "/lib/libresolv.so.2"]
    # Without a program naming that interpreter nothing loads it first.
    (tree / "usr/bin/prog").unlink()
    with pytest.raises(BuildError, match="/lib/libc.so.6 .*needs ld-linux-x86-64.so.2"):
        check_elves(tree, "x86_64")

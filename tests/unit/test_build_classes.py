"""The autotools, cmake and meson classes without a build: the files they
generate for a board (config.site, CMake toolchain file, Meson cross file),
their steps, the pre_/post_ hooks every class gets, the steps schema, the
check for sandbox paths in a package, and autoreconf's missing tools."""
import argparse
import ast
import configparser
import os
import shutil
import subprocess

import pytest

from buildsys.classes import get as get_class
from buildsys.classes.base import SANDBOX_OBJ, SANDBOX_SRC, BuildClass, StepContext
from buildsys.classes.crossbuild import (
    check_sandbox_paths,
    clean_sandbox_flags,
    cmake_toolchain,
    config_site,
    meson_cross,
    target_triplet,
)
from buildsys.errors import BuildError, UserError
from buildsys.schema import Steps
from buildsys.workspace import Workspace
from buildsys.yamlio import load as yaml_load
from conftest import ROOT, run_buildsys, write_tree


def board(name: str, tmp_path):
    args = argparse.Namespace(project=str(ROOT), build_dir=str(tmp_path / "build"), board=name)
    return Workspace(args).board


# --- generated files -------------------------------------------------------------

def test_triplets_of_the_boards(tmp_path):
    assert target_triplet(board("qemu-arm64", tmp_path)) == "aarch64-linux-gnu"
    assert target_triplet(board("x86-virtio", tmp_path)) == "x86_64-linux-gnu"


def test_config_site_is_read_by_sh_and_the_environment_wins(tmp_path):
    site = tmp_path / "config.site"
    site.write_text(config_site("aarch64"))
    script = (f". {site}; echo $ac_cv_func_malloc_0_nonnull $ac_cv_func_realloc_0_nonnull "
              "$ac_cv_c_bigendian $ac_cv_file__dev_zero")
    out = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"]}).stdout
    assert out.split() == ["yes", "yes", "no", "yes"]
    # a recipe's env: {ac_cv_...: no} is taken over the site default
    out = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"], "ac_cv_func_malloc_0_nonnull": "no"}).stdout
    assert out.split()[0] == "no"
    assert "ac_cv_c_bigendian=yes" in config_site("mips")


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_toolchain_file_read_by_cmake(tmp_path):
    """The real cmake reads the generated file; the values it ends up with."""
    tc = tmp_path / "toolchain.cmake"
    tc.write_text(cmake_toolchain(board("qemu-arm64", tmp_path), "aarch64-linux-gnu-"))
    names = ["CMAKE_SYSTEM_NAME", "CMAKE_SYSTEM_PROCESSOR", "CMAKE_C_COMPILER", "CMAKE_CXX_COMPILER",
             "CMAKE_FIND_ROOT_PATH", "CMAKE_FIND_ROOT_PATH_MODE_PROGRAM", "CMAKE_FIND_ROOT_PATH_MODE_LIBRARY",
             "CMAKE_FIND_ROOT_PATH_MODE_INCLUDE", "CMAKE_FIND_ROOT_PATH_MODE_PACKAGE", "CMAKE_C_FLAGS_RELEASE"]
    probe = tmp_path / "probe.cmake"
    probe.write_text(f"include({tc})\n" + "".join(f'message("{n}=${{{n}}}")\n' for n in names))
    proc = subprocess.run(["cmake", "-P", str(probe)], capture_output=True, text=True, check=True)
    values = dict(line.split("=", 1) for line in proc.stderr.splitlines() if "=" in line)
    assert values == {
        "CMAKE_SYSTEM_NAME": "Linux", "CMAKE_SYSTEM_PROCESSOR": "aarch64",
        "CMAKE_C_COMPILER": "aarch64-linux-gnu-gcc", "CMAKE_CXX_COMPILER": "aarch64-linux-gnu-g++",
        # the sysroot, and Debian's cross C library for find_library(m)
        "CMAKE_FIND_ROOT_PATH": "/build/sysroot;/usr/aarch64-linux-gnu",
        "CMAKE_FIND_ROOT_PATH_MODE_PROGRAM": "NEVER", "CMAKE_FIND_ROOT_PATH_MODE_LIBRARY": "ONLY",
        "CMAKE_FIND_ROOT_PATH_MODE_INCLUDE": "ONLY", "CMAKE_FIND_ROOT_PATH_MODE_PACKAGE": "ONLY",
        "CMAKE_C_FLAGS_RELEASE": "-DNDEBUG",      # no -O3 from Release: CFLAGS decide
    }


def test_cmake_toolchain_x86_uses_the_plain_compiler_and_only_the_sysroot(tmp_path):
    text = cmake_toolchain(board("x86-virtio", tmp_path), "")
    assert "set(CMAKE_C_COMPILER gcc)" in text
    assert 'set(CMAKE_FIND_ROOT_PATH "/build/sysroot")' in text   # not /: the environment's own libraries
    assert "set(CMAKE_SYSTEM_PROCESSOR x86_64)" in text


def _meson_ini(text: str) -> dict[str, dict[str, object]]:
    parser = configparser.ConfigParser(comment_prefixes=("#",))
    parser.read_string(text)
    return {s: {k: ast.literal_eval(v) for k, v in parser[s].items()} for s in parser.sections()}


def test_meson_cross_file(tmp_path):
    ini = _meson_ini(meson_cross(board("qemu-arm64", tmp_path), "aarch64-linux-gnu-",
                                 "-O2 -mcpu=cortex-a53 -I/build/sysroot/usr/include",
                                 "-L/build/sysroot/usr/lib -Wl,-rpath-link=/build/sysroot/usr/lib"))
    assert ini["binaries"] == {"c": "aarch64-linux-gnu-gcc", "cpp": "aarch64-linux-gnu-g++",
                               "ar": "aarch64-linux-gnu-ar", "strip": "aarch64-linux-gnu-strip",
                               "pkgconfig": "pkg-config"}
    assert ini["host_machine"] == {"system": "linux", "cpu_family": "aarch64", "cpu": "aarch64", "endian": "little"}
    assert ini["properties"]["sys_root"] == "/build/sysroot"
    assert ini["properties"]["pkg_config_libdir"] == \
        "/build/sysroot/usr/lib/pkgconfig:/build/sysroot/usr/share/pkgconfig"
    assert ini["built-in options"]["c_args"] == ["-O2", "-mcpu=cortex-a53", "-I/build/sysroot/usr/include"]
    assert ini["built-in options"]["c_link_args"] == ["-L/build/sysroot/usr/lib",
                                                      "-Wl,-rpath-link=/build/sysroot/usr/lib"]


def test_meson_cross_file_quotes_flags(tmp_path):
    ini = _meson_ini(meson_cross(board("x86-virtio", tmp_path), "", """-DMSG='"it'"'"'s"' -O2""", ""))
    assert ini["built-in options"]["c_args"] == ['-DMSG="it\'s"', "-O2"]
    assert ini["binaries"]["c"] == "gcc"
    assert ini["host_machine"]["cpu_family"] == "x86_64"
    with pytest.raises(UserError, match="CFLAGS or LDFLAGS"):
        meson_cross(board("x86-virtio", tmp_path), "", "-DMSG='unclosed", "")


# --- steps of the classes ----------------------------------------------------------

class RecordingContext(StepContext):
    """A StepContext that records the steps instead of running them (the
    sandbox runs in tests/engine)."""

    def __init__(self, recipe, board, tmp_path):
        self.recipe, self.board, self.task, self.jobs = recipe, board, "", 2
        self.env = {"CFLAGS": "-O2", "CPPFLAGS": "-I/build/sysroot/usr/include", "LDFLAGS": "-L/build/sysroot/usr/lib"}
        self.paths = argparse.Namespace(stage=tmp_path / "stage", dest=tmp_path / "dest")
        self.calls: list[tuple[str, str, dict | None]] = []
        self.logged: list[str] = []

    def sh(self, script, env=None, cwd=SANDBOX_SRC):
        self.calls.append((script, cwd, env))

    def log(self, text):
        self.logged.append(text)


class FakeRecipe:
    def __init__(self, values, variant="target", pn="pkg"):
        self.values, self.variant, self.pn, self.name = values, variant, pn, pn

    def get(self, key, default=None):
        return self.values.get(key, default)

    def where(self, key=None):
        return None


def test_autotools_target_configure(tmp_path):
    b = board("qemu-arm64", tmp_path)
    ctx = RecordingContext(FakeRecipe({"conf_args": ["--disable-nls", 'CC="$CC"']}), b, tmp_path)
    get_class("autotools")().run("configure", ctx)
    (script, cwd, env), = ctx.calls
    assert cwd == SANDBOX_OBJ
    assert script.startswith("/build/src/configure --host=aarch64-linux-gnu --build=")
    assert "--prefix=/usr --sysconfdir=/etc --localstatedir=/var --disable-dependency-tracking" in script
    assert script.endswith(' --disable-nls CC="$CC"')       # recipe arguments last, shell expressions kept
    assert env["CONFIG_SITE"] == "/build/stage/config.site"
    assert (tmp_path / "stage/config.site").read_text() == config_site("aarch64")
    assert env["PKG_CONFIG_SYSROOT_DIR"] == "/build/sysroot"
    assert env["PKG_CONFIG_LIBDIR"] == "/build/sysroot/usr/lib/pkgconfig:/build/sysroot/usr/share/pkgconfig"
    assert env["PKG_CONFIG_PATH"] == ""
    assert env["LDFLAGS"] == "-L/build/sysroot/usr/lib -Wl,-rpath-link=/build/sysroot/usr/lib:/build/sysroot/lib"


def test_autotools_native_configure_in_tree(tmp_path):
    ctx = RecordingContext(FakeRecipe({"out_of_tree": False, "autoreconf": True}, variant="native"),
                           board("x86-virtio", tmp_path), tmp_path)
    get_class("autotools")().run("configure", ctx)
    (script, cwd, env), = ctx.calls
    assert cwd == SANDBOX_SRC
    assert script.splitlines()[0] == "(cd /build/src && autoreconf -fi)"
    assert "--host" not in script and "--build" not in script
    assert "CONFIG_SITE" not in env
    assert env["PKG_CONFIG_SYSROOT_DIR"] == "/build/native"


def test_cmake_and_meson_steps(tmp_path):
    b = board("qemu-arm64", tmp_path)
    cmake = RecordingContext(FakeRecipe({"cmake_args": ["-DFOO=ON"]}), b, tmp_path)
    get_class("cmake")().run("configure", cmake)
    script, _, env = cmake.calls[0]
    assert script.startswith("cmake -G Ninja -S /build/src -B /build/obj ")
    assert "-DCMAKE_TOOLCHAIN_FILE=/build/stage/toolchain.cmake" in script and script.endswith(" -DFOO=ON")
    assert env["CFLAGS"] == "-O2 -I/build/sysroot/usr/include"      # CMake reads no CPPFLAGS
    assert (tmp_path / "stage/toolchain.cmake").is_file()
    meson = RecordingContext(FakeRecipe({"meson_args": ["-Dx=y"]}), b, tmp_path)
    get_class("meson")().run("configure", meson)
    script = meson.calls[0][0]
    assert script.startswith("CFLAGS= CXXFLAGS= CPPFLAGS= LDFLAGS= meson setup --prefix=/usr --libdir=lib ")
    assert "--buildtype=release" in script and "--cross-file=/build/stage/meson-cross.ini" in script
    assert script.endswith("-Dx=y /build/obj /build/src")
    meson.calls.clear()
    get_class("meson")().run("compile", meson)
    assert meson.calls[0][0] == 'ninja -C /build/obj -j"$JOBS" -v'


def test_native_cmake_has_no_toolchain_file(tmp_path):
    ctx = RecordingContext(FakeRecipe({}, variant="native"), board("qemu-arm64", tmp_path), tmp_path)
    get_class("cmake")().run("configure", ctx)
    assert "TOOLCHAIN_FILE" not in ctx.calls[0][0]
    assert "-DCMAKE_PREFIX_PATH=/build/native/usr" in ctx.calls[0][0]
    assert not (tmp_path / "stage/toolchain.cmake").exists()


def test_install_finishes_after_the_post_install_hook(tmp_path):
    (tmp_path / "dest").mkdir()
    steps = {"pre_install": "echo pre", "post_install": "echo post"}
    ctx = RecordingContext(FakeRecipe({"steps": steps}), board("x86-virtio", tmp_path), tmp_path)
    get_class("meson")().run("install", ctx)
    scripts = [c[0] for c in ctx.calls]
    assert scripts[0] == "echo pre"
    assert scripts[1].startswith("DESTDIR=/build/dest meson install")
    assert scripts[2] == "echo post"
    assert "-name '*.la'" in scripts[3] and '"$STRIP" --strip-all' in scripts[3]   # sees what the hook installed
    assert len(scripts) == 4
    ctx = RecordingContext(FakeRecipe({"strip": False}), board("x86-virtio", tmp_path), tmp_path)
    get_class("meson")().run("install", ctx)
    assert "--strip" not in ctx.calls[-1][0]


# --- hooks in every class -------------------------------------------------------------

class OwnRun(BuildClass):
    """Like kernel/kconfig/image: its own run(), calling super() for some tasks."""

    def script(self, task, ctx):
        return f"class {task}"

    def run(self, task, ctx):
        if task == "configure":
            ctx.sh("own configure")
        super().run(task, ctx)


@pytest.mark.parametrize("cls", [BuildClass, OwnRun])
def test_hooks_run_once_around_the_step(cls, tmp_path):
    steps = {"pre_configure": "pre", "post_configure": "post", "pre_compile": "pre c", "compile": "own compile"}
    ctx = RecordingContext(FakeRecipe({"steps": steps}), board("x86-virtio", tmp_path), tmp_path)
    cls().run("configure", ctx)
    expected = {BuildClass: ["pre", "post"],      # the base class has no configure step of its own
                OwnRun: ["pre", "own configure", "class configure", "post"]}[cls]
    assert [c[0] for c in ctx.calls] == expected
    ctx.calls.clear()
    cls().run("compile", ctx)
    assert [c[0] for c in ctx.calls] == ["pre c", "own compile"]   # <task> replaces the class's step
    ctx.calls.clear()
    cls().run("install", ctx)
    assert [c[0] for c in ctx.calls] == ([] if cls is BuildClass else ["class install"])


def test_registered_classes_all_have_hooks():
    from buildsys.classes import _load_all

    _load_all()
    for name, cls in BuildClass.registry.items():
        assert getattr(cls.run, "__wrapped__", None) is not None, name


def test_a_failing_hook_stops_the_task(tmp_path):
    class Boom(RecordingContext):
        def sh(self, script, env=None, cwd=SANDBOX_SRC):
            super().sh(script, env, cwd)
            if script == "false":
                raise RuntimeError("step failed")

    ctx = Boom(FakeRecipe({"steps": {"pre_install": "false"}}), board("x86-virtio", tmp_path), tmp_path)
    with pytest.raises(RuntimeError):
        get_class("make")().run("install", ctx)
    assert [c[0] for c in ctx.calls] == ["false"]


# --- the steps schema -------------------------------------------------------------------

def _parse_steps(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    data = yaml_load(path)
    return Steps({}).parse(data["steps"], data.where("steps"))


def test_steps_accept_hooks(tmp_path):
    value = _parse_steps(tmp_path, "steps:\n  pre_configure: a\n  post_install: b\n  compile: c\n")
    assert dict(value) == {"pre_configure": "a", "post_install": "b", "compile": "c"}


@pytest.mark.parametrize("key, hint", [
    ("post_instal", "did you mean 'post_install'?"),
    ("pre_compil", "did you mean 'pre_compile'?"),
    ("post_fetch", "steps: configure, compile, install, each also as pre_<task> and post_<task>"),
])
def test_steps_reject_unknown_names_with_a_hint(tmp_path, key, hint):
    with pytest.raises(UserError) as info:
        _parse_steps(tmp_path, f"steps:\n  compile: c\n  {key}: x\n")
    assert info.value.message == f"unknown step '{key}'"
    assert hint in info.value.hint
    assert (info.value.where.line, info.value.where.col) == (3, 3)


def test_unknown_hook_through_the_cli(tmp_path):
    root = write_tree(tmp_path / "p", {
        "buildsys.yaml": "format: 1\ndefault_board: b\nbuild_env: host\n",
        "board-configs/b.yaml": "format: 1\nname: b\narch: x86_64\ndefault_image: app\n",
        "recipes/app/app.yaml": "format: 1\nname: app\nversion: '1'\nlicense: MIT\ntoolchain: false\n"
                                "class: make\nsteps:\n  post_instal: rm -rf ${destdir}/usr/share/man\n"})
    proc = run_buildsys("--project", root, "--build-dir", tmp_path / "build", "graph", "app",
                        env={"BUILDSYS_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"{root}/recipes/app/app.yaml:8:3: unknown step 'post_instal' "
                                   "(did you mean 'post_install'?)")


# --- sandbox paths left in a package ----------------------------------------------------

def test_pc_and_config_flags_are_dropped(tmp_path):
    dest = tmp_path / "dest"
    write_tree(dest, {
        "usr/lib/pkgconfig/foo.pc": "prefix=/usr\nLibs: -L${prefix}/lib -lfoo -L/build/sysroot/usr/lib "
                                    "-Wl,-rpath-link=/build/sysroot/usr/lib\nCflags: -I/build/sysroot/usr/include\n",
        "usr/bin/foo-config": "#!/bin/sh\necho -I/build/sysroot/usr/include/foo -lfoo\n",
        "usr/share/doc/foo/README": "built in /build as usual\n",     # not a sandbox dir
    })
    os.chmod(dest / "usr/bin/foo-config", 0o755)
    log: list[str] = []
    check_sandbox_paths(dest, "foo", log.append)
    assert (dest / "usr/lib/pkgconfig/foo.pc").read_text() == "prefix=/usr\nLibs: -L${prefix}/lib -lfoo\nCflags:\n"
    assert (dest / "usr/bin/foo-config").read_text() == "#!/bin/sh\necho -lfoo\n"
    assert os.stat(dest / "usr/bin/foo-config").st_mode & 0o777 == 0o755
    assert len(log) == 2


def test_other_sandbox_paths_fail_with_file_and_line(tmp_path):
    dest = tmp_path / "dest"
    write_tree(dest, {"etc/foo.conf": "# foo\nplugins=/build/dest/usr/lib/foo\n",
                      "usr/lib/pkgconfig/bar.pc": "prefix=/build/dest/usr\n"})
    (dest / "usr/lib/foo.so").write_bytes(b"\x7fELF\0\0 /build/src/foo.c")    # binaries: __FILE__ is no run-time path
    with pytest.raises(BuildError) as info:
        check_sandbox_paths(dest, "foo", lambda _: None)
    text = str(info.value)
    assert "foo: the package names a build sandbox path at run time: etc/foo.conf:2: " \
           "plugins=/build/dest/usr/lib/foo (and 1 more" in text


def test_a_planted_link_is_not_followed(tmp_path):
    dest = tmp_path / "dest"
    outside = tmp_path / "host.pc"
    outside.write_text("Libs: -L/build/sysroot/usr/lib\n")
    (dest / "usr/lib/pkgconfig").mkdir(parents=True)
    (dest / "usr/lib/pkgconfig/x.pc").symlink_to(outside)
    check_sandbox_paths(dest, "x", lambda _: None)
    assert outside.read_text() == "Libs: -L/build/sysroot/usr/lib\n"


def test_clean_sandbox_flags_keeps_other_flags():
    assert clean_sandbox_flags(b"-I/build/native/usr/include -I/opt/x -isystem /build/sysroot/inc -lz") == \
        b" -I/opt/x -lz"


# --- autoreconf needs the autotools in the environment ----------------------------------

def test_autoreconf_without_autoconf_in_the_environment(tmp_path):
    root = write_tree(tmp_path / "p", {
        "buildsys.yaml": "format: 1\ndefault_board: b\nbuild_env: locked\n",
        "board-configs/b.yaml": "format: 1\nname: b\narch: x86_64\ndefault_image: app\n",
        "recipes/app/app.yaml": "format: 1\nname: app\nversion: '1'\nlicense: MIT\ntoolchain: false\n"
                                "class: autotools\nautoreconf: true\n"})
    for name in ("buildenv.yaml", "buildenv.lock.json"):
        shutil.copy(ROOT / name, root / name)
    lock = (root / "buildenv.lock.json").read_text()
    assert '"autoconf"' not in lock, "the environment has autoconf now: this test needs another missing package"
    proc = run_buildsys("--project", root, "--build-dir", tmp_path / "build", "build", "app",
                        env={"BUILDSYS_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"{root}/recipes/app/app.yaml:7:13: autoreconf: true needs autoconf, "
                                          "automake, libtool, which the build environment does not have "
                                          "(add autoconf, automake, libtool to buildenv.yaml")


def test_xz_and_mtools_leave_the_steps_to_the_class(tmp_path):
    """xz and mtools say what, the class says how (they were class script:
    38 and 33 lines with their own configure/compile/install)."""
    args = argparse.Namespace(project=str(ROOT), build_dir=str(tmp_path / "build"), board="x86-virtio")
    resolver = Workspace(args).resolver
    for name in ("xz", "mtools"):
        recipe = resolver.recipe(name, "native")
        assert recipe.get("class") == "autotools"
        assert not set(recipe.get("steps") or {}) & {"configure", "compile", "install"}, name

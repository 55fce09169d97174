"""Real builds with the cmake, meson and autotools classes in the pinned environment: the
fixture layer tests/fixtures/classes (greetc: a CMake library; greetm: a Meson
library on top of it; app-cmake and app-meson: programs finding them with
pkg-config in their sysroot) for x86-virtio and qemu-arm64, and app-meson's
native variant; liblzma (xz's recipe, extended: shared, for the target) is a
cross build with class autotools.  The native autotools builds are xz-native
and mtools-native (every image build)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, run_buildsys

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")]

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
# ELF e_machine
EM = {"x86_64": 62, "aarch64": 183}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One build dir per board, one artifact cache, always cold: the tests read
    the dependencies' packages and the steps' logs, which a restore from a
    warm cache does not bring (and the fixture builds in seconds)."""
    top = tmp_path_factory.mktemp("classes")
    cache = str(top / "cache")
    out = {}
    for board, targets in (("x86-virtio", ["app-cmake", "app-meson", "app-meson-native"]),
                           ("qemu-arm64", ["app-cmake", "app-meson", "liblzma"])):
        build = top / board
        env = {"BUILDSYS_BUILD_DIR": str(build), "BUILDSYS_DL_DIR": DL_DIR, "BUILDSYS_CACHE_DIR": cache,
               "BUILDSYS_LAYERS": str(FIXTURES / "classes")}
        run_buildsys("--project", ROOT, "build", "-j", "2", *targets, "--board", board, env=env, check=0)
        out[board] = build
    return out


def package(build: Path, pn: str) -> Path:
    found = [p.with_suffix("") for p in (build / "packages").glob("*.json")
             if json.loads(p.read_text())["pn"] == pn]
    assert len(found) == 1, (pn, found)
    return found[0]


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def is_stripped(path: Path) -> bool:
    return subprocess.run(["file", "-b", str(path)], capture_output=True, text=True, check=True).stdout \
        .rstrip().endswith(", stripped")


@pytest.mark.parametrize("board, arch", [("x86-virtio", "x86_64"), ("qemu-arm64", "aarch64")])
def test_programs_and_libraries_for_the_board(builds, board, arch):
    build = builds[board]
    files = [package(build, "app-cmake") / "usr/bin/app-cmake", package(build, "app-meson") / "usr/bin/app-meson",
             package(build, "greetc") / "usr/lib/libgreetc.so.1.0.0",
             package(build, "greetm") / "usr/lib/libgreetm.so.1.0.0"]
    for path in files:
        assert elf_machine(path) == EM[arch], path
        if shutil.which("file"):
            assert is_stripped(path), path
    # prefix /usr, libdir lib, the soname links; no libtool archives
    greetc = package(build, "greetc")
    assert os.readlink(greetc / "usr/lib/libgreetc.so.1") == "libgreetc.so.1.0.0"
    assert (greetc / "usr/include/greetc.h").is_file()
    # pkg-config files as the package installs them: /usr, no sandbox paths
    for pn, pc in (("greetc", "greetc.pc"), ("greetm", "greetm.pc")):
        text = (package(build, pn) / "usr/lib/pkgconfig" / pc).read_text()
        assert "prefix=/usr\n" in text and "/build/" not in text, text
    # the post_install hook of app-cmake ran
    assert (package(build, "app-cmake") / "usr/share/app-cmake/installed-by-hook").is_file()


def test_cross_configure_used_the_generated_files(builds):
    work = builds["qemu-arm64"] / "work/qemu-arm64"
    cmake_log = (work / "app-cmake/logs/compile.log").read_text()
    assert "aarch64-linux-gnu-gcc" in cmake_log and "-mcpu=cortex-a53" in cmake_log
    # app-cmake links libgreetm.so alone: libgreetm needs libgreetc.so.1, found through -rpath-link
    assert "-Wl,-rpath-link=/build/sysroot/usr/lib" in cmake_log
    meson_log = (work / "greetm/logs/configure.log").read_text()
    assert "--cross-file=/build/stage/meson-cross.ini" in meson_log
    assert "Host machine cpu family: aarch64" in meson_log
    assert "Run-time dependency greetc found: YES 1.0" in meson_log


def test_x86_programs_run(builds):
    build = builds["x86-virtio"]
    libs = f"{package(build, 'greetc')}/usr/lib:{package(build, 'greetm')}/usr/lib"
    env = {"LD_LIBRARY_PATH": libs, "PATH": os.environ["PATH"]}
    run = subprocess.run([package(build, "app-cmake") / "usr/bin/app-cmake"], capture_output=True, text=True,
                         env=env, check=True)
    assert run.stdout == "hello from meson\n"       # greetc built with cmake_args -DGREETC_WORD=hello
    run = subprocess.run([package(build, "app-meson") / "usr/bin/app-meson"], capture_output=True, text=True,
                         env=env, check=True)
    assert run.stdout == "hello from app-meson\n"


def test_native_variant(builds):
    build = builds["x86-virtio"]
    app = package(build, "app-meson-native") / "usr/bin/app-meson"
    assert elf_machine(app) == EM["x86_64"]
    log = (build / "work/native/app-meson-native/logs/configure.log").read_text()
    assert "--cross-file" not in log
    assert "Run-time dependency greetc found: YES 1.0" in log     # from /build/native, via PKG_CONFIG_SYSROOT_DIR
    lib = package(build, "greetc-native") / "usr/lib"
    run = subprocess.run([app], capture_output=True, text=True, env={"LD_LIBRARY_PATH": str(lib)}, check=True)
    assert run.stdout == "hello from app-meson\n"


def test_autotools_cross_build(builds):
    build = builds["qemu-arm64"]
    pkg = package(build, "liblzma")
    lib = pkg / "usr/lib/liblzma.so.5.8.1"
    assert elf_machine(lib) == EM["aarch64"]
    if shutil.which("file"):
        assert is_stripped(lib)
    assert os.readlink(pkg / "usr/lib/liblzma.so.5") == "liblzma.so.5.8.1"
    assert not list(pkg.rglob("*.la"))              # libtool's archive was installed, then removed
    assert not (pkg / "usr/bin").exists()           # xz's post_install hook, inherited
    pc = (pkg / "usr/lib/pkgconfig/liblzma.pc").read_text()
    assert "libdir=/usr/lib\n" in pc and "/build/" not in pc
    log = (build / "work/qemu-arm64/liblzma/logs/configure.log").read_text()
    assert "loading site script /build/stage/config.site" in log
    assert "checking host system type... aarch64-unknown-linux-gnu" in log
    assert "checking whether we are cross compiling... yes" in log
    assert "--host=aarch64-linux-gnu --build=x86_64-linux-gnu --prefix=/usr --sysconfdir=/etc" in log

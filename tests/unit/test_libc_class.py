"""class libc: which files, from where in the build environment, where they
go, and what of them the signature holds."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildsys.classes.libc import INTERPRETERS, Libc
from buildsys.errors import UserError

LIBS = ["libc.so.6", "libm.so.6"]


class Recipe:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)

    def where(self, *keys):
        return None


class Lock:
    architecture = "amd64"

    def __init__(self, debs):
        self.debs = debs

    def package(self, name):
        return self.debs.get(name)


def env(root: Path, debs=None):
    debs = debs if debs is not None else {
        "libc6": SimpleNamespace(version="2.36-9+deb12u14", sha256="a" * 64),
        "libgcc-s1": SimpleNamespace(version="12.2.0-14+deb12u1", sha256="b" * 64),
        "libc6-arm64-cross": SimpleNamespace(version="2.36-8cross1", sha256="c" * 64)}
    return SimpleNamespace(root=root, lock=Lock(debs), id="e" * 64)


def board(arch):
    return SimpleNamespace(name=f"board-{arch}", arch=arch)


def test_loader_at_the_interpreter_path_libraries_in_lib():
    recipe = Recipe({"libraries": LIBS})
    assert Libc().files(recipe, board("x86_64")) == {
        "lib64/ld-linux-x86-64.so.2": "ld-linux-x86-64.so.2", "lib/libc.so.6": "libc.so.6",
        "lib/libm.so.6": "libm.so.6"}
    assert "lib/ld-linux-aarch64.so.1" in Libc().files(recipe, board("aarch64"))
    assert INTERPRETERS["aarch64"] == "/lib/ld-linux-aarch64.so.1"
    with pytest.raises(UserError, match="no C library for riscv64"):
        Libc().files(recipe, board("riscv64"))
    with pytest.raises(UserError, match="not a file name"):
        Libc().files(Recipe({"libraries": ["../etc/shadow"]}), board("x86_64"))


def test_signature_holds_the_debian_packages_sha256(tmp_path):
    recipe = Recipe({"libraries": LIBS, "debian_packages": ["libc6", "libgcc-s1"]})
    extra = Libc().signature_extra(recipe, board("x86_64"), env(tmp_path))
    assert extra["libc"]["debian_packages"]["libc6"] == {"version": "2.36-9+deb12u14", "sha256": "a" * 64}
    assert extra["libc"]["files"] == ["lib/libc.so.6", "lib/libm.so.6", "lib64/ld-linux-x86-64.so.2"]
    updated = env(tmp_path)
    updated.lock.debs["libc6"] = SimpleNamespace(version="2.36-9+deb12u15", sha256="d" * 64)
    assert Libc().signature_extra(recipe, board("x86_64"), updated) != extra
    with pytest.raises(UserError, match="no package libc6-riscv64-cross"):
        Libc().signature_extra(Recipe({"debian_packages": ["libc6-riscv64-cross"]}), board("x86_64"), env(tmp_path))


def _ctx(tmp_path, arch, environment, values=None):
    dest = tmp_path / "dest"
    dest.mkdir(parents=True, exist_ok=True)
    logged: list[str] = []
    return SimpleNamespace(recipe=Recipe(values or {"libraries": LIBS}), board=board(arch), buildenv=environment,
                           paths=SimpleNamespace(dest=dest), log=logged.append), dest


def test_install_from_the_environment_links_resolved_inside_it(tmp_path):
    root = tmp_path / "env"
    native = root / "usr/lib/x86_64-linux-gnu"
    native.mkdir(parents=True)
    (native / "ld-linux-x86-64.so.2").write_bytes(b"\x7fELF loader")
    (native / "libc.so.6.real").write_bytes(b"\x7fELF libc")
    # An absolute link means the environment's /, never the host's.
    (native / "libc.so.6").symlink_to("/usr/lib/x86_64-linux-gnu/libc.so.6.real")
    (native / "libm.so.6").write_bytes(b"\x7fELF libm")
    cross = root / "usr/aarch64-linux-gnu/lib"
    cross.mkdir(parents=True)
    for name in ("ld-linux-aarch64.so.1", *LIBS):
        (cross / name).write_bytes(b"arm64 " + name.encode())
    ctx, dest = _ctx(tmp_path / "x86", "x86_64", env(root))
    Libc().run("install", ctx)
    assert (dest / "lib64/ld-linux-x86-64.so.2").read_bytes() == b"\x7fELF loader"
    assert (dest / "lib/libc.so.6").read_bytes() == b"\x7fELF libc" and not (dest / "lib/libc.so.6").is_symlink()
    assert (dest / "lib/libc.so.6").stat().st_mode & 0o777 == 0o755
    ctx, dest = _ctx(tmp_path / "arm", "aarch64", env(root))
    Libc().run("install", ctx)
    assert (dest / "lib/ld-linux-aarch64.so.1").read_bytes() == b"arm64 ld-linux-aarch64.so.1"
    assert sorted(p.name for p in (dest / "lib").iterdir()) == ["ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6"]
    ctx, _ = _ctx(tmp_path / "missing", "x86_64", env(root), {"libraries": ["libnosuch.so.1"]})
    with pytest.raises(UserError, match="has no usr/lib/x86_64-linux-gnu/libnosuch.so.1"):
        Libc().run("install", ctx)

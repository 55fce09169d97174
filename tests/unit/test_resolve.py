"""Resolution: layer priority, appends, arch/board/native overrides, operators, providers, history."""
import pytest

from buildsys.errors import UserError
from buildsys.layers import load_project
from buildsys.resolve import HOST_ARCH, Resolver, load_board
from conftest import write_tree

BOARDS = {
    "board-configs/x86.yaml": "format: 1\nname: x86\narch: x86_64\n",
    "recipes/tc.yaml": "format: 1\nname: tc\nclass: toolchain\nprovides: [virtual/toolchain]\n",
    "board-configs/arm.yaml": "format: 1\nname: arm\narch: aarch64\ntoolchain: {prefix: aarch64-linux-gnu-}\n"
                              "preferred_providers: {virtual/kernel: linux-alt}\n",
}


def resolver(tmp_path, files, board="x86"):
    root = write_tree(tmp_path / "p", {"buildsys.yaml": "format: 1\n", **BOARDS, **files})
    project = load_project(root, environ={})
    return Resolver(project, load_board(project, board))


APP = """format: 1
name: app
version: "1.0"
class: make
make_args: [A=1, B=2]
env: {X: "1"}
depends: [lib]
overrides:
  arch:aarch64:
    make_args+: [ARM=1]
  board:arm:
    make_args-: [B=2]
    env: null
  native:
    depends-: [lib]
variants: [target, native]
"""
LIB = "format: 1\nname: lib\nversion: '2'\nclass: make\nvariants: [target, native]\n"


def test_operators_and_override_order(tmp_path):
    files = {"recipes/app/app.yaml": APP, "recipes/lib.yaml": LIB,
             "layers/extra/layer.yaml": "format: 1\nname: extra\npriority: 3\n",
             "layers/extra/recipes/app.append.yaml": "format: 1\nmake_args+: [FROM_APPEND=1]\n"
                                                     "overrides:\n  arch:aarch64:\n    make_args+: [APPEND_ARM=1]\n"}
    x86 = resolver(tmp_path, files).recipe("app")
    assert x86.get("make_args") == ["A=1", "B=2", "FROM_APPEND=1"]
    assert x86.get("env") == {"X": "1"}
    arm = resolver(tmp_path / "2", files, "arm").recipe("app")
    # appends first, then arch overrides (recipe's, then the append's), then board overrides
    assert arm.get("make_args") == ["A=1", "FROM_APPEND=1", "ARM=1", "APPEND_ARM=1"]
    assert arm.get("env") == {}            # unset: back to the class default
    history = [(e.op, e.why, e.where.line) for e in arm.history["make_args"]]
    assert history[0] == ("=", "recipe", 5)
    assert ("+", "append extra", 2) in history
    assert ("-", "board:arm", 12) in history


def test_native_variant(tmp_path):
    r = resolver(tmp_path, {"recipes/app/app.yaml": APP, "recipes/lib.yaml": LIB})
    native = r.recipe("app", "native")
    assert native.pn == "app-native"
    assert native.get("depends") == []
    assert r.variables(native)["arch"] == HOST_ARCH
    target = r.recipe("app")
    assert [d.pn for d in r.depends(target)] == ["tc", "lib"]


def test_native_dependency_naming(tmp_path):
    files = {"recipes/tool.yaml": "format: 1\nname: tool\nvariants: [native]\ndepends: [lib]\n",
             "recipes/lib.yaml": LIB,
             "recipes/app.yaml": "format: 1\nname: app\ndepends: [tool-native, lib]\n"}
    r = resolver(tmp_path, files)
    app = r.recipe("app")
    deps = r.depends(app)
    assert [d.pn for d in deps] == ["tool-native", "lib"]
    # a native recipe's plain dependency means the native variant
    assert [d.pn for d in r.depends(deps[0])] == ["lib-native"]
    with pytest.raises(UserError, match="recipe 'tool' has no target variant"):
        r.lookup("tool", app, None)


def test_variables(tmp_path):
    files = {"recipes/app.yaml": "format: 1\nname: app\nversion: '3.1'\n"
                                 "sources: [{url: 'https://x.org/app-${version}.tar.gz', sha256: " + "a5" * 32 + "}]\n"
                                 "steps: {install: 'cp x ${destdir}/${arch}/$CC ${CFLAGS}'}\n"}
    app = resolver(tmp_path, files, "arm").recipe("app")
    assert app.get("sources")[0]["url"] == "https://x.org/app-3.1.tar.gz"
    assert app.get("steps")["install"] == "cp x /build/dest/aarch64/$CC ${CFLAGS}"


def test_virtual_providers(tmp_path):
    files = {"recipes/linux.yaml": "format: 1\nname: linux\nprovides: [virtual/kernel]\n",
             "recipes/linux-alt.yaml": "format: 1\nname: linux-alt\nprovides: [virtual/kernel]\n",
             "recipes/img.yaml": "format: 1\nname: img\ndepends: [virtual/kernel]\n"}
    with pytest.raises(UserError, match="several recipes provide 'virtual/kernel': linux, linux-alt"):
        r = resolver(tmp_path, files)
        r.depends(r.recipe("img"))
    r = resolver(tmp_path / "2", files, "arm")
    assert [d.pn for d in r.depends(r.recipe("img"))] == ["linux-alt"]


def test_unknown_override_selector(tmp_path):
    files = {"recipes/app.yaml": "format: 1\nname: app\noverrides:\n  machine:x: {env: {}}\n"}
    with pytest.raises(UserError) as err:
        resolver(tmp_path, files).recipe("app")
    assert "unknown override selector 'machine:x'" in str(err.value)
    assert ":4:3:" in str(err.value)


def test_name_must_match_file(tmp_path):
    with pytest.raises(UserError, match="does not match its file name"):
        resolver(tmp_path, {"recipes/app.yaml": "format: 1\nname: other\n"}).recipe("app")

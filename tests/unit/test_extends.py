"""``extends: NAME`` (buildsys/resolve.py): a recipe starts from another's
values -- and that recipe's appends -- then applies its own; file references
stay relative to the file that names them; loops and unknown names are
errors with a position."""
import textwrap

import pytest

from buildsys.errors import UserError
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board
from conftest import write_tree

BASE = """\
    format: 1
    name: kern
    version: '6.1'
    class: script
    toolchain: false
    provides: [virtual/kern]
    patches: [files/base.patch]
    env: {A: base, B: base}
    overrides:
      arch:aarch64:
        env+: {ARCH: arm}
"""


def project(tmp_path, files: dict[str, str]):
    tree = {"buildsys.yaml": "format: 1\ndefault_board: pi\n",
            "board-configs/pi.yaml": "format: 1\nname: pi\narch: aarch64\n",
            "recipes/kern/kern.yaml": textwrap.dedent(BASE),
            "recipes/kern/files/base.patch": "base\n"}
    tree.update({k: textwrap.dedent(v) for k, v in files.items()})
    proj = load_project(write_tree(tmp_path / "p", tree), {})
    return Resolver(proj, load_board(proj, "pi"))


def test_extending_recipe_takes_the_base_values_and_adds_its_own(tmp_path):
    resolver = project(tmp_path, {
        "recipes/kern/kern-net.yaml": """\
            format: 1
            name: kern-net
            extends: kern
            provides: []
            patches+: [files/net.patch]
            env+: {B: net}
            """,
        "recipes/kern/files/net.patch": "net\n",
    })
    net = resolver.recipe("kern-net")
    assert net.name == "kern-net" and net.version == "6.1"
    assert net.get("provides") == []
    assert [f.layer_relative for f in net.get("patches")] == ["recipes/kern/files/base.patch",
                                                              "recipes/kern/files/net.patch"]
    assert net.get("env") == {"A": "base", "B": "net", "ARCH": "arm"}   # the base's overrides apply too
    assert resolver.recipe("kern").get("env") == {"A": "base", "B": "base", "ARCH": "arm"}
    whys = [h.why for h in net.history["env"]]
    assert whys[0] == "extends kern" and "recipe" in whys


def test_appends_of_the_base_apply_to_the_extending_recipe(tmp_path):
    resolver = project(tmp_path, {
        "layers/bsp/layer.yaml": "format: 1\nname: bsp\npriority: 5\n",
        "layers/bsp/recipes/kern/kern.append.yaml": """\
            format: 1
            version: '6.12'
            env+: {BSP: "on"}
            """,
        "layers/other/layer.yaml": "format: 1\nname: other\npriority: 6\n",
        "layers/other/recipes/kern-net/kern-net.yaml": """\
            format: 1
            name: kern-net
            extends: kern
            provides: []
            """,
    })
    net = resolver.recipe("kern-net")
    assert net.version == "6.12" and net.get("env")["BSP"] == "on"
    # the base's file references stay relative to the base's file
    assert net.get("patches")[0].layer_relative == "recipes/kern/files/base.patch"


@pytest.mark.parametrize("files, message", [
    ({"recipes/a/a.yaml": "format: 1\nname: a\nextends: nothere\n"}, "'extends: nothere' names no recipe"),
    ({"recipes/a/a.yaml": "format: 1\nname: a\nextends: b\n",
      "recipes/b/b.yaml": "format: 1\nname: b\nextends: a\n"}, "'extends' loops: a -> b -> a"),
])
def test_bad_extends_is_a_user_error_with_a_position(tmp_path, files, message):
    resolver = project(tmp_path, files)
    with pytest.raises(UserError) as info:
        resolver.recipe("a")
    assert message in str(info.value)
    assert info.value.where is not None and info.value.where.line >= 2

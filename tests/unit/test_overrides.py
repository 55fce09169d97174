"""Overrides and operators (buildsys/overrides.py), through the resolver on real
YAML: `arch:` blocks apply before `board:` blocks (so the board wins), appends
after the recipe, `native` instead of `board:` for native builds; `key+`
appends, `key-` removes, `key: null` unsets, on lists, maps, strings and files;
every change is in the history with its file:line."""
import textwrap
from pathlib import Path

import pytest

from buildsys.errors import UserError
from buildsys.layers import load_project
from buildsys.resolve import HOST_ARCH, Resolver, load_board
from conftest import write_tree

BOARDS = {
    "board-configs/pi.yaml": "format: 1\nname: pi\narch: aarch64\n",
    "board-configs/orin.yaml": "format: 1\nname: orin\narch: aarch64\n",
    "board-configs/pc.yaml": "format: 1\nname: pc\narch: x86_64\n",
}


def project(tmp_path, recipe: str, files: dict[str, str] | None = None):
    tree = {"buildsys.yaml": "format: 1\ndefault_board: pc\n", **BOARDS,
            "recipes/app/app.yaml": textwrap.dedent(recipe)}
    tree.update(files or {})
    return load_project(write_tree(tmp_path / "p", tree), {})


def resolve(proj, board: str, name: str = "app", variant: str = "target"):
    return Resolver(proj, load_board(proj, board)).recipe(name, variant)


HEAD = """\
    format: 1
    name: app
    version: '1'
    class: script
    toolchain: false
"""


def test_arch_then_board_the_board_wins(tmp_path):
    # The board block is written first on purpose: the order of application is
    # arch, then board, whatever the order in the file.
    proj = project(tmp_path, HEAD + """\
    env:
      LEVEL: recipe
      KEEP: recipe
    overrides:
      board:pi:
        env+: {LEVEL: board-pi}
      arch:aarch64:
        env+: {LEVEL: arch, ARCH_ONLY: 'yes'}
    """)
    assert resolve(proj, "pi").get("env") == {"LEVEL": "board-pi", "KEEP": "recipe", "ARCH_ONLY": "yes"}
    assert resolve(proj, "orin").get("env") == {"LEVEL": "arch", "KEEP": "recipe", "ARCH_ONLY": "yes"}
    assert resolve(proj, "pc").get("env") == {"LEVEL": "recipe", "KEEP": "recipe"}


def test_plain_set_in_an_override_replaces(tmp_path):
    proj = project(tmp_path, HEAD + """\
    depends: [a, b]
    license: MIT
    overrides:
      arch:aarch64:
        depends: [c]
        license: GPL-2.0-only
      board:pi:
        license: BSD-3-Clause
    """, {f"recipes/{n}/{n}.yaml": f"format: 1\nname: {n}\nclass: script\ntoolchain: false\n" for n in "abc"})
    pi, orin, pc = resolve(proj, "pi"), resolve(proj, "orin"), resolve(proj, "pc")
    assert (pi.get("depends"), pi.get("license")) == (["c"], "BSD-3-Clause")
    assert (orin.get("depends"), orin.get("license")) == (["c"], "GPL-2.0-only")
    assert (pc.get("depends"), pc.get("license")) == (["a", "b"], "MIT")


def test_list_append_and_remove(tmp_path):
    proj = project(tmp_path, HEAD + """\
    provides: [one, two, three]
    overrides:
      arch:aarch64:
        provides+: [four]
        provides-: two
      board:pi:
        provides-: [one, four]
        provides+: five
    """)
    assert resolve(proj, "pc").get("provides") == ["one", "two", "three"]
    assert resolve(proj, "orin").get("provides") == ["one", "three", "four"]
    assert resolve(proj, "pi").get("provides") == ["three", "five"]


def test_append_to_an_unset_list_starts_from_the_default(tmp_path):
    proj = project(tmp_path, HEAD + """\
    overrides:
      board:pi:
        provides+: [extra]
    """)
    assert resolve(proj, "pi").get("provides") == ["extra"]
    assert resolve(proj, "pc").get("provides") == []


def test_map_append_merges(tmp_path):
    proj = project(tmp_path, HEAD + """\
    env: {A: '1', B: '2'}
    overrides:
      arch:aarch64:
        env+: {B: arch, C: '3'}
      board:pi:
        env+: {D: '4'}
    """)
    assert resolve(proj, "pc").get("env") == {"A": "1", "B": "2"}
    assert resolve(proj, "orin").get("env") == {"A": "1", "B": "arch", "C": "3"}
    assert resolve(proj, "pi").get("env") == {"A": "1", "B": "arch", "C": "3", "D": "4"}


def test_map_remove_drops_keys(tmp_path):
    proj = project(tmp_path, HEAD + """\
    env: {A: '1', B: '2', C: '3'}
    overrides:
      arch:aarch64:
        env-: [A, C]
      board:pi:
        env-: B
    """)
    assert resolve(proj, "pc").get("env") == {"A": "1", "B": "2", "C": "3"}
    assert resolve(proj, "orin").get("env") == {"B": "2"}
    assert resolve(proj, "pi").get("env") == {}


def test_null_unsets_back_to_the_default(tmp_path):
    proj = project(tmp_path, HEAD + """\
    env: {A: '1'}
    provides: [x]
    license: MIT
    overrides:
      board:pi:
        env: null
        provides: null
        license: null
    """)
    pi = resolve(proj, "pi")
    assert pi.get("env") == {} and pi.get("provides") == []
    assert "license" not in pi.values
    assert [e.op for e in pi.history["license"]] == ["=", "unset"]
    assert resolve(proj, "pc").get("license") == "MIT"


def test_null_then_append_in_a_later_block(tmp_path):
    proj = project(tmp_path, HEAD + """\
    provides: [a, b]
    overrides:
      arch:aarch64:
        provides: null
      board:pi:
        provides+: [c]
    """)
    assert resolve(proj, "pi").get("provides") == ["c"]


def test_string_append(tmp_path):
    proj = project(tmp_path, HEAD + """\
    license: MIT
    overrides:
      board:pi:
        license+: AND BSD-2-Clause
    """)
    assert resolve(proj, "pi").get("license") == "MIT AND BSD-2-Clause"


PATCHES = {f"recipes/app/files/{n}.patch": f"patch {n}\n" for n in ("base", "arm", "pi", "extra")}


def _names(files):
    return [Path(f.path).name for f in files]


def test_files_append_and_remove_by_name(tmp_path):
    proj = project(tmp_path, HEAD + """\
    patches: [files/base.patch, files/extra.patch]
    overrides:
      arch:aarch64:
        patches+: [files/arm.patch]
      board:pi:
        patches-: [files/extra.patch]
        patches+: files/pi.patch
    """, PATCHES)
    pc, orin, pi = resolve(proj, "pc"), resolve(proj, "orin"), resolve(proj, "pi")
    assert _names(pc.get("patches")) == ["base.patch", "extra.patch"]
    assert _names(orin.get("patches")) == ["base.patch", "extra.patch", "arm.patch"]
    assert _names(pi.get("patches")) == ["base.patch", "arm.patch", "pi.patch"]
    # files are resolved against the YAML file that names them, and exist
    root = proj.root / "recipes/app"
    assert all(Path(f.path).resolve().parent == (root / "files").resolve() for f in pi.get("patches"))
    assert [f.layer_relative for f in pi.get("patches")][-1] == "recipes/app/files/pi.patch"


def test_append_files_resolve_against_the_append_and_apply_after_the_recipe(tmp_path):
    layer = {
        "layers/extra/layer.yaml": "format: 1\nname: extra\npriority: 5\n",
        "layers/extra/recipes/app/app.append.yaml": textwrap.dedent("""\
            format: 1
            env+: {FROM: append}
            overrides:
              arch:aarch64:
                patches+: [files/layer.patch]
              board:pi:
                env+: {LEVEL: append-board}
            """),
        "layers/extra/recipes/app/files/layer.patch": "layer patch\n",
    }
    proj = project(tmp_path, HEAD + """\
    env: {FROM: recipe, LEVEL: recipe}
    patches: [files/base.patch]
    overrides:
      board:pi:
        env+: {LEVEL: recipe-board}
    """, {**PATCHES, **layer})
    pi = resolve(proj, "pi")
    # per selector, the recipe's block first, then the append's
    assert pi.get("env") == {"FROM": "append", "LEVEL": "append-board"}
    assert [f.layer_relative for f in pi.get("patches")] == ["recipes/app/files/base.patch",
                                                             "recipes/app/files/layer.patch"]
    assert pi.get("patches")[-1].path.resolve() == (proj.root / "layers/extra/recipes/app/files/layer.patch").resolve()
    assert resolve(proj, "pc").get("env") == {"FROM": "append", "LEVEL": "recipe"}


def test_native_uses_the_native_block_not_the_boards(tmp_path):
    proj = project(tmp_path, HEAD + f"""\
    variants: [target, native]
    env: {{WHO: recipe}}
    overrides:
      arch:{HOST_ARCH}:
        env+: {{ARCH: host}}
      board:pc:
        env+: {{WHO: board}}
      native:
        env+: {{WHO: native}}
    """)
    native = resolve(proj, "pc", variant="native")
    assert native.get("env") == {"WHO": "native", "ARCH": "host"}
    target = resolve(proj, "pc")
    assert target.get("env")["WHO"] == "board"


def test_history_names_every_change_with_its_line(tmp_path):
    proj = project(tmp_path, HEAD + """\
    provides: [a, b]
    overrides:
      arch:aarch64:
        provides+: [c]
      board:pi:
        provides-: [a]
    """)
    pi = resolve(proj, "pi")
    assert pi.get("provides") == ["b", "c"]
    history = pi.history["provides"]
    assert [(e.op, e.why) for e in history] == [("=", "recipe"), ("+", "arch:aarch64"), ("-", "board:pi")]
    lines = (proj.root / "recipes/app/app.yaml").read_text().splitlines()
    assert [lines[e.where.line - 1].strip() for e in history] == ["provides: [a, b]", "provides+: [c]",
                                                                  "provides-: [a]"]
    assert pi.where("provides").line == history[-1].where.line


@pytest.mark.parametrize("block, message", [
    ("env+: [A]", "mapping"),
    ("license-: MIT", "'license-' removes list items"),
    ("provides+: null", "makes no sense"),
    ("toolchain+: true", "cannot be appended to or removed from"),
    ("nosuchkey: 1", "unknown key 'nosuchkey'"),
    ("name: other", "can only be set in the recipe itself"),
])
def test_bad_operations_are_user_errors_with_a_position(tmp_path, block, message):
    proj = project(tmp_path, HEAD + f"""\
    env: {{A: '1'}}
    license: MIT
    overrides:
      board:pi:
        {block}
    """)
    with pytest.raises(UserError, match=message) as info:
        resolve(proj, "pi")
    where = info.value.where
    assert where.path.endswith("app.yaml") and where.line == 10
    resolve(proj, "pc")   # other boards never see the block


def test_unknown_selector_is_refused(tmp_path):
    proj = project(tmp_path, HEAD + """\
    overrides:
      machine:pi:
        license: MIT
    """)
    with pytest.raises(UserError, match="unknown override selector 'machine:pi'"):
        resolve(proj, "pc")

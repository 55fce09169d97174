"""layerconfig: one item of layers: added, removed or re-pinned as text, the rest of the file untouched."""
from __future__ import annotations

import pytest

from buildsys import yamlio
from buildsys.errors import UserError
from buildsys.layerconfig import LayersFile, scalar

C1 = "0123456789abcdef0123456789abcdef01234567"
C2 = "b" * 40
GIT = {"url": "https://example.org/meta-x.git", "commit": C2, "branch": "main", "path": None}

BLOCK = f"""\
# top comment
format: 1
layers:            # my layers
  - ../one         # first
  # between
  - url: file:///srv/meta-y.git
    commit: {C1}   # pinned
    branch: main
default_board: x86-virtio   # trailing
"""


def _file(tmp_path, text, name="buildsys.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return LayersFile(path)


def _layers(lf, text):
    return lf.check(text)["layers"]


def test_add_to_a_block_list_keeps_everything_else(tmp_path):
    lf = _file(tmp_path, BLOCK)
    text = lf.added(GIT)
    assert text == BLOCK.replace("default_board", "  - url: https://example.org/meta-x.git\n"
                                                  f"    commit: {C2}\n    branch: main\ndefault_board")
    assert _layers(lf, text)[-1] == {"url": "https://example.org/meta-x.git", "commit": C2, "branch": "main"}
    text = lf.added("../two words")
    assert '  - "../two words"\ndefault_board' in text
    assert _layers(lf, text)[-1] == "../two words"


def test_add_follows_the_lists_indentation(tmp_path):
    lf = _file(tmp_path, "format: 1\nlayers:\n- ../a\n")
    assert lf.added("../b") == "format: 1\nlayers:\n- ../a\n- ../b\n"
    lf = _file(tmp_path, "format: 1\nlayers:\n    -   ../a\n")
    assert lf.added("../b") == "format: 1\nlayers:\n    -   ../a\n    - ../b\n"


def test_add_to_a_flow_list(tmp_path):
    lf = _file(tmp_path, 'format: 1\nlayers: [../a, "../b"]  # c\nx: 1\n'.replace("x: 1\n", ""))
    text = lf.added(GIT)
    assert text == (f'format: 1\nlayers: [../a, "../b", {{url: "https://example.org/meta-x.git", commit: "{C2}", '
                    'branch: "main"}]  # c\n')
    assert _layers(lf, text) == ["../a", "../b", {"url": GIT["url"], "commit": C2, "branch": "main"}]
    lf = _file(tmp_path, "format: 1\nlayers: []\n")
    assert lf.added("../a") == "format: 1\nlayers: [../a]\n"


@pytest.mark.parametrize("text", ["format: 1\n", "format: 1", "format: 1\nlayers:\n", "format: 1\nlayers: null\n",
                                  "format: 1\nlayers: ~   # none yet\n"])
def test_add_where_there_is_no_list_yet(tmp_path, text):
    lf = _file(tmp_path, text)
    out = lf.added("../a")
    assert _layers(lf, out) == ["../a"]
    assert "  - ../a\n" in out
    assert out.startswith("format: 1\n")


def test_a_missing_local_yaml_is_made(tmp_path):
    lf = LayersFile(tmp_path / "local.yaml")
    text = lf.added("../a")
    assert text == "format: 1\nlayers:\n  - ../a\n"
    lf.write(text)
    assert (tmp_path / "local.yaml").read_text() == text
    lf.restore()          # it did not exist: restoring removes it
    assert not (tmp_path / "local.yaml").exists()


def test_remove_one_item(tmp_path):
    lf = _file(tmp_path, BLOCK)
    one, git = lf.items()
    assert one.value == "../one" and git.value["commit"] == C1
    text = lf.removed(git)
    assert text == BLOCK.replace(f"  - url: file:///srv/meta-y.git\n    commit: {C1}   # pinned\n    branch: main\n",
                                 "")
    assert _layers(lf, text) == ["../one"]
    text = lf.removed(one)
    assert "../one" not in text and "# between" in text and "# my layers" in text
    assert len(_layers(lf, text)) == 1


def test_removing_the_last_item_leaves_an_empty_list(tmp_path):
    lf = _file(tmp_path, "format: 1\nlayers:   # mine\n  - ../a\nx_board: 1\n".replace("x_board: 1\n", ""))
    text = lf.removed(lf.items()[0])
    assert text == "format: 1\nlayers: []   # mine\n"
    assert _layers(lf, text) == []
    lf = _file(tmp_path, 'format: 1\nlayers: [../a, "../b", ../c]\n')
    assert lf.removed(lf.items()[1]) == "format: 1\nlayers: [../a, ../c]\n"


def test_repin_changes_only_the_commit(tmp_path):
    lf = _file(tmp_path, BLOCK)
    text = lf.with_commit(lf.items()[1], C2)
    assert text == BLOCK.replace(C1, C2)
    lf = _file(tmp_path, f'format: 1\nlayers: [{{url: "x://y", commit: {C1}}}]\n')
    assert lf.with_commit(lf.items()[0], C2) == f'format: 1\nlayers: [{{url: "x://y", commit: {C2}}}]\n'


def test_written_text_is_checked_first(tmp_path):
    lf = _file(tmp_path, BLOCK)
    with pytest.raises(UserError, match=r"buildsys.yaml:3:22: commit 'abc' is not a full 40-hex commit id"):
        lf.write("format: 1\nlayers:\n  - {url: x, commit: abc}\n")
    assert (tmp_path / "buildsys.yaml").read_text() == BLOCK


def test_scalars_read_back_as_the_same_string():
    for text in ["../a", "a b", "yes", "1.0", "x: y", "#c", "-a", "", "null", "https://h/x.git", "~/l", "a,b"]:
        assert yamlio.loads(f"k: {scalar(text)}\n", "t")["k"] == text

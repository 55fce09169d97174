"""Each kind of bad input gives one `file:line:col: message` line and exit code 2."""
import re

import pytest

from conftest import run_buildsys, write_tree

BOARD = "format: 1\nname: b\narch: x86_64\ndefault_image: app\n"
PROJECT = "format: 1\ndefault_board: b\n"


def project(tmp_path, recipes: dict[str, str], extra: dict[str, str] | None = None):
    files = {"buildsys.yaml": PROJECT, "board-configs/b.yaml": BOARD}
    for name, text in recipes.items():
        files[f"recipes/{name}.yaml"] = text
    files.update(extra or {})
    return write_tree(tmp_path / "p", files)


CASES = {
    "yaml-syntax": ({"app": "format: 1\nname: app\ndepends: [a, b\n"}, r"recipes/app\.yaml:4:1: YAML syntax error"),
    "unknown-key": ({"app": "format: 1\nname: app\nversion: '1'\nsrcs: []\n"},
                    r"recipes/app\.yaml:4:1: unknown key 'srcs' \(did you mean 'sources'\?\)"),
    "wrong-type": ({"app": "format: 1\nname: app\ndepends: libc\n"},
                   r"recipes/app\.yaml:3:10: expected a list, got 'libc'"),
    "missing-dep": ({"app": "format: 1\nname: app\ndepends: [libgret]\n", "libgreet": "format: 1\nname: libgreet\n"},
                    r"recipes/app\.yaml:3:11: app: unresolved dependency 'libgret' \(did you mean 'libgreet'\?\)"),
    "cycle": ({"app": "format: 1\nname: app\ndepends: [a]\n", "a": "format: 1\nname: a\ndepends: [b]\n",
               "b": "format: 1\nname: b\ndepends: [a]\n"},
              r"recipes/a\.yaml:3:\d+: dependency cycle: a -> b -> a"),
    "unknown-variable": ({"app": "format: 1\nname: app\nversion: '1'\nenv: {X: '${verison}'}\n"},
                         r"recipes/app\.yaml:4:\d+: unknown variable '\$\{verison\}' \(did you mean 'version'\?\)"),
    "bad-format": ({"app": "format: 7\nname: app\n"}, r"recipes/app\.yaml:1:9: unsupported format 7"),
    "unknown-class": ({"app": "format: 1\nname: app\nclass: mkae\n"},
                      r"recipes/app\.yaml:3:8: unknown build class 'mkae' \(did you mean 'make'\?\)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_recipe_gives_one_line_and_exit_2(tmp_path, case):
    recipes, pattern = CASES[case]
    root = project(tmp_path, recipes)
    proc = run_buildsys("--project", root, "graph", "app")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert lines[0].startswith(str(root)), lines[0]


def test_duplicate_recipe_same_priority(tmp_path):
    layer = {"layers/x/layer.yaml": "format: 1\nname: x\npriority: 0\n",
             "layers/x/recipes/app.yaml": "format: 1\nname: app\n"}
    root = project(tmp_path, {"app": "format: 1\nname: app\n"}, layer)
    proc = run_buildsys("--project", root, "graph", "app")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "recipe 'app' is defined twice at priority 0" in line
    assert "layers/x/recipes/app.yaml" in line and "recipes/app.yaml" in line


def test_higher_priority_layer_wins(tmp_path):
    layer = {"layers/x/layer.yaml": "format: 1\nname: x\npriority: 5\n",
             "layers/x/recipes/app.yaml": "format: 1\nname: app\nversion: '2'\n"}
    root = project(tmp_path, {"app": "format: 1\nname: app\nversion: '1'\n"}, layer)
    proc = run_buildsys("--project", root, "recipes", check=0)
    assert re.search(r"app\s+2\s+x", proc.stdout)


def test_unknown_board(tmp_path):
    root = project(tmp_path, {"app": "format: 1\nname: app\n"})
    proc = run_buildsys("--project", root, "recipes", "--board", "bb")
    assert proc.returncode == 2
    assert "unknown board 'bb' (did you mean 'b'?)" in proc.stderr
    # a default board that does not exist points at the project file's line
    (root / "buildsys.yaml").write_text("format: 1\ndefault_board: nosuch\n")
    proc = run_buildsys("--project", root, "recipes")
    assert proc.returncode == 2
    assert re.match(rf"{re.escape(str(root))}/buildsys\.yaml(:\d+)*: unknown board 'nosuch'", proc.stderr), proc.stderr


def test_not_a_project(tmp_path):
    proc = run_buildsys("recipes", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no buildsys.yaml" in proc.stderr


def test_layer_file_outside_the_layer_is_refused(tmp_path):
    # A hostile recipe must not carry host files into a build through '..'.
    recipe = "format: 1\nname: app\nclass: script\ntoolchain: false\nsources:\n  - file: ../../../../../../etc/passwd\n"
    root = project(tmp_path, {"app": recipe})
    proc = run_buildsys("--project", root, "--build-dir", tmp_path / "build", "build", "app")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert re.search(r"recipes/app\.yaml:6:\d+: file '\.\./.*etc/passwd' is outside its layer", line), line
    assert "Traceback" not in proc.stderr

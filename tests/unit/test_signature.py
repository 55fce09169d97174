"""Task signatures (buildsys/signature.py) on real projects resolved from YAML.

What the README promises: the same inputs give the same signature in another
directory; a changed value, layer file, dependency, class or target gives
another one, and `explain` names it; mirror URLs, absolute paths and
descriptions never enter it.
"""
import json
import os
import shutil

import networkx as nx
import pytest

from buildsys import signature
from buildsys.errors import UserError
from buildsys.graph import recipe_graph
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board
from conftest import write_tree

SHA = "9f2c" * 16   # quoted or not, YAML reads it as a string (digits only would be an int)

PROJECT = {
    "buildsys.yaml": "format: 1\ndefault_board: b1\n",
    "board-configs/b1.yaml": "format: 1\nname: b1\narch: x86_64\ntune: [-march=x86-64]\n",
    "recipes/lib/lib.yaml": (
        "format: 1\nname: lib\nversion: '1.0'\nclass: script\ntoolchain: false\n"
        "sources:\n  - file: files/lib.c\n"
        "steps:\n  compile: cc -c lib.c\n"
    ),
    "recipes/lib/files/lib.c": "int lib(void) { return 1; }\n",
    "recipes/app/app.yaml": (
        "format: 1\nname: app\nversion: '2.0'\nsummary: the app\nhomepage: https://app.example.org/\n"
        "class: script\ntoolchain: false\ndepends: [lib]\n"
        f"sources:\n  - url: https://downloads.example.org/app-2.0.tar.gz\n    sha256: {SHA}\n"
        "patches: [files/fix.patch]\n"
        "env:\n  GREETING: hello\n"
        "steps:\n  compile: make\n"
    ),
    "recipes/app/files/fix.patch": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
}


def make_project(root, **changes):
    """The project above, with files replaced (value None: removed)."""
    files = dict(PROJECT)
    files.update({k.replace("__", "/"): v for k, v in changes.items()})
    write_tree(root, {k: v for k, v in files.items() if v is not None})
    return root


def signatures(root, board_name="b1", targets=("app",)):
    """{pn: (digest, sigdata)}, computed the way a build plans: dependencies first."""
    project = load_project(root, {})
    board = load_board(project, board_name)
    resolver = Resolver(project, board)
    graph = recipe_graph(resolver, [resolver.recipe(t) for t in targets])
    sigs, out = {}, {}
    for pn in nx.topological_sort(graph):
        recipe = graph.nodes[pn]["recipe"]
        build_class = resolver.build_class(recipe)
        deps = {d: sigs[d] for d in graph.predecessors(pn)}
        data = signature.sigdata(recipe, board, build_class.version(),
                                 build_class.signature_extra(recipe, board), deps)
        sigs[pn] = signature.digest(data)
        out[pn] = (sigs[pn], data)
    return out


def digests(root, **kw):
    return {pn: d for pn, (d, _) in signatures(root, **kw).items()}


def edit(path, text):
    """Rewrite a file so that its stat surely changes (size and mtime)."""
    old = path.stat()
    path.write_text(text)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def proj(tmp_path):
    return make_project(tmp_path / "one")


def test_digest_is_a_sha256_of_canonical_json():
    assert signature.digest({"b": 1, "a": [1, 2]}) == signature.digest({"a": [1, 2], "b": 1})
    assert signature.digest({"a": 1}) != signature.digest({"a": "1"})
    assert len(signature.digest({})) == 64


def test_same_inputs_same_signature_in_another_directory(tmp_path, proj):
    other = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(proj, other)
    first, second = signatures(proj), signatures(other)
    assert set(first) == {"lib", "app"}
    assert {pn: d for pn, (d, _) in first.items()} == {pn: d for pn, (d, _) in second.items()}
    # and computing again in the same directory gives the same too
    assert digests(proj) == {pn: d for pn, (d, _) in first.items()}


def test_no_absolute_path_enters_the_signature(tmp_path, proj):
    for _, data in signatures(proj).values():
        text = json.dumps(data)
        assert str(tmp_path) not in text
        assert str(proj.resolve()) not in text
    app = signatures(proj)["app"][1]
    # layer files are named relative to their layer, with their content hash
    patch = app["values"]["patches"][0]
    assert patch["file"] == "recipes/app/files/fix.patch"
    assert len(patch["sha256"]) == 64


def test_mirrors_never_enter_the_signature(tmp_path, proj, monkeypatch):
    plain = digests(proj)
    mirrored = make_project(tmp_path / "mirrored", **{
        "buildsys.yaml": "format: 1\ndefault_board: b1\n"
                         "premirrors: [http://premirror.example.lan/sources]\n"
                         "mirrors: [file:///srv/buildsys-mirror]\n"})
    monkeypatch.setenv("BUILDSYS_PREMIRRORS", "http://envmirror.example.lan/pre")
    monkeypatch.setenv("BUILDSYS_MIRRORS", "file:///srv/env-mirror")
    with_mirrors = signatures(mirrored)
    assert {pn: d for pn, (d, _) in with_mirrors.items()} == plain
    text = json.dumps([data for _, data in with_mirrors.values()])
    for word in ("premirror.example.lan", "buildsys-mirror", "envmirror", "env-mirror"):
        assert word not in text
    # ...while the upstream URL and checksum are inputs
    assert "https://downloads.example.org/app-2.0.tar.gz" in text and SHA in text


def test_descriptions_are_not_build_inputs(proj):
    before = digests(proj)
    edit(proj / "recipes/app/app.yaml", PROJECT["recipes/app/app.yaml"]
         .replace("summary: the app", "summary: the application, described at length")
         .replace("https://app.example.org/", "https://elsewhere.example.org/app"))
    assert digests(proj) == before


def test_a_changed_value_changes_it_and_explain_names_it(proj):
    old = signatures(proj)
    edit(proj / "recipes/app/app.yaml", PROJECT["recipes/app/app.yaml"].replace("GREETING: hello", "GREETING: hi"))
    new = signatures(proj)
    assert new["lib"][0] == old["lib"][0]          # lib does not depend on app
    assert new["app"][0] != old["app"][0]
    assert signature.explain(old["app"][1], new["app"][1]) == "value 'env' changed"


def test_a_changed_source_checksum_changes_it(proj):
    old = signatures(proj)
    edit(proj / "recipes/app/app.yaml", PROJECT["recipes/app/app.yaml"].replace(SHA, "f" * 64))
    new = signatures(proj)
    assert new["app"][0] != old["app"][0]
    assert signature.explain(old["app"][1], new["app"][1]) == "value 'sources' changed"


def test_a_changed_layer_file_changes_it(proj):
    old = signatures(proj)
    edit(proj / "recipes/app/files/fix.patch", PROJECT["recipes/app/files/fix.patch"].replace("+b", "+c"))
    new = signatures(proj)
    assert new["app"][0] != old["app"][0]
    assert signature.explain(old["app"][1], new["app"][1]) == "value 'patches' changed"


def test_same_file_content_under_another_mtime_keeps_it(proj):
    old = digests(proj)
    path = proj / "recipes/app/files/fix.patch"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))   # `touch`
    assert digests(proj) == old


def test_a_changed_dependency_changes_the_dependents(proj):
    old = signatures(proj)
    edit(proj / "recipes/lib/files/lib.c", "int lib(void) { return 2; }\n")
    new = signatures(proj)
    assert new["lib"][0] != old["lib"][0]
    assert signature.explain(old["lib"][1], new["lib"][1]) == "value 'sources' changed"
    # app's own recipe is untouched: only the dependency's signature moved
    assert new["app"][1]["values"] == old["app"][1]["values"]
    assert new["app"][0] != old["app"][0]
    assert signature.explain(old["app"][1], new["app"][1]) == "dependency lib changed"


def test_added_and_dropped_dependencies_are_named(proj):
    old = signatures(proj)["app"][1]
    new = dict(old, deps={"other": "1" * 64})
    assert signature.explain(old, new) == "dependency lib dropped, new dependency other"
    assert signature.digest(old) != signature.digest(new)


def test_the_class_version_changes_it(proj):
    project = load_project(proj, {})
    board = load_board(project, "b1")
    resolver = Resolver(project, board)
    lib = resolver.recipe("lib")
    version = resolver.build_class(lib).version()
    assert version and isinstance(version, str)
    one = signature.sigdata(lib, board, version, {}, {})
    two = signature.sigdata(lib, board, version + "-edited", {}, {})
    assert signature.digest(one) != signature.digest(two)
    assert signature.explain(one, two) == "class changed"
    # and so does the class itself (another class, another version)
    edit(proj / "recipes/lib/lib.yaml", PROJECT["recipes/lib/lib.yaml"].replace("class: script", "class: make"))
    other = signatures(proj, targets=("lib",))["lib"][1]
    assert other["class"] != one["class"]


def test_the_target_changes_it(proj):
    old = signatures(proj)
    edit(proj / "board-configs/b1.yaml", "format: 1\nname: b1\narch: x86_64\ntune: [-march=x86-64-v3]\n")
    new = signatures(proj)
    assert new["lib"][0] != old["lib"][0]
    assert signature.explain(old["lib"][1], new["lib"][1]) == "target changed"


def test_class_extra_inputs_change_it(proj):
    project = load_project(proj, {})
    board = load_board(project, "b1")
    lib = Resolver(project, board).recipe("lib")
    one = signature.sigdata(lib, board, "v", {"compiler": {"version": "12.2"}}, {})
    two = signature.sigdata(lib, board, "v", {"compiler": {"version": "13.1"}}, {})
    assert signature.digest(one) != signature.digest(two)
    assert signature.explain(one, two) == "extra changed"


def test_explain_without_and_with_no_change(proj):
    data = signatures(proj)["app"][1]
    assert signature.explain(None, data) == "no earlier build of this recipe"
    assert signature.explain(data, json.loads(json.dumps(data))) == "inputs unchanged but output missing"
    # several changes are all named
    changed = json.loads(json.dumps(data))
    changed["values"]["env"] = {"GREETING": "hi"}
    changed["values"]["version"] = "2.1"
    changed["deps"]["lib"] = "2" * 64
    assert signature.explain(data, changed) == "value 'env' changed, value 'version' changed, dependency lib changed"


def test_a_layer_file_linking_out_of_its_layer_is_refused(tmp_path):
    secret = write_tree(tmp_path / "outside", {"secret.txt": "not for builds\n"}) / "secret.txt"
    proj = make_project(tmp_path / "p", **{"recipes/app/files/fix.patch": None})
    (proj / "recipes/app/files").mkdir()
    os.symlink(secret, proj / "recipes/app/files/fix.patch")
    with pytest.raises(UserError, match="outside its layer"):
        signatures(proj)


def test_descriptive_keys_are_skipped_only_at_the_top(tmp_path):
    """summary/cpe/purl describe a recipe; an env variable of the same name is an input."""
    from buildsys.signature import _NOT_BUILD_INPUTS, canonical

    assert {"summary", "cpe", "purl"} <= _NOT_BUILD_INPUTS
    assert canonical({"env": {"summary": "x", "cpe": "y"}}) == {"env": {"summary": "x", "cpe": "y"}}

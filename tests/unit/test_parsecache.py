"""The parse cache: keyed by content, never stale, never caching an error,
robust to a damaged cache file, and invisible in what resolution produces."""
import os
import pickle

import pytest

from buildsys import parsecache
from buildsys.errors import UserError
from buildsys.layers import load_project
from buildsys.parsecache import ParseCache
from buildsys.resolve import Resolver, load_board
from conftest import run_buildsys, write_tree

TEXT = "format: 1\nname: app\ndepends: [a, b]\nenv: {X: '1'}\n"


def _positions(tree):
    return tree.key_pos, tree.val_pos, tree["depends"].item_pos


def test_hit_gives_the_same_tree_with_positions(tmp_path):
    recipe = tmp_path / "app.yaml"
    recipe.write_text(TEXT)
    cache_file = tmp_path / "build" / parsecache.FILE_NAME
    first = ParseCache(cache_file)
    parsed = first.load(recipe)
    assert (first.hits, first.misses) == (0, 1)
    first.save()
    assert cache_file.is_file()
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]   # no temp file left

    second = ParseCache(cache_file)
    cached = second.load(recipe)
    assert (second.hits, second.misses) == (1, 0)
    assert cached == parsed and _positions(cached) == _positions(parsed)
    assert str(cached["depends"].where(1)) == f"{recipe}:3:14"


def test_content_not_mtime_decides(tmp_path):
    recipe = tmp_path / "app.yaml"
    recipe.write_text(TEXT)
    cache_file = tmp_path / parsecache.FILE_NAME
    cache = ParseCache(cache_file)
    cache.load(recipe)
    cache.save()
    st = os.stat(recipe)
    recipe.write_text(TEXT.replace("[a, b]", "[c, d]"))          # same size...
    os.utime(recipe, ns=(st.st_atime_ns, st.st_mtime_ns))         # ...and same mtime
    cache = ParseCache(cache_file)
    assert cache.load(recipe)["depends"] == ["c", "d"]
    assert cache.misses == 1


def test_errors_are_not_cached(tmp_path):
    recipe = tmp_path / "app.yaml"
    recipe.write_text("format: 1\nname: app\ndepends: [a\n")
    cache_file = tmp_path / parsecache.FILE_NAME
    for _ in range(2):
        cache = ParseCache(cache_file)
        with pytest.raises(UserError, match=r"app\.yaml:4:1: YAML syntax error"):
            cache.load(recipe)
        cache.save()
    assert not cache_file.exists()


def test_a_damaged_or_foreign_cache_is_ignored(tmp_path, monkeypatch):
    recipe = tmp_path / "app.yaml"
    recipe.write_text(TEXT)
    cache_file = tmp_path / parsecache.FILE_NAME
    cache_file.write_bytes(b"\x80\x05garbage")
    cache = ParseCache(cache_file)
    assert cache.load(recipe)["name"] == "app"
    cache.save()
    assert ParseCache(cache_file).load(recipe)["name"] == "app"
    # a cache written by another version of the loader is not read
    monkeypatch.setattr(parsecache, "TREE_VERSION", parsecache.TREE_VERSION + 1)
    cache = ParseCache(cache_file)
    cache.load(recipe)
    assert cache.misses == 1
    # nor is a damaged entry
    header, entries = pickle.loads(cache_file.read_bytes())
    entries[str(recipe)] = (entries[str(recipe)][0], b"not a pickle")
    cache_file.write_bytes(pickle.dumps((parsecache._header(), entries)))
    cache = ParseCache(cache_file)
    assert cache.load(recipe)["name"] == "app" and cache.misses == 1


def test_cached_trees_are_independent_of_later_changes(tmp_path):
    """Resolution coerces values inside the tree in place: the cache keeps the parse."""
    recipe = tmp_path / "app.yaml"
    recipe.write_text("format: 1\nname: app\ndepends: [1, b]\n")
    cache_file = tmp_path / parsecache.FILE_NAME
    cache = ParseCache(cache_file)
    tree = cache.load(recipe)
    tree["depends"][0] = "changed"
    cache.save()
    assert ParseCache(cache_file).load(recipe)["depends"] == [1, "b"]


def test_disabled_by_environment(tmp_path):
    assert ParseCache.for_build_dir(tmp_path, {"BUILDSYS_PARSE_CACHE": "0"}).path is None
    assert ParseCache.for_build_dir(tmp_path, {}).path == tmp_path / parsecache.FILE_NAME
    recipe = tmp_path / "app.yaml"
    recipe.write_text(TEXT)
    cache = ParseCache(None)
    assert cache.load(recipe)["name"] == "app"
    cache.save()
    assert not (tmp_path / parsecache.FILE_NAME).exists()


FILES = {
    "buildsys.yaml": "format: 1\n",
    "board-configs/b.yaml": "format: 1\nname: b\narch: x86_64\n",
    "recipes/tc.yaml": "format: 1\nname: tc\nclass: toolchain\nprovides: [virtual/toolchain]\n",
    "recipes/app.yaml": "format: 1\nname: app\nversion: 1.0\nclass: make\ndepends: [lib]\n"
                        "make_args: ['V=${version}', 2]\noverrides:\n  arch:x86_64:\n    make_args+: [X86=1]\n",
    "recipes/lib.yaml": "format: 1\nname: lib\nsources:\n  - url: https://x.org/lib-${version}.tgz\n"
                        "    sha256: " + "a5" * 32 + "\n",
    "recipes/lib.append.yaml": "format: 1\nversion: '2'\n",
}


def _resolved(root, cache):
    project = load_project(root, environ={})
    if cache is not None:
        project.parse_cache = cache
    resolver = Resolver(project, load_board(project, "b"))
    out = {}
    for name in ("app", "lib", "tc"):
        recipe = resolver.recipe(name)
        out[name] = (recipe.values, {k: [(e.op, str(e.where), e.why) for e in h] for k, h in recipe.history.items()},
                     [d.pn for d in resolver.depends(recipe)])
    return resolver, out


def test_resolution_is_the_same_through_the_cache(tmp_path):
    root = write_tree(tmp_path / "p", FILES)
    cache_file = tmp_path / "build" / parsecache.FILE_NAME
    _, plain = _resolved(root, None)
    resolver, filled = _resolved(root, ParseCache(cache_file))
    assert resolver.project.parse_cache.misses == 0      # saved after the one parse pass
    resolver, warm = _resolved(root, ParseCache(cache_file))
    assert resolver.project.parse_cache.hits == 4
    assert plain == filled == warm


def test_a_broken_file_fails_only_when_used(tmp_path):
    root = write_tree(tmp_path / "p", {**FILES, "recipes/broken.yaml": "format: 1\nname: broken\ndepends: [a\n"})
    project = load_project(root, environ={})
    project.parse_cache = ParseCache(tmp_path / parsecache.FILE_NAME)
    resolver = Resolver(project, load_board(project, "b"))
    assert resolver.recipe("lib").get("version") == "2"
    for _ in range(2):
        with pytest.raises(UserError, match=r"broken\.yaml:4:1: YAML syntax error"):
            resolver.raw("broken")
    with pytest.raises(UserError, match=r"broken\.yaml:4:1: YAML syntax error"):
        resolver.depends(resolver.recipe("app"))     # finding providers reads every recipe


def test_cli_writes_and_uses_the_cache(tmp_path):
    root = write_tree(tmp_path / "p", {**FILES, "buildsys.yaml": "format: 1\ndefault_board: b\n"})
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build")}
    first = run_buildsys("--project", root, "graph", "--format", "json", "app", env=env, check=0)
    assert (tmp_path / "build" / parsecache.FILE_NAME).is_file()
    second = run_buildsys("--project", root, "graph", "--format", "json", "app", env=env, check=0)
    plain = run_buildsys("--project", root, "graph", "--format", "json", "app",
                         env=dict(env, BUILDSYS_PARSE_CACHE="0"), check=0)
    assert first.stdout == second.stdout == plain.stdout
    # an error in a cached-then-edited file is reported with its position
    (root / "recipes/lib.yaml").write_text("format: 1\nname: lib\nversion: [\n")
    proc = run_buildsys("--project", root, "graph", "app", env=env, check=2)
    assert proc.stderr.strip().endswith("lib.yaml:4:1: YAML syntax error: did not find expected node content")

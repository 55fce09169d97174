"""graph: the fast builders give exactly what the plain networkx calls give."""
import itertools
import json

import networkx as nx
import pytest

from buildsys.classes.base import TASKS
from buildsys.errors import UserError
from buildsys.graph import _digraph, recipe_graph, task_graph, to_json
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board
from conftest import write_tree


def _same(fast: nx.DiGraph, slow: nx.DiGraph) -> None:
    assert list(fast.nodes(data=True)) == list(slow.nodes(data=True))
    assert list(fast.edges(data=True)) == list(slow.edges(data=True))
    assert [list(fast.predecessors(n)) for n in fast] == [list(slow.predecessors(n)) for n in slow]
    assert list(nx.topological_sort(fast)) == list(nx.topological_sort(slow))


def test_digraph_matches_add_nodes_and_edges():
    nodes = {"b": {"x": 1}, "a": {"y": 2}, "z": {}}
    edges = [("a", "b"), ("c", "a"), ("b", "d"), ("a", "b"), ("d", "e"), ("c", "e")]
    slow = nx.DiGraph()
    slow.add_nodes_from(nodes.items())
    slow.add_edges_from(edges)
    fast = _digraph({n: dict(attrs) for n, attrs in nodes.items()}, edges)
    _same(fast, slow)
    fast.add_edge("e", "f")                  # an ordinary, editable DiGraph
    assert list(fast.successors("e")) == ["f"] and fast.number_of_edges() == 6
    assert fast.subgraph(["a", "b"]).copy().number_of_edges() == 1


RECIPES = {
    "buildsys.yaml": "format: 1\n",
    "board-configs/b.yaml": "format: 1\nname: b\narch: x86_64\n",
    "recipes/tc.yaml": "format: 1\nname: tc\nclass: toolchain\nprovides: [virtual/toolchain]\n",
    "recipes/app.yaml": "format: 1\nname: app\nclass: make\ndepends: [lib, tool-native, zlib]\n",
    "recipes/lib.yaml": "format: 1\nname: lib\nclass: make\ndepends: [zlib]\n",
    "recipes/zlib.yaml": "format: 1\nname: zlib\nversion: '1.3'\nclass: make\nvariants: [target, native]\n",
    "recipes/tool.yaml": "format: 1\nname: tool\nclass: make\nvariants: [native]\ndepends: [zlib]\n",
}


def _reference_recipe_graph(resolver, roots):
    """The former node-by-node build (no cycle handling needed here)."""
    graph, done = nx.DiGraph(), set()

    def visit(recipe):
        graph.add_node(recipe.pn, recipe=recipe)
        for dep in resolver.depends(recipe):
            graph.add_edge(dep.pn, recipe.pn)
            if dep.pn not in done:
                graph.add_node(dep.pn, recipe=dep)
                visit(dep)
        done.add(recipe.pn)

    for root in roots:
        if root.pn not in done:
            visit(root)
    return graph


def _resolver(tmp_path, files):
    project = load_project(write_tree(tmp_path / "p", files), environ={})
    return Resolver(project, load_board(project, "b"))


def test_recipe_and_task_graphs_match_the_node_by_node_build(tmp_path):
    resolver = _resolver(tmp_path, RECIPES)
    roots = [resolver.recipe("app"), resolver.recipe("lib")]
    rgraph = recipe_graph(resolver, roots)
    _same(rgraph, _reference_recipe_graph(resolver, roots))
    tgraph = task_graph(rgraph)
    slow = nx.DiGraph()
    for pn, data in rgraph.nodes(data=True):
        names = [f"{pn}:{t}" for t in TASKS]
        slow.add_nodes_from((name, {"recipe": data["recipe"], "task": t}) for name, t in zip(names, TASKS, strict=True))
        slow.add_edges_from(itertools.pairwise(names))
    slow.add_edges_from((f"{a}:package", f"{b}:configure") for a, b in rgraph.edges())
    _same(tgraph, slow)


def _json_reference(graph):
    nodes = [{"id": n, "recipe": graph.nodes[n]["recipe"].pn, "task": graph.nodes[n].get("task"),
              "version": graph.nodes[n]["recipe"].version} for n in sorted(graph.nodes)]
    return json.dumps({"nodes": nodes, "edges": [list(e) for e in sorted(graph.edges)]}, indent=1) + "\n"


def test_to_json_is_byte_identical_to_json_dumps(tmp_path):
    files = dict(RECIPES)
    files["recipes/app.yaml"] = "format: 1\nname: app\nversion: \"2.0-\\u00e9\\\"q\"\nclass: make\ndepends: [lib]\n"
    resolver = _resolver(tmp_path, files)
    tgraph = task_graph(recipe_graph(resolver, [resolver.recipe("app")]))
    tgraph.add_node("odd:node", recipe=resolver.recipe("lib"))          # no task: null
    assert to_json(tgraph) == _json_reference(tgraph)
    assert to_json(nx.DiGraph()) == _json_reference(nx.DiGraph())


def test_cycle_is_reported_as_a_path(tmp_path):
    files = dict(RECIPES)
    files["recipes/zlib.yaml"] = "format: 1\nname: zlib\nclass: make\ndepends: [app]\n"
    resolver = _resolver(tmp_path, files)
    with pytest.raises(UserError, match=r"dependency cycle: app -> lib -> zlib -> app"):
        recipe_graph(resolver, [resolver.recipe("app")])

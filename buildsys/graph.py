"""The recipe graph and the task graph (networkx DiGraphs).

Recipe graph: one node per recipe variant (its ``pn``), an edge dep -> user.
Task graph: one node per task ``pn:task``; tasks of a recipe form a chain
(fetch -> unpack -> ... -> package) and each dependency's ``package`` task
precedes its user's ``configure``.
"""
from __future__ import annotations

import json

import networkx as nx

from .classes.base import TASKS
from .errors import UserError
from .model import Recipe


def recipe_graph(resolver, roots: list[Recipe]) -> nx.DiGraph:
    graph = nx.DiGraph()
    # Iterative DFS with colours, so a cycle is reported as the path that closes it.
    state: dict[str, int] = {}           # 1 = on the stack, 2 = done
    stack: list[tuple[Recipe, list[Recipe] | None]] = []
    path: list[Recipe] = []
    for root in roots:
        if state.get(root.pn) == 2:
            continue
        stack.append((root, None))
        while stack:
            recipe, deps = stack.pop()
            if deps is None:
                if state.get(recipe.pn) == 2:
                    continue
                state[recipe.pn] = 1
                path.append(recipe)
                graph.add_node(recipe.pn, recipe=recipe)
                deps = list(reversed(resolver.depends(recipe)))
            if deps:
                dep = deps.pop()
                stack.append((recipe, deps))
                graph.add_edge(dep.pn, recipe.pn)
                if state.get(dep.pn) == 1:
                    _cycle_error(resolver, path, dep)
                if state.get(dep.pn) != 2:
                    graph.add_node(dep.pn, recipe=dep)
                    stack.append((dep, None))
            else:
                state[recipe.pn] = 2
                path.pop()
    return graph


def _cycle_error(resolver, path: list[Recipe], dep: Recipe) -> None:
    start = next(i for i, r in enumerate(path) if r.pn == dep.pn)
    cycle = path[start:] + [dep]
    files = []
    for a, b in zip(cycle, cycle[1:]):
        files.append(f"{a.pn} needs {b.pn} at {resolver._item_where(a, 'depends', b.pn)}")
    raise UserError("dependency cycle: " + " -> ".join(r.pn for r in cycle), cycle[0].where("depends"),
                    hint="; ".join(files))


def task_graph(rgraph: nx.DiGraph) -> nx.DiGraph:
    graph = nx.DiGraph()
    nodes, edges = [], []
    for pn, data in rgraph.nodes(data=True):
        recipe = data["recipe"]
        names = [f"{pn}:{task}" for task in TASKS]
        nodes.extend((name, {"recipe": recipe, "task": task}) for name, task in zip(names, TASKS))
        edges.extend(zip(names, names[1:]))
    edges.extend((f"{dep}:package", f"{user}:configure") for dep, user in rgraph.edges())
    graph.add_nodes_from(nodes)   # bulk adds: several times faster than one call per node
    graph.add_edges_from(edges)
    return graph


def to_dot(graph: nx.DiGraph) -> str:
    lines = ["digraph tasks {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    for node in sorted(graph.nodes):
        lines.append(f'  "{node}";')
    for a, b in sorted(graph.edges):
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph: nx.DiGraph) -> str:
    nodes = []
    for node in sorted(graph.nodes):
        data = graph.nodes[node]
        recipe = data["recipe"]
        nodes.append({"id": node, "recipe": recipe.pn, "task": data.get("task"), "version": recipe.version})
    return json.dumps({"nodes": nodes, "edges": [list(e) for e in sorted(graph.edges)]}, indent=1) + "\n"

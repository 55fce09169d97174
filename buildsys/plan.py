"""Planning a build: the recipe graph, every recipe's signature, and which
tasks must run (restore from the cache, resume after a kill, or build)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import networkx as nx

from . import incremental, signature
from .classes.base import TASKS
from .graph import recipe_graph, task_graph
from .model import Recipe


class Plan:
    """Signatures of the recipes a set of targets needs."""

    def __init__(self, resolver, board, targets: list[Recipe], env=None):
        self.resolver = resolver
        self.board = board
        self.targets = targets
        self.rgraph: nx.DiGraph = recipe_graph(resolver, targets)
        self.sigs: dict[str, str] = {}
        self.sigdata: dict[str, dict] = {}
        # pn -> how much of its last work dir this build keeps (incremental.CONFIGURE/SYNC)
        self.reuse: dict[str, str] = {}
        self.incremental = bool(resolver.project.settings.get("incremental", True))
        for pn in nx.topological_sort(self.rgraph):
            recipe = self.recipe(pn)
            build_class = resolver.build_class(recipe)
            deps = {d: self.sigs[d] for d in self.rgraph.predecessors(pn)}
            data = signature.sigdata(recipe, board, build_class.version(),
                                     build_class.signature_extra(recipe, board, env=env), deps, env)
            self.sigdata[pn] = data
            self.sigs[pn] = signature.digest(data)

    def recipe(self, pn: str) -> Recipe:
        return self.rgraph.nodes[pn]["recipe"]

    def work_key(self, recipe: Recipe) -> str:
        return "native" if recipe.variant == "native" else self.board.name

    def execution_graph(self, available: Callable[[str], bool], cached: Callable[[str], bool],
                        stamps_dir: Callable[[Recipe], Path], force=frozenset()) -> nx.DiGraph:
        """The tasks to run: nothing for what the package store has, a
        restore for what the cache has, the remaining tasks for the rest."""
        full = task_graph(self.rgraph)
        self.reuse = {}
        nodes: set[str] = set()
        restore: set[str] = set()
        visited: set[str] = set()
        stack = [r.pn for r in self.targets]
        while stack:
            pn = stack.pop()
            if pn in visited:
                continue
            visited.add(pn)
            if pn not in force and available(self.sigs[pn]):
                continue
            if pn not in force and cached(self.sigs[pn]):
                restore.add(pn)
                continue
            nodes.update(self._tasks_to_run(pn, stamps_dir(self.recipe(pn)), pn in force))
            stack.extend(self.rgraph.predecessors(pn))
        graph = full.subgraph(nodes).copy()
        for pn, how in self.reuse.items():
            if how == incremental.CONFIGURE and f"{pn}:configure" in graph:
                graph.add_edge(f"{pn}:fetch", f"{pn}:configure")
        for pn in restore:
            node = f"{pn}:restore"
            graph.add_node(node, recipe=self.recipe(pn), task="restore")
            for user in self.rgraph.successors(pn):
                if f"{user}:configure" in graph:
                    graph.add_edge(node, f"{user}:configure")
        return graph

    def _tasks_to_run(self, pn: str, stamps: Path, forced: bool = False) -> list[str]:
        """All tasks, minus a prefix already done for this signature (a build
        killed midway resumes), or minus unpack and patch when the last work
        dir may be kept (incremental.py)."""
        sig = self.sigs[pn]
        start = 0
        self.reuse.pop(pn, None)
        if stamps.is_dir() and any(stamps.glob("*.running")):
            # A task was killed midway: its half-written outputs (truncated
            # objects with fresh times) could fool make, so start afresh.
            return [f"{pn}:{task}" for task in TASKS]
        for i, task in enumerate(TASKS[:-1]):
            stamp = stamps / task
            if stamp.is_file() and not stamp.is_symlink() and stamp.read_text() == sig:
                start = i + 1
            elif task != "fetch":
                # (unpack removes every stamp, fetch's too: an unpack stamp
                # for this signature says the fetch was done.)
                break
        if start <= TASKS.index("fetch") + 1 and not forced and self.incremental:
            # Nothing past fetch done for this signature: may the last work dir be kept?
            how = incremental.reuse(incremental.read_record(stamps), self.sigdata[pn], self.recipe(pn).class_name)
            if how is not None:
                self.reuse[pn] = how
                # fetch stays: it is what checks the sources are still there.
                skip = ("unpack", "patch") if how == incremental.CONFIGURE else ()
                return [f"{pn}:{task}" for task in TASKS if task not in skip]
        return [f"{pn}:{task}" for task in TASKS[start:]]

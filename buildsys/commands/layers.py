"""`buildsys layers`: the layers in effect, their origin and whether they are dirty."""
from __future__ import annotations

import os

from ..workspace import Workspace
from .base import Command


def origin(layer, root) -> str:
    """Where a layer comes from: its git URL and pinned commit, or its directory
    (relative to the project when inside it)."""
    if layer.git is not None:
        text = f"{layer.git.url} @ {layer.git.commit[:12]}"
        if layer.git.subdir:
            text += f" path {layer.git.subdir}"
        if layer.git.branch:
            text += f" (branch {layer.git.branch})"
        return text
    rel = os.path.relpath(layer.path, root)
    return str(layer.path) if rel == ".." or rel.startswith("../") else rel


def dirty(layer) -> str:
    """yes / no: uncommitted changes in the layer's directory of its git tree; "-" outside git."""
    from ..provenance import git_state

    state = git_state(layer.path)["dirty"]
    return "-" if state is None else ("yes" if state else "no")


class Layers(Command):
    name = "layers"
    help = "list the layers in effect: priority, whether dirty (uncommitted changes), origin (path or git URL + commit)"

    def run(self, args):
        ws = Workspace(args)
        width = max(len(layer.name) for layer in ws.project.layers)
        print(f"{'layer':<{max(width, 5)}} {'priority':>8}  {'dirty':<5}  origin")
        for layer in reversed(ws.project.layers):
            print(f"{layer.name:<{max(width, 5)}} {layer.priority:>8}  {dirty(layer):<5}  "
                  f"{origin(layer, ws.project.root)}")
        return 0

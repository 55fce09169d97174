"""`buildsys layers`: the layers in effect."""
from __future__ import annotations

from ..workspace import Workspace
from .base import Command


class Layers(Command):
    name = "layers"
    help = "list the layers in effect, with priority and path"

    def run(self, args):
        ws = Workspace(args)
        print(f"{'layer':<20} {'priority':>8}  path")
        for layer in reversed(ws.project.layers):
            print(f"{layer.name:<20} {layer.priority:>8}  {layer.path}")
        return 0

"""`buildsys recipes`: the resolved recipes."""
from __future__ import annotations

from ..workspace import Workspace
from .base import Command, board_option


class Recipes(Command):
    name = "recipes"
    help = "list the resolved recipes: name, version, layer"

    def setup(self, parser):
        board_option(parser)

    def run(self, args):
        ws = Workspace(args)
        resolver = ws.resolver
        rows = []
        for name in resolver.names():
            layer, path, data = resolver.raw(name)
            variants = data.get("variants") or ["target"]
            recipe = resolver.recipe(name, "target" if "target" in variants else "native")
            shadowed = [lp[0].name for lp in ws.project.recipe_files[name] if lp[0] is not layer]
            extra = f"  (overrides {', '.join(shadowed)})" if shadowed else ""
            native = " +native" if "native" in variants and "target" in variants else (
                " native-only" if "target" not in variants else "")
            rows.append(f"{name:<28} {recipe.version:<16} {layer.name}{native}{extra}")
        print(f"{'recipe':<28} {'version':<16} layer")
        print("\n".join(rows))
        return 0

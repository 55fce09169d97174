"""`buildsys show`: a resolved recipe, with where each value came from."""
from __future__ import annotations

from ..workspace import Workspace
from .base import Command, board_option


def _fmt(value) -> str:
    from ..model import FileRef, SourceEntry

    if isinstance(value, FileRef):
        return value.layer_relative
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, (dict, SourceEntry)):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


class Show(Command):
    name = "show"
    help = "show a fully resolved recipe, with the file:line that set each value"

    def setup(self, parser):
        parser.add_argument("recipe")
        board_option(parser)

    def run(self, args):
        ws = Workspace(args)
        recipe = ws.targets([args.recipe])[0]
        print(f"# {recipe.pn} {recipe.version} for board {ws.board.name} ({ws.board.arch})")
        print(f"# recipe: {ws.rel(recipe.path)} (layer {recipe.layer.name})")
        for path in recipe.appends:
            print(f"# append: {ws.rel(path)}")
        for key in sorted(recipe.values):
            value = recipe.values[key]
            history = recipe.history.get(key, [])
            print(f"{key}: {_fmt(value)}")
            if not history:
                print(f"    # default of class '{recipe.class_name}'" if key not in ("class",) else "    # default")
            for entry in history:
                where = entry.where
                loc = f"{ws.rel(where.path)}:{where.line}" if where else "?"
                op = {"=": "set", "+": "appended", "-": "removed", "unset": "unset"}.get(entry.op, entry.op)
                why = f" [{entry.why}]" if entry.why not in ("recipe",) else ""
                print(f"    # {op} at {loc}{why}")
        deps = ws.resolver.depends(recipe)
        print(f"# build depends: {', '.join(d.pn for d in deps) or '-'}")
        return 0

"""`buildsys source`: build a recipe from a working tree on disk (devtool
modify / externalsrc), or from its pinned sources again.

    buildsys source                        which recipes build from a working tree
    buildsys source hello --local ~/src/hello
    buildsys source hello --reset

The choice is per machine, so it goes in local.yaml (``live_sources:``),
never in a layer.  A --local directory that does not exist yet is filled
with the recipe's sources, unpacked and patched, as a git repository whose
first commit is that tree (``git diff`` then shows your changes, ready to
become a patch).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError, Where
from .base import Command, board_option

KEY = "live_sources"


class Source(Command):
    name = "source"
    help = "build a recipe from a working tree on disk (--local DIR), or from its sources again (--reset)"

    def setup(self, parser):
        parser.add_argument("recipe", nargs="?", help="recipe name (none: list the live sources)")
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--local", metavar="DIR",
                          help="working tree to build from; created from the recipe's patched sources when missing")
        what.add_argument("--reset", action="store_true", help="build from the recipe's own sources again")
        board_option(parser)

    def run(self, args):
        from .. import configedit
        from ..layers import LOCAL_FILE
        from ..workspace import Workspace

        ws = Workspace(args)
        local = ws.project.root / LOCAL_FILE
        live = configedit.read_mapping(local, KEY)
        if not args.recipe:
            if args.local or args.reset:
                raise UserError("name the recipe", Where("command line"), hint="buildsys source RECIPE --local DIR")
            for name, path in sorted(live.items()):
                print(f"{name:<24} {path}")
            if not live:
                print("no recipe builds from a working tree (buildsys source RECIPE --local DIR)")
            return 0
        name = args.recipe.removesuffix("-native")
        if name not in ws.project.recipe_files:
            from ..schema import suggest
            raise UserError(f"unknown recipe '{args.recipe}'", Where("command line"),
                            hint=suggest(name, ws.project.recipe_files) or "see `buildsys recipes`")
        if not args.local and not args.reset:
            print(f"{name}: builds from {live[name]} (live)" if name in live else
                  f"{name}: builds from its recipe's sources")
            return 0

        def check() -> None:
            Workspace(args).resolver.recipe(name)

        if args.reset:
            if name not in live:
                print(f"{name} already builds from its recipe's sources")
                return 0
            del live[name]
            configedit.set_mapping(local, KEY, live, check)
            print(f"{name} builds from its recipe's sources again ({LOCAL_FILE}); the working tree is left as it is")
            return 0
        tree = Path(args.local).expanduser().absolute()
        if not tree.exists() or (tree.is_dir() and not any(tree.iterdir())):
            _populate(ws, name, tree, live)
        elif not tree.is_dir():
            raise UserError(f"{tree} is not a directory", Where("--local"))
        else:
            recipe = _archive_recipe(ws, name, live)
            if recipe.get("patches"):
                print(f"note: {tree} is used as it is: the recipe's {len(recipe.get('patches'))} patch(es) are "
                      "not applied to it")
        live[name] = str(tree)
        configedit.set_mapping(local, KEY, live, check)
        print(f"{name} now builds from {tree} ({LOCAL_FILE}); a rebuild after an edit recompiles what the edit "
              f"requires.  Images with it are marked not reproducible from pinned sources; "
              f"`buildsys source {name} --reset` goes back.")
        return 0


def _archive_recipe(ws, name: str, live: dict):
    """The recipe as its layers have it (not the live variant)."""
    from ..resolve import Resolver

    settings = ws.project.settings
    saved = settings.get(KEY)
    settings[KEY] = {k: v for k, v in live.items() if k != name}
    try:
        return Resolver(ws.project, ws.board).recipe(name)
    finally:
        settings[KEY] = saved


def _populate(ws, name: str, tree: Path, live: dict) -> None:
    """Fill ``tree`` with the recipe's sources, unpacked and patched (into a
    temp dir beside it, renamed into place when complete)."""
    from ..executor import sources_of
    from ..fetch import apply_patches, fetch, unpack

    recipe = _archive_recipe(ws, name, live)
    sources = sources_of(recipe)
    if not sources:
        raise UserError(f"recipe '{name}' has no sources to start a working tree from", Where(str(recipe.path)),
                        hint="create the directory yourself and run the command again")
    tree.parent.mkdir(parents=True, exist_ok=True)
    config = ws.fetch_config()
    tmp = Path(tempfile.mkdtemp(prefix=f".{tree.name}.", dir=tree.parent))
    try:
        for source in sources:
            local = fetch(source, config)
            target = tmp / source.dest if source.dest else tmp
            target.mkdir(parents=True, exist_ok=True)
            unpack(local, target, source)
        patches = [ref.path for ref in recipe.get("patches", [])]
        if patches:
            apply_patches(patches, tmp)
        _git_init(tmp, f"{name} {recipe.version}: sources and {len(patches)} patch(es) of its recipe")
        if tree.exists():
            tree.rmdir()       # empty (checked by the caller)
        os.rename(tmp, tree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{tree}: {name} {recipe.version} unpacked, {len(patches)} patch(es) applied"
          + (", committed to a new git repository" if (tree / ".git").is_dir() else ""))


def _git_init(tree: Path, message: str) -> None:
    """A git repository whose first commit is the pristine patched tree (skipped without git)."""
    git = shutil.which("git")
    if git is None:
        return
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tree), "GIT_AUTHOR_NAME": "buildsys",
           "GIT_AUTHOR_EMAIL": "buildsys@localhost", "GIT_COMMITTER_NAME": "buildsys",
           "GIT_COMMITTER_EMAIL": "buildsys@localhost", "GIT_CONFIG_NOSYSTEM": "1"}
    for argv in (["init", "-q"], ["add", "-A", "-f"], ["commit", "-q", "--no-verify", "-m", message]):
        proc = subprocess.run([git, "-C", str(tree), *argv], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(tree / ".git", ignore_errors=True)
            return

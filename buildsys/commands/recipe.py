"""`buildsys recipe new URL`: write a first recipe from a source (recipetool create)."""
from __future__ import annotations

from ..workspace import Workspace
from .base import Command


class Recipe(Command):
    name = "recipe"
    help = "write a new recipe from a source URL, tarball or git repository (recipe new)"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
        new = sub.add_parser(
            "new", help="fetch a source, detect its build system and license, write a recipe",
            description="Fetch URL through the normal fetcher (mirrors, Debian archive, download dir), learn "
                        "its sha256 (a git source: pin the commit it resolves), detect the build system "
                        "(Meson, CMake, Autotools, Kconfig, make) and the license, and write "
                        "<layer>/recipes/<name>/<name>.yaml. See docs/recipe-new.md.")
        new.add_argument("url", metavar="URL",
                         help="https://.../foo-1.0.tar.gz, a local tarball, git+https://.../foo.git, "
                              "git+file:///path, or a path to a git work tree")
        new.add_argument("--layer", metavar="NAME|DIR",
                         help="the layer that gets the recipe (default: the layer the current directory is in; "
                              "the core layer when the project has no other)")
        new.add_argument("--name", help="recipe name (default: from the file or repository name)")
        new.add_argument("--version", help="version (default: from the file name; git: from the tags)")
        new.add_argument("--rev", help="git: the branch, tag or commit to pin (default: HEAD)")
        new.add_argument("--force", action="store_true", help="replace an existing recipe file")

    def run(self, args):
        from ..recipetool import create

        ws = Workspace(args)
        created = create(ws, args.url, layer_arg=args.layer, name=args.name, version=args.version,
                         rev=args.rev, force=args.force)
        print(f"wrote {created.path} (recipe '{created.name}', layer {created.layer})")
        print("check:")
        for line in created.checks:
            print(f"  - {line}")
        print(f"then: buildsys show {created.name} && buildsys build {created.name}")
        return 0

"""The subcommands (each a small Command plugin)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .cli import Command, board_option
from .errors import UserError, Where
from .workspace import Workspace


class Layers(Command):
    name = "layers"
    help = "list the layers in effect, with priority and path"

    def run(self, args):
        ws = Workspace(args)
        print(f"{'layer':<20} {'priority':>8}  path")
        for layer in reversed(ws.project.layers):
            print(f"{layer.name:<20} {layer.priority:>8}  {layer.path}")
        return 0


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


def _fmt(value) -> str:
    from .model import FileRef

    if isinstance(value, FileRef):
        return value.layer_relative
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items() if k != "_where") + "}"
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


class Graph(Command):
    name = "graph"
    help = "print the task graph (dot, json or png)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        parser.add_argument("--format", choices=("dot", "json", "png"), default="dot")
        parser.add_argument("-o", "--output", help="output file (png needs one)")

    def run(self, args):
        from .graph import recipe_graph, task_graph, to_dot, to_json

        ws = Workspace(args)
        graph = task_graph(recipe_graph(ws.resolver, ws.targets(args.target)))
        if args.format == "json":
            text = to_json(graph)
        else:
            text = to_dot(graph)
        if args.format == "png":
            if not args.output:
                raise UserError("--format png needs -o FILE", Where("command line"))
            dot = shutil.which("dot")
            if dot is None:
                raise UserError("graphviz's 'dot' is not installed", Where("command line"), hint="apt-get install graphviz")
            subprocess.run([dot, "-Tpng", "-o", args.output], input=text.encode(), check=True)
            return 0
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
        return 0


def _jobs(value) -> int:
    return value or os.cpu_count() or 1


class Fetch(Command):
    name = "fetch"
    help = "download every source a target needs (for building offline later)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        parser.add_argument("--offline", action="store_true", help="only check the download dir")

    def run(self, args):
        from .executor import sources_of
        from .fetch import fetch_many
        from .graph import recipe_graph

        ws = Workspace(args)
        rgraph = recipe_graph(ws.resolver, ws.targets(args.target))
        sources = []
        for pn in sorted(rgraph.nodes):
            sources += sources_of(rgraph.nodes[pn]["recipe"])
        fetched = fetch_many(sources, ws.fetch_config(args.offline))
        remote = [s for s in sources if not s.url.startswith("file:")]
        print(f"{len(remote)} remote source(s) and {len(sources) - len(remote)} layer file(s) in place; "
              f"download dir: {ws.paths.dl}")
        return 0


class Build(Command):
    name = "build"
    help = "build targets (default: the board's default image)"

    def setup(self, parser):
        parser.add_argument("target", nargs="*")
        board_option(parser)
        parser.add_argument("-j", "--jobs", type=int, default=0, help="parallel tasks (default: cores)")
        parser.add_argument("-k", "--keep-going", action="store_true", help="build all that does not depend on a failure")
        parser.add_argument("--offline", action="store_true", help="no network: sources must be in the download dir")
        parser.add_argument("--force", action="append", default=[], metavar="RECIPE", help="rebuild RECIPE even if cached")

    def run(self, args):
        from . import plancache

        ws = Workspace(args)
        target_names = list(args.target or [])
        key = None
        if not args.force:
            key = plancache.inputs_key(ws.project, ws.board_name, target_names, self._prefixes(ws))
            plan = plancache.load(ws.paths.build, ws.board_name, target_names, key)
            if plan and all((ws.paths.packages / f"{sig}.json").is_file() for sig in plan["sigs"].values()):
                print("nothing to do: every target is up to date", file=sys.stderr)
                return 0
        from .build import Session
        from .deploy import deploy

        targets = ws.targets(args.target)
        session = Session(ws.project, ws.board, ws.resolver, ws.paths, _jobs(args.jobs), ws.fetch_config(args.offline))
        session.plan(targets)
        graph = session.execution_graph(set(args.force))
        ran = sorted({node.rsplit(":", 1)[0] for node in graph.nodes
                      if not node.endswith((":restore", ":fetch"))})
        for pn in ran:
            print(f"{pn}: runs because {session.why(pn)}", file=sys.stderr)
        if session.fetch_config.offline:
            # One error naming every missing file, before any step runs.
            from .executor import sources_of
            from .fetch import fetch_many
            fetch_many([s for node in sorted(graph.nodes) if node.endswith(":fetch")
                        for s in sources_of(graph.nodes[node]["recipe"])], session.fetch_config)
        if graph.number_of_nodes() == 0:
            print("nothing to do: every target is up to date", file=sys.stderr)
        else:
            failed = session.run(graph, args.keep_going)
            if failed:
                print(f"build failed: {', '.join(failed)}", file=sys.stderr)
                return 1
        for recipe in targets:
            deploy(session, recipe)
        if key:
            plancache.save(ws.paths.build, ws.board_name, target_names, key,
                           {r.pn: session.sigs[r.pn] for r in targets})
        return 0

    @staticmethod
    def _prefixes(ws) -> tuple[str, ...]:
        try:
            return ("", ws.board.cross_prefix)
        except Exception:  # the slow path reports a bad board properly
            return ("",)


class Clean(Command):
    name = "clean"
    help = "remove a recipe's work dir (or the whole build dir but downloads and cache)"

    def setup(self, parser):
        parser.add_argument("recipe", nargs="?")
        board_option(parser)

    def run(self, args):
        ws = Workspace(args)
        build = ws.paths.build
        if args.recipe:
            removed = 0
            for work in sorted((build / "work").glob(f"*/{args.recipe}")):
                shutil.rmtree(work)
                removed += 1
            print(f"removed {removed} work dir(s) of {args.recipe}")
            return 0
        for name in ("work", "packages", "deploy", "sigdata"):
            shutil.rmtree(build / name, ignore_errors=True)
        print(f"cleaned {build} (kept downloads and cache)")
        return 0


def _built_image(ws, args) -> Path:
    """Build the board's default image (a no-op when up to date) and return the disk image's path."""
    build_args = argparse_namespace(args, target=[], jobs=0, keep_going=False, offline=False, force=[])
    status = COMMANDS_BUILD().run(build_args)
    if status != 0:
        raise BuildFailedExit(status)
    manifest = ws.paths.deploy / ws.board.name / "manifest.json"
    files = json.loads(manifest.read_text())["files"]
    images = sorted(f for f in files if f.endswith(".img"))
    if not images:
        raise UserError(f"the image of board '{ws.board.name}' has no .img file", Where(str(manifest)))
    return ws.paths.deploy / ws.board.name / images[0]


def argparse_namespace(args, **values):
    import argparse

    merged = dict(vars(args))
    merged.update(values)
    return argparse.Namespace(**merged)


def COMMANDS_BUILD():
    from .cli import COMMANDS

    return COMMANDS["build"]


class BuildFailedExit(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


def _qemu_argv(ws, image: Path) -> list[str]:
    from .qemu import board_argv

    qemu = ws.board.get("qemu")
    if not qemu:
        raise UserError(f"board '{ws.board.name}' cannot be emulated (it has no qemu: settings)",
                        Where(str(ws.board.path)), hint="flash the image to the device instead")
    # Work on a copy: the guest must not change the deployed, checksummed image.
    run_dir = ws.paths.build / "run" / ws.board.name
    run_dir.mkdir(parents=True, exist_ok=True)
    copy = run_dir / image.name
    shutil.copyfile(image, copy)
    return board_argv(qemu, image=str(copy), deploy=str(image.parent))


class Run(Command):
    name = "run"
    help = "build if needed, then boot the image in QEMU with the serial console on this terminal"

    def setup(self, parser):
        board_option(parser)

    def run(self, args):
        ws = Workspace(args)
        try:
            image = _built_image(ws, args)
        except BuildFailedExit as exc:
            return exc.status
        argv = _qemu_argv(ws, image)
        print("booting: " + " ".join(argv), file=sys.stderr)
        print("(quit QEMU with Ctrl-a x)", file=sys.stderr)
        sys.stderr.flush()
        os.execvp(argv[0], argv)


class Test(Command):
    name = "test"
    help = "boot the image headless, run checks on its shell, power off; exit 0 or 1"

    def setup(self, parser):
        board_option(parser)
        parser.add_argument("--timeout", type=float, default=300, help="seconds to reach the shell (default 300)")

    def run(self, args):
        from .qemu import Check, boot_and_check

        ws = Workspace(args)
        try:
            image = _built_image(ws, args)
        except BuildFailedExit as exc:
            return exc.status
        argv = _qemu_argv(ws, image)
        arch = ws.board.arch
        checks = [
            Check("grep ' / ' /proc/mounts", r"^\S+ / squashfs ro[ ,]"),
            Check("cat /proc/cmdline", r"root="),
            Check("uname -m", rf"^{arch}\s*$"),
            Check("touch /probe-readonly 2>&1", r"Read-only file system", status=None),
            Check("ls /dev/console /dev/null", r"/dev/null"),
        ]
        log = ws.paths.build / "logs" / f"boot-{ws.board.name}.log"
        print("booting: " + " ".join(argv), file=sys.stderr)
        result = boot_and_check(argv, checks, log, timeout=args.timeout)
        verdict = "PASS" if result.ok else "FAIL"
        print(f"{verdict}: {ws.board.name}: {result.reason}", file=sys.stderr)
        print(f"serial log: {result.log_path}", file=sys.stderr)
        return 0 if result.ok else 1


class Menuconfig(Command):
    name = "menuconfig"
    help = "run a Kconfig recipe's menuconfig in its work dir; optionally save the changes as a fragment"

    def setup(self, parser):
        parser.add_argument("recipe", nargs="?", default="linux")
        board_option(parser)
        parser.add_argument("--save-fragment", metavar="FILE", help="write the changed symbols to FILE")

    def run(self, args):
        from .build import Session
        from .classes.base import SANDBOX_OBJ, SANDBOX_SRC
        from .executor import Context

        ws = Workspace(args)
        recipe = ws.targets([args.recipe])[0]
        session = Session(ws.project, ws.board, ws.resolver, ws.paths, _jobs(0), ws.fetch_config())
        session.plan([recipe])
        paths = session.recipe_paths(recipe)
        config = next((p for p in (paths.obj / ".config", paths.src / ".config") if p.is_file()), None)
        if config is None:
            raise UserError(f"{recipe.pn} has not been configured in {paths.work}", Where("command line"),
                            hint=f"run `buildsys build {recipe.pn}` first")
        before = config.read_text()
        ctx = Context(session, recipe, "menuconfig", paths.logs / "menuconfig.log")
        cwd = SANDBOX_SRC
        make_dir = "O=/build/obj" if config.parent == paths.obj else ""
        env = {"TERM": os.environ.get("TERM", "xterm")}
        from . import sandbox

        argv = sandbox.bwrap_argv(ctx._mounts(), dict(ctx.env, **env), cwd,
                                  ["make", f"ARCH={ctx.env['ARCH']}", *([make_dir] if make_dir else []), "menuconfig"])
        status = subprocess.run(argv).returncode
        if status != 0:
            return 1
        after = config.read_text()
        changed = _config_diff(before, after)
        print(f"{len(changed)} symbol(s) changed in {config}", file=sys.stderr)
        if args.save_fragment:
            Path(args.save_fragment).write_text("".join(line + "\n" for line in changed))
            print(f"fragment written to {args.save_fragment}; add it to config_fragments", file=sys.stderr)
        return 0


def _config_diff(before: str, after: str) -> list[str]:
    def table(text):
        out = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                out[line.split("=", 1)[0]] = line
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                out[line[2:].split()[0]] = line
        return out

    old, new = table(before), table(after)
    return [new[k] for k in sorted(new) if old.get(k) != new[k]]

"""`buildsys layer create|add|remove|update`: making layers and naming them in the project.

``add`` and ``remove`` edit the ``layers:`` list of buildsys.yaml (or
local.yaml) as text, keeping the rest of the file (layerconfig.py); the layer
is checked before it is recorded, and the project must load afterwards or the
file is put back.  ``update`` moves a git layer's pin deliberately.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, Where
from ..layerconfig import Item, LayersFile
from .base import Command


def _root(args) -> Path:
    from ..layers import PROJECT_FILE, find_project

    root = Path(args.project) if getattr(args, "project", None) else find_project(Path.cwd())
    if not (root / PROJECT_FILE).is_file():
        raise UserError(f"no {PROJECT_FILE} in {root}", Where("--project"), hint="not a buildsys project")
    return root.resolve()


def _files(root: Path):
    from ..layers import LOCAL_FILE, PROJECT_FILE

    return [LayersFile(root / PROJECT_FILE)] + ([LayersFile(root / LOCAL_FILE)] if (root / LOCAL_FILE).is_file()
                                                 else [])


@dataclass
class Named:
    """One ``layers:`` item of a project file, and what it names."""

    file: LayersFile
    item: Item
    directory: Path | None  # the layer's directory (None: a git layer not checked out)
    name: str | None        # from its layer.yaml, when readable


def _named(root: Path, fetch: bool = False) -> list[Named]:
    """Every item of ``layers:`` in buildsys.yaml and local.yaml.  Read without
    loading the project, which may not load while a pin is broken: a git
    layer's name comes from its checkout, else from the layer.yaml in its
    mirror (fetched first when ``fetch``, at the pinned commit or the tip)."""
    from .. import layerrepo
    from ..layers import load_layer, offline

    settings = _settings(root)
    out = []
    for lf in _files(root):
        for item in lf.items():
            directory: Path | None = None
            name = None
            if isinstance(item.value, str):
                directory = (root / item.value).resolve()
            elif isinstance(item.value, dict) and item.value.get("url") and item.value.get("commit"):
                pin = layerrepo.pin_from_entry(item.value)
                cache = layerrepo.cache_dir(settings, os.environ, root)
                repo = layerrepo.LayerRepo(cache, pin.url, offline(settings, os.environ))
                checkout = repo.checkout_dir(pin.commit)
                directory = checkout / pin.subdir if pin.subdir else checkout
                if not (directory / "layer.yaml").is_file():
                    name = _name_in_mirror(repo, pin, lf.where(item), fetch)
            if name is None and directory is not None and (directory / "layer.yaml").is_file():
                try:
                    name = load_layer(directory)[0].name
                except UserError:
                    pass
            out.append(Named(lf, item, directory, name))
    return out


def _name_in_mirror(repo, pin, where: Where, fetch: bool) -> str | None:
    """The name in a git layer's layer.yaml, read from the mirror (no checkout needed)."""
    from .. import layerrepo, yamlio

    with repo.lock():
        if fetch and not repo.fetched:
            repo.fetch(where)
        if not (repo.mirror / "HEAD").is_file():
            return None
        rel = f"{pin.subdir.rstrip('/')}/layer.yaml" if pin.subdir else "layer.yaml"
        for rev in (pin.commit, f"refs/heads/{pin.branch}" if pin.branch else "HEAD"):
            proc = layerrepo.git(["show", f"{rev}:{rel}"], cwd=repo.mirror, check=False)
            if proc.returncode == 0:
                try:
                    data = yamlio.loads(proc.stdout, f"{pin.url}:{rel}")
                except UserError:
                    return None
                name = data.get("name") if isinstance(data, dict) else None
                return name if isinstance(name, str) else None
    return None


def _settings(root: Path) -> dict:
    from ..layers import _load_settings

    try:
        return _load_settings(root)[0]
    except UserError:
        return {}


def _find(root: Path, what: str) -> Named:
    """The item naming layer ``what``: its name, its directory, or its git URL."""
    path = Path(what).expanduser()

    def matches(named: list[Named]) -> list[Named]:
        return [n for n in named
                if n.name == what or (n.directory is not None and path.exists() and n.directory == path.resolve())
                or (isinstance(n.item.value, dict) and n.item.value.get("url") == what)]

    named = _named(root)
    found = matches(named)
    if not found and any(n.name is None and isinstance(n.item.value, dict) for n in named):
        named = _named(root, fetch=True)     # a git layer never fetched here: its name is in its repository
        found = matches(named)
    if len(found) > 1:
        places = ", ".join(str(n.file.where(n.item)) for n in found)
        raise UserError(f"'{what}' names {len(found)} layers: {places}", Where("command line"),
                        hint="name the layer by its directory or URL")
    if found:
        return found[0]
    layers_dir = root / "layers"
    if (layers_dir / what / "layer.yaml").is_file() or (path.is_dir() and path.resolve().parent == layers_dir):
        raise UserError(f"layer '{what}' is in the project's layers/ directory, which buildsys reads without "
                        "a layers: entry", Where("command line"), hint="move or delete the directory")
    names = [n.name or (str(n.item.value.get("url")) if isinstance(n.item.value, dict) else str(n.item.value))
             for n in named]
    from ..schema import suggest

    raise UserError(f"no layer '{what}' in layers: of buildsys.yaml or local.yaml", Where("command line"),
                    hint=suggest(what, names) or (f"named there: {', '.join(names)}" if names else "there are none"))


def _commit_and_check(root: Path, lf, text: str) -> None:
    """Write ``text`` to the project file, then load the project: on failure put the old text back."""
    from ..layers import load_project

    lf.write(text)
    try:
        load_project(root, os.environ)
    except UserError:
        lf.restore()
        raise


class Layer(Command):
    name = "layer"
    help = "create a layer, add one to the project (directory or git URL), remove one, move a git layer's pin"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="layer_command", metavar="ACTION", required=True)
        p = sub.add_parser("create", help="write a new layer: layer.yaml, an example recipe and append, a README",
                           description="write a new layer: layer.yaml, an example recipe and append, a README")
        p.add_argument("directory", metavar="DIR", help="the new layer's directory (absent or empty)")
        p.add_argument("--name", help="the layer's name (default: the directory's name)")
        p.add_argument("--priority", type=int, default=10, help="higher wins over lower (core: 0; default 10)")
        p = sub.add_parser("add", help="record a layer (a directory or a git URL) in buildsys.yaml",
                           description="record a layer in the project's layers: (buildsys.yaml, or local.yaml "
                                       "with --local); a git URL is pinned to a commit")
        p.add_argument("layer", metavar="DIR|GIT-URL")
        p.add_argument("--commit", help="git: the commit to pin (default: the tip of --branch, or of the "
                                        "repository's default branch)")
        p.add_argument("--branch", help="git: the branch the commit must be on (recorded; checked at every fetch)")
        p.add_argument("--path", dest="subdir", metavar="SUBDIR",
                       help="git: the directory of the repository holding layer.yaml")
        p.add_argument("--local", action="store_true", help="record it in local.yaml (this machine only)")
        p = sub.add_parser("remove", help="remove a layer from layers: (buildsys.yaml or local.yaml)",
                           description="remove a layer from the layers: list that names it")
        p.add_argument("layer", metavar="NAME|DIR|GIT-URL")
        p = sub.add_parser("update", help="move a git layer's pin to its branch tip, or to --commit",
                           description="fetch a git layer and pin it to its branch's tip (or --commit), "
                                       "rewriting its commit: in the file that names it")
        p.add_argument("layer", metavar="NAME|GIT-URL")
        p.add_argument("--commit", help="the commit to pin (default: the tip of the entry's branch, or of the "
                                        "repository's default branch)")

    def run(self, args):
        return getattr(self, "_" + args.layer_command)(args)

    # --- create -----------------------------------------------------------------------
    def _create(self, args):
        from ..layerscaffold import create

        directory = Path(args.directory)
        name, written = create(directory, args.name, args.priority)
        print(f"created layer '{name}' in {directory}: {len(written)} files")
        for path in written:
            print(f"  {path}")
        print(f"next: buildsys layer add {directory}   (in the project's directory)")
        return 0

    # --- add --------------------------------------------------------------------------
    def _add(self, args):
        from .. import layerrepo, yamlio
        from ..layers import LOCAL_FILE, PROJECT_FILE, load_layer, load_project

        root = _root(args)
        project = load_project(root, os.environ)
        target = args.layer
        entry: str | dict
        if layerrepo.looks_like_url(target):
            entry, directory = self._pin(root, project, target, args)
        else:
            if args.commit or args.branch or args.subdir:
                raise UserError("--commit, --branch and --path are for git URLs", Where("command line"),
                                hint=f"'{target}' is a directory")
            directory = Path(target).expanduser().resolve()
            if not directory.is_dir():
                raise UserError("no such directory", Where(target),
                                hint="a layer directory, or a git URL (https://, ssh://, file://, user@host:path)")
            # Relative to the project when beside it or inside (the project and
            # its layers move together); a layer elsewhere is named absolutely.
            entry = os.path.relpath(directory, root)
            if entry.startswith("../../") or entry == "../..":
                entry = str(directory)
            if (root / "layers") == directory.parent:
                raise UserError("this layer is in the project's layers/ directory: buildsys reads it without a "
                                "layers: entry", Where(target))
        layer, data = load_layer(directory)
        for other in project.layers:
            if other.path == layer.path:
                raise UserError(f"layer '{other.name}' is already in effect", Where(str(layer.config)),
                                hint=f"named at {other.named_at}" if other.named_at else None)
            if other.name == layer.name:
                raise UserError(f"layer name '{layer.name}' is already used by {other.path}", data.where("name"),
                                hint="rename one of them in its layer.yaml")
        names = {other.name for other in project.layers} | {layer.name}
        depends = data.get("depends")
        for i, dep in enumerate(layer.depends):
            if dep not in names:
                from ..schema import suggest

                raise UserError(f"layer '{layer.name}' depends on layer '{dep}', which is not in effect",
                                depends.where(i) if isinstance(depends, yamlio.Seq) else Where(layer.config),
                                hint=suggest(dep, names) or "add that layer first")
        lf = LayersFile(root / (LOCAL_FILE if args.local else PROJECT_FILE))
        _commit_and_check(root, lf, lf.added(entry))
        origin = f"{entry['url']} @ {entry['commit'][:12]}" if isinstance(entry, dict) else entry
        print(f"added layer '{layer.name}' (priority {layer.priority}) from {origin} to {lf.path.name}")
        return 0

    def _pin(self, root: Path, project, url: str, args) -> tuple[dict, Path]:
        """Fetch ``url`` and pin the commit to record: (the layers: entry, the layer's directory)."""
        from .. import layerrepo
        from ..layers import offline

        where = Where(url)
        cache = layerrepo.cache_dir(project.settings, os.environ, root)
        repo = layerrepo.LayerRepo(cache, url, offline(project.settings, os.environ))
        with repo.lock():
            commit = _resolve(repo, args.commit, args.branch, where)
            repo.ensure_checkout(commit, where)
        pin = layerrepo.GitPin(url, commit, args.branch, args.subdir)
        directory = layerrepo.materialize(pin, cache, where, True)
        entry = {"url": url, "commit": commit, "branch": args.branch, "path": args.subdir}
        return entry, directory

    # --- remove -----------------------------------------------------------------------
    def _remove(self, args):
        root = _root(args)
        named = _find(root, args.layer)
        lf = named.file
        _commit_and_check(root, lf, lf.removed(named.item))
        value = named.item.value
        origin = f"{value['url']} @ {str(value['commit'])[:12]}" if isinstance(value, dict) else value
        print(f"removed layer '{named.name or args.layer}' ({origin}) from {lf.path.name}")
        return 0

    # --- update -----------------------------------------------------------------------
    def _update(self, args):
        from .. import layerrepo
        from ..layers import load_layer, offline

        root = _root(args)
        named = _find(root, args.layer)
        lf, item = named.file, named.item
        if not isinstance(item.value, dict):
            raise UserError(f"layer '{named.name or args.layer}' is a directory, not a git layer",
                            lf.where(item), hint="update it with git in that directory")
        settings = _settings(root)
        pin = layerrepo.pin_from_entry(item.value)
        cache = layerrepo.cache_dir(settings, os.environ, root)
        repo = layerrepo.LayerRepo(cache, pin.url, offline(settings, os.environ))
        where = lf.where(item)
        with repo.lock():
            repo.fetch(where)        # the point of update: what the branch says now
            commit = _resolve(repo, args.commit, pin.branch, where)
            repo.ensure_checkout(commit, where)
        new_pin = layerrepo.GitPin(pin.url, commit, pin.branch, pin.subdir)
        layer, _ = load_layer(layerrepo.materialize(new_pin, cache, where, True))
        if commit == pin.commit:
            print(f"layer '{layer.name}' is already at {commit[:12]}"
                  + (f", the tip of branch '{pin.branch}'" if pin.branch and not args.commit else ""))
            return 0
        _commit_and_check(root, lf, lf.with_commit(item, commit))
        count = layerrepo.git(["rev-list", "--count", f"{pin.commit}..{commit}"], cwd=repo.mirror, check=False)
        ahead = f" ({count.stdout.strip()} new commits)" if count.returncode == 0 else ""
        print(f"layer '{layer.name}': {pin.commit[:12]} -> {commit[:12]}{ahead} in {lf.path.name}")
        return 0


def _resolve(repo, commit: str | None, branch: str | None, where: Where) -> str:
    """The full commit to pin (call with the repository locked): ``commit``
    (a full or abbreviated hash, on ``branch`` when named), else the tip of
    ``branch``, else of the default branch.  Fetches when the mirror lacks it."""
    from .. import layerrepo

    if commit is not None:
        if not (repo.mirror / "HEAD").is_file() or not repo.has_commit(commit):
            if not repo.fetched:
                repo.fetch(where)
        out = layerrepo.git(["rev-parse", "--verify", "-q", f"{commit}^{{commit}}"], cwd=repo.mirror,
                            check=False).stdout.strip()
        if not out:
            raise UserError(f"no commit '{commit}' in {repo.url}", Where("--commit"),
                            hint="a full or abbreviated hash of a pushed commit")
        repo.ensure_commit(out, branch, where)
        return out
    if not repo.fetched:
        repo.fetch(where)
    tip = repo.branch_tip(branch)
    if tip is None:
        raise UserError(f"{repo.url} has no branch '{branch}'" if branch else f"{repo.url} has no commits",
                        Where("--branch") if branch else where)
    if not branch:
        default = repo.default_branch()
        if default:
            print(f"pinned the tip of {repo.url}'s default branch '{default}'", file=sys.stderr)
    return tip

"""Finding the project, its layers, and the recipe, append and board files in them."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import schema, yamlio
from .errors import UserError, Where
from .model import GitPin, Layer
from .parsecache import ParseCache

PROJECT_FILE = "buildsys.yaml"
LOCAL_FILE = "local.yaml"
APPEND_SUFFIX = ".append.yaml"


def find_project(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding buildsys.yaml."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    raise UserError(f"no {PROJECT_FILE} here or in any parent directory", Where(str(start)),
                    hint="run inside a buildsys project or pass --project DIR")


@dataclass
class Project:
    root: Path
    settings: dict
    layers: list[Layer]                                   # lowest priority first
    recipe_files: dict[str, list[tuple[Layer, Path]]] = field(default_factory=dict)
    append_files: dict[str, list[tuple[Layer, Path]]] = field(default_factory=dict)
    board_files: dict[str, list[tuple[Layer, Path]]] = field(default_factory=dict)
    input_files: list[Path] = field(default_factory=list)  # every YAML file read or to be read
    # Where each project setting is set (buildsys.yaml, or local.yaml when it wins).
    settings_where: dict[str, Where] = field(default_factory=dict)
    # Recipe and append files are loaded through this; the workspace points it
    # at the build directory's cache (default: no cache, just parse).
    parse_cache: ParseCache = field(default_factory=ParseCache)
    # The environment the project was loaded with (BUILDSYS_LAYERS,
    # BUILDSYS_SSH_AUTHORIZED_KEYS...): the workspace's, not necessarily os.environ.
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def _items_where(data: yamlio.Map, key: str) -> list[Where]:
    items = data.get(key)
    return [items.where(i) for i in range(len(items))] if isinstance(items, yamlio.Seq) else []


def _load_settings(root: Path) -> tuple[dict, dict[str, Where], list[Where]]:
    """The project settings, where each is set, and where each of ``layers`` is."""
    data = yamlio.load(root / PROJECT_FILE)
    settings = schema.validate_plain(data, schema.PROJECT_KEYS, "project file")
    positions = {key: data.where(key) for key in data}
    layers_where = _items_where(data, "layers")
    local = root / LOCAL_FILE
    if local.is_file():
        data = yamlio.load(local)
        extra = schema.validate_plain(data, schema.PROJECT_KEYS, "local config")
        for key in data:
            if key == "layers":
                settings["layers"] = list(settings["layers"]) + list(extra["layers"])
                layers_where += _items_where(data, "layers")
            elif key != "format":
                settings[key] = extra[key]
                positions[key] = data.where(key)
    return settings, positions, layers_where


def _load_layer(path: Path, named_at: Where | None = None, git: GitPin | None = None) -> tuple[Layer, yamlio.Map]:
    config = path / "layer.yaml"
    data = yamlio.load(config)
    values = schema.validate_plain(data, schema.LAYER_KEYS, "layer config", required=("name",))
    if values["name"] == "core":
        raise UserError("the layer name 'core' is reserved for the project's own recipes", data.where("name"))
    return Layer(values["name"], values["priority"], path, tuple(values["depends"]), str(config),
                 named_at=named_at, git=git), data


def load_layer(path: Path) -> tuple[Layer, yamlio.Map]:
    """The layer in directory ``path`` (its layer.yaml checked), for `buildsys layer add`."""
    if not (path / "layer.yaml").is_file():
        raise UserError(f"no layer.yaml in {path}", Where(str(path)),
                        hint="not a layer; `buildsys layer create DIR` makes one")
    return _load_layer(path.resolve())


def offline(settings: Mapping, environ: Mapping[str, str]) -> bool:
    value = environ.get("BUILDSYS_OFFLINE")
    if value:
        return value.lower() not in ("0", "no", "false")
    return bool(settings.get("offline"))


def layer_dirs(root: Path, settings: dict, settings_where: dict[str, Where], layers_where: list[Where],
               environ: Mapping[str, str]) -> list[tuple[Path, Where, GitPin | None]]:
    """(directory, where it is named, git pin) of every ``layers:`` item; a git
    item's directory is its checkout in the layer cache (made when missing)."""
    named = settings_where.get("layers") or Where(str(root / PROJECT_FILE), 1, 1)
    out: list[tuple[Path, Where, GitPin | None]] = []
    cache: Path | None = None
    for i, entry in enumerate(settings["layers"]):
        where = layers_where[i] if i < len(layers_where) else named
        if isinstance(entry, str):
            out.append((root / entry, where, None))
            continue
        from . import layerrepo

        if cache is None:
            cache = layerrepo.cache_dir(settings, environ, root)
        pin = layerrepo.pin_from_entry(entry)
        at = entry.where("commit") if isinstance(entry, yamlio.Map) else where
        out.append((layerrepo.materialize(pin, cache, at, offline(settings, environ)), where, pin))
    return out


def _scan(layer: Layer, project: Project) -> None:
    """Index a layer's files by name without parsing them: the file stem is the name."""
    for top, kind in ((layer.recipes_dir, "recipes"), (layer.boards_dir, "boards")):
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "files"]
            for filename in sorted(filenames):
                if not filename.endswith(".yaml") or filename.startswith("."):
                    continue
                path = Path(dirpath, filename)
                if kind == "boards":
                    project.board_files.setdefault(filename[:-5], []).append((layer, path))
                elif filename.endswith(APPEND_SUFFIX):
                    project.append_files.setdefault(filename[: -len(APPEND_SUFFIX)], []).append((layer, path))
                else:
                    project.recipe_files.setdefault(filename[:-5], []).append((layer, path))
                project.input_files.append(path)


def load_project(root: Path, environ=os.environ) -> Project:
    root = root.resolve()
    settings, settings_where, layers_where = _load_settings(root)
    core = Layer("core", 0, root, (), str(root / PROJECT_FILE))
    # (directory, where it is named) of every layer
    # (directory, where it is named, git pin) of every layer; only layers:
    # items are "named" (layer add/remove edit them).
    dirs: list[tuple[Path, Where, GitPin | None]] = []
    layers_dir = root / "layers"
    if layers_dir.is_dir():
        dirs += [(p, Where(str(p)), None) for p in sorted(layers_dir.iterdir()) if (p / "layer.yaml").is_file()]
    listed = len(dirs)
    dirs += layer_dirs(root, settings, settings_where, layers_where, environ)
    from_list = range(listed, len(dirs))
    dirs += [(Path(d), Where("BUILDSYS_LAYERS"), None) for d in environ.get("BUILDSYS_LAYERS", "").split(":") if d]
    layers = [core]
    seen: dict[str, Layer] = {"core": core}
    configs: dict[str, yamlio.Map] = {}
    for i, (d, named_at, pin) in enumerate(dirs):
        d = d.resolve()
        if any(layer.path == d for layer in layers):
            continue
        if not (d / "layer.yaml").is_file():
            raise UserError(f"no layer.yaml in layer directory {d}", named_at,
                            hint="a layer needs layers/<name>/layer.yaml")
        layer, data = _load_layer(d, named_at if i in from_list else None, pin)
        if layer.name in seen:
            raise UserError(f"layer name '{layer.name}' used twice", data.where("name"),
                            hint=f"also {seen[layer.name].config}")
        seen[layer.name] = layer
        configs[layer.name] = data
        layers.append(layer)
    for layer in layers:
        for i, dep in enumerate(layer.depends):
            if dep not in seen:
                depends = configs[layer.name]["depends"]
                raise UserError(f"layer '{layer.name}' depends on layer '{dep}', which is not in effect",
                                depends.where(i) if isinstance(depends, yamlio.Seq) else Where(layer.config),
                                hint=schema.suggest(dep, seen) or
                                f"layers in effect: {', '.join(sorted(seen))}")
    # Stable order: priority, then name; the core layer (0) comes first.
    layers.sort(key=lambda layer: (layer.priority, layer.name != "core", layer.name))
    project = Project(root, settings, layers, input_files=[root / PROJECT_FILE], settings_where=settings_where,
                      environ=environ)
    for layer in layers:
        if layer.name != "core":
            project.input_files.append(Path(layer.config))
        _scan(layer, project)
    _check_appends(project)
    return project


def _check_appends(project: Project) -> None:
    """An append whose recipe no layer has changes nothing: an error (a
    renamed recipe or a missing layer), as BitBake does for a dangling bbappend."""
    for name in sorted(project.append_files):
        if name not in project.recipe_files:
            _, path = project.append_files[name][0]
            raise UserError(f"append for recipe '{name}', which no layer has", Where(str(path), 1, 1),
                            hint=schema.suggest(name, project.recipe_files) or
                            "remove the append, or add the layer holding the recipe")

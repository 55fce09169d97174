"""What an image's manifest records about where it came from (manifest format 2).

deploy.py writes these next to the manifest's older keys; ``buildsys
reproduce`` checks a project against them and ``buildsys diff`` compares two:

* ``project``: the project's git commit and dirty state (when it is a git
  checkout), the settings that shape outputs, and for every layer in effect
  its name, priority, path (relative to the project), its ``origin`` (the
  URL and pinned commit of a layer from git; the commit and dirty state of
  any layer in a git tree: ``layer_origin``) and the sha256 of every
  file the build read from it -- layer.yaml (buildsys.yaml for the core), the
  build environment's lock file, the board config, recipe files, appends and
  every file a recipe or the board names (patches, config fragments, local
  sources), by layer-relative name;
* per recipe: its full signature inputs (``sigdata``), the content digest of
  its package tree (``tree_sha256``, see treedigest.py) and, when the artifact
  cache has it, the sha256 of its package archive (``archive_sha256``);
* ``kernel_config``: the CONFIG_ symbols of the image's kernel (its package's
  boot/config), when the image has a virtual/kernel package.

Everything here is path-free: the same inputs give the same record in any
directory.  local.yaml is not hashed (it is per machine: mirrors, cache,
offline); what it may change that shapes outputs -- layers, source_date_epoch
-- is recorded through the layers and ``settings``.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import kconfiglines, signature
from .errors import UserError
from .fileio import read_text_beneath
from .model import FileRef, Layer, Recipe
from .treedigest import tree_digest

MANIFEST_FORMAT = 2
# Project settings that shape outputs without being in any signature.
OUTPUT_SETTINGS = ("source_date_epoch",)
KERNEL = "virtual/kernel"


def _git(root: Path, *argv: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        proc = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, env=env,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(root: Path) -> dict:
    """{"commit": HEAD or None, "dirty": uncommitted changes below ``root``, or None without git}."""
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    if not head:
        return {"commit": None, "dirty": None}
    status = _git(root, "status", "--porcelain", "--", ".")
    return {"commit": head.strip(), "dirty": None if status is None else bool(status.strip())}


def _walk_refs(value, out: list[FileRef]) -> None:
    if isinstance(value, FileRef):
        out.append(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _walk_refs(item, out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk_refs(item, out)


def _layer_of(path: Path, layers: list[Layer]) -> Layer | None:
    """The layer holding ``path``: the deepest layer dir above it (layers may nest in the core)."""
    real = os.path.realpath(path)
    best: Layer | None = None
    for layer in layers:
        root = os.path.realpath(layer.path)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            if best is None or len(root) > len(os.path.realpath(best.path)):
                best = layer
    return best


def read_files(project, board, recipes: Iterable[Recipe]) -> dict[str, dict[str, str]]:
    """layer name -> {layer-relative path: sha256} of every file a build of ``recipes`` reads."""
    layers = list(project.layers)
    files: dict[str, dict[str, str]] = {layer.name: {} for layer in layers}

    def add(path, layer: Layer | None = None, rel: str | None = None) -> None:
        path = Path(path)
        layer = layer or _layer_of(path, layers)
        if layer is None:       # outside every layer: refused when the recipes are loaded
            return
        if rel is None:
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(layer.path))
        files[layer.name][rel.replace(os.sep, "/")] = signature.file_hash(path)

    def add_refs(value) -> None:
        refs: list[FileRef] = []
        _walk_refs(value, refs)
        for ref in refs:
            layer = next((la for la in layers if os.path.realpath(la.path) == os.path.realpath(ref.layer_root)),
                         None)
            add(ref.path, layer, ref.layer_relative if layer else None)

    for layer in layers:
        if layer.config:
            add(layer.config, layer)
    from .buildenv import LOCK_NAME

    lock = Path(project.root) / LOCK_NAME    # the pinned build environment, when the project has one
    if lock.is_file():
        add(lock)
    add(board.path, board.layer)
    add_refs(board.values)
    for recipe in recipes:
        add(recipe.path, recipe.layer)
        for append in recipe.appends:
            add(append)
        add_refs(recipe.values)
    return {name: dict(sorted(found.items())) for name, found in files.items()}


def layer_origin(layer: Layer) -> dict:
    """Where a layer came from: for one pinned from git its URL, commit and the
    repository dir holding it (``url``, ``commit``, ``subdir``); for any layer
    in a git tree (a pinned checkout, the project's own, a sibling repository)
    the tree's HEAD and whether the layer's directory has uncommitted changes
    (``commit``, ``dirty``: None outside git)."""
    state = git_state(layer.path)
    out: dict = {"url": None, "subdir": None, **state}
    if layer.git is not None:
        # The checkout's HEAD is the pinned commit: loading the project refuses anything else.
        out.update(url=layer.git.url, subdir=layer.git.subdir)
    return out


def project_record(project, board, recipes: Iterable[Recipe]) -> dict:
    """The manifest's ``project``: git state, output-shaping settings, layers and the files read."""
    files = read_files(project, board, recipes)
    root = os.path.realpath(project.root)
    layers = []
    for layer in project.layers:
        real = os.path.realpath(layer.path)
        inside = real == root or real.startswith(root.rstrip("/") + "/")
        layers.append({"name": layer.name, "priority": layer.priority,
                       "path": os.path.relpath(real, root) if inside else None, "files": files[layer.name],
                       "origin": layer_origin(layer)})
    return {**git_state(Path(project.root)),
            "settings": {key: project.settings.get(key) for key in OUTPUT_SETTINGS},
            "layers": layers}


def recipe_record(session, pn: str) -> dict:
    """What the manifest adds to a recipe's entry: signature inputs, tree digest, archive sha256."""
    sig = session.sigs[pn]
    meta = session.cache.get_meta(sig)
    recipe = session.recipe(pn)
    tree = session.package_dir(pn)
    return {"sigdata": session.sigdata[pn], "tree_sha256": tree_digest(tree) if tree.is_dir() else None,
            "archive_sha256": (meta or {}).get("sha256"), "layer": recipe.layer.name}


def config_symbols(text: str) -> dict[str, str | None]:
    """CONFIG_X -> its value ('y', 'm', '"text"', '0x10'), None for '# CONFIG_X is not set'."""
    out: dict[str, str | None] = {}
    for symbol, line in kconfiglines.symbols(text).items():
        out[symbol] = None if line.startswith("#") else line.split("=", 1)[1]
    return dict(sorted(out.items()))


def kernel_config(session, recipe: Recipe, closure: set[str]) -> dict | None:
    """{"recipe": the kernel's pn, "symbols": config_symbols(its boot/config)}, or None."""
    try:
        kernels = session.resolver.install_closure([KERNEL], recipe)
    except UserError:
        return None             # no provider of virtual/kernel for this board
    for kernel in kernels:
        if kernel.pn not in closure:
            continue            # a kernel the image does not have
        try:
            text = read_text_beneath(session.package_dir(kernel.pn), "boot/config")
        except FileNotFoundError:
            continue
        return {"recipe": kernel.pn, "symbols": config_symbols(text)}
    return None


def image_record(session, recipe: Recipe, closure: set[str]) -> dict:
    """The manifest's format-2 top-level keys."""
    recipes = [session.recipe(pn) for pn in sorted(closure)]
    return {"manifest_format": MANIFEST_FORMAT,
            "project": project_record(session.project, session.board, recipes),
            "kernel_config": kernel_config(session, recipe, closure)}

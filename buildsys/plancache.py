"""The no-op fast path: remember, per board and target list, the signatures a
build ended with, keyed by the state of every input file.

When no recipe, layer file, board, buildsys module or compiler has changed
since (same size, mtime and inode) and the targets' outputs are still in place,
`buildsys build` is done without parsing a single recipe.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import buildsys

from . import secureboot, sshkeys


def _tree_stats(root: Path, out: list) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}")


def _file_stat(path, out: list) -> None:
    try:
        st = os.stat(path)
    except OSError:
        out.append(f"{path}\0missing")
        return
    out.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}")


def inputs_key(project, board_name: str, targets: list[str], cross_prefixes=("",)) -> str:
    environ = project.environ
    lines = [board_name, "\0".join(targets), environ.get("BUILDSYS_LAYERS", ""), sshkeys.inputs_state(environ),
             secureboot.inputs_state(project)]
    for path in project.input_files[:1]:
        lines.append(str(path))
    _tree_stats(Path(buildsys.__file__).parent, lines)
    for layer in project.layers:
        _tree_stats(layer.recipes_dir, lines)
        _tree_stats(layer.boards_dir, lines)
        _file_stat(layer.config, lines)   # a layer.yaml's priority decides which file wins
    for name in ("buildsys.yaml", "local.yaml", "buildenv.lock.json"):
        p = project.root / name
        if p.exists():
            st = p.stat()
            lines.append(f"{p}\0{st.st_size}\0{st.st_mtime_ns}")
    for prefix in cross_prefixes:
        gcc = shutil.which(prefix + "gcc")
        if gcc:
            st = os.stat(os.path.realpath(gcc))
            lines.append(f"{gcc}\0{st.st_size}\0{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _path(build: Path, board_name: str, targets: list[str]) -> Path:
    tag = hashlib.sha256("\0".join(targets).encode()).hexdigest()[:16]
    return build / "plans" / f"{board_name}-{tag}.json"


def referenced_files(recipes) -> list[str]:
    """Every layer file the recipes name (sources, patches, fragments...): they
    may live anywhere in their layer, outside the dirs inputs_key() walks."""
    from collections.abc import Mapping

    from .model import FileRef

    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, FileRef):
            found.add(str(value.path))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for recipe in recipes:
        walk(recipe.values)
        if recipe.values.get("live_source"):
            found.add(recipe.values["live_source"])   # a working tree: every edit is a new plan
    return sorted(found)


def _files_state(paths: list[str]) -> str:
    lines: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            _tree_stats(Path(path), lines)
        else:
            try:
                st = os.stat(path)
                lines.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}")
            except OSError:
                lines.append(f"{path}\0missing")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load(build: Path, board_name: str, targets: list[str], key: str) -> dict | None:
    """The plan saved under ``key``; None if there is none, or it is for other
    inputs, or the file is damaged in any way (the slow path then rebuilds it)."""
    try:
        data = json.loads(_path(build, board_name, targets).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    sigs = data.get("sigs")
    if not isinstance(sigs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sigs.items()):
        return None
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files) \
            or data.get("files_state") != _files_state(files):
        return None
    return data


def save(build: Path, board_name: str, targets: list[str], key: str, sigs: dict[str, str],
         files: Iterable[str] = ()) -> None:
    """Remember the plan; ``files`` (referenced_files()) are checked by stat on load."""
    from .fileio import atomic_write

    path = _path(build, board_name, targets)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = list(files)
    atomic_write(path, json.dumps({"key": key, "sigs": sigs, "files": files, "files_state": _files_state(files)}))

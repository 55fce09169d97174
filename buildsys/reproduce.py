"""`buildsys reproduce`: rebuild an image from nothing and compare it with its manifest.

1. The project must be the one the manifest names (manifest format 2, see
   provenance.py): the same layers with the same priorities, every file the
   build read with the same sha256, the same git commit, no uncommitted
   changes when the image was built from a clean checkout, and no file read
   now that the build did not read (a new append, say).  A mismatch is bad
   input: one line naming the first differing file, exit 2.
2. Everything the image needs is built in a fresh build dir with a fresh,
   empty artifact cache (downloads come from the configured download dir and
   mirrors, verified by sha256 as always).
3. Every recipe's package tree is compared by content digest, and every
   deployed file by sha256.  All equal: ``reproduced: sha256 <image>``, exit
   0.  Otherwise exit 1, naming the first recipe in dependency order whose
   output differs, its signature inputs side by side, and the differing files
   (a diffoscope report when diffoscope is on PATH, else a file-level list);
   the rebuild's build dir is kept and its path printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import buildenv, provenance, treedigest
from .errors import UserError, Where
from .fileio import remove_tree
from .layers import PROJECT_FILE

MANIFEST = "manifest.json"


# --- the manifest ------------------------------------------------------------------------
def manifest_path(arg: str | os.PathLike) -> Path:
    """The manifest.json a command-line argument names: a deploy dir or the file itself."""
    path = Path(arg)
    if path.is_dir():
        path = path / MANIFEST
        if not path.is_file():
            raise UserError(f"no {MANIFEST} in {arg}", Where(str(arg)),
                            hint="name an image's deploy dir, e.g. build/deploy/<board>, or its manifest.json")
    elif not path.is_file():
        raise UserError("no such deploy dir or manifest", Where(str(arg)),
                        hint="name an image's deploy dir, e.g. build/deploy/<board>, or its manifest.json")
    return path.absolute()


def load_manifest(path: Path, need_format: int | None = None) -> dict:
    """A deploy manifest; bad JSON or a manifest without what is needed is a UserError."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the manifest: {exc}", Where(str(path))) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        line, col = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
        raise UserError(f"not a JSON manifest: {getattr(exc, 'msg', exc)}", Where(str(path), line, col)) from None
    if not isinstance(data, dict) or not isinstance(data.get("recipes"), list) \
            or not isinstance(data.get("files"), dict) or not isinstance(data.get("board"), str) \
            or not isinstance(data.get("image"), str):
        raise UserError("not a buildsys deploy manifest (no image, board, recipes and files)", Where(str(path), 1, 1))
    if not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in data["recipes"]) \
            or not all(isinstance(f, dict) for f in data["files"].values()):
        raise UserError("a recipe or file entry of the manifest is malformed", Where(str(path), 1, 1))
    if not isinstance(data.get("manifest_format", 1), int):
        raise UserError("manifest_format is not a number", Where(str(path), 1, 1))
    if need_format is not None and data.get("manifest_format", 1) < need_format:
        raise UserError(f"manifest format {data.get('manifest_format', 1)} lacks the signature inputs and "
                        "digests needed here", Where(str(path), 1, 1),
                        hint="deploy the image again with this buildsys to get a format 2 manifest")
    if need_format is not None:
        for entry in data["recipes"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                    or not isinstance(entry.get("sigdata"), dict) \
                    or not isinstance(entry.get("tree_sha256"), (str, type(None))):
                raise UserError("a recipe entry lacks name, sigdata or tree_sha256", Where(str(path), 1, 1))
        project = data.get("project")
        if not isinstance(project, dict) or not isinstance(project.get("layers"), list) or not all(
                isinstance(la, dict) and isinstance(la.get("name"), str) and isinstance(la.get("priority"), int)
                and isinstance(la.get("files"), dict) for la in project["layers"]):
            raise UserError("the manifest's project record is missing or malformed", Where(str(path), 1, 1))
        if data.get("live_sources"):
            raise UserError(f"the image was built from live sources ({', '.join(map(str, data['live_sources']))}), "
                            "which nothing pinned describes", Where(str(path), 1, 1),
                            hint="`buildsys source RECIPE --reset`, build and deploy again, then reproduce that")
    return data


def recipes_by_name(manifest: dict) -> dict[str, dict]:
    return {r["name"]: r for r in manifest["recipes"]}


def dependency_order(manifest: dict) -> list[str]:
    """The manifest's recipes, dependencies first (ties by name), from the signature inputs' deps."""
    entries = recipes_by_name(manifest)
    deps = {name: sorted(d for d in (entry.get("sigdata") or {}).get("deps", {}) if d in entries)
            for name, entry in entries.items()}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(entries):
        ready = sorted(n for n in entries if n not in done and all(d in done for d in deps[n]))
        if not ready:       # a cycle cannot come from a real build; keep the rest by name
            ready = sorted(n for n in entries if n not in done)
        order.append(ready[0])
        done.add(ready[0])
    return order


def image_sha256(manifest: dict) -> str:
    """The sha256 of the image's disk (its .img file; else its first deployed file)."""
    files = manifest["files"]
    names = sorted(n for n in files if n.endswith(".img")) or sorted(files)
    return files[names[0]]["sha256"] if names else manifest.get("signature", "")


# --- 1. is this the project the image was built from? ------------------------------------------
def _hash(path: Path) -> str:
    from .fetch import local_checksum

    try:
        return local_checksum(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def check_project(project, manifest: dict) -> None:
    """The layers and every file the manifest names, then the git state: UserError on the first difference."""
    record = manifest["project"]
    here = {layer.name: layer for layer in project.layers}
    project_file = Where(str(Path(project.root) / PROJECT_FILE))
    for entry in record["layers"]:
        layer = here.get(entry["name"])
        if layer is None:
            raise UserError(f"layer '{entry['name']}' (priority {entry['priority']}) built this image but is not "
                            "in effect", project_file,
                            hint=f"add the layer{' at ' + entry['path'] if entry.get('path') else ''}")
        if layer.priority != entry["priority"]:
            raise UserError(f"layer '{layer.name}' has priority {layer.priority}, the image was built with "
                            f"{entry['priority']}", Where(layer.config or str(layer.path)))
        for rel, sha in entry["files"].items():
            path = layer.path / rel
            now = _hash(path)
            if now != sha:
                state = "is missing" if now == "missing" else f"differs (sha256 {now[:16]}, built from {sha[:16]})"
                raise UserError(f"{state}: not the file the image was built from", Where(str(path)),
                                hint=f"the manifest names {entry['name']}:{rel}; restore it or check out the "
                                     "commit the image was built from")
    known = {entry["name"] for entry in record["layers"]}
    for layer in project.layers:
        if layer.name not in known:
            raise UserError(f"layer '{layer.name}' is in effect but did not build this image",
                            Where(layer.config or str(layer.path)), hint="remove it from the project to reproduce")
    for key, value in (record.get("settings") or {}).items():
        if project.settings.get(key) != value:
            raise UserError(f"project setting {key} is {project.settings.get(key)!r}, the image was built with "
                            f"{value!r}", project.settings_where.get(key) or project_file)
    check_git(project, record)


def check_git(project, record: Mapping) -> None:
    """Same commit; no uncommitted changes when the image came from a clean checkout."""
    if not record.get("commit"):
        return
    state = provenance.git_state(Path(project.root))
    where = Where(str(project.root))
    if state["commit"] is None:
        print(f"warning: {project.root} is not a git checkout: cannot check that it is commit "
              f"{record['commit'][:12]} (the files the build read are the same)", file=sys.stderr)
        return
    if state["commit"] != record["commit"]:
        raise UserError(f"the project is at commit {state['commit'][:12]}, the image was built from "
                        f"{record['commit'][:12]}", where, hint=f"git checkout {record['commit'][:12]}")
    if record.get("dirty") is False and state["dirty"]:
        raise UserError(f"the project has uncommitted changes; the image was built from a clean checkout of "
                        f"{record['commit'][:12]}", where, hint="git stash, or reproduce in a clean worktree")


def check_reads(project, board, recipes, manifest: dict) -> None:
    """No file is read now that the image's build did not read (a new append, a recipe now found elsewhere)."""
    now = provenance.read_files(project, board, recipes)
    before = {entry["name"]: entry["files"] for entry in manifest["project"]["layers"]}
    by_name = {layer.name: layer for layer in project.layers}
    for name, files in now.items():
        for rel in files:
            if rel not in before.get(name, {}):
                raise UserError("read by a build now, but not by the image's build",
                                Where(str(by_name[name].path / rel)),
                                hint="a file added since (an append, a recipe in another layer?); remove it "
                                     "to reproduce")


# --- 3. comparing the two builds ---------------------------------------------------------------
@dataclass
class Comparison:
    recipes: list[str] = field(default_factory=list)        # differing outputs, dependency order
    only_old: list[str] = field(default_factory=list)       # recipes the rebuild did not build
    only_new: list[str] = field(default_factory=list)       # recipes only the rebuild built
    files: list[str] = field(default_factory=list)          # deployed files that differ or are missing
    signatures: list[str] = field(default_factory=list)     # recipes whose signature differs

    @property
    def same(self) -> bool:
        return not (self.recipes or self.only_old or self.only_new or self.files)


def compare(old: dict, new: dict) -> Comparison:
    a, b = recipes_by_name(old), recipes_by_name(new)
    out = Comparison()
    for name in dependency_order(old):
        if name not in b:
            out.only_old.append(name)
            continue
        # null: the original build could not describe that package (not in its
        # build dir, not in the cache); the deployed files still decide.
        if a[name].get("tree_sha256") is not None and a[name].get("tree_sha256") != b[name].get("tree_sha256"):
            out.recipes.append(name)
        if a[name].get("signature") != b[name].get("signature"):
            out.signatures.append(name)
    out.only_new = sorted(set(b) - set(a))
    for name in sorted(set(old["files"]) | set(new["files"])):
        if (old["files"].get(name) or {}).get("sha256") != (new["files"].get(name) or {}).get("sha256"):
            out.files.append(name)
    return out


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


_ABSENT = object()


def sigdata_diff(old: dict | None, new: dict | None) -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every signature input that differs (absent: ``ABSENT``)."""
    a: dict = {}
    b: dict = {}
    _flatten(old or {}, "", a)
    _flatten(new or {}, "", b)
    return [(key, a.get(key, _ABSENT), b.get(key, _ABSENT)) for key in sorted(set(a) | set(b))
            if a.get(key, _ABSENT) != b.get(key, _ABSENT)]


ABSENT = _ABSENT


def _short(value, width: int = 56) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_sigdata_diff(old: dict | None, new: dict | None, labels=("manifest", "rebuild")) -> list[str]:
    rows = sigdata_diff(old, new)
    if not rows:
        return ["  (identical: same inputs, different output -- the build is not deterministic)"]
    width = max(len(key) for key, _, _ in rows)
    lines = [f"  {'input':<{width}}  {labels[0]:<56}  {labels[1]}"]
    lines += [f"  {key:<{width}}  {_short(a):<56}  {_short(b)}" for key, a, b in rows]
    return lines


# --- the package trees to show -------------------------------------------------------------------
def _remove_tree(path: Path) -> None:
    """Remove a build dir, read-only dirs of package trees included."""
    remove_tree(path)


def original_tree(entry: dict, build_dir: Path | None, cache_spec: str, scratch: Path) -> tuple[Path | None, str]:
    """The original package tree of a manifest recipe: the original build dir's package store, else the
    artifact cache it was built with (unpacked into ``scratch``).  (path or None, where it came from)."""
    from . import artifact
    from .cache import open_cache

    sig = entry.get("signature", "")
    if build_dir is not None:
        candidate = build_dir / "packages" / sig
        if candidate.is_dir() and treedigest.tree_digest(candidate) == entry["tree_sha256"]:
            return candidate, f"{candidate}"
    try:
        cache = open_cache(cache_spec)
        scratch.mkdir(parents=True, exist_ok=True)
        archive = scratch / f"{sig}.tar.lz4"
        if cache.get(sig, archive):
            tree = scratch / entry["name"]
            artifact.unpack(archive, tree)
            archive.unlink()
            if treedigest.tree_digest(tree) == entry["tree_sha256"]:
                return tree, f"the cache entry {sig[:16]} (unpacked in {tree})"
    except (OSError, UserError):
        pass
    return None, ""


def file_listing(old: Path, new: Path) -> list[str]:
    changes = treedigest.compare(treedigest.entries(old), treedigest.entries(new))
    return [c.line() for c in changes] or ["  (no file differs)"]


def diffoscope_report(old: Path, new: Path) -> str | None:
    tool = shutil.which("diffoscope")
    if tool is None:
        return None
    proc = subprocess.run([tool, "--no-progress", "--text", "-", str(old), str(new)], capture_output=True,
                          text=True, errors="replace")
    return proc.stdout or proc.stderr


# --- all of it ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    jobs: int = 0
    offline: bool = False
    keep: bool = False
    work_dir: Path | None = None


def rebuild_workspace(ws, build_dir: Path):
    """The workspace of the rebuild: ``ws``'s project and board, ``build_dir`` with an empty cache of its own,
    the downloads of ``ws``."""
    from .workspace import Workspace

    environ = dict(ws.environ, BUILDSYS_DL_DIR=str(ws.paths.dl), BUILDSYS_CACHE_DIR=str(build_dir / "cache"))
    environ.pop("BUILDSYS_BUILD_DIR", None)
    args = argparse.Namespace(project=str(ws.project.root), build_dir=str(build_dir), board=ws.board_name)
    return Workspace(args, environ)


def reproduce(ws, path: Path, manifest: dict, options: Options = Options(), out: TextIO | None = None) -> int:
    """Check, rebuild, compare (see the module doc).  ``ws`` is the workspace for the manifest's board."""
    from . import engine
    from .plan import Plan

    out = out or sys.stdout
    if manifest["board"] not in ws.project.board_files:
        raise UserError(f"the image was built for board '{manifest['board']}', which this project does not have",
                        Where(str(path)), hint="reproduce in the project the image was built from")
    if ws.board_name != manifest["board"]:
        raise UserError(f"the workspace is for board '{ws.board_name}', the manifest for '{manifest['board']}'",
                        Where(str(path)))
    check_project(ws.project, manifest)
    targets = ws.targets([manifest["image"]])
    plan = Plan(ws.resolver, ws.board, targets, buildenv.for_project(ws.project))
    check_reads(ws.project, ws.board, [plan.recipe(pn) for pn in plan.rgraph.nodes], manifest)
    old_sigs = {r["name"]: r.get("signature") for r in manifest["recipes"]}
    moved = [pn for pn in dependency_order(manifest) if plan.sigs.get(pn) != old_sigs[pn]]
    if moved:
        old_data = recipes_by_name(manifest)[moved[0]]["sigdata"]
        keys = ", ".join(key for key, _, _ in sigdata_diff(old_data, plan.sigdata.get(moved[0])))
        print(f"note: the signatures of {', '.join(moved)} differ from the manifest's although the project files "
              f"are the same (this host or buildsys differs; {moved[0]}: {keys or 'dependencies'}); "
              "rebuilding anyway", file=sys.stderr)

    if options.work_dir is not None:
        build_dir = Path(options.work_dir).absolute()
        if build_dir.exists() and any(build_dir.iterdir()):
            raise UserError("the work dir is not empty", Where(str(options.work_dir)),
                            hint="the rebuild needs a fresh build dir: name a new or empty one")
        build_dir.mkdir(parents=True, exist_ok=True)
    else:
        build_dir = Path(tempfile.mkdtemp(prefix="buildsys-reproduce-"))
    print(f"rebuilding {manifest['image']} for {manifest['board']} from nothing in {build_dir}", file=sys.stderr)
    keep = True
    kept_said = False
    try:
        result = engine.build(rebuild_workspace(ws, build_dir), [manifest["image"]],
                              engine.BuildOptions(jobs=options.jobs, offline=options.offline))
        if not result.ok:
            print(f"the rebuild failed (exit {result.status}); its build dir is kept: {build_dir}", file=sys.stderr)
            kept_said = True
            return result.status
        new = load_manifest(build_dir / "deploy" / manifest["board"] / MANIFEST, need_format=2)
        result_cmp = compare(manifest, new)
        if result_cmp.same:
            keep = options.keep
            print(f"{len(manifest['recipes'])} recipe outputs and {len(manifest['files'])} deployed files are "
                  "identical", file=sys.stderr)
            print(f"reproduced: sha256 {image_sha256(manifest)}", file=out)
            return 0
        deploy_dir = path.parent
        original_build = deploy_dir.parent.parent if deploy_dir.parent.name == "deploy" else None
        report(manifest, new, result_cmp, original_build, ws.paths.cache, build_dir, out)
        print(f"not reproduced; the rebuild is kept in {build_dir}", file=out)
        kept_said = True
        return 1
    finally:
        if not keep:
            _remove_tree(build_dir)
        elif not kept_said:
            print(f"the rebuild's build dir is kept: {build_dir}", file=sys.stderr)


def report(old: dict, new: dict, cmp: Comparison, original_build: Path | None, cache_spec: str,
           build_dir: Path, out: TextIO) -> None:
    """What differs: the first recipe in dependency order, its inputs side by side, its files."""
    a, b = recipes_by_name(old), recipes_by_name(new)
    if cmp.only_old or cmp.only_new:
        print(f"recipes the rebuild did not build: {', '.join(cmp.only_old) or '-'}; "
              f"built only by the rebuild: {', '.join(cmp.only_new) or '-'}", file=out)
    if cmp.recipes:
        first = cmp.recipes[0]
        print(f"first recipe whose output differs: {first} (tree sha256 {a[first]['tree_sha256'][:16]} in the "
              f"manifest, {b[first]['tree_sha256'][:16]} rebuilt)", file=out)
        print(f"signature inputs of {first}:", file=out)
        for line in format_sigdata_diff(a[first].get("sigdata"), b[first].get("sigdata")):
            print(line, file=out)
        new_tree = build_dir / "packages" / b[first]["signature"]
        old_tree, source = original_tree(a[first], original_build, cache_spec, build_dir / "original")
        if old_tree is None:
            print(f"the original package tree of {first} is gone (not in the original build dir's packages/, "
                  "not in the artifact cache): only the digests differ", file=out)
        else:
            print(f"files ({source} -> {new_tree}):", file=out)
            text = diffoscope_report(old_tree, new_tree)
            if text is not None:
                out.write(text if text.endswith("\n") else text + "\n")
            else:
                for line in file_listing(old_tree, new_tree):
                    print(line, file=out)
        if len(cmp.recipes) > 1:
            print(f"also differ: {', '.join(cmp.recipes[1:])}", file=out)
    for name in cmp.files:
        before, after = old["files"].get(name), new["files"].get(name)
        if before is None or after is None:
            print(f"deployed file {name}: {'only in the rebuild' if before is None else 'not deployed by the rebuild'}",
                  file=out)
        else:
            print(f"deployed file {name}: {before['size']} bytes sha256 {before['sha256'][:16]} -> "
                  f"{after['size']} bytes sha256 {after['sha256'][:16]}", file=out)

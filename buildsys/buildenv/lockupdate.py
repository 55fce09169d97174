"""`buildsys lock update`: resolve buildenv.yaml's package list against the
Debian archive's current indices and write buildenv.lock.json, saying what
changed.  The only time the environment moves is when someone runs this."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError, Where
from ..fileio import atomic_write
from . import LOCK_FORMAT, SPEC_NAME, Lock, LockedPackage, load_lock
from .debindex import Index, read_index


def read_spec(project_root: Path) -> Any:
    from ..yamlio import load

    path = project_root / SPEC_NAME
    if not path.is_file():
        raise UserError(f"no {SPEC_NAME} in {project_root}", Where(str(project_root)),
                        hint="it lists the Debian packages of the build environment; see docs/buildenv.md")
    data: Any = load(path)
    for key in ("packages", "suites", "architecture"):
        if key not in data:
            raise UserError(f"missing '{key}'", data.where(),
                            hint=f"{SPEC_NAME} needs packages, suites and architecture")
    return data


def fetch_indices(archive_base: str, suites, architecture: str, dl_dir: Path, offline: bool) -> list[Path]:
    from . import indexfetch

    return [indexfetch.packages_index(archive_base, suite, "main", architecture, dl_dir, offline)
            for suite in suites]


def update(project_root: Path, fetch_config) -> tuple[Lock, list[str]]:
    from ..fetch.fetcher import archive

    spec = read_spec(project_root)
    arch = str(spec["architecture"])
    suites = [str(s) for s in spec["suites"]]
    paths = fetch_indices(archive(fetch_config).base, suites, arch, fetch_config.dl_dir / "debian-index",
                          fetch_config.offline)
    packages = []
    for path in paths:          # later suites (updates) override earlier ones
        packages += read_index(path)
    index = Index(packages, (arch, "all"))
    roots = [str(p) for p in spec["packages"]]
    chosen = index.closure(roots, spec.where("packages"))
    links = {str(k): str(v) for k, v in dict(spec.get("links") or {}).items()}
    lock_path = project_root / "buildenv.lock.json"
    lock = Lock(lock_path, tuple(suites), arch,
                tuple(LockedPackage(p.name, p.version, p.architecture, p.filename, p.sha256, p.size) for p in chosen),
                tuple(sorted(links.items())))
    old = load_lock(lock_path) if lock_path.is_file() else None
    changes = describe_changes(old, lock)
    data = lock.to_json()
    data["format"] = LOCK_FORMAT
    atomic_write(lock_path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return lock, changes


def describe_changes(old: Lock | None, new: Lock) -> list[str]:
    if old is None:
        return [f"new lock: {len(new.packages)} packages"]
    before = {p.name: p.version for p in old.packages}
    after = {p.name: p.version for p in new.packages}
    out = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            out.append(f"+ {name} {after[name]}")
        elif name not in after:
            out.append(f"- {name} {before[name]}")
        elif before[name] != after[name]:
            out.append(f"~ {name} {before[name]} -> {after[name]}")
    if old.links != new.links:
        out.append("~ links changed")
    return out


"""The project as the client planned it, in one tar for the workers.

A worker must plan exactly what the client planned, from files it has no
other way to get: the project's own files, the project settings, the build
environment's lock, and every layer, wherever the client has it (a layer may
live outside the project: git-pinned ones are in ~/.cache/buildsys/layers,
BUILDSYS_LAYERS names others).  The snapshot puts every layer other than the
project's own at ``layers/<name>/``, where the worker's load_project finds it
without a ``layers:`` list, and drops the settings that belong to the client
machine (its keys, its cache, its live trees, its cluster): the worker adds
its own.  Layer files are hashed by content and layer-relative name into the
signatures, so the new places change no signature (job.py checks).

The tar is canonical (sorted names, no times, no owners), so the same project
gives the same sha256: the client sends it once per build, and a worker
unpacks it once per digest.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import safetar
from ..errors import UserError, Where
from ..fileio import atomic_write
from ..layers import LOCAL_FILE, PROJECT_FILE

# Settings that say something about the client machine, not about what to
# build: a worker has its own (or none).
PER_MACHINE = ("signing_key", "secure_boot_key", "cache", "live_sources", "cluster", "layer_cache", "layers")
# Never part of a project's inputs: VCS data, build output, caches.
_SKIP_NAMES = {"__pycache__"}
_SKIP_SUFFIXES = (".egg-info", ".pyc")


@dataclass(frozen=True)
class Snapshot:
    digest: str        # sha256 of ``data``
    data: bytes        # the canonical tar


def _add(tar: tarfile.TarFile, src: Path, name: str) -> None:
    """One file, link or directory, without its owner, times or group/other bits."""
    info = tar.gettarinfo(str(src), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    if info.isreg():
        with open(src, "rb") as f:
            tar.addfile(info, f)
    elif info.isdir() or info.issym():
        tar.addfile(info)
    # Sockets, fifos, devices: nothing a recipe can use.


def _walk(root: Path, skip: set[Path]) -> Iterable[tuple[Path, str]]:
    """(path, name relative to root) of what the tree holds, sorted, links not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            path = here / d
            if d.startswith(".") or d in _SKIP_NAMES or d.endswith(_SKIP_SUFFIXES) or path in skip:
                continue
            if path.is_symlink():
                filenames.append(d)     # a link: stored as a link, never followed
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in [*keep, *sorted(filenames)]:
            path = here / name
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES) or path in skip:
                continue
            yield path, path.relative_to(root).as_posix()


def _settings_files(project, environ: Mapping[str, str]) -> dict[str, bytes]:
    """buildsys.yaml and local.yaml as the worker must see them."""
    from .. import sshkeys

    root = project.root
    main = yaml.safe_load((root / PROJECT_FILE).read_text()) or {}
    main["layers"] = []     # every layer is under layers/ in the snapshot
    local: dict = {}
    if (root / LOCAL_FILE).is_file():
        local = {k: v for k, v in (yaml.safe_load((root / LOCAL_FILE).read_text()) or {}).items()
                 if k not in PER_MACHINE}
    # The client may have these from its environment: the SSH keys shape
    # the image, and the shared cache is where the workers push.
    if environ.get("BUILDSYS_SHARED_CACHE"):
        local["shared_cache"] = environ["BUILDSYS_SHARED_CACHE"]
    keys = sshkeys.project_keys(project.settings, environ)
    if keys:
        local["ssh_authorized_keys"] = keys
    local["format"] = main.get("format", 1)
    return {PROJECT_FILE: yaml.safe_dump(main, sort_keys=True).encode(),
            LOCAL_FILE: yaml.safe_dump(local, sort_keys=True).encode()}


def make(project, skip: Iterable[Path] = ()) -> Snapshot:
    """The snapshot of a loaded project; ``skip``: dirs to leave out (the build, download and cache dirs)."""
    root = project.root
    others = [layer for layer in project.layers if layer.name != "core"]
    # A layer inside the project goes in once, under layers/<name>/.
    # (root/build: the default build dir, whoever's it is.)
    skipped = {Path(p).absolute() for p in skip} | {root / "build", root / "layers", root / PROJECT_FILE,
                                                     root / LOCAL_FILE} \
        | {layer.path for layer in others}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, Path | bytes]] = []
        entries += [(name, path) for path, name in _walk(root, skipped)]
        for layer in others:
            prefix = f"layers/{layer.name}"
            entries.append((prefix, layer.path))
            entries += [(f"{prefix}/{name}", path) for path, name in _walk(layer.path, skipped)]
        entries += list(_settings_files(project, project.environ).items())
        for name, item in sorted(entries, key=lambda e: e[0]):
            if isinstance(item, bytes):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(item), 0o644
                tar.addfile(info, io.BytesIO(item))
            else:
                _add(tar, item, name)
    data = buf.getvalue()
    return Snapshot(hashlib.sha256(data).hexdigest(), data)


def _final(digest: str, under: Path, local_settings: Mapping[str, object]) -> Path:
    tag = hashlib.sha256(yaml.safe_dump(dict(local_settings), sort_keys=True).encode()).hexdigest()[:12]
    return under / f"{digest[:32]}-{tag}"


def unpacked(digest: str, under: Path, local_settings: Mapping[str, object]) -> Path | None:
    """The project dir of this snapshot if it is unpacked already."""
    final = _final(digest, under, local_settings)
    return final if (final / PROJECT_FILE).is_file() else None


def unpack(snapshot: bytes, digest: str, under: Path, local_settings: Mapping[str, object]) -> Path:
    """The project dir of this snapshot under ``under`` (made once per digest
    and settings: temp dir, then rename); ``local_settings`` are the worker's
    own (shared cache, signing key), added to the snapshot's local.yaml."""
    if hashlib.sha256(snapshot).hexdigest() != digest:
        raise UserError(f"project snapshot {digest[:12]} arrived damaged (its sha256 differs)",
                        Where("cluster"), hint="build again")
    final = _final(digest, under, local_settings)
    if (final / PROJECT_FILE).is_file():
        return final
    under.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=under, prefix=".unpack-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:") as tar:
            # The snapshot comes over the network: the source rules refuse
            # absolute names, '..', links out of the tree and device files
            # (safetar, because tarfile's own filters are missing from Debian
            # 12's Python 3.11.2).
            safetar.extract(tar, tmp)
        local_file = tmp / LOCAL_FILE
        local = yaml.safe_load(local_file.read_text()) or {}
        local.update(local_settings)
        atomic_write(local_file, yaml.safe_dump(local, sort_keys=True))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / PROJECT_FILE).is_file():   # not another worker thread's copy: a real error
                raise
    except (tarfile.TarError, safetar.UnsafeMember) as exc:
        raise UserError(f"project snapshot {digest[:12]} is unsafe or damaged: {exc}", Where("cluster")) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final

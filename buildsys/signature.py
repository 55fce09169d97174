"""Task signatures: what a recipe's output depends on, hashed.

The signature covers the resolved recipe values (files by layer-relative name
and content hash, never absolute paths), the sources' checksums (never mirror
URLs), the build class's code version, the architecture and toolchain
identity, and the dependencies' signatures.  The same inputs give the same
signature in any directory, on any day, for any user.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import UserError
from .fileio import sha256_file
from .model import FileRef, Recipe, SourceEntry

# The engine modules whose code shapes a package's bytes: the sandbox and its
# layout, the task bodies, unpacking and patching, packing, rootfs and disk
# image writers.  Their exact source is hashed into every signature, so a
# buildsys upgrade never reuses an artifact the new code would build
# differently.  Build classes are hashed per class (BuildClass.version()).
# Every module of the package is in one of these two lists (a test checks),
# so a new module cannot be forgotten.
OUTPUT_SHAPING = (
    "artifact.py", "build.py", "executor.py", "fileio.py", "kconfiglines.py", "rootfs.py", "safetar.py",
    "sandbox.py", "store.py", "tasks.py", "classes/base.py", "fetch/git.py", "fetch/patch.py",
    "fetch/source.py", "fetch/unpack.py", "livesync.py", "image/__init__.py", "image/disk.py", "image/gpt.py",
    "image/mbr.py", "image/squashfs.py", "image/vfat.py", "buildenv/__init__.py", "buildenv/assemble.py",
)
# What only reads input, plans, schedules, talks to users or servers, or
# checks sha256s (outputs do not depend on how): covered by the values and
# checksums the signature holds instead.
# recipetool/ (`buildsys recipe new`) only writes a new recipe file, which builds read like any other.
# cluster/ (`build --cluster`, `buildsys worker`) only schedules: a worker builds with the ordinary engine.
NOT_OUTPUT_SHAPING_DIRS = ("commands/", "recipetool/", "cluster/")
# Build classes: each hashed with its whole module by BuildClass.version().
PER_CLASS_DIR = "classes/"
NOT_OUTPUT_SHAPING = (
    "__init__.py", "__main__.py", "cache.py", "cli.py", "deploy.py", "engine.py", "errors.py", "expand.py",
    "graph.py", "layers.py", "model.py", "overrides.py", "parsecache.py", "plan.py", "plancache.py", "qemu.py",
    "resolve.py", "scheduler.py", "schema.py", "signature.py", "sshkeys.py", "workspace.py", "yamlfast.py", "yamlio.py",
    "classes/__init__.py", "fetch/__init__.py", "fetch/aptsources.py", "fetch/backends.py", "fetch/checksum.py",
    "fetch/debian.py", "fetch/fetcher.py", "fetch/http.py", "buildenv/debindex.py", "buildenv/indexfetch.py",
    "buildenv/lockupdate.py",
    "legal.py", "sbom.py", "size.py",   # compliance: SBOM, legal-info, size report and budget (they only check/report)
    "imagediff.py", "provenance.py", "reproduce.py", "treedigest.py",  # manifests, reproduce, diff (they only read)
    # Incremental rebuilds: which earlier work dir may be kept (the result
    # must equal a clean build's; tests compare), and the live tree's digest
    # (only reads and hashes: livesync.py, which copies, is output-shaping).
    "incremental.py", "livetree.py",
    # Fragment checking after configure, and the Kconfig reader that explains a
    # dropped symbol: they only compare and report (a fragment's warn/fail
    # choice is fragment text, hashed as recipe data), like the size budget.
    "kconfigcheck.py", "kconfigtree.py",
    "configedit.py",   # edits local.yaml for commands; what it writes is read back as input
    # Layers: cloning git-pinned layers, editing layers: lists, writing a new layer (layer
    # files are hashed by content where recipes use them, wherever they come from).
    "layerconfig.py", "layerrepo.py", "layerscaffold.py",
    # Only the image class uses these: hashed into its version (classes/image.py Image.helpers).
    "image/elf.py", "image/ext4.py", "image/finalize.py",
    "image/authenticode.py",   # UEFI signatures of the image's EFI binaries (in Image.helpers)
    # A/B images (issue 13): the slot layout and boot entries, dm-verity, the UKI writer (in Image.helpers).
    "image/abslots.py", "image/verity.py", "image/uki.py",
    # Finds this machine's secure boot key for the certificate an image value holds (the output is
    # decided by that certificate and authenticode.py), writes the QEMU test variable store at deploy.
    "secureboot.py",
    # The shared cache stack and artifact signatures: where an archive comes
    # from and who signed its JSON, never its bytes (the key is the same
    # signature, and restored bytes must match the sha256 the build recorded).
    "sharedcache.py", "signing.py",
    # Update bundles (issue 13): minisign's formats, and the bundle writer that
    # packs an image's deploy outputs after the build (no artifact depends on them).
    "minisign.py", "bundle.py",
)
_PACKAGE_DIR = Path(__file__).resolve().parent
_engine_version: str | None = None


def engine_version() -> str:
    """sha256 of the output-shaping engine modules' source (memoized)."""
    global _engine_version
    if _engine_version is None:
        h = hashlib.sha256()
        for rel in sorted(OUTPUT_SHAPING):
            h.update(rel.encode() + b"\0" + (_PACKAGE_DIR / rel).read_bytes() + b"\0")
        _engine_version = h.hexdigest()[:16]
    return _engine_version

# Recipe keys that describe a recipe without shaping its output (top level only:
# an ``env`` variable called ``summary`` is an input like any other).
_NOT_BUILD_INPUTS = {"summary", "homepage", "format", "overrides", "cpe", "purl"}

_file_hashes: dict[tuple, str] = {}


def file_hash(path: Path) -> str:
    """Content hash of a layer file or directory, memoized by stat."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    if key not in _file_hashes:
        from .fetch import local_checksum
        _file_hashes[key] = local_checksum(path)
    return _file_hashes[key]


def _check_inside_layer(ref: FileRef) -> None:
    """A recipe may name files of its own layer only: '../../etc/shadow' or a
    symlink out of the layer would carry host files into a build."""
    try:
        ref.path.resolve().relative_to(Path(ref.layer_root).resolve())
    except ValueError:
        raise UserError(f"file '{ref.raw}' is outside its layer", ref.where,
                        hint=f"layer files must live under {ref.layer_root}") from None


def canonical(value):
    """A JSON-able, path-free form of a resolved value."""
    if isinstance(value, FileRef):
        _check_inside_layer(value)
        return {"file": value.layer_relative, "sha256": file_hash(value.path)}
    if isinstance(value, (dict, SourceEntry)):   # a source: the keys it was written with
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


_host_env: dict | None = None


def host_environment() -> dict:
    """What a ``build_env: host`` step sees of the host, as far as we can tell:
    the host compiler's identity and the sha256 of dpkg's package database
    (every installed package and version).  Still host-specific: such
    artifacts are not for sharing."""
    global _host_env
    if _host_env is None:
        from .classes.toolchain import host_identity

        try:
            status = sha256_file("/var/lib/dpkg/status")
        except OSError:
            status = "unknown"
        _host_env = {"host": {"compiler": host_identity(), "dpkg_status": status}}
    return _host_env


def sigdata(recipe: Recipe, board, class_version: str, extra: dict, deps: dict[str, str], env=None) -> dict:
    """The inputs of one recipe's signature.  ``env`` is the pinned build
    environment (buildenv.BuildEnv), None for a host-environment project."""
    from .resolve import HOST_ARCH

    target: dict[str, object]
    if recipe.variant == "native":
        target = {"arch": HOST_ARCH}
    else:
        target = {"arch": board.arch, "tune": list(board.get("tune", [])), "cross": board.cross_prefix}
    values = canonical({k: v for k, v in recipe.values.items() if k not in _NOT_BUILD_INPUTS})
    live = values.pop("live_source", None)
    if live is not None:
        # A live working tree stands for the sources: its content, never its path.
        from . import livetree

        values["sources"] = [livetree.digests(live, recipe.where("live_source"))]
    return {
        "engine": engine_version(),
        "buildenv": {"id": env.id} if env is not None else host_environment(),
        "recipe": recipe.pn,
        "values": values,
        "class": {"name": recipe.class_name, "version": class_version},
        "target": target,
        "extra": canonical(extra),
        "deps": dict(sorted(deps.items())),
    }


def digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def explain(old: dict | None, new: dict) -> str:
    """Why a task runs: which input changed since the last recorded build."""
    if old is None:
        return "no earlier build of this recipe"
    reasons = []
    for key in ("engine", "buildenv", "class", "target", "extra"):
        if old.get(key) != new.get(key):
            reasons.append(f"{key} changed")
    old_values, new_values = old.get("values", {}), new.get("values", {})
    for key in sorted(set(old_values) | set(new_values)):
        if old_values.get(key) != new_values.get(key):
            reasons.append(f"value '{key}' changed")
    old_deps, new_deps = old.get("deps", {}), new.get("deps", {})
    for key in sorted(set(old_deps) | set(new_deps)):
        if key not in old_deps:
            reasons.append(f"new dependency {key}")
        elif key not in new_deps:
            reasons.append(f"dependency {key} dropped")
        elif old_deps[key] != new_deps[key]:
            reasons.append(f"dependency {key} changed")
    return ", ".join(reasons) or "inputs unchanged but output missing"

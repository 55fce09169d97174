"""Publishing a built target: files to <build>/deploy/<board>/, a manifest, sizes."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import networkx as nx

from . import provenance, size
from .errors import BuildError
from .fileio import atomic_write, read_beneath, sha256_file


def _human(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def _complete_store(session, recipe) -> None:
    """Every package of the image's closure in the package store: a build
    that restored the image (or a tool) from the cache skipped its
    dependencies, but the manifest's tree digests, the SBOM's files and the
    rootfs list describe them all.  What the cache cannot give is left out
    (the manifest then says so: tree_sha256 null)."""
    from .store import UnusableCacheEntry

    for pn in sorted(nx.ancestors(session.rgraph, recipe.pn) | {recipe.pn}):
        sig = session.sigs[pn]
        if session.store.available(sig):
            continue
        try:
            session.store.restore(sig, session.package_meta_for(session.recipe(pn), None))
        except (UnusableCacheEntry, BuildError) as exc:
            print(f"warning: {pn}: its package is not in this build dir and the cache cannot give it ({exc}); "
                  "the manifest has no tree digest for it", file=sys.stderr)


def deploy(session, recipe) -> Path | None:
    """Copy an image recipe's output to the deploy dir and write its manifest."""
    build_class = session.resolver.build_class(recipe)
    if not getattr(build_class, "installs_packages", False):
        return None
    out = session.paths.deploy / session.board.name
    out.mkdir(parents=True, exist_ok=True)
    _complete_store(session, recipe)
    tree = session.package_dir(recipe.pn)
    files = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            src = Path(dirpath, name)
            rel = src.relative_to(tree)
            if not stat.S_ISREG(os.lstat(src).st_mode):
                # The tree is a step's output: a link could point at any host file.
                raise BuildError(f"{recipe.pn} installs {rel}, which is not a regular file; images deploy "
                                 "regular files only")
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dst, read_beneath(tree, str(rel)), mode=0o644)
            shutil.copystat(src, dst, follow_symlinks=False)
            files[str(rel)] = {"sha256": sha256_file(dst), "size": dst.stat().st_size}
    for name, info in files.items():
        if name.endswith(".img"):
            atomic_write(out / f"{name}.sha256", f"{info['sha256']}  {Path(name).name}\n")
    recipes = []
    toolchain = None
    libc: dict[str, dict] = {}
    live: list[str] = []
    closure = nx.ancestors(session.rgraph, recipe.pn) | {recipe.pn}
    for pn in sorted(closure):
        meta = session.package_meta(pn)
        data = session.sigdata[pn]
        if data.get("extra", {}).get("toolchain"):
            toolchain = data["extra"]["toolchain"]
        if data.get("extra", {}).get("libc"):
            libc[pn] = _libc_record(session, pn, data["extra"]["libc"])
        entry = {"name": pn, "version": meta.get("version"), "license": meta.get("license"),
                 "sources": meta.get("sources"), "signature": session.sigs[pn],
                 **provenance.recipe_record(session, pn)}
        if session.recipe(pn).get("live_source"):
            entry["live_source"] = True
            live.append(pn)
        recipes.append(entry)
    manifest = {"image": recipe.name, "board": session.board.name, "arch": session.board.arch,
                "version": recipe.version, "signature": session.sigs[recipe.pn], "toolchain": toolchain,
                "recipes": recipes, "files": files,
                # Built from a developer's working tree (`buildsys source --local`):
                # nothing pinned says what those sources were.
                "reproducible_from_pinned_sources": not live, "live_sources": live}
    if libc:
        # Files from the toolchain: each one's sha256, and which the image kept.
        kept = size.rootfs_record(tree, recipe.name, session.board.name)
        for pn, record in libc.items():
            record["in_image"] = sorted(p for p in record["files"] if kept is None or kept.get(p) == pn)
        manifest["libc"] = libc
    # Format 2: signature inputs, tree digests, the project's files (see provenance.py).
    manifest.update(provenance.image_record(session, recipe, closure))
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"deployed {recipe.name} to {out}:", file=sys.stderr)
    if live:
        print(f"  note: built from live sources ({', '.join(live)}): not reproducible from pinned sources "
              "(`buildsys source RECIPE --reset` goes back to the recipe's)", file=sys.stderr)
    for name, info in sorted(files.items()):
        print(f"  {name:<40} {_human(info['size']):>10}  sha256 {info['sha256'][:16]}", file=sys.stderr)
    # Signed for secure boot: QEMU's variable store with its certificate enrolled (secureboot.py).
    from .secureboot import deploy_vars
    vars_file = deploy_vars(recipe, session.board, out)
    if vars_file is not None:
        print(f"  {vars_file.name:<40} UEFI variables: PK, KEK, db = {recipe.name}'s secure_boot_cert, "
              "Secure Boot on", file=sys.stderr)
    # The SPDX document, and the rootfs file list in the manifest (docs/compliance.md).
    from .sbom import deploy_sbom
    deploy_sbom(session, recipe, out)
    _print_package_sizes(session, recipe, out)
    return out


def _libc_record(session, pn: str, extra: dict) -> dict:
    """The C library's files (path -> sha256) as the package holds them."""
    from .sbom import tree_files

    files = {f.path: f.sha256 for f in tree_files(pn, session.package_dir(pn)) if f.kind == "file"}
    return {"files": files, **{k: v for k, v in extra.items() if k != "files"}}


def _print_package_sizes(session, recipe, out: Path) -> None:
    """What each package adds to the root filesystem (size.py; the compressed
    share is an estimate), under the deploy listing."""
    report = size.session_report(session, recipe, out)
    print(f"  root filesystem by package ({report.compressor} compressed: estimate):", file=sys.stderr)
    for p in report.packages:
        left = f", {_human(p.left_out)} left out" if p.left_out else ""
        print(f"    {p.pn:<28} {_human(p.installed):>10} {_human(p.compressed):>10} compressed  "
              f"({p.files} files, {p.links} links{left})", file=sys.stderr)

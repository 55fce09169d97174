"""License compliance: the license files each recipe names (checked after
``patch``, so an upstream license change fails the build) and ``buildsys
legal-info``, which collects what distributing an image takes (Buildroot's
``make legal-info``): a manifest of the packages and their licenses, the
license texts, and the exact sources and patches of the copyleft packages.

Layout of the output directory (docs/compliance.md)::

    manifest.csv          the image's packages (root filesystem and boot files)
    host-manifest.csv     the tools it was built with (not distributed with it)
    licenses/<pkg>-<version>/<path>       the license files the recipe names
    sources/<pkg>-<version>/...           GPL/LGPL packages: archives, layer files, patches/ + series
    legal-info.sha256     sha256 of every file above
    README

License texts come from the recipe's unpacked and patched source when this
build dir still has it with the right content, else from the verified source
archives in the download dir, read member by member (a kernel tarball is
never unpacked for two files); either way each is checked against its sha256.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

from .errors import BuildError, UserError, Where
from .fileio import atomic_write, read_beneath, sha256_file
from .model import FileRef, Recipe

# A license expression that needs the sources handed over with the binaries.
COPYLEFT = re.compile(r"(?<![A-Za-z])(?:A|L)?GPL")
# License texts are small; a "license file" of more than this is a mistake or a bomb.
MAX_LICENSE_FILE = 16 << 20
_MARKER = "legal-info.sha256"


def is_copyleft(license_expr: str | None) -> bool:
    return bool(license_expr) and COPYLEFT.search(str(license_expr)) is not None


def _entries(recipe: Recipe) -> list:
    return list(recipe.get("license_files", []) or [])


def _where(item, key: str, recipe: Recipe) -> Where:
    """Where ``key`` of a license_files item is written: resolved values are
    plain, the recipe's history keeps the parsed items with positions."""
    if hasattr(item, "where"):
        return item.where(key)
    for entry in reversed(recipe.history.get("license_files", ())):
        for written in entry.value if isinstance(entry.value, list) else ():
            if hasattr(written, "where") and written == item:
                return written.where(key)
    return recipe.where("license_files")


def mismatch(recipe: Recipe, item, actual: str) -> UserError:
    """The error of a license file whose sha256 is not the recipe's."""
    return UserError(f"{recipe.pn}: license file {item['path']} changed: expected sha256 {item['sha256']}, "
                     f"actual {actual}", _where(item, "sha256", recipe),
                     hint="read the new text; if the license is still acceptable, put the new sha256 in "
                          "license_files")


def check_license_files(recipe: Recipe, src_dir: Path) -> None:
    """Every license file the recipe names is in the unpacked, patched source
    ``src_dir`` (step-writable: nothing is followed) with its sha256."""
    for item in _entries(recipe):
        path = str(item["path"])
        try:
            data = read_beneath(src_dir, path)
        except FileNotFoundError:
            raise UserError(f"{recipe.pn}: license file {path} is not in the source", _where(item, "path", recipe),
                            hint="the path is relative to the unpacked source tree (after strip)") from None
        except BuildError:
            raise UserError(f"{recipe.pn}: license file {path} is not a regular file in the source (a link or a "
                            "directory)", _where(item, "path", recipe), hint="name the file itself") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != item["sha256"]:
            raise mismatch(recipe, item, actual)


# --- license texts ----------------------------------------------------------------------
def license_texts(session, recipe: Recipe) -> dict[str, bytes]:
    """{path: content} of the recipe's license files, each checked against its sha256."""
    from .executor import sources_of

    wanted = {str(item["path"]): item for item in _entries(recipe)}
    if not wanted:
        return {}
    found: dict[str, bytes] = {}
    src = session.recipe_paths(recipe).src
    for path, item in wanted.items():
        try:
            data = read_beneath(src, path)
        except (OSError, BuildError):
            continue
        if hashlib.sha256(data).hexdigest() == item["sha256"]:
            found[path] = data
    missing = set(wanted) - set(found)
    pristine: dict[str, bytes] = {}
    if missing:
        for source in sources_of(recipe):
            pristine.update(_read_from_source(session, source, missing))
    for path in sorted(missing):
        item = wanted[path]
        if path not in pristine:
            raise UserError(f"{recipe.pn}: license file {path} is not in the sources", _where(item, "path", recipe),
                            hint="the path is relative to the unpacked source tree (after strip)")
        actual = hashlib.sha256(pristine[path]).hexdigest()
        if actual != item["sha256"]:
            err = mismatch(recipe, item, actual)
            if recipe.get("patches"):
                err.hint = ("read from the unpatched sources: build the recipe once so that its patched source "
                            "tree is here, or " + (err.hint or ""))
            raise err
        found[path] = pristine[path]
    return found


def _read_from_source(session, source, wanted: set[str]) -> dict[str, bytes]:
    """The wanted files (paths in the source tree) that one source provides."""
    from .fetch import fetch
    from .fetch.unpack import is_archive

    prefix = source.dest.strip("/") + "/" if source.dest else ""
    mine = {p[len(prefix):]: p for p in wanted if p.startswith(prefix)}
    if not mine:
        return {}
    local = Path(fetch(source, session.fetch_config))
    out: dict[str, bytes] = {}
    if local.is_dir():          # a layer directory: the tree as it is
        for rel, path in mine.items():
            target = local / rel
            if target.is_file() and not target.is_symlink():
                out[path] = target.read_bytes()
        return out
    if not (source.unpack and is_archive(local)):
        name = source.filename or local.name
        if name in mine:
            out[mine[name]] = local.read_bytes()
        return out
    if local.name.lower().endswith(".zip"):
        with zipfile.ZipFile(local) as z:
            for info in z.infolist():
                zrel = _stripped(info.filename, source.strip)
                if zrel is not None and zrel in mine and not info.is_dir() and info.file_size <= MAX_LICENSE_FILE:
                    out[mine[zrel]] = z.read(info)
        return out
    from .fetch.unpack import _close_tar, _open_tar

    with open(local, "rb") as raw:
        tar = _open_tar(local, raw)
        try:
            for member in tar:
                trel = _stripped(member.name, source.strip)
                if trel is not None and trel in mine and member.isreg() and member.size <= MAX_LICENSE_FILE:
                    f = tar.extractfile(member)
                    if f is not None:
                        out[mine[trel]] = f.read()
                    if len(out) == len(mine):
                        break       # all found: the rest of a kernel tarball is not read
        finally:
            try:
                _close_tar(tar)
            except (tarfile.TarError, OSError):
                pass
    return out


def _stripped(name: str, strip: int) -> str | None:
    from .safetar import stripped

    return stripped(name, strip)


# --- legal-info ---------------------------------------------------------------------------
def default_dir(session) -> Path:
    return session.paths.build / "legal-info" / session.board.name


def legal_info(session, image: Recipe, out: Path) -> dict:
    """Write the legal-info directory for ``image`` (a planned session); a summary."""
    from .sbom import image_closure

    closure = image_closure(session, image)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).is_file():
        raise UserError(f"{out} exists and is not a legal-info directory", Where("-o"),
                        hint="name an empty or new directory")
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    summary = {"packages": 0, "host_packages": 0, "sources": [], "no_license_files": []}
    try:
        rows = []
        for r in closure.contained:
            rows.append(_package(session, r, staging, closure.role(r.pn), with_sources=is_copyleft(r.get("license")),
                                 summary=summary))
        host_rows = [_package(session, r, staging, "build tool", with_sources=False, summary=summary)
                     for r in closure.tools]
        summary["packages"], summary["host_packages"] = len(rows), len(host_rows)
        header = ["PACKAGE", "VERSION", "LICENSE", "LICENSE FILES", "SOURCE ARCHIVE", "SOURCE SITE", "ROLE"]
        _write_csv(staging / "manifest.csv", header, rows)
        _write_csv(staging / "host-manifest.csv", header, host_rows)
        atomic_write(staging / "README", README.format(image=image.name, board=session.board.name))
        sums = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file() and not p.is_symlink()):
            sums.append(f"{sha256_file(path)}  {path.relative_to(staging).as_posix()}\n")
        atomic_write(staging / _MARKER, "".join(sums))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return summary


def _package(session, r: Recipe, root: Path, role: str, with_sources: bool, summary: dict) -> list[str]:
    from .executor import sources_of
    from .fetch import fetch

    pv = f"{r.name}-{r.version}" if r.version else r.name
    texts = license_texts(session, r)
    for path, data in texts.items():
        target = root / "licenses" / pv / path
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    if not texts:
        summary["no_license_files"].append(r.pn)
    archives, sites = [], []
    for entry, source in zip(r.get("sources", []), sources_of(r), strict=True):
        if entry.get("file") is not None:
            archives.append(entry["file"].layer_relative)
            site = f"layer {r.layer.name}"
        else:
            archives.append(Path(fetch(source, session.fetch_config)).name)
            site = str(entry.get("url") or f"{entry.get('git')}@{entry.get('rev')}")
        if site not in sites:
            sites.append(site)
        if with_sources:
            _copy_source(session, r, entry, source, root / "sources" / pv)
    if with_sources:
        _copy_build_files(r, root / "sources" / pv)
        summary["sources"].append(pv)
    return [r.name, r.version, str(r.get("license") or "unknown"), " ".join(sorted(texts)), " ".join(archives),
            " ".join(sites), role]


def _copy_build_files(r: Recipe, dest: Path) -> None:
    """What else the build of ``r`` takes from the layers: its patches (with
    their order in patches/series), the recipe and its appends (recipe/), and
    the layer files its settings name (files/: configs, fragments...)."""
    patches = list(r.get("patches", []))
    for ref in patches:
        target = dest / "patches" / Path(ref.raw).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ref.path, target)
    if patches:
        atomic_write(dest / "patches" / "series", "".join(Path(ref.raw).name + "\n" for ref in patches))
    (dest / "recipe").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(r.path, dest / "recipe" / Path(r.path).name)
    for i, path in enumerate(r.appends, 1):     # in the order they apply, named by their layer's dir
        layer = next((p.parent.name for p in Path(path).parents if p.name == "recipes"), "layer")
        shutil.copyfile(path, dest / "recipe" / f"{i}-{layer}-{Path(path).name}")
    for key, value in sorted(r.values.items()):
        if key in ("sources", "patches"):
            continue
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, FileRef) and ref.path.is_file():
                target = dest / "files" / ref.layer_relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ref.path, target)


def _copy_source(session, r: Recipe, entry, source, dest: Path) -> None:
    from .fetch import fetch

    local = Path(fetch(source, session.fetch_config))
    if entry.get("file") is not None:
        target = dest / "files" / (source.dest or "") / (source.filename or local.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            shutil.copytree(local, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copyfile(local, target)
        return
    target = dest / local.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, target)
    if source.sha256 and sha256_file(target) != source.sha256:
        raise UserError(f"{local}: sha256 changed after it was verified (expected {source.sha256})", source.where,
                        hint="run legal-info again: the next fetch checks it and downloads it anew")


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def report(summary: dict, out: Path, stream=sys.stderr) -> None:
    print(f"legal-info in {out}: {summary['packages']} packages in the image, {summary['host_packages']} build "
          f"tools; sources of {', '.join(summary['sources']) or 'none'}", file=stream)
    if summary["no_license_files"]:
        print(f"warning: no license_files in the recipes of {', '.join(summary['no_license_files'])}: "
              "no license text copied for them", file=stream)


README = """\
Legal information for {image} on {board}, written by `buildsys legal-info`.

manifest.csv       the packages in the image: license, license files, source archives and where they come from
host-manifest.csv  the tools the image was built with (they are not part of it)
licenses/          the license texts each recipe names (license_files:), checked against their sha256
sources/           for every GPL/LGPL package in the image: the exact source archives, layer files and
                   patches (patches/series gives their order)
legal-info.sha256  sha256 of every file here

Check it before you distribute the image: licenses that need more than this
(notices, offers of source) are yours to satisfy.
"""

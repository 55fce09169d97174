"""What a deployed image is made of: its recipes, the files each puts in the
root filesystem and on the boot partitions, and an SPDX 2.3 document of it.

``deploy_sbom`` runs at the end of every image deploy: it writes
``<deploy>/<image>-<board>.spdx.json`` and adds the root filesystem's file
list (``"rootfs"``: path, type, size, sha256, owning package) to
``manifest.json``.  The other compliance tools (``buildsys legal-info``,
``buildsys size``, see docs/compliance.md) start from ``image_closure`` too.

The document is deterministic: no random UUID, no clock.  ``created`` is the
image's SOURCE_DATE_EPOCH and ``documentNamespace`` is derived from the
image's signature, so the same build gives the same bytes.

Package trees are a build step's output: they are read without following a
link (fileio.read_beneath); a symlink is recorded as a link, never opened.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from . import __version__
from .fileio import atomic_write, read_beneath
from .model import Recipe

NOASSERTION = "NOASSERTION"
# A namespace under a name that never resolves (RFC 6761 ".invalid"): SPDX
# wants a unique URI, not a reachable one; the signature makes it unique.
NAMESPACE = "https://buildsys.invalid/spdx"


# --- what an image is made of -------------------------------------------------------
@dataclass
class Closure:
    """The recipes behind an image, by the part they play."""

    image: Recipe
    rootfs: list[Recipe] = field(default_factory=list)   # installed in the root filesystem
    boot: list[Recipe] = field(default_factory=list)     # the disk layout takes files from them
    tools: list[Recipe] = field(default_factory=list)    # everything else it was built with

    @property
    def contained(self) -> list[Recipe]:
        """The recipes whose files are in the image (rootfs, then boot)."""
        seen = {r.pn for r in self.rootfs}
        return self.rootfs + [r for r in self.boot if r.pn not in seen]

    def role(self, pn: str) -> str:
        if any(r.pn == pn for r in self.rootfs):
            return "rootfs"
        if any(r.pn == pn for r in self.boot):
            return "boot"
        return "build tool"


def image_closure(session, recipe: Recipe) -> Closure:
    """Every recipe the (planned) session builds for ``recipe``, split into
    what the root filesystem installs, what the boot partitions take files
    from, and the build tools."""
    import networkx as nx

    closure = Closure(recipe)
    closure.rootfs = session.resolver.install_closure(list(recipe.get("packages", [])), recipe)
    boot: dict[str, Recipe] = {}
    for _, _, name, _ in boot_sources(session, recipe):
        found = session.resolver.lookup(name, recipe, None)
        boot.setdefault(found.pn, found)
    inside = {r.pn for r in closure.rootfs} | set(boot)
    closure.boot = [boot[pn] for pn in sorted(boot) if pn not in {r.pn for r in closure.rootfs}]
    closure.tools = [session.recipe(pn) for pn in sorted(nx.ancestors(session.rgraph, recipe.pn)) if pn not in inside]
    return closure


def boot_sources(session, recipe: Recipe) -> list[tuple[str, str, str, str]]:
    """(partition, path on it, recipe name, path in its package) for every
    file an ``image`` recipe's disk layout copies from a package."""
    from .classes.image import Image
    from .image import disk

    if not isinstance(session.resolver.build_class(recipe), Image) or not session.board.get("disk"):
        return []
    _, _, specs = disk.parse_layout(session.board.get("disk"), session.board.name)
    out = []
    for spec in specs:
        for fs_path, src in sorted(spec.files.items()):
            name, rel = src.split(":", 1)
            # virtual/kernel is the image's own ``kernel`` when it names one.
            out.append((spec.name, fs_path, Image.boot_recipe(recipe, name), rel.lstrip("/")))
    return out


@dataclass(frozen=True)
class TreeFile:
    """A file or symlink of a package tree, as it lands in the image."""

    path: str            # "/bin/busybox"
    package: str         # the recipe (pn) that installs it
    kind: str            # "file" or "symlink"
    size: int            # bytes (a link: the length of its target)
    sha256: str          # of the content (a link: of its target, as git does)
    sha1: str
    target: str = ""     # a link's target
    partition: str = ""  # a boot file: its partition ("" for the root filesystem)
    source: str = ""     # a boot file: its path in the package


def read_tree(tree: Path) -> Iterator[tuple[str, str, bytes]]:
    """(path, kind, content) of every file and symlink below ``tree``, one at
    a time (a rootfs may be large); a link's content is its target.
    Directories are left out."""
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, tree)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                yield "/" + rel, "symlink", os.fsencode(os.readlink(full))
            elif stat.S_ISREG(mode):
                yield "/" + rel, "file", read_beneath(tree, rel)


def _entry(path: str, pn: str, kind: str, data: bytes, **extra) -> TreeFile:
    return TreeFile(path, pn, kind, len(data), hashlib.sha256(data).hexdigest(), hashlib.sha1(data).hexdigest(),
                    **extra)


def tree_files(pn: str, tree: Path) -> list[TreeFile]:
    """The files and links of a package tree, by path."""
    return sorted((_entry(path, pn, kind, data, target=os.fsdecode(data) if kind == "symlink" else "")
                   for path, kind, data in read_tree(tree)), key=lambda f: f.path)


def rootfs_files(session, closure: Closure) -> list[TreeFile]:
    """The root filesystem's files and links with their owning package."""
    from .size import rootfs_record

    # What the image kept of each package (it leaves development files out).
    kept = rootfs_record(session.package_dir(closure.image.pn), closure.image.name, session.board.name)
    out: list[TreeFile] = []
    for r in closure.rootfs:
        out += [f for f in tree_files(r.pn, session.package_dir(r.pn)) if kept is None or kept.get(f.path) == r.pn]
    return sorted(out, key=lambda f: f.path)


def boot_files(session, closure: Closure) -> list[TreeFile]:
    """The files the boot partitions carry from packages (kernel, dtbs, firmware)."""
    out = []
    for part, fs_path, name, rel in boot_sources(session, closure.image):
        found = session.resolver.lookup(name, closure.image, None)
        try:
            data = read_beneath(session.package_dir(found.pn), rel)
        except FileNotFoundError:
            continue        # the image build reports it; a deploy has nothing to add
        out.append(_entry(fs_path, found.pn, "file", data, partition=part, source=rel))
    return out


def rootfs_manifest(files: list[TreeFile]) -> list[dict]:
    """The manifest's ``"rootfs"``: one entry per file or link, by path."""
    out = []
    for f in files:
        item = {"path": f.path, "type": f.kind, "size": f.size, "sha256": f.sha256, "package": f.package}
        if f.kind == "symlink":
            item["target"] = f.target
        out.append(item)
    return out


# --- identifiers ----------------------------------------------------------------------
def purl(recipe: Recipe) -> str:
    """The recipe's ``purl:``, else pkg:generic/<name>@<version>."""
    if recipe.get("purl"):
        return str(recipe.get("purl"))
    out = "pkg:generic/" + quote(recipe.name, safe=".-_~")
    return out + ("@" + quote(recipe.version, safe=".-_~+") if recipe.version else "")


def _cpe_part(value: str) -> str:
    """A CPE 2.3 formatted-string component: letters, digits, - . _ as they
    are, anything else backslash-escaped."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-._") else "\\" + c for c in value) or "*"


def cpe(recipe: Recipe) -> str:
    """cpe:2.3 of the recipe's ``cpe:`` ([part:]vendor:product), else vendor = product = name."""
    given = str(recipe.get("cpe") or "")
    parts = given.split(":") if given else [recipe.name, recipe.name]
    part = parts.pop(0) if len(parts) == 3 else "a"
    vendor, product = parts
    version = _cpe_part(recipe.version) if recipe.version else "*"
    return f"cpe:2.3:{part}:{_cpe_part(vendor)}:{_cpe_part(product)}:{version}:*:*:*:*:*:*:*"


def _spdx_id(kind: str, name: str, taken: set[str]) -> str:
    base = f"SPDXRef-{kind}-" + (re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "x")
    ident, n = base, 1
    while ident in taken:
        n += 1
        ident = f"{base}-{n}"
    taken.add(ident)
    return ident


def download_location(recipe: Recipe) -> str:
    """The first fetched source's URL (git: git+URL@commit), NOASSERTION for
    layer files or a Debian archive path (which names no host)."""
    for s in recipe.get("sources", []):
        if s.get("url") and str(s["url"]).startswith(("https://", "http://", "ftp://")):
            return str(s["url"])
        if s.get("git"):
            url = str(s["git"])
            return (url if url.startswith("git+") else "git+" + url) + "@" + str(s.get("rev"))
        if s.get("url"):
            return NOASSERTION
    return NOASSERTION


def source_info(recipe: Recipe) -> str:
    """Every source and patch of the recipe, one per line."""
    lines = []
    for s in recipe.get("sources", []):
        if s.get("file") is not None:
            lines.append(f"layer file {s['file'].layer_relative}")
        elif s.get("git"):
            lines.append(f"git {s['git']} commit {s.get('rev')}")
        else:
            lines.append(f"{s['url']} sha256 {s.get('sha256')}")
    lines += [f"patch {ref.layer_relative}" for ref in recipe.get("patches", [])]
    return "\n".join(lines)


def _source_sha256(recipe: Recipe) -> str | None:
    for s in recipe.get("sources", []):
        if s.get("url"):
            return str(s["sha256"])
        if s.get("git"):
            return None
    return None


_URL = re.compile(r"https?://[a-z0-9.-]+\.[a-z]{2,5}(?::\d+)?(?:/\S*)?$", re.I)


# --- the SPDX document ----------------------------------------------------------------
def spdx_document(session, closure: Closure, rootfs: list[TreeFile], boot: list[TreeFile],
                  image_files: dict[str, dict]) -> dict:
    """The SPDX 2.3 document (a JSON-able dict) of a deployed image."""
    image = closure.image
    board = session.board.name
    name = f"{image.name}-{board}"
    sig = session.sigs[image.pn]
    epoch = session.package_meta(image.pn).get("source_date_epoch")
    if epoch is None:
        epoch = session.read_sde(image)
    taken: set[str] = {"SPDXRef-DOCUMENT"}
    image_id = _spdx_id("Image", name, taken)
    ids = {r.pn: _spdx_id("Package", r.pn, taken) for r in closure.contained + closure.tools}

    files_of: dict[str, list[TreeFile]] = {}
    for f in rootfs + boot:
        if f.kind == "file":       # a link has no content of its own: it is in the manifest
            files_of.setdefault(f.package, []).append(f)
    files, relationships = [], []
    relationships.append(("SPDXRef-DOCUMENT", "DESCRIBES", image_id))
    for pn in sorted(files_of):
        for f in files_of[pn]:
            fid = _spdx_id("File", f"{pn}{f.path}", taken)
            entry = {"SPDXID": fid, "fileName": "." + f.path,
                     "checksums": [{"algorithm": "SHA1", "checksumValue": f.sha1},
                                   {"algorithm": "SHA256", "checksumValue": f.sha256}],
                     "licenseConcluded": NOASSERTION, "copyrightText": NOASSERTION}
            if f.partition:
                entry["comment"] = f"on partition {f.partition} of the disk image; {pn}'s {f.source}"
            files.append(entry)
            relationships.append((ids[pn], "CONTAINS", fid))

    license_refs: dict[str, list[Recipe]] = {}
    packages = []
    img = next((n for n in sorted(image_files) if n.endswith(".img")), None)
    image_pkg = {"SPDXID": image_id, "name": name, "versionInfo": image.version or NOASSERTION,
                 "downloadLocation": NOASSERTION, "filesAnalyzed": False,
                 "licenseConcluded": NOASSERTION, "licenseDeclared": _license(image, license_refs),
                 "copyrightText": NOASSERTION, "supplier": NOASSERTION, "primaryPackagePurpose": "OPERATING-SYSTEM",
                 "comment": f"image {image.name} for board {board} ({session.board.arch}), signature {sig}"}
    if img is not None:
        image_pkg["packageFileName"] = img
        image_pkg["checksums"] = [{"algorithm": "SHA256", "checksumValue": image_files[img]["sha256"]}]
    packages.append(image_pkg)
    for r in closure.contained + closure.tools:
        own = files_of.get(r.pn, [])
        pkg = {"SPDXID": ids[r.pn], "name": r.name, "versionInfo": r.version or NOASSERTION,
               "downloadLocation": download_location(r), "filesAnalyzed": bool(own),
               "licenseConcluded": _license(r, license_refs), "licenseDeclared": _license(r, license_refs),
               "copyrightText": NOASSERTION, "supplier": NOASSERTION,
               "externalRefs": [
                   {"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": cpe(r)},
                   {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl(r)}],
               "comment": f"recipe {r.pn} ({closure.role(r.pn)}), signature {session.sigs[r.pn]}"}
        sha = _source_sha256(r)
        if sha:
            pkg["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha}]
        if source_info(r):
            pkg["sourceInfo"] = source_info(r)
        if r.get("summary"):
            pkg["summary"] = str(r.get("summary"))
        if r.get("homepage") and _URL.match(str(r.get("homepage"))):
            pkg["homepage"] = str(r.get("homepage"))
        if own:
            pkg["packageVerificationCode"] = {"packageVerificationCodeValue": verification_code(own)}
        packages.append(pkg)

    inside = {r.pn for r in closure.contained}
    for r in closure.contained:
        relationships.append((image_id, "CONTAINS", ids[r.pn]))
        # The image was made from these packages' sources (download location, checksum).
        relationships.append((image_id, "GENERATED_FROM", ids[r.pn]))
        for dep in session.resolver.rdepends(r):
            if dep.pn in ids:
                relationships.append((ids[dep.pn], "RUNTIME_DEPENDENCY_OF", ids[r.pn]))
    for u, v in session.rgraph.edges:
        if u not in ids:
            continue
        if v == image.pn:
            if u not in inside:
                relationships.append((ids[u], "BUILD_TOOL_OF", image_id))
        elif v in ids:
            relationships.append((ids[u], "BUILD_DEPENDENCY_OF", ids[v]))

    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{NAMESPACE}/{quote(name, safe='.-_~')}-{sig}",
        "creationInfo": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch))),
                         "creators": [f"Tool: buildsys-{__version__}"],
                         "comment": "created at the image's SOURCE_DATE_EPOCH; namespace from its signature"},
        "packages": packages,
        "files": files,
        "relationships": [{"spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b}
                          for a, t, b in sorted(set(relationships))],
    }
    if license_refs:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "name": ref[len("LicenseRef-"):],
             "extractedText": "; ".join(_license_text_note(r) for r in users)}
            for ref, users in sorted(license_refs.items())]
    return doc


def _license(recipe: Recipe, refs: dict[str, list[Recipe]]) -> str:
    text = str(recipe.get("license") or "").strip()
    if not text:
        return NOASSERTION
    for ref in re.findall(r"LicenseRef-[A-Za-z0-9.-]+", text):
        users = refs.setdefault(ref, [])
        if recipe not in users:
            users.append(recipe)
    return text


def _license_text_note(recipe: Recipe) -> str:
    paths = [str(f["path"]) for f in recipe.get("license_files", [])]
    where = f"its license files {', '.join(paths)}" if paths else "its sources (the recipe names no license file)"
    return f"The license of {recipe.name} {recipe.version}: see {where}; `buildsys legal-info` copies them"


def verification_code(files: list[TreeFile]) -> str:
    """SPDX 2.3 package verification code: SHA1 over the sorted SHA1s of its files."""
    return hashlib.sha1("".join(sorted(f.sha1 for f in files)).encode()).hexdigest()


# --- at deploy ----------------------------------------------------------------------------
def sbom_name(image: Recipe, board: str) -> str:
    return f"{image.name}-{board}.spdx.json"


def deploy_sbom(session, recipe: Recipe, out: Path) -> Path:
    """Write the SPDX document beside the deployed image and add the root
    filesystem's file list (and the document) to its manifest.json."""
    closure = image_closure(session, recipe)
    rootfs = rootfs_files(session, closure)
    boot = boot_files(session, closure)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    doc = spdx_document(session, closure, rootfs, boot, manifest.get("files", {}))
    name = sbom_name(recipe, session.board.name)
    data = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    atomic_write(out / name, data)
    manifest["rootfs"] = rootfs_manifest(rootfs)
    manifest.setdefault("files", {})[name] = {"sha256": hashlib.sha256(data.encode()).hexdigest(),
                                              "size": len(data.encode())}
    atomic_write(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"  {name:<40} SPDX 2.3: {len(doc['packages'])} packages, {len(doc['files'])} files", file=sys.stderr)
    return out / name

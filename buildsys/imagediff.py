"""`buildsys diff A B`: what changed between two deployed images.

A and B are deploy dirs or their manifest.json files.  Reported:

* recipes added, removed and changed: version, sources, patches, which
  signature inputs changed (named as ``signature.explain`` names them) and
  whether the output (package tree digest) changed;
* files of the root filesystem added, removed and changed, with size deltas:
  from the two deployed ``.squashfs`` files (``unsquashfs -lln`` lists them;
  files of equal size are compared by content with ``unsquashfs -cat``);
* kernel config symbols that changed (the manifests' ``kernel_config``);
* deployed files added, removed and changed.

Manifests of format 1 (no signature inputs, digests or kernel config) are
compared as far as they go.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import signature
from .fileio import sha256_file
from .reproduce import load_manifest, manifest_path


# --- recipes ----------------------------------------------------------------------------------
def _source_id(source) -> str:
    if not isinstance(source, dict):
        return str(source)
    if "url" in source:
        return str(source["url"])
    if "git" in source:
        return str(source["git"])
    return str(source.get("file", json.dumps(source, sort_keys=True)))


def _pin(source) -> str:
    """What pins a source's content: its sha256, a git rev."""
    if not isinstance(source, dict):
        return ""
    return str(source.get("rev") or source.get("sha256") or "")[:16]


def _text(source) -> str:
    pin = _pin(source)
    return _source_id(source) + (f" ({'rev' if isinstance(source, dict) and 'rev' in source else 'sha256'} {pin})"
                                 if pin else "")


def list_changes(a: list, b: list) -> dict[str, list[str]]:
    """Sources or patches added, removed, and changed (same name, other sha256 or rev)."""
    ia = {_source_id(x): x for x in a}
    ib = {_source_id(x): x for x in b}
    return {"added": [_text(ib[k]) for k in sorted(set(ib) - set(ia))],
            "removed": [_text(ia[k]) for k in sorted(set(ia) - set(ib))],
            "changed": [f"{k}: {_pin(ia[k]) or '-'} -> {_pin(ib[k]) or '-'}" for k in sorted(set(ia) & set(ib))
                        if json.dumps(ia[k], sort_keys=True) != json.dumps(ib[k], sort_keys=True)]}


def _values(entry: dict) -> dict:
    return (entry.get("sigdata") or {}).get("values") or {}


def recipe_changes(a: dict, b: dict) -> dict:
    """{"added": [...], "removed": [...], "changed": [...]} between two manifests' recipes."""
    ra = {r["name"]: r for r in a["recipes"]}
    rb = {r["name"]: r for r in b["recipes"]}
    added = [{"name": n, "version": rb[n].get("version")} for n in sorted(set(rb) - set(ra))]
    removed = [{"name": n, "version": ra[n].get("version")} for n in sorted(set(ra) - set(rb))]
    changed = []
    for name in sorted(set(ra) & set(rb)):
        x, y = ra[name], rb[name]
        tree = (x.get("tree_sha256"), y.get("tree_sha256"))
        if x.get("signature") == y.get("signature") and tree[0] == tree[1] and x.get("version") == y.get("version"):
            continue
        item: dict = {"name": name}
        if x.get("version") != y.get("version"):
            item["version"] = [x.get("version"), y.get("version")]
        else:
            item["version"] = x.get("version")
        for key, before, after in (("sources", x.get("sources"), y.get("sources")),
                                   ("patches", _values(x).get("patches"), _values(y).get("patches"))):
            changes = list_changes(before or [], after or [])
            if any(changes.values()):
                item[key] = changes
        if x.get("sigdata") and y.get("sigdata"):
            why = signature.explain(x["sigdata"], y["sigdata"])
            item["inputs"] = [] if why == "inputs unchanged but output missing" else why.split(", ")
        else:
            item["inputs"] = ["signature changed"] if x.get("signature") != y.get("signature") else []
        item["output"] = ("unknown" if None in tree else "changed" if tree[0] != tree[1] else "same")
        changed.append(item)
    return {"added": added, "removed": removed, "changed": changed}


# --- the root filesystem ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FsEntry:
    path: str          # absolute in the image: /bin/busybox
    kind: str          # the ls type character: - d l c b p s
    mode: str          # ls permission string, e.g. rwxr-xr-x
    owner: str         # uid/gid
    size: int          # files: bytes; else 0
    target: str = ""   # links
    device: str = ""   # devices: major,minor
    sha256: str = ""   # files, when known (a manifest's rootfs list)


_LINE = re.compile(r"^(?P<mode>[-dlcbps][-rwxsStT]{9})\s+(?P<owner>\d+/\d+)\s+"
                   r"(?P<size>\d+|\d+,\s*\d+)\s+\d{4}-\d\d-\d\d \d\d:\d\d (?P<path>.*)$")
_ROOT = "squashfs-root"


def parse_unsquashfs_listing(text: str) -> dict[str, FsEntry]:
    """path -> entry, from ``unsquashfs -lln`` output (the root itself left out)."""
    out: dict[str, FsEntry] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        path, target = m["path"], ""
        kind = m["mode"][0]
        if kind == "l" and " -> " in path:
            path, target = path.split(" -> ", 1)
        if path == _ROOT:
            continue
        if not path.startswith(_ROOT + "/"):
            continue
        path = path[len(_ROOT):]
        size, device = m["size"], ""
        if "," in size:
            device, size = re.sub(r"\s+", "", size), "0"
        out[path] = FsEntry(path, kind, m["mode"][1:], m["owner"], int(size) if kind == "-" else 0, target, device)
    return out


def _unsquashfs() -> str:
    tool = shutil.which("unsquashfs")
    if tool is None:
        raise FileNotFoundError("unsquashfs is not installed (squashfs-tools)")
    return tool


def list_squashfs(image: Path) -> dict[str, FsEntry]:
    proc = subprocess.run([_unsquashfs(), "-lln", str(image)], capture_output=True, text=True,
                          errors="surrogateescape")
    if proc.returncode != 0:
        raise ValueError(f"unsquashfs -lln {image}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return parse_unsquashfs_listing(proc.stdout)


def _content_sha256(image: Path, path: str) -> str | None:
    """sha256 of a regular file inside a squashfs image (``unsquashfs -cat``)."""
    h = hashlib.sha256()
    with subprocess.Popen([_unsquashfs(), "-cat", str(image), path.lstrip("/")], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(1 << 16), b""):   # type: ignore[union-attr]
            h.update(chunk)
    return h.hexdigest() if proc.returncode == 0 else None


# Comparing the content of equal-sized files runs unsquashfs per file: a bound.
CONTENT_CHECK_LIMIT = 5000


def compare_rootfs(a: dict[str, FsEntry], b: dict[str, FsEntry], a_image: Path | None = None,
                   b_image: Path | None = None) -> dict:
    """Entries added, removed and changed (size, mode, owner, type, link target, device, content)."""
    def brief(e: FsEntry) -> dict:
        out: dict = {"path": e.path, "type": e.kind, "size": e.size}
        if e.target:
            out["target"] = e.target
        return out

    added = [brief(b[p]) for p in sorted(set(b) - set(a))]
    removed = [brief(a[p]) for p in sorted(set(a) - set(b))]
    changed = []
    same_size = [p for p in sorted(set(a) & set(b)) if a[p] == b[p] and a[p].kind == "-"]
    content_checked = a_image is not None and b_image is not None and len(same_size) <= CONTENT_CHECK_LIMIT
    for path in sorted(set(a) & set(b)):
        x, y = a[path], b[path]
        what = [name for name, u, v in (("type", x.kind, y.kind), ("size", x.size, y.size),
                                         ("mode", x.mode, y.mode), ("owner", x.owner, y.owner),
                                         ("target", x.target, y.target), ("device", x.device, y.device)) if u != v]
        if not what and x.sha256 and y.sha256:
            what = ["content"] if x.sha256 != y.sha256 else []
        elif not what and x.kind == "-" and content_checked:
            assert a_image is not None and b_image is not None
            if _content_sha256(a_image, path) != _content_sha256(b_image, path):
                what = ["content"]
        if what:
            item = {"path": path, "changed": what, "size": [x.size, y.size], "delta": y.size - x.size}
            if "target" in what:
                item["target"] = [x.target, y.target]
            if "mode" in what:
                item["mode"] = [x.mode, y.mode]
            if "owner" in what:
                item["owner"] = [x.owner, y.owner]
            changed.append(item)
    total = [sum(e.size for e in a.values()), sum(e.size for e in b.values())]
    return {"available": True, "added": added, "removed": removed, "changed": changed, "size": total,
            "content_compared": content_checked}


def _squashfs_of(manifest: dict, deploy_dir: Path) -> tuple[Path | None, str]:
    names = sorted(n for n in manifest["files"] if n.endswith(".squashfs"))
    if not names:
        return None, "the image deploys no .squashfs"
    path = deploy_dir / names[0]
    if not path.is_file():
        return None, f"{path} is gone"
    if sha256_file(path) != manifest["files"][names[0]].get("sha256"):
        return None, f"{path} is not the file its manifest names (deployed again since?)"
    return path, ""


def listing_from_manifest(manifest: dict) -> dict[str, FsEntry] | None:
    """The manifest's ``rootfs`` file list (written by sbom.py at deploy), as entries; None without one."""
    items = manifest.get("rootfs")
    if not isinstance(items, list):
        return None
    out = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            return None
        kind = {"file": "-", "symlink": "l", "dir": "d", "directory": "d"}.get(str(item.get("type")), "?")
        out[item["path"]] = FsEntry(item["path"], kind, "", "", int(item.get("size") or 0) if kind == "-" else 0,
                                    str(item.get("target") or ""), "", str(item.get("sha256") or ""))
    return out


def rootfs_changes(a: dict, a_dir: Path, b: dict, b_dir: Path) -> dict:
    listed_a, listed_b = listing_from_manifest(a), listing_from_manifest(b)
    if listed_a is not None and listed_b is not None:
        result = compare_rootfs(listed_a, listed_b)
        result.update(source="manifest", content_compared=True)
        return result
    a_image, why_a = _squashfs_of(a, a_dir)
    b_image, why_b = _squashfs_of(b, b_dir)
    if a_image is None or b_image is None:
        return {"available": False, "why": why_a or why_b}
    try:
        listing_a, listing_b = list_squashfs(a_image), list_squashfs(b_image)
    except (OSError, ValueError) as exc:
        return {"available": False, "why": str(exc)}
    result = compare_rootfs(listing_a, listing_b, a_image, b_image)
    result["source"] = "squashfs"
    return result


# --- kernel config and deployed files ------------------------------------------------------------
def kernel_changes(a: dict, b: dict) -> dict:
    ka, kb = a.get("kernel_config"), b.get("kernel_config")
    if not ka and not kb:
        return {"available": False, "why": "neither image records a kernel config"}
    if not ka or not kb:
        return {"available": False, "why": f"only {'B' if not ka else 'A'} records a kernel config"}
    sa, sb = ka.get("symbols") or {}, kb.get("symbols") or {}
    changed = [{"symbol": s, "a": sa.get(s), "b": sb.get(s), "in_a": s in sa, "in_b": s in sb}
               for s in sorted(set(sa) | set(sb)) if (s in sa, sa.get(s)) != (s in sb, sb.get(s))]
    return {"available": True, "recipe": [ka.get("recipe"), kb.get("recipe")], "changed": changed}


def file_changes(a: dict, b: dict) -> dict:
    fa, fb = a["files"], b["files"]
    return {"added": [{"name": n, "size": fb[n].get("size")} for n in sorted(set(fb) - set(fa))],
            "removed": [{"name": n, "size": fa[n].get("size")} for n in sorted(set(fa) - set(fb))],
            "changed": [{"name": n, "size": [fa[n].get("size"), fb[n].get("size")],
                         "sha256": [fa[n].get("sha256"), fb[n].get("sha256")]}
                        for n in sorted(set(fa) & set(fb)) if fa[n].get("sha256") != fb[n].get("sha256")]}


# --- all of it ----------------------------------------------------------------------------------------
def load(arg: str | Path) -> tuple[dict, Path, Path]:
    """(manifest, its deploy dir, its path) for a deploy dir or manifest.json argument."""
    path = manifest_path(arg)
    return load_manifest(path), path.parent, path


def diff(a_arg: str | Path, b_arg: str | Path) -> dict:
    a, a_dir, a_path = load(a_arg)
    b, b_dir, b_path = load(b_arg)

    def head(m: dict, path: Path) -> dict:
        return {"manifest": str(path), "image": m["image"], "board": m["board"], "version": m.get("version"),
                "signature": m.get("signature"), "manifest_format": m.get("manifest_format", 1),
                "commit": (m.get("project") or {}).get("commit"), "dirty": (m.get("project") or {}).get("dirty")}

    return {"a": head(a, a_path), "b": head(b, b_path), "recipes": recipe_changes(a, b),
            "rootfs": rootfs_changes(a, a_dir, b, b_dir), "kernel_config": kernel_changes(a, b),
            "files": file_changes(a, b)}


def has_changes(result: dict) -> bool:
    r, fs, k, f = result["recipes"], result["rootfs"], result["kernel_config"], result["files"]
    return bool(r["added"] or r["removed"] or r["changed"] or f["added"] or f["removed"] or f["changed"]
                or (fs.get("available") and (fs["added"] or fs["removed"] or fs["changed"]))
                or (k.get("available") and k["changed"]))


def _delta(n: int) -> str:
    return f"{n:+d}"


def _kvalue(present: bool, value) -> str:
    return "(absent)" if not present else "is not set" if value is None else str(value)


def render_text(result: dict) -> str:
    lines: list[str] = []
    a, b = result["a"], result["b"]

    def ident(h: dict) -> str:
        commit = f", commit {h['commit'][:12]}{' (dirty)' if h.get('dirty') else ''}" if h.get("commit") else ""
        return f"{h['image']} {h['version']} for {h['board']}, signature {str(h['signature'])[:16]}{commit}"

    lines += [f"A: {ident(a)}", f"B: {ident(b)}"]
    r = result["recipes"]
    lines.append(f"recipes: {len(r['added'])} added, {len(r['removed'])} removed, {len(r['changed'])} changed")
    lines += [f"  + {x['name']} {x['version']}" for x in r["added"]]
    lines += [f"  - {x['name']} {x['version']}" for x in r["removed"]]
    for x in r["changed"]:
        version = f"{x['version'][0]} -> {x['version'][1]}" if isinstance(x["version"], list) else x["version"]
        why = "; ".join(x["inputs"]) or "same inputs"
        lines.append(f"  ~ {x['name']} {version}: {why}; output {x['output']}")
        for key in ("sources", "patches"):
            for sign, what in (("+", "added"), ("-", "removed"), ("~", "changed")):
                lines += [f"      {key[:-1]} {sign} {item}" for item in x.get(key, {}).get(what, [])]
    fs = result["rootfs"]
    if not fs.get("available"):
        lines.append(f"root filesystem: not compared ({fs.get('why')})")
    else:
        total = fs["size"]
        lines.append(f"root filesystem: {len(fs['added'])} added, {len(fs['removed'])} removed, "
                     f"{len(fs['changed'])} changed; file bytes {total[0]} -> {total[1]} "
                     f"({_delta(total[1] - total[0])})")
        lines += [f"  + {e['path']}" + (f" -> {e['target']}" if e.get("target") else f"  {e['size']}")
                  for e in fs["added"]]
        lines += [f"  - {e['path']}" + (f" -> {e['target']}" if e.get("target") else f"  {e['size']}")
                  for e in fs["removed"]]
        for e in fs["changed"]:
            detail = f"  {e['size'][0]} -> {e['size'][1]} ({_delta(e['delta'])})"
            if "target" in e:
                detail += f"  link {e['target'][0]} -> {e['target'][1]}"
            if "mode" in e:
                detail += f"  mode {e['mode'][0]} -> {e['mode'][1]}"
            if "owner" in e:
                detail += f"  owner {e['owner'][0]} -> {e['owner'][1]}"
            lines.append(f"  ~ {e['path']}{detail}  [{', '.join(e['changed'])}]")
        if not fs.get("content_compared"):
            lines.append("  (files of equal size not compared by content)")
    k = result["kernel_config"]
    if not k.get("available"):
        lines.append(f"kernel config: not compared ({k.get('why')})")
    else:
        lines.append(f"kernel config: {len(k['changed'])} symbols changed")
        lines += [f"  {c['symbol']}: {_kvalue(c['in_a'], c['a'])} -> {_kvalue(c['in_b'], c['b'])}"
                  for c in k["changed"]]
    f = result["files"]
    lines.append(f"deployed files: {len(f['added'])} added, {len(f['removed'])} removed, {len(f['changed'])} changed")
    lines += [f"  + {x['name']}  {x['size']}" for x in f["added"]]
    lines += [f"  - {x['name']}  {x['size']}" for x in f["removed"]]
    lines += [f"  ~ {x['name']}  {x['size'][0]} -> {x['size'][1]} ({_delta((x['size'][1] or 0) - (x['size'][0] or 0))})"
              for x in f["changed"]]
    return "\n".join(lines) + "\n"


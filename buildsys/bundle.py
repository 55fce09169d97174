"""Update bundles: the new contents of an A/B slot, signed with the product key.

A bundle is a POSIX ustar archive (docs/updates.md, "Bundles and the updater"):

    manifest.json          what the bundle holds (below)
    manifest.json.minisig  minisign signature of manifest.json (minisign.py)
    esp.vfat               the slot's ESP (the UKI at the removable-media path)
    root.img               the slot's root: squashfs + dm-verity hash tree

The structure is SWUpdate's (a signed description first, then the images, so
a device can check the signature before it reads an image, and can stream the
images with ``tar -xO``); the signature format is minisign's, whose verifier
is ~170 KB on the device (recipes/minisign), where RAUC's would bring GLib,
D-Bus and OpenSSL.

manifest.json is JSON with sorted keys and one-space indentation, so that each
top-level key is a line ``^ "key": value`` and each image's keys are lines of
the ``images`` block: the device's updater (busybox sh, no JSON parser) reads
it with sed, and that line shape is part of format 1.  The archive is
reproducible: entries in a fixed order, mtime SOURCE_DATE_EPOCH, uid/gid 0,
no user/group names, mode 0644; the same deploy outputs give the same bytes,
the signature too (Ed25519 is deterministic) when the key is the same.

The bundle is made from an image's deploy outputs after the build, so it
shapes no artifact (signature.py lists it as not output-shaping).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from . import minisign
from .errors import UserError, Where

FORMAT = 1
# Bundle member, the slot partition it is written to, and the deploy output it comes from.
IMAGES = (("esp", "esp.vfat", ".esp.vfat"), ("root", "root.img", ".root.img"))
_CHUNK = 1 << 20
# What the device's sed-based reader accepts in a value (checked here, so a
# bundle it would refuse is never written).
_SAFE_VALUE = re.compile(r"[A-Za-z0-9._+:/@-]+")


@dataclass(frozen=True)
class Inputs:
    """An A/B image's deploy outputs: <deploy>/<stem>.{esp.vfat,root.img,slot.json} and manifest.json."""
    deploy: Path
    stem: str

    def path(self, suffix: str) -> Path:
        return self.deploy / f"{self.stem}{suffix}"


def _open_regular(path: Path):
    """A deploy output, opened without following a link; must be a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise UserError("missing deploy output", Where(str(path)),
                        hint="build an image with ab_slots (e.g. image-base-ab)") from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", Where(str(path)),
                        hint="a deploy output must be a regular file") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise UserError("not a regular file", Where(str(path)), hint="a deploy output must be a regular file")
    return f


def _read_json(path: Path) -> dict:
    with _open_regular(path) as f:
        data = f.read()
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"not JSON: {exc}", Where(str(path))) from None
    if not isinstance(value, dict):
        raise UserError("expected a JSON object", Where(str(path)))
    return value


def _hash(path: Path) -> tuple[str, int]:
    with _open_regular(path) as f:
        h = hashlib.sha256()
        size = 0
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _find(value, key: str):
    """The first value of ``key`` anywhere in nested dicts (depth first, sorted keys)."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        for k in sorted(value):
            found = _find(value[k], key)
            if found is not None:
                return found
    return None


def _safe(value, what: str, where: Where) -> str:
    text = str(value) if value is not None else ""
    if not _SAFE_VALUE.fullmatch(text):
        raise UserError(f"{what} '{text[:60]}' is not usable in a bundle", where,
                        hint="letters, digits and . _ + : / @ - only")
    return text


def make_manifest(inputs: Inputs) -> dict:
    """manifest.json's content from the deploy outputs (hashing the images)."""
    slot_path = inputs.path(".slot.json")
    slot = _read_json(slot_path)
    build = _read_json(inputs.deploy / "manifest.json")
    where = Where(str(slot_path))
    image, board = build.get("image"), build.get("board")
    if image and board and not inputs.stem == f"{image}-{board}":
        raise UserError(f"manifest.json describes {image} on {board}, not {inputs.stem}",
                        Where(str(inputs.deploy / "manifest.json")),
                        hint="build the image again: the deploy dir holds another image's manifest")
    compatible = _safe(slot.get("compatible") or f"{board}/{image}", "compatible", where)
    version = _safe(slot.get("version") or build.get("version"), "version", where)
    images = []
    for name, member, suffix in IMAGES:
        sha256, size = _hash(inputs.path(suffix))
        recorded = slot.get(name) if isinstance(slot.get(name), dict) else None
        if recorded is None and isinstance(slot.get("images"), dict):
            recorded = slot["images"].get(name)
        if isinstance(recorded, dict) and recorded.get("sha256") not in (None, sha256):
            raise UserError(f"{inputs.path(suffix).name} does not match the sha256 the image build recorded",
                            where, hint="the deploy dir was changed after the build: build the image again")
        entry = {"name": name, "file": member, "partition": name, "sha256": sha256, "size": size}
        if name == "root":
            root_hash = _find(slot, "verity_root_hash") or _find(slot, "root_hash")
            if root_hash is None:
                raise UserError("no verity root hash (verity_root_hash) in the slot description", where)
            entry["verity_root_hash"] = _safe(root_hash, "verity root hash", where)
        images.append(entry)
    return {"format": FORMAT, "compatible": compatible, "version": version, "images": images, "build": build}


def manifest_bytes(manifest: dict) -> bytes:
    """Canonical JSON: sorted keys, one-space indentation, ASCII, a final newline."""
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _HashingReader(io.RawIOBase):
    """Reads a file for tarfile while hashing it: what goes into the bundle is
    what the manifest says, or the bundle is not written."""

    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def readable(self):
        return True

    def readinto(self, b):
        data = self.f.read(len(b))
        b[:len(data)] = data
        self.h.update(data)
        self.n += len(data)
        return len(data)


def write(inputs: Inputs, out: Path, key: minisign.SecretKey, mtime: int) -> dict:
    """Write the bundle to ``out`` (atomically: a temp file renamed into place); the manifest."""
    manifest = make_manifest(inputs)
    text = manifest_bytes(manifest)
    comment = f"buildsys bundle {manifest['compatible']} {manifest['version']}"
    signature = key.sign(text, comment, "signature of manifest.json by buildsys").encode()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write the bundle: {exc.strerror}", Where(str(out))) from None
    try:
        with os.fdopen(fd, "wb") as raw, \
                tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(_info("manifest.json", len(text), mtime), io.BytesIO(text))
            tar.addfile(_info("manifest.json.minisig", len(signature), mtime), io.BytesIO(signature))
            for (_name, member, suffix), entry in zip(IMAGES, manifest["images"], strict=True):
                with _open_regular(inputs.path(suffix)) as f:
                    reader = _HashingReader(f)
                    try:
                        tar.addfile(_info(member, entry["size"], mtime), io.BufferedReader(reader, _CHUNK))
                    except OSError:     # tarfile: "unexpected end of data" (the file shrank)
                        pass
                    if (reader.h.hexdigest(), reader.n) != (entry["sha256"], entry["size"]):
                        raise UserError(f"{inputs.path(suffix).name} changed while the bundle was written",
                                        Where(str(inputs.path(suffix))), hint="run buildsys bundle again")
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return manifest


def read_manifest(bundle: Path, keys: list[minisign.PublicKey]) -> tuple[dict, str]:
    """A bundle's manifest, checked against any of ``keys`` (as the device
    does): (manifest, trusted comment); UserError when it does not verify."""
    where = Where(str(bundle))
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            names = tar.getnames()
            if names[:2] != ["manifest.json", "manifest.json.minisig"]:
                raise UserError("not a bundle: manifest.json and its signature must come first", where)
            text = tar.extractfile("manifest.json").read()          # type: ignore[union-attr]
            sig = tar.extractfile("manifest.json.minisig").read()   # type: ignore[union-attr]
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"not a bundle: {exc}", where) from None
    errors = []
    for key in keys:
        try:
            comment = key.verify(text, sig.decode("utf-8", "replace"))
            return json.loads(text), comment
        except (minisign.BadSignature, minisign.FormatError) as exc:
            errors.append(str(exc))
    raise UserError("not signed by a trusted key" + (f" ({errors[0]})" if errors else " (no keys)"), where)

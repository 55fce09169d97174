"""Signed cache entries: ed25519 over an entry's JSON, as Nix signs its binary caches.

Keys are Nix's format, one line each:

    public:  NAME:BASE64(32-byte ed25519 public key)
    secret:  NAME:BASE64(32-byte seed + 32-byte public key)   (`buildsys key new`, mode 0600)

(`nix-store --generate-binary-cache-key` writes the same secret format.)

What is signed is the entry's JSON -- sha256, size and key of the archive,
and the package's metadata -- in canonical form: without the ``signatures``
field, keys sorted, no spaces.  The sha256 and size pin the archive's bytes;
the key pins the signature the entry answers for, so a signed entry cannot be
replayed under another one.  The JSON carries the signatures::

    "signatures": [{"key": "ci-1", "sig": "BASE64(64 bytes)"}]

Signing is metadata on a cache entry: it never enters a cache key.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import UserError, Where

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}$")
NAME_HINT = "a key name is letters, digits and . _ + @ - (at most 64), e.g. ci-1 or alice@laptop"
SECRET_LIMIT = 4096         # a key file larger than this is not a key


class KeyError_(ValueError):
    """Key text that does not parse (the message says why)."""


@dataclass(frozen=True)
class PublicKey:
    name: str
    key: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        return self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def line(self) -> str:
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: Ed25519PrivateKey

    def public(self) -> PublicKey:
        return PublicKey(self.name, self.key.public_key())

    def line(self) -> str:
        seed = self.key.private_bytes_raw()
        return f"{self.name}:{base64.b64encode(seed + self.public().raw).decode()}"

    def sign(self, meta: dict) -> dict:
        """A signature entry for ``meta`` (a cache entry's JSON)."""
        return {"key": self.name, "sig": base64.b64encode(self.key.sign(canonical(meta))).decode()}


def _split(text: str, what: str) -> tuple[str, bytes]:
    text = text.strip()
    name, sep, data = text.partition(":")
    if not sep:
        raise KeyError_(f"{what} '{_shown(text)}' is not NAME:BASE64")
    if not NAME.match(name):
        raise KeyError_(f"bad key name '{_shown(name)}' ({NAME_HINT})")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_(f"{what} '{_shown(text)}': the part after ':' is not base64") from None
    return name, raw


def _shown(text: str) -> str:
    """Key text for a message: short, printable (never a whole secret)."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 24 else text[:20] + "..."


def parse_public(text: str) -> PublicKey:
    name, raw = _split(text, "public key")
    if len(raw) != 32:
        raise KeyError_(f"public key '{name}' has {len(raw)} bytes, an ed25519 public key has 32")
    return PublicKey(name, Ed25519PublicKey.from_public_bytes(raw))


def parse_secret(text: str) -> SecretKey:
    name, raw = _split(text, "secret key")
    if len(raw) != 64:
        raise KeyError_(f"secret key '{name}' has {len(raw)} bytes, expected 64 (seed and public key)")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    secret = SecretKey(name, key)
    if secret.public().raw != raw[32:]:
        raise KeyError_(f"secret key '{name}': its public half does not belong to its seed (a damaged file?)")
    return secret


def new_key(name: str) -> SecretKey:
    if not NAME.match(name):
        raise KeyError_(f"bad key name '{_shown(name)}' ({NAME_HINT})")
    return SecretKey(name, Ed25519PrivateKey.generate())


def load_secret(path: Path, named_at: Where | None = None) -> SecretKey:
    """The secret key in file ``path``; a UserError (the file's position, or
    where it is named when it cannot be read) when it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(SECRET_LIMIT + 1)
    except OSError as exc:
        raise UserError(f"cannot read signing key {path}: {exc.strerror}", named_at,
                        hint="`buildsys key new NAME` makes one") from None
    if len(data) > SECRET_LIMIT:
        raise UserError(f"{path} is not a signing key (more than {SECRET_LIMIT} bytes)", Where(str(path), 1, 1))
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a signing key (not text)", Where(str(path), 1, 1)) from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise UserError(f"{path} is not a signing key (expected one line NAME:BASE64)", Where(str(path), 1, 1),
                        hint="`buildsys key new NAME` makes one")
    line_no = text.splitlines().index(lines[0]) + 1
    try:
        return parse_secret(lines[0])
    except KeyError_ as exc:
        col = len(lines[0]) - len(lines[0].lstrip()) + 1
        raise UserError(str(exc), Where(str(path), line_no, col),
                        hint="a public key (from `buildsys key show`) is not a signing key") from None


def canonical(meta: dict) -> bytes:
    """The bytes a signature covers: the JSON without its signatures, keys sorted, no spaces."""
    body = {k: v for k, v in meta.items() if k != "signatures"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class Trust:
    """The public keys a consumer trusts (several keys may share a name: a rotation)."""

    def __init__(self, keys: list[PublicKey] = ()):     # type: ignore[assignment]
        self.keys: dict[str, list[PublicKey]] = {}
        for key in keys:
            self.add(key)

    def add(self, key: PublicKey) -> None:
        known = self.keys.setdefault(key.name, [])
        if key.raw not in (k.raw for k in known):
            known.append(key)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def check(self, meta: dict) -> str | None:
        """None when a trusted key signed ``meta``; else why it may not be used."""
        sigs = meta.get("signatures")
        if not sigs:
            return "unsigned"
        if not isinstance(sigs, list) or not all(isinstance(s, dict) for s in sigs):
            return "its signatures field is malformed"
        body = canonical(meta)
        names, bad = [], []
        for entry in sigs:
            name, sig = entry.get("key"), entry.get("sig")
            if not isinstance(name, str) or not isinstance(sig, str):
                return "its signatures field is malformed"
            if name not in self.keys:
                names.append(_shown(name))
                continue
            try:
                raw = base64.b64decode(sig, validate=True)
            except (binascii.Error, ValueError):
                bad.append(name)
                continue
            for key in self.keys[name]:
                try:
                    key.key.verify(raw, body)
                    return None
                except InvalidSignature:
                    continue
            bad.append(name)
        if bad:
            return (f"the signature by trusted key '{bad[0]}' does not verify "
                    "(the entry changed after it was signed, or another key has that name)")
        return f"signed only by keys not in trusted_keys ({', '.join(names)})"

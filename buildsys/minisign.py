"""minisign's key and signature formats (https://jedisct1.github.io/minisign/),
written and checked with ``cryptography``'s Ed25519 and hashlib's BLAKE2b, so
that what buildsys signs on the host the ``minisign`` tool checks on the
device (recipes/minisign), and a key made by either works with the other.

The formats (minisign 0.11/0.12, src/minisign.h):

- public key file: ``untrusted comment: ...`` then base64 of
  ``"Ed" | key id (8 bytes) | Ed25519 public key (32)``;
- secret key file: ``untrusted comment: ...`` then base64 of
  ``"Ed" | kdf "\\0\\0" (unencrypted) or "Sc" | "B2" | salt (32) | opslimit (u64 LE) |
  memlimit (u64 LE) | key id (8) | Ed25519 secret key (64: seed + public) |
  BLAKE2b-256("Ed" | key id | secret key)``;
- signature file: ``untrusted comment: ...``, base64 of ``"ED" | key id |
  Ed25519(BLAKE2b-512(message))``, ``trusted comment: TEXT``, base64 of
  ``Ed25519(signature | TEXT)`` (the global signature, which makes the trusted
  comment part of what is signed).

Only prehashed ("ED") signatures are written, as minisign >= 0.11 does by
default; legacy "Ed" signatures (over the message itself) are also checked.
Encrypted secret keys are refused: decrypting one means scrypt with minisign's
"sensitive" limits (1 GiB of memory) and a password prompt, neither of which
suits a build; ``buildsys key new --kind update`` and ``minisign -G -W`` write
unencrypted keys (protect the file instead: mode 0600, outside the project).

Ed25519 signatures are deterministic: the same key, message and trusted
comment give the same signature file, byte for byte.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, Where

SIGALG = b"Ed"
SIGALG_HASHED = b"ED"
KDF_NONE = b"\0\0"
KDF_SCRYPT = b"Sc"
CHKALG = b"B2"
COMMENT_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "
TRUSTED_MAX = 8192 - len(TRUSTED_PREFIX)   # minisign's TRUSTEDCOMMENTMAXBYTES, with the prefix
_SECRET_LEN = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32
_PUBLIC_LEN = 2 + 8 + 32
_SIG_LEN = 2 + 8 + 64


class FormatError(ValueError):
    """A key or signature file that is not minisign's format (the message says what is wrong)."""


class BadSignature(ValueError):
    """A well-formed signature that does not verify (wrong key, changed message or comment)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, length: int, what: str) -> bytes:
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what}: not base64") from None
    if len(data) != length:
        raise FormatError(f"{what}: {len(data)} bytes, expected {length} (truncated, or another format?)")
    return data


def _lines(text: str, count: int, what: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) < count or not all(lines[:count]):
        raise FormatError(f"{what}: expected {count} lines")
    return lines


def key_id_hex(key_id: bytes) -> str:
    """The key id as minisign prints it: 16 upper-case hex digits of the
    little-endian u64 (so the bytes appear reversed)."""
    return f"{struct.unpack('<Q', key_id)[0]:016X}"


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes   # 8 bytes
    raw: bytes      # 32 bytes of Ed25519 public key

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """A public key file (comment + base64 line) or the base64 line alone (``minisign -P``)."""
        lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
        if not lines:
            raise FormatError("public key: empty")
        if lines[0].startswith(COMMENT_PREFIX):
            lines = lines[1:]
        elif len(lines) > 1:
            raise FormatError(f"public key: the first line must start with '{COMMENT_PREFIX}'")
        if len(lines) != 1:
            raise FormatError("public key: expected one base64 line after the comment")
        data = _unb64(lines[0], _PUBLIC_LEN, "public key")
        if data[:2] != SIGALG:
            raise FormatError(f"public key: algorithm {data[:2]!r}, expected {SIGALG!r}")
        return cls(data[2:10], data[10:])

    def line(self) -> str:
        """The base64 line (what ``minisign -P`` takes)."""
        return _b64(SIGALG + self.key_id + self.raw)

    def text(self) -> str:
        """The public key file's contents."""
        return f"{COMMENT_PREFIX}minisign public key {key_id_hex(self.key_id)}\n{self.line()}\n"

    def verify(self, message: bytes, signature_text: str) -> str:
        """Check a signature file over ``message``: the trusted comment, or BadSignature/FormatError."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        sig = Signature.parse(signature_text)
        if sig.key_id != self.key_id:
            raise BadSignature(f"signed by key {key_id_hex(sig.key_id)}, not by {key_id_hex(self.key_id)}")
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        signed = hashlib.blake2b(message).digest() if sig.algorithm == SIGALG_HASHED else message
        try:
            key.verify(sig.signature, signed)
        except InvalidSignature:
            raise BadSignature("the signature does not match the message") from None
        try:
            key.verify(sig.global_signature, sig.signature + sig.trusted_comment.encode())
        except InvalidSignature:
            raise BadSignature("the trusted comment was changed (global signature does not verify)") from None
        return sig.trusted_comment


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes   # 8 bytes
    seed: bytes     # 32 bytes: the Ed25519 private key (libsodium's sk = seed | public key)

    @classmethod
    def generate(cls) -> SecretKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(os.urandom(8), seed)

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        lines = _lines(text, 2, "secret key")
        if not lines[0].startswith(COMMENT_PREFIX):
            raise FormatError(f"secret key: the first line must start with '{COMMENT_PREFIX}'")
        data = _unb64(lines[1], _SECRET_LEN, "secret key")
        sig_alg, kdf_alg, chk_alg = data[0:2], data[2:4], data[4:6]
        if sig_alg != SIGALG or chk_alg != CHKALG:
            raise FormatError(f"secret key: algorithms {sig_alg!r}/{chk_alg!r}, expected {SIGALG!r}/{CHKALG!r}")
        if kdf_alg == KDF_SCRYPT:
            raise FormatError("secret key: encrypted with a password, which buildsys cannot prompt for "
                              "(make the key with 'buildsys key new --kind update' or 'minisign -G -W')")
        if kdf_alg != KDF_NONE:
            raise FormatError(f"secret key: unknown key derivation {kdf_alg!r}")
        keynum_sk = data[54:]
        key_id, sk, chk = keynum_sk[:8], keynum_sk[8:72], keynum_sk[72:]
        # minisign 0.11/0.12 leave the checksum of an unencrypted key zero
        # (it is only computed when encrypting); a set one must match.
        if chk != bytes(32) and hashlib.blake2b(sig_alg + key_id + sk, digest_size=32).digest() != chk:
            raise FormatError("secret key: checksum mismatch (the file is damaged)")
        key = cls(key_id, sk[:32])
        if key.public().raw != sk[32:]:
            raise FormatError("secret key: its public half does not belong to its private half")
        return key

    def _private(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return PublicKey(self.key_id, self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def text(self) -> str:
        """The secret key file's contents (unencrypted, as ``minisign -G -W`` writes it)."""
        sk = self.seed + self.public().raw
        chk = hashlib.blake2b(SIGALG + self.key_id + sk, digest_size=32).digest()
        data = SIGALG + KDF_NONE + CHKALG + bytes(32) + struct.pack("<QQ", 0, 0) + self.key_id + sk + chk
        return f"{COMMENT_PREFIX}minisign secret key {key_id_hex(self.key_id)}\n{_b64(data)}\n"

    def sign(self, message: bytes, trusted_comment: str, untrusted_comment: str = "signature from buildsys") -> str:
        """A prehashed ("ED") signature file over ``message``."""
        for name, text in (("trusted comment", trusted_comment), ("untrusted comment", untrusted_comment)):
            if "\n" in text or "\r" in text:
                raise ValueError(f"the {name} must be one line")
        if len(trusted_comment.encode()) >= TRUSTED_MAX:
            raise ValueError("the trusted comment is too long for minisign")
        key = self._private()
        signature = key.sign(hashlib.blake2b(message).digest())
        global_signature = key.sign(signature + trusted_comment.encode())
        return (f"{COMMENT_PREFIX}{untrusted_comment}\n{_b64(SIGALG_HASHED + self.key_id + signature)}\n"
                f"{TRUSTED_PREFIX}{trusted_comment}\n{_b64(global_signature)}\n")


@dataclass(frozen=True)
class Signature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes

    @classmethod
    def parse(cls, text: str) -> Signature:
        lines = _lines(text, 4, "signature")
        if not lines[0].startswith(COMMENT_PREFIX):
            raise FormatError(f"signature: the first line must start with '{COMMENT_PREFIX}'")
        data = _unb64(lines[1], _SIG_LEN, "signature")
        if data[:2] not in (SIGALG, SIGALG_HASHED):
            raise FormatError(f"signature: algorithm {data[:2]!r}, expected {SIGALG_HASHED!r}")
        if not lines[2].startswith(TRUSTED_PREFIX):
            raise FormatError(f"signature: the third line must start with '{TRUSTED_PREFIX}'")
        return cls(data[:2], data[2:10], data[10:], lines[2][len(TRUSTED_PREFIX):],
                   _unb64(lines[3], 64, "global signature"))


def _read_key_file(path: Path, where: Where) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(16384)
        return data.decode("utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the key file {path}: {exc.strerror}", where) from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a minisign key file (not text)", where) from None


def load_public(path: Path, where: Where) -> PublicKey:
    try:
        return PublicKey.parse(_read_key_file(path, where))
    except FormatError as exc:
        raise UserError(f"{path}: not a minisign public key: {exc}", where,
                        hint="a .pub file from `buildsys key new NAME --kind update` or `minisign -G`") from None


def load_secret(path: Path, where: Where) -> SecretKey:
    try:
        return SecretKey.parse(_read_key_file(path, where))
    except FormatError as exc:
        raise UserError(f"{path}: not a usable minisign secret key: {exc}", where,
                        hint="a .key file from `buildsys key new NAME --kind update`") from None


def project_keys(root: Path, settings: dict, settings_where: dict) -> list[tuple[Path, PublicKey]]:
    """The project's ``update_keys``: (file, key) each, files relative to the project root."""
    where = settings_where.get("update_keys") or Where(str(root / "buildsys.yaml"))
    out = []
    for item in settings.get("update_keys") or []:
        path = Path(os.path.expanduser(str(item)))
        out.append((path, load_public(path if path.is_absolute() else root / path, where)))
    return out


def keys_variable(root: Path, settings: dict, settings_where: dict) -> str:
    """``${update_keys}`` for recipes: ``KEYID:BASE64`` per key, space separated
    (shell-safe: hex and base64 characters only), so that the update-client
    recipe installs /etc/update/keys/KEYID.pub and a new key rebuilds it."""
    return " ".join(f"{key_id_hex(k.key_id)}:{k.line()}" for _, k in project_keys(root, settings, settings_where))

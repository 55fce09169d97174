"""The developer's SSH public keys: the ``ssh_authorized_keys`` project setting
(local.yaml -- per machine, never committed) and ``BUILDSYS_SSH_AUTHORIZED_KEYS``
(the path of a .pub or authorized_keys file).

Both are checked line by line as OpenSSH would read them (type, base64 blob
whose first field repeats the type, optional comment), so a pasted private key
or a truncated line is a one-line error at its position, not an image nobody
can log in to.  The keys reach the ``ssh-authorized-keys`` recipe as the
``${ssh_authorized_keys}`` variable (resolve.py), so they are in its values
and therefore in its signature: a new key rebuilds the image, the same key
reuses it.
"""
from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path

from .errors import UserError, Where

ENV_VAR = "BUILDSYS_SSH_AUTHORIZED_KEYS"
# What dropbear 2025.89 accepts in authorized_keys (DSS is off by default).
KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)
HINT = "one OpenSSH public key per line, e.g. the contents of ~/.ssh/id_ed25519.pub"


def check_key(line: str) -> str:
    """The key line, stripped; ValueError saying what is wrong with it."""
    text = line.strip()
    if "\n" in text or "\r" in text:
        raise ValueError("several lines in one key")
    if text.startswith("-----BEGIN"):
        raise ValueError("this is a private key, not a public one")
    parts = text.split(None, 2)
    if not parts:
        raise ValueError("empty key")
    if parts[0] not in KEY_TYPES:
        if any(f" {t} " in f" {text} " for t in KEY_TYPES):
            raise ValueError("authorized_keys options before the key type are not supported")
        raise ValueError(f"unknown key type '{parts[0][:40]}'")
    if len(parts) < 2:
        raise ValueError(f"no key data after '{parts[0]}'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key data is not base64 (truncated or wrapped?)") from None
    kind = parts[0].encode()
    if len(blob) < 4 + len(kind) or struct.unpack(">I", blob[:4])[0] != len(kind) or blob[4:4 + len(kind)] != kind:
        raise ValueError(f"the key data is not a {parts[0]} key (truncated or pasted from another key?)")
    return text


def check_setting(values: list, where_of) -> list[str]:
    """The setting's list, each item checked at its position (``where_of(i)``)."""
    out = []
    for i, item in enumerate(values):
        try:
            out.append(check_key(str(item)))
        except ValueError as e:
            raise UserError(f"ssh_authorized_keys: not an SSH public key: {e}", where_of(i), hint=HINT) from None
    return out


def read_file(path: str) -> list[str]:
    """The keys of an authorized_keys-style file (blank and # lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the SSH public key file {path}: {getattr(e, 'strerror', None) or e}",
                        Where(ENV_VAR), hint="set it to the path of a .pub file") from None
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(check_key(line))
        except ValueError as e:
            raise UserError(f"not an SSH public key: {e}", Where(path, n, 1), hint=HINT) from None
    if not keys:
        raise UserError("no SSH public key in this file", Where(path), hint=f"{ENV_VAR} names it; {HINT}")
    return keys


def project_keys(settings: dict, environ=os.environ) -> list[str]:
    """The project's keys (local.yaml), then the env var file's; no duplicates."""
    keys = list(settings.get("ssh_authorized_keys") or [])
    path = environ.get(ENV_VAR)
    if path:
        keys += read_file(path)
    return list(dict.fromkeys(keys))


def inputs_state(environ=os.environ) -> str:
    """What the no-op fast path (plancache) must notice: the env var and its file."""
    path = environ.get(ENV_VAR, "")
    if not path:
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}\0missing"
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"

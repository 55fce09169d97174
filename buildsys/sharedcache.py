"""The artifact cache a build uses: this machine's cache, in front of the
team's shared cache when the project names one (docs/shared-cache.md).

Reads go to the local cache first, then to the shared one; an entry from the
shared cache is used only when a trusted key signed its JSON (signing.py) and
the archive has the signed sha256 and size, and it is then written into the
local cache, so the next read is local.  ``contains`` (planning: restore or
build?) fetches and checks the JSON, so an entry that would be refused is
planned as a build, and the reason is said once, naming the recipe.

Writes go to the local cache, signed when this machine has a signing key, and
are pushed to the shared cache when it is read-write, ``push`` is not False
and a signing key is set.  The shared cache is an optimisation: a server that
is down, slow or broken, or refuses a PUT, costs one warning and a bounded
delay (cache.HttpCache), never a failed build.

Settings: ``shared_cache`` (env BUILDSYS_SHARED_CACHE wins; empty: none),
``shared_cache_mode``, ``trusted_keys`` (env BUILDSYS_TRUSTED_KEYS adds
space-separated keys), ``signing_key`` (local.yaml only; env
BUILDSYS_SIGNING_KEY wins).  The signing key's own public key is trusted too:
whoever holds the key trusts what it signed.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import CacheBackend, LocalCache, _HashingWriter, _Unavailable, encode_record, entry_record, open_cache
from .errors import UserError, Where

if TYPE_CHECKING:  # pragma: no cover
    # signing needs `cryptography`: imported only where keys are used, so a
    # build without a shared cache or keys runs where it is not installed
    # (the cross-host test's Debian 13 root, a minimal host).
    from . import signing

_PN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def _say(kind: str, message: str) -> None:
    print(f"{kind}: shared cache: {message}", file=sys.stderr)


class LayeredCache(CacheBackend):
    """A local cache in front of a shared one, with signature checks and pushes."""

    def __init__(self, local: CacheBackend, shared: CacheBackend, trust: signing.Trust,
                 signer: signing.SecretKey | None = None, push: bool = False):
        self.local = local
        self.shared = shared
        self.trust = trust
        self.signer = signer
        self.push = push and signer is not None
        self.label = f"{local.label} + {shared.label}"
        self._remote: dict[str, dict | None] = {}      # sig -> the verified JSON, or None (per process)

    # --- reads ---------------------------------------------------------------------------
    def contains(self, sig: str) -> bool:
        return self.local.contains(sig) or self._shared_meta(sig) is not None

    def get_meta(self, sig: str) -> dict | None:
        if self.local.contains(sig):
            meta = self.local.get_meta(sig)
            if meta is not None:
                return meta
        return self._shared_meta(sig)

    def get(self, sig: str, dest: Path) -> bool:
        if self.local.contains(sig) and self.local.get(sig, dest):
            return True
        meta = self._shared_meta(sig)
        if meta is None:
            return False
        if not self.shared.get_archive(sig, dest, meta, who=_who(sig, meta)):
            self._remote[sig] = None        # refused once: not planned again from the shared cache
            return False
        try:
            self.local.put_record(sig, dest, meta)      # verified: the next read is local
        except OSError as exc:
            print(f"warning: artifact cache: {self.local.label}: could not keep {sig}: {exc}", file=sys.stderr)
        return True

    def _shared_meta(self, sig: str) -> dict | None:
        """The shared cache's JSON for ``sig`` if a trusted key signed it (memoized)."""
        if sig in self._remote:
            return self._remote[sig]
        meta = None
        if self.trust:
            meta = self.shared.get_meta(sig)
            if meta is not None:
                reason = self.trust.check(meta)
                if reason is not None:
                    _say("warning", f"{_who(sig, meta)}: not used: {reason}; building it here")
                    meta = None
        self._remote[sig] = meta
        return meta

    def forget(self) -> None:
        """Ask the shared cache again (what others pushed since, e.g. a cluster's workers)."""
        self._remote.clear()

    # --- writes --------------------------------------------------------------------------
    def put(self, sig: str, archive: Path, meta: dict) -> None:
        record = entry_record(sig, archive, meta)
        if self.signer is not None:
            record["signatures"] = [self.signer.sign(record)]
        self.local.put_record(sig, archive, record)
        if self.push and getattr(self.shared, "down", None) is None:     # a dead server was warned about once
            try:
                self.shared._store(sig, Path(archive), encode_record(record))
            except (_Unavailable, OSError) as exc:
                self.push = False
                _say("warning", f"pushing to {self.shared.label} failed ({exc}): nothing more is pushed by this "
                                "build, which goes on")
            else:
                self._remote[sig] = record

    def push_entry(self, sig: str) -> str:
        """Sign and push the local cache's entry ``sig`` (`buildsys cache push`):
        "pushed", "there" (the shared cache has it, signed by a trusted key) or
        "absent" (not in the local cache).  Signing vouches for the local
        cache's content: it is this machine's, and its archive is verified
        against its JSON before it is sent.  _Unavailable when a PUT fails."""
        assert self.signer is not None
        meta = self.shared.get_meta(sig)
        if getattr(self.shared, "down", None) is not None:
            raise _Unavailable(self.shared.down)        # type: ignore[attr-defined]
        if meta is not None and self.trust.check(meta) is None:
            return "there"
        meta = self.local.get_meta(sig) if self.local.contains(sig) else None
        if meta is None:
            return "absent"
        with tempfile.TemporaryDirectory(prefix="buildsys-push-") as tmp:
            archive = Path(tmp) / f"{sig}.tar.lz4"
            if not self.local.get_archive(sig, archive, meta):
                return "absent"
            others = [s for s in meta.get("signatures") or []
                      if isinstance(s, dict) and s.get("key") != self.signer.name]
            record = dict(meta, signatures=others + [self.signer.sign(meta)])
            self.shared._store(sig, archive, encode_record(record))
        return "pushed"

    # The backend primitives: the local cache's (the public methods above are the stack's).
    def _read(self, name: str, out: _HashingWriter) -> bool:
        return self.local._read(name, out)

    def _store(self, sig: str, archive: Path, meta_bytes: bytes) -> None:
        self.local._store(sig, archive, meta_bytes)


def _who(sig: str, meta: dict) -> str:
    """The recipe an entry is for, for messages: its pn when the JSON has a plausible one."""
    pn = meta.get("pn")
    short = sig[:12]
    return f"{pn} ({short})" if isinstance(pn, str) and _PN.match(pn) else f"entry {short}"


# --- from the settings ----------------------------------------------------------------------

def artifact_cache(ws, push: bool | None = None) -> CacheBackend:
    """The cache stack for a workspace's builds.  ``push``: None as the
    settings say, False never (--no-push), True even when read-only."""
    settings, where, env = ws.project.settings, ws.project.settings_where, ws.environ
    local = open_cache(ws.paths.cache)
    spec = env["BUILDSYS_SHARED_CACHE"] if "BUILDSYS_SHARED_CACHE" in env else settings.get("shared_cache")
    if not spec or spec == "none":
        if settings.get("trusted_keys") or env.get("BUILDSYS_TRUSTED_KEYS"):
            trusted_keys(settings, where, env)      # checked anyway: a bad key is an error wherever it is
        return local
    trust = trusted_keys(settings, where, env)
    shared = _open_shared(str(spec), ws.project.root)
    signer = signing_key(ws)
    if signer is not None:
        trust.add(signer.public())
    if not trust:
        _say("warning", f"{shared.label}: no trusted_keys, so nothing from it can be used (every artifact must be "
                        "signed by a key you trust); see docs/shared-cache.md")
    mode = settings.get("shared_cache_mode") or "read-write"
    wants_push = push is True or (push is None and mode == "read-write")
    if wants_push and signer is None:
        _say("note", f"{shared.label} is read-write but no signing_key is set: nothing is pushed "
                     "(set signing_key in local.yaml, or shared_cache_mode: read-only)")
    return LayeredCache(local, shared, trust, signer, push=wants_push)


def _open_shared(spec: str, root: Path) -> CacheBackend:
    if spec.startswith(("http://", "https://")):
        return open_cache(spec)
    path = Path(spec.removeprefix("file://")).expanduser()
    # A directory (a NAS mount): its temp files are the writers' to clean, not every reader's.
    return LocalCache(path if path.is_absolute() else root / path, clean=False)


def trusted_keys(settings, where: dict[str, Where], env) -> signing.Trust:
    """trusted_keys of the project / local.yaml, plus BUILDSYS_TRUSTED_KEYS; bad text is a UserError."""
    from . import signing

    trust = signing.Trust()
    items = settings.get("trusted_keys") or []
    named = where.get("trusted_keys") or Where("buildsys.yaml")
    for i, text in enumerate(items):
        at = items.where(i) if hasattr(items, "where") else named
        try:
            trust.add(signing.parse_public(text))
        except signing.KeyError_ as exc:
            raise UserError(str(exc), at, hint="a trusted key is the line `buildsys key new` prints: "
                                               "NAME:BASE64") from None
    for text in (env.get("BUILDSYS_TRUSTED_KEYS") or "").split():
        try:
            trust.add(signing.parse_public(text))
        except signing.KeyError_ as exc:
            raise UserError(str(exc), Where("BUILDSYS_TRUSTED_KEYS"),
                            hint="space-separated NAME:BASE64 public keys") from None
    return trust


def signing_key(ws) -> signing.SecretKey | None:
    """This machine's signing key (BUILDSYS_SIGNING_KEY, else local.yaml's signing_key), or None."""
    from . import signing

    env = ws.environ
    if env.get("BUILDSYS_SIGNING_KEY"):
        path = Path(env["BUILDSYS_SIGNING_KEY"]).expanduser()
        return signing.load_secret(path.absolute(), Where("BUILDSYS_SIGNING_KEY"))
    value = ws.project.settings.get("signing_key")
    if not value:
        return None
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = ws.project.root / path
    return signing.load_secret(path, ws.project.settings_where.get("signing_key"))

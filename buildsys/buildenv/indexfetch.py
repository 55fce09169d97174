"""Fetching a suite's Packages.xz, verified through the suite's signed InRelease.

The InRelease file is checked with gpgv against Debian's archive keyring
(package debian-archive-keyring); the Packages.xz must then have the sha256
and size InRelease lists.  Only a verified index is kept (temp + rename).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import FetchError
from ..fileio import atomic_write

KEYRINGS = ("/usr/share/keyrings/debian-archive-keyring.gpg",)


def _get(url: str) -> bytes:
    from ..fetch import http

    response = http.session().get(url, timeout=(10, 120))
    if response.status_code != 200:
        raise FetchError(f"{url.rsplit('/dists/', 1)[-1]}: HTTP {response.status_code} from the Debian archive")
    return response.content


def _verified_release(text_signed: bytes, suite: str) -> str:
    keyring = next((k for k in KEYRINGS if os.path.isfile(k)), None)
    if keyring is None:
        raise FetchError("cannot check the archive's signature: no Debian archive keyring",
                         hint="apt-get install debian-archive-keyring gpgv")
    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / "InRelease"
        signed.write_bytes(text_signed)
        out = Path(tmp) / "Release"
        proc = subprocess.run(["gpgv", "--keyring", keyring, "--output", str(out), str(signed)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise FetchError(f"{suite}/InRelease: bad or missing signature (gpgv: "
                             f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})")
        return out.read_text(errors="replace")


def _listed(release: str, rel: str) -> tuple[str, int] | None:
    in_sha = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha = line.startswith("SHA256:")
            continue
        if in_sha:
            parts = line.split()
            if len(parts) == 3 and parts[2] == rel:
                return parts[0], int(parts[1])
    return None


def packages_index(base: str, suite: str, component: str, arch: str, dl_dir: Path, offline: bool) -> Path:
    dest = Path(dl_dir) / f"{suite}_{component}_binary-{arch}_Packages.xz"
    if offline:
        if dest.is_file():
            return dest
        raise FetchError(f"offline, and the {suite} package index is not in {dl_dir}")
    release = _verified_release(_get(f"{base}/dists/{suite}/InRelease"), suite)
    rel = f"{component}/binary-{arch}/Packages.xz"
    listed = _listed(release, rel)
    if listed is None:
        raise FetchError(f"{suite}/InRelease does not list {rel}")
    data = _get(f"{base}/dists/{suite}/{rel}")
    if (hashlib.sha256(data).hexdigest(), len(data)) != listed:
        raise FetchError(f"{suite}/{rel}: sha256 or size differs from the signed InRelease")
    Path(dl_dir).mkdir(parents=True, exist_ok=True)
    atomic_write(dest, data)
    return dest

"""Getting one verified file into the download dir: locking, mirrors, checksums, offline."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from filelock import FileLock

from ..errors import ChecksumError, FetchError, NetworkAccessError
from . import git
from .backends import DebianBackend, archive, backend_for
from .checksum import local_checksum, record_verified, sha256_file, verified
from .http import NotFound
from .source import FetchConfig, Source

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def local_path(source: Source) -> Path:
    return Path(unquote(urlsplit(source.url).path))


def fetch(source: Source, config: FetchConfig) -> Path:
    if source.is_local:
        path = local_path(source)
        if not path.exists():
            raise FetchError(f"{path}: no such file", source.where)
        if source.sha256:
            actual = local_checksum(path)
            if actual != source.sha256:
                raise ChecksumError(f"{path.name}: sha256 mismatch: expected {source.sha256}, got {actual}",
                                    source.where,
                                    hint=f"if the file is right, put this line in the recipe: sha256: {actual}")
        return path
    if source.scheme.startswith("git"):
        _check_name(source)
        return git.fetch(source, config.dl_dir, config.offline)
    return _fetch_file(source, config)


def is_fetched(source: Source, config: FetchConfig) -> bool:
    if source.is_local:
        return local_path(source).exists()
    if source.scheme.startswith("git"):
        if source.rev and git.FULL_SHA.match(source.rev):
            return ((config.dl_dir / source.name).exists()
                    or git._has_commit(git.mirror_dir(source, config.dl_dir), source.rev))
        return False
    return source.sha256 is not None and verified(config.dl_dir / source.name, source.sha256)


def fetch_many(sources, config: FetchConfig) -> dict:
    """Fetch every source; offline, one error lists everything that is missing."""
    sources = list(dict.fromkeys(sources))
    _check_clashes(sources)
    if config.offline:
        missing = [s for s in sources if not is_fetched(s, config)]
        if missing:
            names = ", ".join(f"{s.name} ({s.where or s.url})" for s in missing)
            raise NetworkAccessError(f"offline, and {len(missing)} source(s) are not in the download dir "
                                     f"{config.dl_dir}: {names}",
                                     hint="run 'buildsys fetch' with network access first")
    return {s: fetch(s, config) for s in sources}


def _check_clashes(sources) -> None:
    """Two different files under one name (GitHub's v1.0.tar.gz...) would overwrite each other."""
    seen: dict[str, Source] = {}
    for s in sources:
        if s.is_local:
            continue
        other = seen.setdefault(s.name, s)
        if other.sha256 != s.sha256:
            raise FetchError(f"two sources would be stored as '{s.name}' in the download dir: {other.url} "
                             f"({other.where or '?'}) and {s.url}", s.where,
                             hint="give one of them a distinct 'name:'")


def _candidates(source: Source, config: FetchConfig):
    """(label, url) in Buildroot's order: premirrors, upstream, mirrors."""
    def mirror(m):
        if m == "debian":
            return ("Debian archive (by sha256)", "debian-sha256:" + (source.sha256 or ""))
        return (f"mirror {m}", m.rstrip("/") + "/" + source.name)
    yield from (mirror(m) for m in config.premirrors)
    yield ("upstream", source.url)
    yield from (mirror(m) for m in config.mirrors)


def _check_name(source: Source) -> None:
    name = source.name
    if name in ("", ".", "..") or "/" in name or name.startswith(".") or "\0" in name:
        raise FetchError(f"'{name}' cannot be a file name in the download dir", source.where,
                         hint="give the source a plain 'name:'")


def _fetch_file(source: Source, config: FetchConfig) -> Path:
    _check_name(source)
    dl = config.dl_dir
    final = dl / source.name
    if source.sha256 is not None and not SHA256.match(source.sha256):
        raise FetchError(f"sha256 '{source.sha256}' is not 64 lowercase hex digits", source.where)
    if source.sha256 and verified(final, source.sha256):
        return final
    if config.offline and not any(url.startswith("file:") for _, url in _candidates(source, config)):
        if final.exists():
            raise NetworkAccessError(f"offline, and {final} does not have the recipe's sha256 {source.sha256} "
                                     "(it changed after it was fetched)", source.where,
                                     hint="delete it and run 'buildsys fetch' with network access")
        raise NetworkAccessError(f"offline, and {source.name} is not in the download dir {dl}", source.where)
    dl.mkdir(parents=True, exist_ok=True)
    (dl / ".locks").mkdir(exist_ok=True)
    with FileLock(str(dl / ".locks" / (source.name + ".lock"))):
        if source.sha256 and verified(final, source.sha256):
            return final          # another process fetched it while we waited
        if source.sha256 and final.exists():
            # Only a verified file is ever renamed to its final name: this one changed since.
            print(f"warning: {final} no longer has the recipe's sha256 (changed after it was fetched); "
                  "fetching it again", file=sys.stderr)
        return _download_verified(source, config, final)


def _download_verified(source: Source, config: FetchConfig, final: Path) -> Path:
    part = final.with_name(final.name + ".part")
    tried, mismatches = [], []
    for label, url in _candidates(source, config):
        if config.offline and not url.startswith("file:"):
            continue            # local mirrors only: they need no network
        if url.startswith("debian-sha256:"):
            if not source.sha256:
                continue
            try:
                located = archive(config).locate_sha256(source.sha256)
            except FetchError as exc:
                tried.append(f"{label}: {exc.message}")
                continue
            if located is None:
                tried.append(f"{label}: no file with this sha256")
                continue
            url = located.url
        for fresh_start in (False, True):
            if fresh_start:
                part.unlink(missing_ok=True)
            resumed = part.exists()
            try:
                backend = backend_for(url)
                if isinstance(backend, DebianBackend):
                    backend.download(url, part, config, source.sha256)
                else:
                    backend.download(url, part, config)
            except ChecksumError as exc:
                exc.where = exc.where or source.where
                part.unlink(missing_ok=True)
                raise
            except (NotFound, FetchError) as exc:
                tried.append(f"{label}: {exc.message}")
                break
            actual = sha256_file(part)
            if source.sha256 is None:
                part.unlink(missing_ok=True)
                raise FetchError(f"{source.url}: no sha256 given; the file has sha256 {actual}", source.where,
                                 hint=f"after checking it, add this line to the source: sha256: {actual}")
            if actual == source.sha256:
                os.replace(part, final)
                record_verified(final, actual)
                return final
            part.unlink(missing_ok=True)
            if not resumed:
                mismatches.append((url, actual))
                break
    if mismatches:
        url, actual = mismatches[0]
        raise ChecksumError(f"{source.name} from {url}: sha256 mismatch: expected {source.sha256}, got {actual}",
                            source.where,
                            hint="nothing was kept; if the new file is right, put this line in the recipe: "
                                 f"sha256: {actual}")
    if config.offline:
        raise NetworkAccessError(f"offline, and {source.name} is neither in the download dir {config.dl_dir} "
                                 f"nor in a local mirror: " + "; ".join(tried), source.where)
    raise FetchError(f"could not fetch {source.name}: " + "; ".join(tried), source.where,
                     hint="check the URL, or add a mirror (BUILDSYS_MIRRORS / 'mirrors:' in buildsys.yaml)")

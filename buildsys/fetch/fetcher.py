"""Getting one verified file into the download dir: locking, mirrors, checksums, offline."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from filelock import FileLock

from ..errors import ChecksumError, FetchError, NetworkAccessError
from . import git, http
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


# --- a source whose sha256 is not known yet (buildsys recipe new) ------------------------------
@dataclass(frozen=True)
class Learned:
    """A file downloaded to learn its sha256, and where its bytes came from."""

    path: Path
    sha256: str
    origin: str                                  # "upstream", "mirror <url>", "Debian archive (<pkg>/<file>)"
    debian: tuple[str, str, int] | None = None   # (package, file, rank) when found in the archive by name


def fetch_learning_sha256(source: Source, config: FetchConfig, project: str = "", version: str = "") -> Learned:
    """Download ``source`` (which has no sha256 yet) and hash it: the path
    ``buildsys recipe new`` takes to write a recipe's first sha256.

    The mirror order is the usual one; with no sha256 to look up, the Debian
    archive is searched by name instead: the orig tarballs of source packages
    named like ``project`` at ``version`` (``DebianArchive.locate_upstream``),
    each checked against the size and sha256 its index lists.  A file that is
    not the upstream file under its own name (another compression, a repack)
    is kept under the archive's file name, so it never poses as upstream's.
    The file is recorded as verified with the sha256 found, so the recipe's
    first fetch finds it in the download dir."""
    if source.is_local:
        path = local_path(source)
        if not path.is_file():
            raise FetchError(f"{path}: no such file", source.where)
        return Learned(path, sha256_file(path), "local file")
    _check_name(source)
    if config.offline:
        raise NetworkAccessError(f"offline: cannot download {source.url} to learn its sha256", source.where)
    dl = config.dl_dir
    dl.mkdir(parents=True, exist_ok=True)
    (dl / ".locks").mkdir(exist_ok=True)
    tried: list[str] = []
    for label, url in _candidates(source, config):
        if url.startswith("debian-sha256:"):
            learned = _learn_from_debian(source, config, project, version, tried)
            if learned is not None:
                return learned
            continue
        final = dl / source.name
        with FileLock(str(dl / ".locks" / (source.name + ".lock"))):
            part = final.with_name(final.name + ".part")
            part.unlink(missing_ok=True)     # no resume: nothing could tell a stale start from a good one
            try:
                backend_for(url).download(url, part, config)
            except (NotFound, FetchError) as exc:
                part.unlink(missing_ok=True)
                tried.append(f"{label}: {exc.message}")
                continue
            actual = sha256_file(part)
            os.replace(part, final)
            record_verified(final, actual)
        return Learned(final, actual, label)
    raise FetchError(f"could not fetch {source.name}: " + "; ".join(tried), source.where,
                     hint="check the URL (or --name/--version, which the Debian archive lookup uses), "
                          "or download the file and give its path")


def _learn_from_debian(source: Source, config: FetchConfig, project: str, version: str,
                       tried: list[str]) -> Learned | None:
    if not project or not version:
        tried.append("Debian archive: no name and version to look for")
        return None
    ext = source.name.rsplit(".tar.", 1)[1] if ".tar." in source.name else ""
    try:
        candidates = archive(config).locate_upstream(project, version, ext)
    except FetchError as exc:
        tried.append(f"Debian archive: {exc.message}")
        return None
    if not candidates:
        tried.append(f"Debian archive: no orig tarball of a source package named like '{project}' at "
                     f"version {version}")
        return None
    for package, filename, rank, located in candidates:
        # The upstream name only for what is upstream's file under Debian's name.
        name = source.name if rank == 0 else filename
        final = config.dl_dir / name
        with FileLock(str(config.dl_dir / ".locks" / (name + ".lock"))):
            part = final.with_name(final.name + ".part")
            part.unlink(missing_ok=True)
            try:
                http.download(located.url, part, config.progress, label=filename)
            except FetchError as exc:
                part.unlink(missing_ok=True)
                # The reason without the pool URL: the package and file name say where.
                tried.append(f"Debian archive {package}/{filename}: {exc.message.rsplit(': ', 1)[-1]}")
                continue
            actual = sha256_file(part)
            size = part.stat().st_size
            if actual != located.sha256 or size != located.size:
                part.unlink(missing_ok=True)
                tried.append(f"Debian archive {package}/{filename}: got sha256 {actual} ({size} bytes), the index "
                             f"lists {located.sha256} ({located.size} bytes)")
                continue
            os.replace(part, final)
            record_verified(final, actual)
        return Learned(final, actual, f"Debian archive ({package}/{filename})", (package, filename, rank))
    return None

"""The Debian archive as a source of upstream files: ``debian:`` URLs and lookup by sha256.

Files are located through the suites' ``Sources.xz`` indices, which are cached
in the download dir (``debian-index/``) and refreshed when a lookup misses and
the cached copy is older than a day.  A file found there is checked against the
index's sha256 and then, like every download, against the recipe's.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..errors import FetchError
from . import aptsources, http

SUITES = ("bookworm", "trixie", "sid", "bookworm-backports")
COMPONENTS = ("main", "non-free-firmware", "contrib", "non-free")
REFRESH_AFTER = 24 * 3600


@dataclass(frozen=True)
class Located:
    url: str
    sha256: str
    size: int


class DebianArchive:
    def __init__(self, base_url: str | None, dl_dir: Path, offline: bool = False, progress: bool = True):
        self.dl_dir = Path(dl_dir)
        self.offline = offline
        self.progress = progress
        self._base = base_url.rstrip("/") if base_url else None
        self._parsed: dict[tuple[str, str], dict] = {}

    @property
    def base(self) -> str:
        if self._base is None:
            urls = aptsources.archive_urls()
            if not urls:
                raise FetchError("no Debian archive configured",
                                 hint="apt has no sources; set debian_archive in buildsys.yaml "
                                      "or BUILDSYS_DEBIAN_ARCHIVE")
            self._base = urls[0]
        return self._base

    # --- lookups ------------------------------------------------------------------
    def locate(self, package: str, filename: str, suite: str | None = None) -> Located:
        """``debian:[suite/]package/file``: the file as the index lists it."""
        for suite_, component in self._indices([suite] if suite else SUITES):
            for refresh in (False, True):
                entry = self._index(suite_, component, refresh).get(("name", package, filename))
                if entry:
                    return entry
                if not self._stale(suite_, component):
                    break
        if filename.endswith((".deb", ".udeb")):
            # A binary package: not in Sources, but in its source package's
            # pool directory.  Only the recipe's sha256 vouches for it.
            for suite_, component in self._indices([suite] if suite else SUITES):
                directory = self._index(suite_, component).get(("dir", package))
                if directory:
                    return Located(f"{directory}/{filename}", "", -1)
        where = f"suite {suite}" if suite else "suites " + ", ".join(SUITES)
        raise FetchError(f"debian:{package}/{filename} is not in the Debian archive's {where}",
                         hint="the pool drops versions no suite lists; use a mirror or the download dir")

    def locate_sha256(self, sha256: str) -> Located | None:
        """Any file of any source package with this sha256, or None."""
        for suite, component in self._indices(SUITES):
            for refresh in (False, True):
                entry = self._index(suite, component, refresh).get(("sha", sha256))
                if entry:
                    return entry
                if not self._stale(suite, component):
                    break
        return None

    def locate_upstream(self, project: str, version: str, ext: str = "") -> list[tuple[str, str, int, Located]]:
        """Orig tarballs of the source packages named like ``project``, at
        ``version``, for a file whose sha256 nobody knows yet (``buildsys
        recipe new``): [(package, file, rank, Located)], best first.

        Debian names an upstream tarball ``<package>_<version>.orig.tar.<ext>``,
        and the package is often not upstream's name (cJSON is cjson, inih is
        libinih, libuv is libuv1), hence the loose name match.  Rank 0: the
        version and compression are upstream's (usually the same bytes); 1:
        another compression; 2: a repack (``+dfsg``, ``+ds``...).  Nothing
        here vouches for the bytes: the caller hashes what it downloads and
        tells the user where the sha256 came from."""
        found = self._search_orig(project, version, ext, refresh=False)
        if not found:
            # As for the other lookups: an index over a day old may predate the release.
            found = self._search_orig(project, version, ext, refresh=True)
        return sorted(found.values(), key=lambda c: (c[2], c[0], c[1]))

    def _search_orig(self, project: str, version: str, ext: str, refresh: bool) -> dict:
        want = _name_key(project)
        found: dict[str, tuple[str, str, int, Located]] = {}
        for suite, component in self._indices(SUITES):
            if refresh and not self._stale(suite, component):
                continue
            for key, located in self._index(suite, component, refresh).items():
                if key[0] != "name":
                    continue
                package, filename = key[1], key[2]
                m = _ORIG.match(filename)
                if not m or m["package"] != package or not _names_match(want, package):
                    continue
                if m["version"] == version:
                    rank = 0 if not ext or m["ext"] == ext else 1
                elif m["version"].startswith((version + "+", version + "~")):
                    rank = 2
                else:
                    continue
                best = found.get(located.sha256)
                if best is None or rank < best[2]:
                    found[located.sha256] = (package, filename, rank, located)
        return found

    # --- indices ------------------------------------------------------------------
    def _indices(self, suites):
        for suite in suites:
            for component in COMPONENTS:
                yield suite, component

    def _index_path(self, suite: str, component: str) -> Path:
        # Per archive: switching archives must not reuse another one's index.
        key = hashlib.sha256(self.base.encode()).hexdigest()[:12]
        return self.dl_dir / "debian-index" / key / f"{suite}_{component}_Sources.xz"

    def _stale(self, suite: str, component: str) -> bool:
        if self.offline:
            return False
        path = self._index_path(suite, component)
        try:
            return time.time() - path.stat().st_mtime > REFRESH_AFTER
        except OSError:
            return False

    def _index(self, suite: str, component: str, refresh: bool = False) -> dict:
        key = (suite, component)
        if key in self._parsed and not refresh:
            return self._parsed[key]
        path = self._index_path(suite, component)
        if refresh or not path.exists():
            if self.offline:
                self._parsed[key] = {}
                return {}
            self._download_index(suite, component, path)
        self._parsed[key] = _parse_sources(path, self.base) if path.exists() else {}
        return self._parsed[key]

    def _download_index(self, suite: str, component: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self.base}/dists/{suite}/{component}/source/Sources.xz"
        with FileLock(str(path) + ".lock"):
            part = path.with_name(path.name + f".{os.getpid()}.part")
            try:
                http.download(url, part, self.progress, label=f"index {suite}/{component}")
                os.replace(part, path)
            except http.NotFound:
                # A suite without this component: remember that with an empty index.
                part.unlink(missing_ok=True)
                path.write_bytes(lzma.compress(b""))
            finally:
                part.unlink(missing_ok=True)


_ORIG = re.compile(r"^(?P<package>[a-z0-9][a-z0-9.+-]*)_(?P<version>[^_/]+)"
                   r"\.orig\.tar\.(?P<ext>gz|bz2|xz|zst|lz|lzma)$")


def _name_key(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key[3:] if key.startswith("lib") and len(key) > 3 else key


def _names_match(want: str, package: str) -> bool:
    """``libinih`` is inih, ``libuv1`` and ``libpng1.6`` are libuv and libpng (a soname or
    API version), ``cjson`` is cJSON, ``xz-utils`` is xz."""
    key = _name_key(package)
    if key == want:
        return True
    if not want[-1:].isdigit() and re.sub(r"[\d.]+$", "", key) == want:
        return True
    return any(key == want + tail for tail in ("utils", "tools", "progs"))


def _parse_sources(path: Path, base: str) -> dict:
    """{("sha", sha256): Located, ("name", package, file): Located} from one Sources.xz."""
    out: dict = {}
    try:
        data = lzma.decompress(path.read_bytes()).decode("utf-8", "replace")
    except (lzma.LZMAError, OSError):
        path.unlink(missing_ok=True)   # a corrupt cache entry: fetched again next time
        return out
    for stanza in data.split("\n\n"):
        package = directory = None
        files = []
        in_sha = False
        for line in stanza.split("\n"):
            if line.startswith(" "):
                if in_sha:
                    parts = line.split()
                    if len(parts) == 3:
                        files.append(parts)
                continue
            in_sha = line.startswith("Checksums-Sha256:")
            if line.startswith("Package:"):
                package = line[8:].strip()
            elif line.startswith("Directory:"):
                directory = line[10:].strip()
        if not package or not directory:
            continue
        out[("dir", package)] = f"{base}/{directory}"
        for sha, size, name in files:
            located = Located(f"{base}/{directory}/{name}", sha, int(size))
            out[("sha", sha)] = located
            out[("name", package, name)] = located
    return out

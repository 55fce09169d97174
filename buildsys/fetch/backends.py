"""Download backends: one small class per kind of location.

Contract: ``handles(url)`` says whether the backend understands a URL;
``download(url, part, config)`` writes the file's bytes to ``part`` (which may
already hold the start of the file, for backends that can resume) or raises
FetchError (``http.NotFound`` when the location simply lacks the file, so the
next mirror is tried).  Verification and renaming are the caller's job.
git is not here: it produces a tarball from a repository, not one file.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ChecksumError, FetchError
from . import http
from .debian import DebianArchive


class Backend:
    schemes: tuple[str, ...] = ()

    def handles(self, url: str) -> bool:
        return url.split(":", 1)[0].lower() in self.schemes

    def download(self, url: str, part: Path, config) -> None:
        raise NotImplementedError


class HttpBackend(Backend):
    schemes = ("http", "https")

    def download(self, url, part, config):
        http.download(url, part, config.progress)


class FileBackend(Backend):
    """``file:///dir/name`` — a local mirror directory (like Buildroot's BR2_PRIMARY_SITE=file://)."""

    schemes = ("file",)

    def download(self, url, part, config):
        http.download(url, part, config.progress)


class DebianBackend(Backend):
    """``debian:[suite/]package/file`` — located through the archive's Sources indices."""

    schemes = ("debian",)

    def download(self, url, part, config, expected_sha256: str | None = None):
        spec = url.split(":", 1)[1].strip("/")
        parts = spec.split("/")
        if len(parts) == 2:
            suite, (package, name) = None, parts
        elif len(parts) == 3:
            suite, package, name = parts
        else:
            raise FetchError(f"{url}: expected debian:[suite/]package/file")
        located = archive(config).locate(package, name, suite)
        if expected_sha256 and located.sha256 and located.sha256 != expected_sha256:
            raise ChecksumError(f"{url}: the Debian archive lists sha256 {located.sha256}, "
                                f"the recipe says {expected_sha256}",
                                hint="the archive's file differs from the one the recipe pins")
        http.download(located.url, part, config.progress, label=name)


_archives: dict[tuple, DebianArchive] = {}


def archive(config) -> DebianArchive:
    key = (str(config.dl_dir), config.debian_archive, config.offline)
    if key not in _archives:
        _archives[key] = DebianArchive(config.debian_archive, config.dl_dir, config.offline, config.progress)
    return _archives[key]


BACKENDS: list[Backend] = [HttpBackend(), FileBackend(), DebianBackend()]


def backend_for(url: str) -> Backend:
    for backend in BACKENDS:
        if backend.handles(url):
            return backend
    raise FetchError(f"{url}: no fetcher for this kind of URL",
                     hint="use http(s)://, file://, git+<url> with rev, or debian:[suite/]package/file")

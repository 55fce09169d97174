"""What a recipe asks to fetch, and where the downloaded files go."""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import Where

DEFAULT_MIRRORS = ("debian",)


@dataclass(frozen=True)
class Source:
    """One source of a recipe.  ``url`` is upstream's; mirrors never change it."""

    url: str
    sha256: str | None = None
    rev: str | None = None           # git: a full commit id
    filename: str | None = None      # name in the download dir (default: the URL's last component)
    strip: int = 1                   # leading path components dropped when unpacking
    unpack: bool = True
    dest: str = ""                   # sub-directory of the source tree to unpack into
    allow_branch: bool = False       # git: accept a branch or tag name as rev
    where: Where | None = field(default=None, compare=False, hash=False)

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def name(self) -> str:
        """The file's name in the download dir."""
        if self.filename:
            return self.filename
        path = self.url.split(":", 1)[1] if self.scheme == "debian" else urlsplit(self.url).path
        name = posixpath.basename(unquote(path).rstrip("/"))
        if self.scheme.startswith("git"):
            base = name[:-4] if name.endswith(".git") else name
            return f"{base or 'repo'}-{(self.rev or 'HEAD')[:40]}.tar".replace("/", "_")
        return name or "download"


@dataclass
class FetchConfig:
    """Where downloads go and where they may come from (from settings and environment)."""

    dl_dir: Path
    premirrors: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=lambda: list(DEFAULT_MIRRORS))
    offline: bool = False
    debian_archive: str | None = None
    progress: bool = False          # byte bars (on a terminal only); the CLI turns them on

    def __post_init__(self):
        self.dl_dir = Path(self.dl_dir)

    @classmethod
    def from_settings(cls, dl_dir, settings: dict, environ=None) -> FetchConfig:
        """Settings (project/site config) first, then the BUILDSYS_* environment overrides."""
        env = os.environ if environ is None else environ
        premirrors = list(settings.get("premirrors") or [])
        configured = settings.get("mirrors")
        mirrors = list(configured if configured is not None else DEFAULT_MIRRORS)
        if env.get("BUILDSYS_PREMIRRORS") is not None:
            premirrors = env["BUILDSYS_PREMIRRORS"].split()
        if env.get("BUILDSYS_MIRRORS") is not None:
            mirrors = env["BUILDSYS_MIRRORS"].split()
        offline = bool(settings.get("offline", False))
        if env.get("BUILDSYS_OFFLINE"):
            offline = env["BUILDSYS_OFFLINE"].lower() not in ("0", "no", "false", "")
        archive = env.get("BUILDSYS_DEBIAN_ARCHIVE") or settings.get("debian_archive")
        return cls(Path(dl_dir), premirrors, mirrors, offline, archive, progress=True)

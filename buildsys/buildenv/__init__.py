"""The pinned build environment: the /usr (and /etc) every build step runs
against, assembled from Debian binary packages pinned in the project's
``buildenv.lock.json`` (name, version, architecture, pool path, sha256).

Why Debian packages, pinned by a lock file, and not the host's /usr: the host
only supplies its kernel, bubblewrap and Python.  Compiler, binutils, C
library and headers, make, perl, coreutils, xz, bc, flex, bison... are inputs
like any source: fetched through the download dir and mirrors by sha256,
extracted without maintainer scripts into a tree keyed by the lock's hash,
mounted read-only, and that hash is part of every signature.  Another host,
another distribution release, another user: the same lock gives the same
tree, so the same key means the same bytes.  (Yocto builds its own native
tools and uses uninative for the same reason; Nix makes the whole closure an
input.)  Debian's packages are what this project's hosts trust already, are
reproducible-built, and stay available by sha256 in a download dir or mirror
when the archive moves on.

A project without a lock can say ``build_env: host`` (test fixtures do): its
steps then see the host's /usr, its signatures say so, and its artifacts are
only good for that host.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, Where
from ..fileio import atomic_write, remove_tree

LOCK_NAME = "buildenv.lock.json"
SPEC_NAME = "buildenv.yaml"
LOCK_FORMAT = 1
# Changes to how the tree is put together change every environment's identity.
ASSEMBLY_VERSION = "1"


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    architecture: str
    filename: str
    sha256: str
    size: int

    @property
    def deb_name(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Lock:
    path: Path
    suites: tuple[str, ...]
    architecture: str
    packages: tuple[LockedPackage, ...]
    links: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        """The environment's identity: what is in it, and how it is assembled."""
        return hashlib.sha256(canonical_json(self.to_json()).encode()
                              + b"\0assembly " + ASSEMBLY_VERSION.encode()).hexdigest()

    def to_json(self) -> dict:
        return {"format": LOCK_FORMAT, "suites": list(self.suites), "architecture": self.architecture,
                "links": dict(self.links),
                "packages": [{"name": p.name, "version": p.version, "architecture": p.architecture,
                              "filename": p.filename, "sha256": p.sha256, "size": p.size} for p in self.packages]}

    def package(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    def summary(self) -> dict:
        """What signatures and manifests record: the lock's hash, and each package's version."""
        return {"id": self.id, "packages": {p.name: p.version for p in self.packages}}


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def load_lock(path: Path) -> Lock:
    where = Where(str(path))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the build environment lock: {exc}", where) from None
    except ValueError as exc:
        raise UserError(f"not valid JSON: {exc}", where, hint="regenerate it with 'buildsys lock update'") from None
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT:
        raise UserError(f"not a format-{LOCK_FORMAT} build environment lock", where,
                        hint="regenerate it with 'buildsys lock update'")
    try:
        packages = tuple(LockedPackage(name=str(p["name"]), version=str(p["version"]),
                                       architecture=str(p["architecture"]), filename=str(p["filename"]),
                                       sha256=str(p["sha256"]), size=int(p["size"]))
                         for p in data["packages"])
        links = tuple(sorted((str(k), str(v)) for k, v in dict(data.get("links") or {}).items()))
        lock = Lock(path, tuple(data["suites"]), str(data["architecture"]), packages, links)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"malformed build environment lock ({exc})", where,
                        hint="regenerate it with 'buildsys lock update'") from None
    for p in lock.packages:
        if len(p.sha256) != 64 or any(c not in "0123456789abcdef" for c in p.sha256):
            raise UserError(f"package {p.name}: sha256 '{p.sha256}' is not 64 hex digits", where)
        if not p.filename.startswith("pool/") or ".." in p.filename.split("/") or not p.filename.endswith(".deb"):
            raise UserError(f"package {p.name}: '{p.filename}' is not a pool/... .deb path", where)
    for link, _ in lock.links:
        if link.startswith("/") or ".." in link.split("/"):
            raise UserError(f"link '{link}' must be a relative path inside the environment", where)
    return lock


def env_store_dir(environ=None) -> Path:
    """Assembled environments, shared by every project and build dir of the user."""
    env = os.environ if environ is None else environ
    if env.get("BUILDSYS_ENV_DIR"):
        return Path(env["BUILDSYS_ENV_DIR"])
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "buildsys" / "buildenv"


class BuildEnv:
    """One pinned environment: its lock, and where its tree is assembled."""

    def __init__(self, lock: Lock, store: Path):
        self.lock = lock
        self.store = Path(store)

    @property
    def id(self) -> str:
        return self.lock.id

    @property
    def root(self) -> Path:
        return self.store / self.id

    def sources(self, fetch_config) -> list:
        from ..fetch import Source
        from ..fetch.fetcher import archive

        base = archive(fetch_config).base
        return [Source(url=f"{base}/{p.filename}", sha256=p.sha256, filename=p.deb_name, unpack=False,
                       where=Where(str(self.lock.path))) for p in self.lock.packages]

    def ready(self) -> bool:
        return _verify(self.root)

    def ensure(self, fetch_config) -> Path:
        """The assembled tree (fetching and extracting the packages if needed)."""
        if self.ready():
            return self.root
        from filelock import FileLock

        from ..fetch import fetch_many
        from .assemble import assemble

        self.store.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.store / f".{self.id}.lock")):
            if self.ready():
                return self.root
            started = time.monotonic()
            print(f"build environment {self.id[:12]}: fetching {len(self.lock.packages)} Debian packages",
                  file=sys.stderr, flush=True)
            sources = self.sources(fetch_config)
            fetched = fetch_many(sources, fetch_config)
            debs = [fetched[s] for s in sources]
            if self.root.exists():          # a damaged or half-made tree: start afresh
                _remove(self.root)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.id[:12]}-", dir=self.store))
            try:
                assemble(self.lock, debs, tmp / "root")
                _seal(tmp / "root")
                os.rename(tmp / "root", self.root)
            finally:
                _remove(tmp)
            print(f"build environment {self.id[:12]}: assembled in {time.monotonic() - started:.0f}s "
                  f"at {self.root}", file=sys.stderr, flush=True)
        return self.root


def find_lock(project_root: Path) -> Path | None:
    path = project_root / LOCK_NAME
    return path if path.is_file() else None


def for_project(project, environ=None) -> BuildEnv | None:
    """The project's pinned environment, or None when it builds against the host."""
    mode = project.settings.get("build_env") or "auto"
    where = project.settings_where.get("build_env") if hasattr(project, "settings_where") else None
    if mode not in ("auto", "locked", "host"):
        raise UserError(f"build_env must be locked, host or auto, not '{mode}'", where)
    lock = find_lock(project.root)
    if mode == "host" or (mode == "auto" and lock is None):
        return None
    if lock is None:
        raise UserError(f"build_env is locked but the project has no {LOCK_NAME}", where,
                        hint="run 'buildsys lock update' to create it from buildenv.yaml")
    return BuildEnv(load_lock(lock), env_store_dir(environ))


# --- integrity of the assembled tree -------------------------------------------------
# The tree is written only by buildsys and mounted read-only into steps.  A
# stat digest (which includes ctime: no one can set it back) taken when the
# tree was sealed catches any change since, in a fraction of a second.

_SEAL = ".buildsys-sealed"


def _stat_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            if dirpath == str(root) and name == _SEAL:
                continue
            st = os.lstat(os.path.join(dirpath, name))
            h.update(f"{os.path.join(dirpath, name)[len(str(root)):]}\0{st.st_mode}\0{st.st_size}\0"
                     f"{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    return h.hexdigest()


def _seal(root: Path) -> None:
    # The rename that publishes the tree keeps inodes and times, so the digest holds after it.
    atomic_write(root / _SEAL, _stat_digest(root))


def _verify(root: Path) -> bool:
    try:
        sealed = (root / _SEAL).read_text()
    except OSError:
        return False
    if sealed == _stat_digest(root):
        return True
    print(f"warning: the build environment at {root} changed since it was assembled; assembling it again",
          file=sys.stderr)
    return False


def _remove(path: Path) -> None:
    remove_tree(path)

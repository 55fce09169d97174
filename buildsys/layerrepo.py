"""Layers pinned from git (kas-style): a bare mirror per URL and a checkout per commit.

The layer cache is shared between projects (default ``~/.cache/buildsys/layers``;
``BUILDSYS_LAYER_CACHE`` or the ``layer_cache`` setting move it)::

    <cache>/mirrors/<key>.git           git clone --mirror of the URL
    <cache>/mirrors/<key>.lock          held while the mirror or a checkout of it changes
    <cache>/checkouts/<key>/<commit>/   exactly that commit, detached

A checkout is made in a temp dir and renamed into place, so a reader finds a
whole one or none; one is never moved to another commit by buildsys (a new pin
is a new directory).  The network is used only when the mirror lacks the
pinned commit (or the named branch), so once fetched, builds work offline.

Git runs with a clean environment (none of the caller's GIT_* variables, no
prompts) and with hooks off: a layer's repository must not run code on our
side.  Hooks are never copied by a clone, and ``core.hooksPath=/dev/null``
covers any template or user configuration that would install some.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from .errors import FetchError, NetworkAccessError, UserError, Where
from .model import GitPin

FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
# The caller's HOME stays (credentials and url.insteadOf for private layer
# repositories live in ~/.gitconfig); GIT_* variables do not (GIT_DIR,
# GIT_WORK_TREE... would point our commands at another repository).
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "TZ": "UTC"}
# No hooks; file:// allowed (local mirrors, tests) but never ext:: (a URL that runs a command); no
# automatic gc in the mirror while another process may be cloning from it.
_GIT_OPTS = ("-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=always", "-c", "protocol.ext.allow=never",
             "-c", "gc.auto=0")


def cache_dir(settings: Mapping, environ: Mapping[str, str], root: Path) -> Path:
    """The layer cache: BUILDSYS_LAYER_CACHE, else the layer_cache setting, else ~/.cache/buildsys/layers."""
    chosen = environ.get("BUILDSYS_LAYER_CACHE") or settings.get("layer_cache")
    if chosen:
        return (root / Path(chosen).expanduser()).absolute()
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base, "buildsys", "layers").absolute()


def repo_key(url: str) -> str:
    """A directory name for a URL: its last component (readable) and a hash (unique)."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[:40].removesuffix(".git")
    return f"{tail or 'repo'}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def looks_like_url(text: str) -> bool:
    """A git URL rather than a directory: scheme://... or scp-like user@host:path."""
    return "://" in text or re.match(r"^[\w.-]+@[\w.-]+:", text) is not None


def git(args, cwd=None, where: Where | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_GIT_ENV)
    try:
        proc = subprocess.run(["git", *_GIT_OPTS, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=3600)
    except FileNotFoundError:
        raise UserError("git is not installed", where, hint="apt install git") from None
    if check and proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        reason = next((line for line in lines if line.startswith(("fatal:", "error:"))),
                      lines[-1] if lines else f"exit {proc.returncode}")
        raise FetchError(f"git {args[0]} failed: {reason}", where)
    return proc


class LayerRepo:
    """The mirror of one URL in the layer cache, and its checkouts."""

    def __init__(self, cache: Path, url: str, offline: bool = False):
        self.cache, self.url, self.offline = cache, url, offline
        key = repo_key(url)
        self.mirror = cache / "mirrors" / f"{key}.git"
        self.lock_path = cache / "mirrors" / f"{key}.lock"
        self.checkouts = cache / "checkouts" / key
        self.fetched = False       # fetched during this run: a second fetch would not change anything

    def lock(self) -> FileLock:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path))

    # --- the mirror (call with the lock held) -------------------------------------------
    def fetch(self, where: Where | None) -> None:
        """Clone the mirror, or bring every ref of it up to date."""
        if self.offline:
            raise NetworkAccessError(f"layer repository {self.url} needs a fetch, but buildsys is offline", where,
                                     hint="fetch once online (buildsys layers), then work offline")
        # On stderr: commands' output stays what it is, and a slow clone is not a silent pause.
        print(f"fetching layer repository {self.url}", file=sys.stderr)
        if not (self.mirror / "HEAD").is_file():
            tmp = self.mirror.with_name(f".{self.mirror.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                git(["clone", "--quiet", "--mirror", "--template=", "--", self.url, str(tmp)], where=where)
                os.replace(tmp, self.mirror)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            git(["fetch", "--quiet", "--prune", "origin", "+refs/*:refs/*"], cwd=self.mirror, where=where)
        self.fetched = True

    def has_commit(self, commit: str) -> bool:
        return (self.mirror / "HEAD").is_file() and git(
            ["cat-file", "-e", f"{commit}^{{commit}}"], cwd=self.mirror, check=False).returncode == 0

    def branch_tip(self, branch: str | None) -> str | None:
        """The commit of ``branch`` (None: the repository's default branch, its HEAD) in the mirror."""
        ref = f"refs/heads/{branch}" if branch else "HEAD"
        out = git(["rev-parse", "--verify", "-q", f"{ref}^{{commit}}"], cwd=self.mirror, check=False).stdout.strip()
        return out or None

    def default_branch(self) -> str | None:
        out = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=self.mirror, check=False).stdout.strip()
        return out or None

    def on_branch(self, commit: str, branch: str) -> bool:
        return git(["merge-base", "--is-ancestor", commit, f"refs/heads/{branch}"], cwd=self.mirror,
                   check=False).returncode == 0

    def ensure_commit(self, commit: str, branch: str | None, where: Where | None) -> None:
        """The mirror has ``commit`` (on ``branch`` when named), fetching only when it does not."""
        if not self.has_commit(commit) and not self.fetched:
            self.fetch(where)
        if not self.has_commit(commit):
            raise FetchError(f"commit {commit} is not in layer repository {self.url}", where,
                             hint="a typo, or a commit never pushed; `buildsys layer update NAME` pins the branch tip")
        if branch is None:
            return
        if (self.branch_tip(branch) is None or not self.on_branch(commit, branch)) and not self.fetched:
            self.fetch(where)
        if self.branch_tip(branch) is None:
            raise FetchError(f"layer repository {self.url} has no branch '{branch}'", where,
                             hint="fix 'branch:', or remove it to accept the commit wherever it is")
        if not self.on_branch(commit, branch):
            raise FetchError(f"commit {commit[:12]} is no longer on branch '{branch}' of {self.url} (the branch "
                             "moved: rewritten or force-pushed)", where,
                             hint="pin a commit of the branch: `buildsys layer update NAME`")

    # --- checkouts --------------------------------------------------------------------
    def checkout_dir(self, commit: str) -> Path:
        return self.checkouts / commit

    def ensure_checkout(self, commit: str, where: Where | None) -> Path:
        """A checkout of exactly ``commit`` (the mirror must have it); made atomically."""
        final = self.checkout_dir(commit)
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{commit}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            # A local clone hard-links the mirror's objects: cheap, and independent
            # of the mirror afterwards (a prune there cannot break it).
            git(["clone", "--quiet", "--no-checkout", "--template=", "--", str(self.mirror), str(tmp)], where=where)
            git(["config", "core.hooksPath", "/dev/null"], cwd=tmp, where=where)
            git(["checkout", "--quiet", "--detach", commit], cwd=tmp, where=where)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final


def head_of(checkout: Path) -> str | None:
    """The commit a checkout's HEAD names (None when it is on a branch or unreadable).
    Read from the file, not through git: this runs at every project load."""
    try:
        text = (checkout / ".git" / "HEAD").read_text().strip()
    except OSError:
        return None
    return text if FULL_COMMIT.fullmatch(text) else None


def materialize(pin: GitPin, cache: Path, where: Where | None, offline: bool = False) -> Path:
    """The layer directory of ``pin``: its checkout (made when missing), or the
    directory ``pin.subdir`` of it.  Refuses a checkout moved off the commit."""
    repo = LayerRepo(cache, pin.url, offline)
    checkout = repo.checkout_dir(pin.commit)
    if not checkout.is_dir():
        with repo.lock():
            if not checkout.is_dir():
                repo.ensure_commit(pin.commit, pin.branch, where)
                repo.ensure_checkout(pin.commit, where)
    head = head_of(checkout)
    if head != pin.commit:
        raise UserError(f"the checkout of layer {pin.url} at {checkout} is no longer commit {pin.commit[:12]} "
                        f"(HEAD is {head[:12] if head else 'not a detached commit'})", where,
                        hint="moved by hand: remove that directory to have it made again")
    layer_dir = checkout / pin.subdir if pin.subdir else checkout
    real = os.path.realpath(layer_dir)
    if real != os.path.realpath(checkout) and not real.startswith(os.path.realpath(checkout) + os.sep):
        raise UserError(f"path '{pin.subdir}' leads out of the repository of {pin.url}", where)
    return Path(real)


def pin_from_entry(entry: Mapping) -> GitPin:
    return GitPin(str(entry["url"]), str(entry["commit"]), entry.get("branch"), entry.get("path"))

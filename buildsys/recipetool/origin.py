"""What ``buildsys recipe new`` was given (a release URL, a local tarball, a
git repository), the name and version it suggests, and fetching it through
the normal fetcher into the download dir.

The result is the source entry to write (upstream URL and the sha256 just
learned, or git URL and the full commit it resolved), the fetched file, and
what the user should know about where the bytes came from.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import FetchError, UserError, Where
from ..fetch import git as gitfetch
from ..fetch.checksum import forget_verified, record_verified
from ..fetch.fetcher import fetch_learning_sha256
from ..fetch.source import FetchConfig, Source
from ..fetch.unpack import TAR_SUFFIXES

_ARCHIVE_SUFFIXES = tuple(sorted(TAR_SUFFIXES + (".zip",), key=len, reverse=True))
# name-version: the version starts at the first "-<digit>" (or "-v<digit>", "_<digit>").
_NAME_VERSION = re.compile(r"^(?P<name>.+?)[-_](?:v(?=\d))?(?P<version>\d[\w.+~-]*)$")
_GITHUB_ARCHIVE = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/archive/(?:refs/tags/)?(?P<tag>.+?)"
                             r"(?P<ext>\.tar\.gz|\.tar\.bz2|\.tar\.xz|\.tgz|\.zip)$")
_WHERE = Where("command line")


@dataclass
class Origin:
    """A fetched source, ready to be written into a recipe."""

    name: str                      # upstream's name (cJSON), for the Debian lookup and messages
    version: str
    entry: dict                    # the source entry: {url, sha256[, name]} or {git, rev}
    path: Path                     # the fetched file (archive, or git tarball)
    strip: int = 1
    comments: list[str] = field(default_factory=list)   # written above the source entry
    notes: list[str] = field(default_factory=list)      # things to check

    @property
    def homepage(self) -> str | None:
        """The project page of a source on a git forge (github.com, gitlab.com, codeberg.org)."""
        url = self.entry.get("git") or self.entry.get("url") or ""
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname in ("github.com", "gitlab.com", "codeberg.org"):
            owner_repo = [p for p in parts.path.split("/") if p][:2]
            if len(owner_repo) == 2:
                return f"https://{parts.hostname}/{owner_repo[0]}/{owner_repo[1].removesuffix('.git')}"
        return None


def split_name(filename: str) -> tuple[str, str | None]:
    """``foo-1.2.3.tar.gz`` -> (foo, 1.2.3); ``foo.tar.gz`` -> (foo, None)."""
    base = filename
    for suffix in _ARCHIVE_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    base = base.removesuffix(".orig")       # Debian's <package>_<version>.orig.tar.*
    m = _NAME_VERSION.match(base)
    if m:
        return m["name"], m["version"]
    return base, None


def recipe_name(name: str) -> str:
    """A recipe name from upstream's: lower case, letters, digits, '.', '+' and '-'."""
    out = re.sub(r"[^a-z0-9.+-]+", "-", name.lower()).strip("-.")
    return out or "unnamed"


def is_git(spec: str) -> bool:
    if spec.startswith(("git+", "git://", "ssh://")) or re.match(r"^[\w.-]+@[\w.-]+:", spec):
        return True
    if re.match(r"^https?://", spec):
        return urlsplit(spec).path.rstrip("/").endswith(".git")
    path = Path(spec[len("file://"):] if spec.startswith("file://") else spec)
    return path.is_dir() and ((path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir()))


def fetch_origin(spec: str, config: FetchConfig, name: str | None, version: str | None,
                 rev: str | None) -> Origin:
    if is_git(spec):
        return _git_origin(spec, config, name, version, rev)
    if rev:
        raise UserError("--rev is for git sources", Where("--rev"))
    if spec.startswith("debian:"):
        # debian:[suite/]package/file: the archive's file, located by name like any debian: source.
        return _archive_origin(spec, spec.rsplit("/", 1)[-1], config, name, version, local=False)
    local = spec[len("file://"):] if spec.startswith("file://") else (spec if "://" not in spec else None)
    if local is not None:
        path = Path(unquote(local)).absolute()
        if path.is_dir():
            raise UserError(f"{path} is a directory but not a git repository", _WHERE,
                            hint="commit it to git and give the repository, or give a release tarball")
        if not path.is_file():
            raise UserError(f"{path}: no such file", _WHERE, hint="give a URL, a tarball or a git repository")
        return _archive_origin(path.as_uri(), path.name, config, name, version, local=True)
    if not re.match(r"^https?://", spec):
        raise UserError(f"'{spec}' is neither an http(s) URL, a local file nor a git repository", _WHERE,
                        hint="e.g. https://example.org/foo-1.0.tar.gz, ./foo-1.0.tar.gz, git+https://.../foo.git")
    parts = urlsplit(spec)
    url_path = unquote(parts.path).rstrip("/")
    if url_path.endswith("/download"):      # SourceForge: .../files/foo-1.0.tar.gz/download
        url_path = url_path[: -len("/download")]
    filename = os.path.basename(url_path)
    return _archive_origin(spec, filename, config, name, version, local=False)


def _archive_origin(url: str, filename: str, config: FetchConfig, name: str | None, version: str | None,
                    local: bool) -> Origin:
    up_name, up_version = split_name(filename)
    download_name = None
    github = _GITHUB_ARCHIVE.match(urlsplit(url).path) if urlsplit(url).hostname == "github.com" else None
    if not github and filename != os.path.basename(urlsplit(url).path) and not url.startswith("debian:"):
        download_name = filename        # the file's own name, not "download"
    if github:
        # .../archive/v1.7.18.tar.gz: the repository is the name, the tag the version,
        # and the file needs a name of its own in the download dir.
        up_name = github["repo"]
        tag = github["tag"]
        tag = tag[len(up_name) + 1:] if tag.lower().startswith(up_name.lower() + "-") else tag
        up_version = re.sub(r"^(?:v|r|release-|version-)(?=\d)", "", tag)
    name = name or up_name
    version = version or up_version
    if not version:
        raise UserError(f"cannot tell the version from '{filename}'", _WHERE, hint="give it with --version")
    rname = recipe_name(name)
    if github:
        download_name = f"{rname}-{version}{github['ext']}"
    source = Source(url, filename=download_name, where=_WHERE)
    learned = fetch_learning_sha256(source, config, project=name, version=version)
    templated = _template(url, version)
    entry: dict = {"url": templated, "sha256": learned.sha256}
    if download_name:
        entry["name"] = "${name}-${version}" + github["ext"] if github else _template(download_name, version)
    comments: list[str] = []
    notes: list[str] = []
    path = learned.path
    if local:
        comments.append(f"sha256 computed by 'buildsys recipe new' on the local file {filename}")
        notes.append("the source is a local file (file:// URL): put the upstream URL in its place "
                     "(the sha256 stays) before you share the layer")
    elif learned.debian is not None:
        package, debfile, rank = learned.debian
        made_by_git = _git_archive_commit(learned.path)
        if rank == 0 and made_by_git and not _is_tag_archive_url(url):
            # Debian's file is a tag's `git archive` (the Sources name does not say), while
            # the URL names a release tarball (`make dist`: configure and all): not the same file.
            rank = 3
            notes.append(f"Debian's {debfile} is a git archive of commit {made_by_git[:12]}, not the release "
                         f"tarball {filename}")
            # Kept under the archive's name, the one the debian: source below is stored as:
            # under upstream's name it would pose as the release tarball in the download dir.
            path = learned.path.with_name(debfile)
            os.replace(learned.path, path)
            forget_verified(learned.path)
            record_verified(path, learned.sha256)
        if rank == 0:
            comments.append(f"sha256 computed by 'buildsys recipe new' on Debian's {debfile}, taken for "
                            "upstream's file (Debian ships upstream tarballs as they are, usually)")
            notes.append(f"the sha256 is that of Debian's {debfile} (upstream was not reachable): check it "
                         "against upstream's published checksum or signature")
        else:
            entry = {"url": f"debian:{package}/" + _template(debfile, version), "sha256": learned.sha256}
            comments.append(f"upstream's {filename} was not reachable and Debian's {debfile} is not the same "
                            "file (another compression, a repack, or a git archive of the tag); sha256 computed by "
                            "'buildsys recipe new'")
            notes.append(f"the source is Debian's {debfile} (debian: URL), not upstream's file: compare the trees "
                         f"or find upstream's sha256 ({url})")
    elif url.startswith("debian:"):
        comments.append("sha256 computed by 'buildsys recipe new' on the Debian archive's file")
        notes.append("the source is a file of the Debian archive (debian: URL): name upstream's URL instead if "
                     "upstream publishes the same file")
    else:
        comments.append(f"sha256 computed by 'buildsys recipe new' on the file from {learned.origin}")
        notes.append("check the sha256 against upstream's published checksum or signature")
    return Origin(name, version, entry, path, comments=comments, notes=notes)


def _git_archive_commit(path: Path) -> str | None:
    """The commit a tarball made by `git archive` names in its pax global header, or None."""
    import tarfile

    try:
        with tarfile.open(path, "r|*") as tar:
            tar.next()
            comment = tar.pax_headers.get("comment", "")
    except (tarfile.TarError, OSError, EOFError):
        return None
    return comment if re.fullmatch(r"[0-9a-f]{40}", comment) else None


def _is_tag_archive_url(url: str) -> bool:
    """GitHub's, GitLab's, Gitea's... archive of a tag: itself made by git archive."""
    path = urlsplit(url).path
    return "/archive/" in path or "/-/archive/" in path or "/snapshot/" in path


def _template(text: str, version: str) -> str:
    """``${version}`` wherever the version appears in a URL's path (the host keeps it)."""
    if "://" in text:
        scheme, rest = text.split("://", 1)
        host, _, path = rest.partition("/")
        return f"{scheme}://{host}/" + path.replace(version, "${version}") if path else text
    return text.replace(version, "${version}")


# --- git -------------------------------------------------------------------------------------
def _run_git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **gitfetch.GIT_ENV), capture_output=True,
                          text=True)


def _git_origin(spec: str, config: FetchConfig, name: str | None, version: str | None,
                rev: str | None) -> Origin:
    url = spec[len("git+"):] if spec.startswith("git+") else spec
    notes: list[str] = []
    worktree = None
    if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):
        worktree = Path(url).absolute()
        url = worktree.as_uri()
    elif url.startswith("file://"):
        worktree = Path(unquote(urlsplit(url).path))
    if config.offline:
        raise UserError(f"offline: cannot resolve {url}", _WHERE)
    commit = _resolve(url, rev or "HEAD")
    source = Source("git+" + url, rev=commit, where=_WHERE)
    path = gitfetch.fetch(source, config.dl_dir, config.offline)
    mirror = gitfetch.mirror_dir(source, config.dl_dir)
    if worktree is not None and (worktree / ".git").exists():
        dirty = _run_git(["status", "--porcelain", "--untracked-files=no"], cwd=worktree).stdout.strip()
        if dirty and not rev:
            notes.append(f"{worktree} has uncommitted changes: the recipe builds commit {commit[:12]} without them")
    base = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if "://" in url else url.rsplit(":", 1)[-1]
    base = base.rsplit("/", 1)[-1]
    base = base[:-4] if base.endswith(".git") else base
    name = name or base
    version = version or _git_version(mirror, commit)
    notes.append(f"the recipe is pinned to commit {commit} ({'--rev ' + rev if rev else 'the HEAD'} of {url}); "
                 "move 'rev:' deliberately to update it")
    comments = [f"commit resolved by 'buildsys recipe new' from {rev or 'HEAD'}"]
    return Origin(name, version, {"git": url, "rev": commit}, path, comments=comments, notes=notes)


def _resolve(url: str, ref: str) -> str:
    """The full commit id ``ref`` names in the repository at ``url``."""
    if gitfetch.FULL_SHA.match(ref):
        return ref
    proc = _run_git(["ls-remote", "--", url, ref])
    if proc.returncode != 0:
        reason = next((line for line in proc.stderr.splitlines() if line.startswith(("fatal:", "error:"))),
                      proc.stderr.strip()[:200])
        raise FetchError(f"git ls-remote {url} failed: {reason}", _WHERE)
    refs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, refname = line.partition("\t")
        refs[refname] = sha
    for candidate in (f"{ref}^{{}}", f"refs/tags/{ref}^{{}}", ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if candidate in refs:
            return refs[candidate]
    if refs:
        return next(sha for refname, sha in sorted(refs.items()) if not refname.endswith("^{}"))
    raise FetchError(f"{url}: no branch or tag '{ref}'", Where("--rev") if ref != "HEAD" else _WHERE,
                     hint="give a branch, a tag or a full commit id with --rev")


def _git_version(mirror: Path, commit: str) -> str:
    """The tag at the commit (without a leading v); else <tag>+git<n>.<short>; else 0+git<date>.<short>."""
    described = _run_git(["describe", "--tags", "--long", commit], cwd=mirror)
    if described.returncode == 0:
        m = re.match(r"^(?P<tag>.+)-(?P<n>\d+)-g(?P<short>[0-9a-f]+)$", described.stdout.strip())
        if m:
            tag = re.sub(r"^(?:v|r|release-|version-)(?=\d)", "", m["tag"])
            return tag if m["n"] == "0" else f"{tag}+git{m['n']}.{commit[:7]}"
    date = _run_git(["show", "-s", "--format=%cd", "--date=format:%Y%m%d", commit], cwd=mirror)
    return f"0+git{date.stdout.strip() or '0'}.{commit[:7]}"

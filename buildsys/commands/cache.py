"""`buildsys cache info|gc|upload-downloads`: the artifact cache's size,
trimming it, and filling the team's premirror (docs/shared-cache.md)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command, board_option

_UNITS = "kmgtpe"
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtpe])(i?)(b?)|(b?))", re.IGNORECASE | re.ASCII)
SIZE_HINT = "e.g. 500M, 2G, 1.5GiB, 800MB or a number of bytes"


def parse_size(text: str) -> int:
    """Bytes in a size such as ``500M``, ``2G``, ``1.5GiB``, ``800MB``, ``1024`` or ``1024B``.

    K, M, G, T, P, E alone or with ``i``/``iB`` are powers of 1024, with
    ``B`` alone (``MB``) powers of 1000, as GNU coreutils reads them; case
    does not matter.  A size without a unit is a whole number of bytes.
    Raises ValueError for anything else.
    """
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"bad size '{text}'")
    number, unit, binary, decimal, _ = match.groups()
    if not unit:
        if not number.isdigit():
            raise ValueError(f"bad size '{text}': a number of bytes must be whole")
        return int(number)
    power = _UNITS.index(unit.lower()) + 1
    base = 1000 if decimal and not binary else 1024
    # Exact for every decimal fraction a user types: no float rounding.
    whole, _, frac = number.partition(".")
    scale = base ** power
    return (int(whole or 0) * 10 ** len(frac) + int(frac or 0)) * scale // 10 ** len(frac)


def format_size(n: int) -> str:
    """``n`` bytes for people: 512 B, 3.2 KiB, 1.50 GiB."""
    if n < 1024:
        return f"{n} B"
    for i, unit in enumerate("KMGTPE", 1):
        value = n / 1024 ** i
        if value < 1024 or unit == "E":
            return f"{value:.2f} {unit}iB" if value < 10 else f"{value:.1f} {unit}iB"
    raise AssertionError(n)  # pragma: no cover


def usage(root: Path) -> tuple[int, int]:
    """(complete entries, bytes of every file) in a local cache dir's shards (absent: empty)."""
    entries = size = 0
    try:
        shards = sorted(e.path for e in os.scandir(root) if len(e.name) == 2 and e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    for shard in shards:
        for dirpath, _, filenames in os.walk(shard):
            for name in filenames:
                try:
                    size += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:  # removed meanwhile by a concurrent gc or build
                    continue
                if name.endswith(".json") and not name.startswith("."):
                    entries += 1  # the sidecar is written last: it marks an entry complete
    return entries, size


def local_cache(ws: Workspace, what: str) -> Path:
    """The workspace's cache dir; a UserError if the cache is a remote server."""
    if ws.paths.cache.startswith(("http://", "https://")):
        where = (Where("BUILDSYS_CACHE_DIR") if ws.environ.get("BUILDSYS_CACHE_DIR")
                 else Where(str(ws.project.root / "buildsys.yaml")))
        raise UserError(f"cache {what} works only on a local cache directory, and this cache is an http(s) URL",
                        where, hint="run it on the cache server, or point BUILDSYS_CACHE_DIR at a directory")
    return Path(ws.paths.cache)


class Cache(Command):
    name = "cache"
    help = "show the artifact cache's size (info), or trim it to a size (gc)"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
        sub.add_parser("info", help="the cache dir, its size and number of entries",
                       description="the cache dir, its size and number of entries")
        gc = sub.add_parser("gc", help="remove entries until the cache fits in SIZE",
                            description="remove entries until the cache fits in SIZE (a local cache dir only)")
        gc.add_argument("--max-size", required=True, metavar="SIZE", help=f"the size to trim to ({SIZE_HINT})")
        push = sub.add_parser("push", help="sign and push the targets' artifacts from the local cache",
                              description="sign (signing_key) and push to the shared cache every artifact the "
                                          "targets need that the local cache holds and the shared cache lacks: "
                                          "seeds a shared cache from a warm local one")
        push.add_argument("target", nargs="*", help="recipes (default: the board's default image)")
        board_option(push)
        up = sub.add_parser("upload-downloads", help="PUT every source file the targets need to a premirror",
                            description="fetch every source file the targets need (and the build environment's "
                                        "packages), check each against its sha256, and PUT those the server lacks "
                                        "to URL/<name> (a WebDAV dir: docs/shared-cache.md)")
        up.add_argument("target", nargs="*", help="recipes (default: the board's default image)")
        board_option(up)
        up.add_argument("--to", metavar="URL",
                        help="the premirror (default: the first http(s) URL in premirrors / BUILDSYS_PREMIRRORS)")

    def run(self, args):
        if args.cache_command == "push":
            return push_artifacts(Workspace(args), args.target)
        if args.cache_command == "upload-downloads":
            return upload_downloads(Workspace(args), args.target, args.to)
        if args.cache_command == "gc":
            try:
                max_size = parse_size(args.max_size)
            except ValueError as exc:
                raise UserError(str(exc), Where("--max-size"), hint=SIZE_HINT) from None
            ws = Workspace(args)
            root = local_cache(ws, "gc")
            from ..cache import gc

            removed, freed = gc(root, max_size)
            entries, size = usage(root)
            print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}, freed {format_size(freed)}; "
                  f"{root}: {format_size(size)} in {entries} entr{'y' if entries == 1 else 'ies'}")
            return 0
        ws = Workspace(args)
        root = local_cache(ws, "info")
        entries, size = usage(root)
        print(f"cache:   {root}")
        print(f"size:    {format_size(size)} ({size} bytes)")
        print(f"entries: {entries}")
        return 0


def upload_downloads(ws: Workspace, targets: list[str], to: str | None) -> int:
    """Fill a premirror with what the targets need: every file is fetched
    (or found in the download dir) and its sha256 checked as the fetcher does,
    hashed again from the open file just before the PUT (what is sent is what
    was checked), and skipped when the server has a file of that size.  Git
    sources are not files in the download dir (a fetch builds their tarball),
    nor are layer files: both are left out."""
    import hashlib

    import requests

    from .. import buildenv
    from ..cache import _redacted, _short
    from ..executor import sources_of
    from ..fetch import fetch_many
    from ..graph import recipe_graph

    config = ws.fetch_config()
    base = to or next((m for m in config.premirrors if m.startswith(("http://", "https://"))), None)
    if not base:
        raise UserError("no premirror to upload to", Where("--to"),
                        hint="give --to http://server/downloads, or set premirrors: in buildsys.yaml")
    if not base.startswith(("http://", "https://")):
        raise UserError(f"'{base}' is not an http(s) URL", Where("--to"), hint="e.g. http://server/downloads")
    base = base.rstrip("/")
    shown = _redacted(base)
    rgraph = recipe_graph(ws.resolver, ws.targets(targets))
    sources = [s for pn in sorted(rgraph.nodes) for s in sources_of(rgraph.nodes[pn]["recipe"])]
    env = buildenv.for_project(ws.project)
    if env is not None:
        sources += env.sources(config)
    paths = fetch_many(sources, config)         # every file verified against its sha256
    files = {s.name: (s, path) for s, path in paths.items()
             if not s.is_local and not s.scheme.startswith("git") and s.sha256}
    session = requests.Session()
    sent = present = 0
    for name, (source, path) in sorted(files.items()):
        url = f"{base}/{name}"
        try:
            head = session.head(url, timeout=(5, 30), allow_redirects=True)
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if head.status_code == 200 and head.headers.get("Content-Length") == str(size):
                    present += 1
                    continue
                if hashlib.file_digest(f, "sha256").hexdigest() != source.sha256:
                    raise UserError(f"{path} changed after it was fetched: its sha256 is not the recipe's "
                                    f"{source.sha256}", source.where, hint="delete it and run `buildsys fetch`")
                f.seek(0)
                r = session.put(url, data=f, timeout=(5, 120))
        except requests.RequestException as exc:
            raise UserError(f"uploading {name} to {shown} failed: {_short(exc)}", Where("--to")) from None
        if r.status_code not in (200, 201, 204):
            raise UserError(f"uploading {name} to {shown} failed: HTTP {r.status_code}", Where("--to"),
                            hint="the server must take PUT (WebDAV) from this machine: docs/shared-cache.md")
        sent += 1
        print(f"uploaded {name} ({format_size(size)})")
    print(f"{shown}: {sent} file(s) uploaded, {present} already there; "
          f"{len(paths) - len(files)} source(s) left out (git checkouts, layer files)")
    return 0


def push_artifacts(ws: Workspace, targets: list[str]) -> int:
    """`buildsys cache push`: what the targets need, from the local cache to the shared one, signed."""
    from .. import engine
    from ..cache import _Unavailable
    from ..sharedcache import LayeredCache

    session = engine.new_session(ws, engine.BuildOptions(push=True))
    cache = session.cache
    where = ws.project.settings_where.get("shared_cache") or Where(str(ws.project.root / "buildsys.yaml"))
    if not isinstance(cache, LayeredCache):
        raise UserError("no shared cache to push to", where,
                        hint="set shared_cache in buildsys.yaml or local.yaml, or BUILDSYS_SHARED_CACHE")
    if cache.signer is None:
        raise UserError("pushing needs a signing key", ws.project.settings_where.get("signing_key") or where,
                        hint="set signing_key in local.yaml (`buildsys key new NAME` makes one)")
    session.plan(ws.targets(targets))
    counts = {"pushed": 0, "there": 0, "absent": 0}
    absent = []
    for pn, sig in sorted(session.sigs.items()):
        try:
            status = cache.push_entry(sig)
        except _Unavailable as exc:
            raise UserError(f"pushing {pn} to {cache.shared.label} failed: {exc}", where) from None
        counts[status] += 1
        if status == "absent":
            absent.append(pn)
        elif status == "pushed":
            print(f"pushed {pn} ({sig[:12]})")
    missing = f" ({', '.join(absent)}: build them first)" if absent else ""
    print(f"{cache.shared.label}: {counts['pushed']} pushed, {counts['there']} already there, "
          f"{counts['absent']} not in the local cache{missing}")
    return 0 if not absent else 1

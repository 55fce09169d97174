"""`buildsys cache info|gc`: the artifact cache's size, and trimming it."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UserError, Where
from ..workspace import Workspace
from .base import Command

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

    def run(self, args):
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

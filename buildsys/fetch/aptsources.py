"""The Debian archive this host's apt uses, read from its configuration at run time.

Nothing in the project names an archive host: the URL comes from
/etc/apt/sources.list and /etc/apt/sources.list.d/*.list|*.sources (deb822),
or from the user's ``debian_archive`` setting.
"""
from __future__ import annotations

import re
from pathlib import Path

APT_DIR = Path("/etc/apt")


def archive_urls(apt_dir: Path = APT_DIR) -> list[str]:
    """Archive base URLs in apt's order, the main archive (not -security/-updates) first."""
    entries: list[tuple[str, list[str]]] = []
    one_line = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list"))
    for path in one_line:
        entries += _one_line_entries(path)
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        entries += _deb822_entries(path)
    main: list[str] = []
    other: list[str] = []
    for uri, suites in entries:
        uri = uri.rstrip("/")
        if not uri.startswith(("http://", "https://", "file:/")):
            continue
        is_main = any(not re.search(r"[-/](security|updates)$", s) for s in suites) and not uri.endswith("-security")
        bucket = main if is_main else other
        if uri not in main and uri not in other:
            bucket.append(uri)
    return main + other


def _one_line_entries(path: Path):
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)   # [arch=amd64 signed-by=...]
        words = line.split()
        if len(words) >= 3 and words[0] in ("deb", "deb-src"):
            out.append((words[1], [words[2]]))
    return out


def _deb822_entries(path: Path):
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if not set(fields.get("types", "").split()) & {"deb", "deb-src"}:
            continue
        for uri in fields.get("uris", "").split():
            out.append((uri, fields.get("suites", "").split()))
    return out

"""Incremental rebuilds: when a recipe's signature changed, may its last
work dir (unpacked sources, object dir) be kept, so that make rebuilds only
what the change requires?

Only when the change is one the build system itself tracks, and nothing
else changed.  Kbuild (the kernel, busybox) records per object which config
symbols it used and the exact command line, so a changed config fragment
recompiles just what depends on it.  A live working tree is synced file by
file, keeping times (livesync.py), so make sees which sources are newer than
their objects; when no build file changed (configure.ac, CMakeLists.txt,
meson.build, a Makefile... see livetree.CONFIGURE_FILES) the configure step
is not run again either, as Yocto's externalsrc does.  Anything else -- a new compiler or engine, another
dependency, a changed patch, CFLAGS -- is a clean build: plain Makefiles do
not notice a changed flag, and staged dependencies carry clamped times.

The result must still be the bytes a clean build gives (tests compare both);
this module decides only which work may be skipped.  The work dir's record
(``stamps/workdir.json``) is the full signature input of the build that
last completed its compile task there.
"""
from __future__ import annotations

import json
from pathlib import Path

WORKDIR_RECORD = "workdir.json"

# Per build class: the recipe values its build system tracks by itself.
TRACKED_VALUES: dict[str, frozenset[str]] = {
    "kernel": frozenset({"config_fragments", "base", "tree_fragments"}),
    "kconfig": frozenset({"config", "config_fragments", "defconfig", "olddefconfig"}),
}
# Signature inputs that must be equal (besides the values).
_SAME = ("engine", "buildenv", "recipe", "class", "target", "extra", "deps")

CONFIGURE = "configure"   # keep sources and objects; start at configure
SYNC = "sync"             # live source: sync the tree into the kept source dir, keep objects, configure again
SYNC_COMPILE = "sync-compile"   # the same, but configure's inputs did not change: no configure step


def read_record(stamps: Path) -> dict | None:
    """The signature inputs the work dir was last compiled with, or None."""
    path = stamps / WORKDIR_RECORD
    try:
        if path.is_symlink():
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data["sigdata"] if isinstance(data, dict) and isinstance(data.get("sigdata"), dict) else None


def record(sig: str, sigdata: dict) -> str:
    return json.dumps({"sig": sig, "sigdata": sigdata}, sort_keys=True)


def _is_live(values: dict) -> bool:
    sources = values.get("sources") or []
    return bool(sources) and isinstance(sources[0], dict) and "live_tree" in sources[0]


def reuse(old: dict | None, new: dict, class_name: str) -> str | None:
    """How much of the work dir built with ``old`` inputs a build with
    ``new`` inputs may keep: CONFIGURE, SYNC or None (clean build)."""
    if old is None or any(old.get(key) != new.get(key) for key in _SAME):
        return None
    old_values, new_values = old.get("values") or {}, new.get("values") or {}
    changed = {key for key in set(old_values) | set(new_values) if old_values.get(key) != new_values.get(key)}
    tracked = TRACKED_VALUES.get(class_name, frozenset())
    live = _is_live(new_values)
    if live and _is_live(old_values):
        changed.discard("sources")
        if old_values["sources"][0].get("live_configure") != new_values["sources"][0].get("live_configure"):
            # A build file changed: only Kbuild configures again in a kept
            # object dir; anything else (a Makefile's flags, meson.build) is clean.
            return SYNC if tracked and changed <= tracked else None
        if not changed:
            return SYNC_COMPILE
    elif "sources" in changed:
        return None
    if not changed <= tracked:
        return None
    return SYNC if live else CONFIGURE

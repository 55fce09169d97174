"""The artifact cache a build uses: this machine's cache, in front of the
team's shared cache when the project names one (docs/shared-cache.md)."""
from __future__ import annotations

from .cache import CacheBackend, open_cache


def artifact_cache(ws, push: bool | None = None) -> CacheBackend:
    """The cache stack for a workspace's builds."""
    return open_cache(ws.paths.cache)

"""Fetching sources: backends per URL scheme, mirrors, the shared download dir, unpack, patch.

The contract every backend keeps is small (see ``backends.py``): can it handle
a URL, and download one file to a temporary path.  This module adds what all
of them share: sha256 verification, the ``.part`` + rename discipline, a
per-file lock, mirror order (premirrors, upstream, mirrors) and offline mode.
"""
from __future__ import annotations

from .checksum import local_checksum, sha256_file
from .fetcher import fetch, fetch_many, is_fetched
from .patch import apply_patches
from .source import FetchConfig, Source
from .unpack import source_date_epoch, unpack

__all__ = ["Source", "FetchConfig", "fetch", "fetch_many", "is_fetched", "local_checksum", "sha256_file",
           "unpack", "apply_patches", "source_date_epoch"]

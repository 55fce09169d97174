"""The things buildsys reasons about: layers, boards, recipes."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import Where


@dataclass(frozen=True)
class GitPin:
    """Where a layer from git comes from: ``layers: [{url, commit, branch, path}]``."""

    url: str
    commit: str
    branch: str | None = None
    subdir: str | None = None      # the entry's ``path:``, the repository dir holding layer.yaml


@dataclass(frozen=True)
class Layer:
    name: str
    priority: int
    path: Path
    depends: tuple[str, ...] = ()
    config: str = ""           # the layer.yaml (or buildsys.yaml for the core)
    # The ``layers:`` item naming it (buildsys.yaml or local.yaml), None for
    # layers/<name>/ of the project, the core and BUILDSYS_LAYERS.
    named_at: Where | None = field(default=None, compare=False)
    git: GitPin | None = None  # set for a layer pinned from git (a checkout in the layer cache)

    @property
    def recipes_dir(self) -> Path:
        return self.path / "recipes"

    @property
    def boards_dir(self) -> Path:
        return self.path / "board-configs"


@dataclass
class Board:
    name: str
    path: Path
    layer: Layer
    values: dict[str, Any]
    # Where each top-level key is set in the board file (nested values are
    # yamlio Maps/Seqs and carry their own positions).
    positions: dict[str, Where] = field(default_factory=dict, repr=False)

    def get(self, key: str, default=None):
        value = self.values.get(key)
        return default if value is None else value

    def where(self, key: str | None = None, sub: str | None = None) -> Where:
        """Where ``key`` (and within its mapping, ``sub``) is set; else the board file."""
        if key is None:
            return Where(str(self.path))
        value: Any = self.values.get(key)
        if sub is not None and hasattr(value, "where") and sub in value:
            return value.where(sub)
        return self.positions.get(key) or Where(str(self.path))

    @property
    def arch(self) -> str:
        return self.values["arch"]

    @property
    def kernel_arch(self) -> str:
        return self.values.get("kernel_arch") or {"x86_64": "x86", "aarch64": "arm64"}.get(self.arch, self.arch)

    @property
    def cross_prefix(self) -> str:
        return (self.values.get("toolchain") or {}).get("prefix", "")


@dataclass(frozen=True)
class FileRef:
    """A path written in a YAML file, relative to that file's directory."""

    raw: str
    base: str          # directory of the YAML file that named it
    layer_root: str    # the layer's directory, to name the file without absolute paths
    where: Where = field(compare=False)

    @property
    def path(self) -> Path:
        return Path(self.base) / self.raw

    @property
    def layer_relative(self) -> str:
        try:
            return str(self.path.resolve().relative_to(Path(self.layer_root).resolve()))
        except ValueError:
            return self.raw


_SOURCE_KEYS = ("url", "sha256", "git", "rev", "file", "name", "strip", "unpack", "dest", "allow_branch")


@dataclass(frozen=True)
class SourceEntry(Mapping):
    """One entry of a recipe's ``sources:``, checked when the recipe is parsed
    (schema.Sources).  Exactly one of url, git and file is set; None is "not
    written" (the fetch defaults apply, see executor.sources_of).

    It reads like the mapping it was written as -- ``entry["url"]``,
    ``"file" in entry``, ``entry.items()`` give the keys set -- which is also
    its form in signatures and package metadata.  Its position is beside the
    values, not among them."""

    url: str | None = None
    sha256: str | None = None
    git: str | None = None
    rev: str | None = None
    file: FileRef | None = None
    name: str | None = None
    strip: int | None = None
    unpack: bool | None = None
    dest: str | None = None
    allow_branch: bool | None = None
    where: Where | None = field(default=None, compare=False, repr=False)

    def __getitem__(self, key: str):
        value = getattr(self, key) if key in _SOURCE_KEYS else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self):
        return (key for key in _SOURCE_KEYS if getattr(self, key) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class HistoryEntry:
    op: str            # "=", "+", "-", "unset", "default"
    where: Where | None
    value: Any
    why: str = ""      # "recipe", "append", "arch:aarch64", "board:rpi4", "native"


@dataclass
class Recipe:
    """A recipe resolved for one board and variant."""

    name: str
    variant: str                  # "target" | "native"
    layer: Layer
    path: Path
    values: dict[str, Any]
    history: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    appends: tuple[Path, ...] = ()

    @cached_property
    def pn(self) -> str:
        # Asked ~30 times per recipe while graphing; name and variant never change.
        return self.name + "-native" if self.variant == "native" else self.name

    @property
    def version(self) -> str:
        return str(self.values.get("version") or "")

    @property
    def class_name(self) -> str:
        return self.values.get("class") or "script"

    def get(self, key: str, default=None):
        value = self.values.get(key)
        return default if value is None else value

    def where(self, key: str | None = None) -> Where:
        """Where a value was last set (or the recipe file)."""
        if key:
            for entry in reversed(self.history.get(key, ())):
                if entry.where is not None:
                    return entry.where
        return Where(str(self.path))

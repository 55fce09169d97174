"""The things buildsys reasons about: layers, boards, recipes."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import Where


@dataclass(frozen=True)
class Layer:
    name: str
    priority: int
    path: Path
    depends: tuple[str, ...] = ()
    config: str = ""           # the layer.yaml (or buildsys.yaml for the core)

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

    def get(self, key: str, default=None):
        value = self.values.get(key)
        return default if value is None else value

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
    where: Where

    @property
    def path(self) -> Path:
        return Path(self.base) / self.raw

    @property
    def layer_relative(self) -> str:
        try:
            return str(self.path.resolve().relative_to(Path(self.layer_root).resolve()))
        except ValueError:
            return self.raw


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

"""What every command needs: the project, its board, directories and settings."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError, Where
from .executor import BuildPaths
from .layers import PROJECT_FILE, Project, find_project, load_project
from .parsecache import ParseCache
from .resolve import Resolver, load_board


class Workspace:
    def __init__(self, args, environ=os.environ):
        self.environ = environ
        root = Path(args.project) if getattr(args, "project", None) else find_project(Path.cwd())
        if not (root / PROJECT_FILE).is_file():
            raise UserError(f"no {PROJECT_FILE} in {root}", Where("--project"), hint="not a buildsys project")
        self.project: Project = load_project(root, environ)
        build = getattr(args, "build_dir", None) or environ.get("BUILDSYS_BUILD_DIR") or self.project.root / "build"
        build = Path(build).absolute()
        self.paths = BuildPaths(
            build=build,
            dl=Path(environ.get("BUILDSYS_DL_DIR") or build / "downloads").absolute(),
            cache=environ.get("BUILDSYS_CACHE_DIR") or self.project.settings.get("cache") or str(build / "cache"),
        )
        self.project.parse_cache = ParseCache.for_build_dir(build, environ)
        if not self.paths.cache.startswith(("http://", "https://")):
            self.paths.cache = str(Path(self.paths.cache).absolute())
        self.board_name = getattr(args, "board", None) or self.project.settings["default_board"]
        # Where the board was named: the command line, or the project's default_board
        # (its line in buildsys.yaml or local.yaml; unset, the default x86-virtio).
        self._board_where = None if getattr(args, "board", None) else (
            self.project.settings_where.get("default_board") or Where(str(self.project.root / PROJECT_FILE), 1, 1))
        self._board = None
        self._resolver = None

    @property
    def board(self):
        if self._board is None:
            self._board = load_board(self.project, self.board_name, self._board_where)
        return self._board

    @property
    def resolver(self) -> Resolver:
        if self._resolver is None:
            self._resolver = Resolver(self.project, self.board)
        return self._resolver

    def fetch_config(self, offline: bool = False):
        from .fetch import FetchConfig

        settings = {k: self.project.settings.get(k) for k in ("premirrors", "mirrors", "offline", "debian_archive")
                    if self.project.settings.get(k) is not None}
        if offline:
            settings["offline"] = True
        return FetchConfig.from_settings(self.paths.dl, settings, self.environ)

    def targets(self, names: list[str] | None):
        """Recipes for the named targets (default: the board's default image)."""
        if not names:
            default = self.board.get("default_image")
            if not default:
                raise UserError(f"board '{self.board.name}' has no default_image", Where(str(self.board.path)),
                                hint="name a target")
            names = [default]
        out = []
        for name in names:
            variant = "target"
            base = name
            if name.endswith("-native"):
                base, variant = name[: -len("-native")], "native"
            if base not in self.project.recipe_files:
                from .schema import suggest
                raise UserError(f"unknown recipe '{name}'", Where("command line"),
                                hint=suggest(name, self.project.recipe_files) or "see `buildsys recipes`")
            out.append(self.resolver.recipe(base, variant))
        return out

    def rel(self, path) -> str:
        """A path relative to the project, for messages."""
        try:
            return str(Path(path).resolve().relative_to(self.project.root))
        except ValueError:
            return str(path)

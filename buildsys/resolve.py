"""Turning recipe files into Recipes for one board: layer priority, appends,
overrides, defaults, variables, providers and dependencies."""
from __future__ import annotations

import copy
import platform
from pathlib import Path

from . import classes, schema, yamlio
from .classes.base import SANDBOX_DEST, SANDBOX_NATIVE, SANDBOX_OBJ, SANDBOX_SRC, SANDBOX_SYSROOT, BuildClass
from .errors import UserError, Where
from .expand import expand_value
from .layers import Project
from .model import Board, HistoryEntry, Layer, Recipe
from .overrides import apply_block

HOST_ARCH = platform.machine()
VARIANTS = ("target", "native")


def _pick(candidates: list[tuple[Layer, Path]], what: str, name: str) -> tuple[Layer, Path]:
    """The file from the highest-priority layer; a tie is an error naming both."""
    best = max(layer.priority for layer, _ in candidates)
    top = [(layer, path) for layer, path in candidates if layer.priority == best]
    if len(top) > 1:
        raise UserError(f"{what} '{name}' is defined twice at priority {best}", Where(str(top[1][1])),
                        hint=f"also in {top[0][1]}; raise one layer's priority or remove one")
    return top[0]


def load_board(project: Project, name: str, where: Where | None = None) -> Board:
    if name not in project.board_files:
        raise UserError(f"unknown board '{name}'", where or Where("command line"),
                        hint=schema.suggest(name, project.board_files) or
                        f"known boards: {', '.join(sorted(project.board_files)) or 'none'}")
    layer, path = _pick(project.board_files[name], "board", name)
    data = yamlio.load(path)
    values = schema.validate_plain(data, schema.BOARD_KEYS, "board config", required=("name", "arch"))
    if values["name"] != name:
        raise UserError(f"board name '{values['name']}' does not match its file name '{name}.yaml'", data.where("name"))
    if values["arch"] not in ("x86_64", "aarch64", "arm", "riscv64"):
        raise UserError(f"unknown arch '{values['arch']}'", data.where("arch"), hint="x86_64 or aarch64")
    board = Board(name, path, layer, values)
    board.values["_where"] = {k: data.where(k) for k in data}
    return board


class Resolver:
    """Resolves recipes for one board.  Results are memoized per (name, variant)."""

    def __init__(self, project: Project, board: Board):
        self.project = project
        self.board = board
        self._raw: dict[str, tuple[Layer, Path, yamlio.Map]] = {}
        self._resolved: dict[tuple[str, str], Recipe] = {}
        self._providers: dict[str, list[str]] | None = None

    # --- files ----------------------------------------------------------------
    def raw(self, name: str) -> tuple[Layer, Path, yamlio.Map]:
        if name not in self._raw:
            layer, path = _pick(self.project.recipe_files[name], "recipe", name)
            data = yamlio.load(path)
            schema.check_format(data, "recipe")
            if "name" not in data:
                raise UserError("missing required key 'name'", data.where())
            if str(data["name"]) != name:
                raise UserError(f"recipe name '{data['name']}' does not match its file name '{name}.yaml'",
                                data.where("name"))
            self._raw[name] = (layer, path, data)
        return self._raw[name]

    def names(self) -> list[str]:
        return sorted(self.project.recipe_files)

    # --- one recipe -----------------------------------------------------------
    def recipe(self, name: str, variant: str = "target", where: Where | None = None) -> Recipe:
        key = (name, variant)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(name, variant, where)
        return self._resolved[key]

    def _resolve(self, name: str, variant: str, where: Where | None) -> Recipe:
        layer, path, data = self.raw(name)
        appends = []
        for alayer, apath in sorted(self.project.append_files.get(name, ()), key=lambda lp: (lp[0].priority, str(lp[1]))):
            adata = yamlio.load(apath)
            schema.check_format(adata, "append")
            appends.append((alayer, apath, adata))
        class_name = data.get("class", "script")
        class_where = data.where("class")
        for _, _, adata in appends:
            if "class" in adata:
                class_name, class_where = adata["class"], adata.where("class")
        build_class = classes.get(class_name, class_where)
        params = dict(schema.RECIPE_KEYS)
        params.update(build_class.params)

        values: dict = {}
        history: dict[str, list[HistoryEntry]] = {}
        apply_block(values, history, data, params, "recipe", str(layer.path))
        for alayer, apath, adata in appends:
            apply_block(values, history, adata, params, f"append {alayer.name}", str(alayer.path))

        variants = values.get("variants", ["target"])
        for i, v in enumerate(variants):
            if v not in VARIANTS:
                raise UserError(f"unknown variant '{v}'", data.where("variants"), hint="target or native")
        if variant not in variants:
            raise UserError(f"recipe '{name}' has no {variant} variant (variants: {', '.join(variants)})",
                            where or data.where(), hint=f"add '{variant}' to variants: in {path}")

        arch = HOST_ARCH if variant == "native" else self.board.arch
        selectors = [f"arch:{arch}"]
        if variant == "target":
            selectors.append(f"board:{self.board.name}")
        else:
            selectors.append("native")
        blocks = [(data, str(layer.path))] + [(adata, str(alayer.path)) for alayer, _, adata in appends]
        for block, root in blocks:
            overrides = block.get("overrides")
            if overrides is None:
                continue
            if not isinstance(overrides, dict):
                raise UserError("'overrides' must be a mapping", block.where("overrides"))
            for sel in overrides:
                if not (str(sel).startswith(("arch:", "board:")) or sel == "native"):
                    raise UserError(f"unknown override selector '{sel}'", overrides.where(sel, of_key=True),
                                    hint="use arch:<arch>, board:<board> or native")
                if not isinstance(overrides[sel], dict):
                    raise UserError(f"override '{sel}' must be a mapping", overrides.where(sel))
        for sel in selectors:
            for block, root in blocks:
                overrides = block.get("overrides") or {}
                if sel in overrides:
                    apply_block(values, history, overrides[sel], params, sel, root)

        for key, param in params.items():
            if key not in values and param.default is not None and key not in schema.META_KEYS:
                default = param.default
                values[key] = list(default) if isinstance(default, list) else (
                    dict(default) if isinstance(default, dict) else default)
        values["class"] = class_name
        recipe = Recipe(name, variant, layer, path, values, history, tuple(p for _, p, _ in appends))
        self._expand(recipe)
        return recipe

    def variables(self, recipe: Recipe) -> dict[str, str]:
        native = recipe.variant == "native"
        return {
            "name": recipe.name,
            "pn": recipe.pn,
            "version": recipe.version,
            "arch": HOST_ARCH if native else self.board.arch,
            "board": "native" if native else self.board.name,
            "kernel_arch": "x86" if native else self.board.kernel_arch,
            "cross_compile": "" if native else self.board.cross_prefix,
            "destdir": SANDBOX_DEST,
            "S": SANDBOX_SRC,
            "B": SANDBOX_OBJ,
            "sysroot": SANDBOX_SYSROOT,
            "native": SANDBOX_NATIVE,
        }

    def _expand(self, recipe: Recipe) -> None:
        variables = self.variables(recipe)
        for key in list(recipe.values):
            if key == "version":
                continue
            recipe.values[key] = expand_value(recipe.values[key], variables, recipe.where(key), schema.suggest)

    # --- providers and dependencies -------------------------------------------
    def providers(self) -> dict[str, list[str]]:
        """virtual name -> names of recipes providing it (every recipe, target variant)."""
        if self._providers is None:
            table: dict[str, list[str]] = {}
            for name in self.names():
                layer, path, data = self.raw(name)
                if "target" not in (data.get("variants") or ["target"]) and not self._mentions_provides(name):
                    continue
                recipe = self.recipe(name, "target") if "target" in (data.get("variants") or ["target"]) else None
                if recipe is None:
                    continue
                for virtual in recipe.get("provides", []):
                    table.setdefault(virtual, []).append(name)
            self._providers = table
        return self._providers

    def _mentions_provides(self, name: str) -> bool:
        return False

    def lookup(self, dep: str, requester: Recipe, where) -> Recipe:
        """The recipe a dependency name means for ``requester``.

        ``where`` may be a callable: positions are only worked out for errors."""
        variant = requester.variant
        if callable(where):
            where_fn = where
            where = _Lazy(where_fn)
        name = dep
        if dep.endswith("-native"):
            name, variant = dep[: -len("-native")], "native"
        if name.startswith("virtual/"):
            if variant == "native":
                raise UserError(f"virtual dependency '{dep}' in a native build", where,
                                hint="native recipes name their native dependencies directly")
            name = self._provider(name, requester, where)
        elif name not in self.project.recipe_files:
            if name in self.providers():
                name = self._provider(name, requester, where)
            else:
                known = list(self.project.recipe_files) + [n + "-native" for n in self.project.recipe_files]
                raise UserError(f"{requester.pn}: unresolved dependency '{dep}'", where,
                                hint=schema.suggest(dep, known) or "no recipe or provider has this name")
        return self.recipe(name, variant, where)

    def _provider(self, virtual: str, requester: Recipe, where: Where) -> str:
        candidates = self.providers().get(virtual, [])
        preferred = (self.board.get("preferred_providers") or {}).get(virtual)
        if preferred:
            if preferred not in self.project.recipe_files:
                raise UserError(f"preferred provider '{preferred}' for '{virtual}' is not a recipe",
                                self.board.values["_where"].get("preferred_providers", Where(str(self.board.path))),
                                hint=schema.suggest(preferred, self.project.recipe_files))
            return preferred
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise UserError(f"{requester.pn}: nothing provides '{virtual}'", where,
                            hint=schema.suggest(virtual, self.providers()) or
                            f"add a recipe with provides: [{virtual}]")
        raise UserError(f"{requester.pn}: several recipes provide '{virtual}': {', '.join(sorted(candidates))}",
                        where, hint=f"set preferred_providers: {{{virtual}: ...}} in {self.board.path}")

    def build_class(self, recipe: Recipe) -> BuildClass:
        return classes.get(recipe.class_name, recipe.where("class"))()

    def depends(self, recipe: Recipe) -> list[Recipe]:
        """Build-time dependencies, including the class's implicit ones."""
        names: list[tuple[str, Where]] = []
        build_class = self.build_class(recipe)
        if recipe.variant == "target":
            implicit = [d for d in build_class.implicit_depends if d != "virtual/toolchain"]
            wants = recipe.values.get("toolchain")
            if wants or (wants is None and "virtual/toolchain" in build_class.implicit_depends):
                implicit.append("virtual/toolchain")
            names += [(d, recipe.where("class")) for d in implicit]
        elif recipe.variant == "native":
            names += [(d, recipe.where("class")) for d in getattr(build_class, "native_implicit_depends", ())]
        names += [(d, self._item_where_fn(recipe, "depends", d)) for d in recipe.get("depends", [])]
        for d in build_class.build_depends(recipe, self.board):
            names.append((d, self._item_where_fn(recipe, "packages", d)))
        out, seen = [], set()
        if build_class.installs_packages:
            for r in self.install_closure(recipe.get("packages", []), recipe):
                seen.add(r.pn)
                out.append(r)
        for dep, where in names:
            found = self.lookup(dep, recipe, where)
            if found is recipe:
                continue
            if found.pn not in seen:
                seen.add(found.pn)
                out.append(found)
        return out

    def rdepends(self, recipe: Recipe) -> list[Recipe]:
        return [self.lookup(d, recipe, self._item_where_fn(recipe, "rdepends", d)) for d in recipe.get("rdepends", [])]

    def install_closure(self, names: list[str], requester: Recipe) -> list[Recipe]:
        """Packages an image installs: the named ones and their rdepends, transitively."""
        out: dict[str, Recipe] = {}
        stack = [self.lookup(n, requester, self._item_where_fn(requester, "packages", n)) for n in names]
        while stack:
            r = stack.pop()
            if r.pn in out:
                continue
            out[r.pn] = r
            stack.extend(self.rdepends(r))
        return [out[k] for k in sorted(out)]

    @classmethod
    def _item_where_fn(cls, recipe, key, item):
        return lambda: cls._item_where(recipe, key, item)

    @staticmethod
    def _item_where(recipe: Recipe, key: str, item: str) -> Where:
        for entry in reversed(recipe.history.get(key, ())):
            value = entry.value
            if isinstance(value, list) and item in value and hasattr(value, "where"):
                return value.where(value.index(item))
            if isinstance(value, list) and item in value:
                return entry.where
        return recipe.where(key)


class _Lazy:
    """A position worked out when first printed (errors only)."""

    def __init__(self, fn):
        self._fn = fn

    def __str__(self) -> str:
        return str(self._fn())

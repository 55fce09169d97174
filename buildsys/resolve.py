"""Turning recipe files into Recipes for one board: layer priority, appends,
overrides, defaults, variables, providers and dependencies."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from . import classes, livetree, schema, secureboot, sshkeys, yamlio
from .classes.base import SANDBOX_DEST, SANDBOX_NATIVE, SANDBOX_OBJ, SANDBOX_SRC, SANDBOX_SYSROOT, BuildClass
from .errors import UserError, Where
from .expand import expand_value
from .image import disk
from .layers import Project
from .model import Board, FileRef, HistoryEntry, Layer, Recipe, SourceEntry
from .overrides import apply_block

HOST_ARCH = platform.machine()
VARIANTS = schema.VARIANTS


def _pick(candidates: list[tuple[Layer, Path]], what: str, name: str) -> tuple[Layer, Path]:
    """The file from the highest-priority layer; a tie is an error naming both."""
    best = max(layer.priority for layer, _ in candidates)
    top = [(layer, path) for layer, path in candidates if layer.priority == best]
    if len(top) > 1:
        raise UserError(f"{what} '{name}' is defined twice at priority {best}", Where(str(top[1][1]), 1, 1),
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
    if "disk" in data and data["disk"] is not None:
        # What the image class will make of it, checked now, with positions.
        disk.parse_layout(values["disk"], name, data.where("disk"), arch=values["arch"])
    return Board(name, path, layer, values, {k: data.where(k) for k in data})


class Resolver:
    """Resolves recipes for one board.  Results are memoized per (name, variant).

    Every recipe and append file is parsed in one pass when the first is
    needed (through the project's parse cache, which is then saved); a file's
    parse error is kept and raised only when that file is used, as before.
    """

    def __init__(self, project: Project, board: Board):
        self.project = project
        self.board = board
        self._raw: dict[str, tuple[Layer, Path, yamlio.Map]] = {}
        self._resolved: dict[tuple[str, str], Recipe] = {}
        self._providers: dict[str, list[str]] | None = None
        self._parsed: dict[str, yamlio.Map | UserError] | None = None
        self._class_tables: dict[type, tuple[dict, list, tuple]] = {}
        self._classes: dict[str, type[BuildClass]] = {}
        self._board_vars: dict[str, dict[str, str]] = {}
        self.check_live_sources()

    # --- files ----------------------------------------------------------------
    def _parse_all(self) -> dict:
        if self._parsed is None:
            paths = []
            for name, candidates in self.project.recipe_files.items():
                try:
                    paths.append(str(_pick(candidates, "recipe", name)[1]))
                except UserError:
                    pass  # raised again, unchanged, when the recipe is used
            for candidates in self.project.append_files.values():
                paths += [str(path) for _, path in candidates]
            cache = self.project.parse_cache
            parsed: dict[str, yamlio.Map | UserError] = {}
            for path in paths:
                try:
                    parsed[path] = cache.load(path)
                except UserError as exc:
                    parsed[path] = exc
            cache.save()
            self._parsed = parsed
        return self._parsed

    def _load(self, path: Path) -> yamlio.Map:
        tree = self._parse_all().get(str(path))
        if tree is None:  # not a file the project indexed
            tree = self.project.parse_cache.load(path)
        if isinstance(tree, UserError):
            raise tree
        return tree

    def raw(self, name: str) -> tuple[Layer, Path, yamlio.Map]:
        found = self._raw.get(name)
        if found is None:
            layer, path = _pick(self.project.recipe_files[name], "recipe", name)
            data = self._load(path)
            schema.check_format(data, "recipe")
            if "name" not in data:
                raise UserError("missing required key 'name'", data.where())
            if str(data["name"]) != name:
                raise UserError(f"recipe name '{data['name']}' does not match its file name '{name}.yaml'",
                                data.where("name"))
            found = self._raw[name] = (layer, path, data)
        return found

    def names(self) -> list[str]:
        return sorted(self.project.recipe_files)

    # --- one recipe -----------------------------------------------------------
    def recipe(self, name: str, variant: str = "target", where=None) -> Recipe:
        """``where`` (for the error when the variant is missing) may be a callable."""
        found = self._resolved.get((name, variant))
        if found is None:
            found = self._resolved[(name, variant)] = self._resolve(name, variant, where)
        return found

    def _class_table(self, build_class: type[BuildClass]) -> tuple[dict, list, tuple]:
        """The keys a class's recipes accept, the defaults to fill in (in
        that order) and the keys whose values hold layer files: the same for
        every recipe of the class, so built once."""
        table = self._class_tables.get(build_class)
        if table is None:
            params = dict(schema.RECIPE_KEYS)
            params.update(build_class.params)
            defaults = [(key, setting.default, _plain(setting.default)) for key, setting in params.items()
                        if setting.default is not None and key not in schema.META_KEYS]
            file_keys = tuple(key for key, setting in params.items() if setting.holds_files)
            table = self._class_tables[build_class] = (params, defaults, file_keys)
        return table

    def _appends(self, name: str) -> list[tuple[Layer, Path, yamlio.Map]]:
        appends = []
        append_files = self.project.append_files.get(name)
        if append_files:
            for alayer, apath in sorted(append_files, key=lambda lp: (lp[0].priority, str(lp[1]))):
                adata = self._load(apath)
                schema.check_format(adata, "append")
                appends.append((alayer, apath, adata))
        return appends

    def _extended(self, name: str, data: yamlio.Map) -> list[tuple[str, Layer, yamlio.Map]]:
        """The blocks of the recipes ``data`` extends (``extends: NAME``), base
        first, each followed by its appends: an append that moves linux to
        another version moves every recipe extending linux too."""
        chain: list[tuple[str, Layer, yamlio.Map]] = []
        seen = [name]
        while data.get("extends") is not None:
            base = data["extends"]
            if base.__class__ is not str or base not in self.project.recipe_files:
                raise UserError(f"'extends: {base}' names no recipe", data.where("extends"),
                                hint=schema.suggest(str(base), self.project.recipe_files) or "see 'buildsys recipes'")
            if base in seen:
                raise UserError(f"'extends' loops: {' -> '.join(seen + [base])}", data.where("extends"))
            seen.append(base)
            blayer, _, data = self.raw(base)
            chain[:0] = [(f"extends {base}", blayer, data)] + [
                (f"append {alayer.name} (of {base})", alayer, adata) for alayer, _, adata in self._appends(base)]
        return chain

    def _resolve(self, name: str, variant: str, where) -> Recipe:
        layer, path, data = self.raw(name)
        appends = self._appends(name)
        bases = self._extended(name, data) if "extends" in data else []
        class_name, class_block = data.get("class"), data
        if class_name is None:
            for _, _, bdata in reversed(bases):
                if bdata.get("class") is not None:
                    class_name, class_block = bdata["class"], bdata
                    break
        for _, _, adata in appends:
            if adata.get("class") is not None:
                class_name, class_block = adata["class"], adata
        if class_name is None:
            class_name = "script"
        elif class_name.__class__ is not str:
            class_name = schema.RECIPE_KEYS["class"].parse(class_name, class_block.where("class"))
        build_class = self._classes.get(class_name)
        if build_class is None:
            build_class = classes.get(class_name, class_block.where("class"))
            self._classes[class_name] = build_class
        params, defaults, file_keys = self._class_table(build_class)

        values: dict = {}
        history: dict[str, list[HistoryEntry]] = {}
        for why, blayer, bdata in bases:
            apply_block(values, history, bdata, params, why, str(blayer.path), skip=_NOT_EXTENDED)
        apply_block(values, history, data, params, "recipe", str(layer.path))
        for alayer, _, adata in appends:
            apply_block(values, history, adata, params, f"append {alayer.name}", str(alayer.path))

        variants = values.get("variants", ["target"])
        if variant not in variants:
            raise UserError(f"recipe '{name}' has no {variant} variant (variants: {', '.join(variants)})",
                            _as_where(where) or data.where(), hint=f"add '{variant}' to variants: in {path}")

        blocks = [(bdata, str(blayer.path)) for _, blayer, bdata in bases] + [(data, str(layer.path))] + [
            (adata, str(alayer.path)) for alayer, _, adata in appends]
        if any("overrides" in block for block, _ in blocks):
            self._apply_overrides(values, history, params, blocks, variant)

        plain_defaults = set()   # filled with values expansion would only copy
        for key, default, plain in defaults:
            if key not in values:
                values[key] = list(default) if isinstance(default, list) else (
                    dict(default) if isinstance(default, dict) else default)
                if plain:
                    plain_defaults.add(key)
        values["class"] = class_name
        recipe = Recipe(name, variant, layer, path, values, history, tuple(p for _, p, _ in appends))
        self._expand(recipe, plain_defaults)
        for key in file_keys:
            value = values.get(key)
            if value:
                _check_files(value)
        live = self.project.settings.get("live_sources")
        if live and name in live:
            self._go_live(recipe, live[name])
        return recipe

    def _go_live(self, recipe: Recipe, value: str) -> None:
        """``buildsys source NAME --local DIR``: the working tree replaces the
        recipe's sources, and its patches (the tree is the patched source)."""
        where = self.project.settings_where.get("live_sources")
        path = livetree.resolve_dir(self.project.root, value)
        if not path.is_dir():
            raise UserError(f"live source of '{recipe.name}' is {path}, which is not a directory", where,
                            hint=f"`buildsys source {recipe.name} --reset` builds from the recipe's sources again")
        recipe.values["live_source"] = str(path.resolve())
        recipe.values["sources"] = []
        recipe.values["patches"] = []
        recipe.history.setdefault("live_source", []).append(HistoryEntry("=", where, str(path), "live source"))

    def check_live_sources(self) -> None:
        """live_sources: per machine (local.yaml), and naming recipes that exist.
        signing_key too is per machine (a private key's path: docs/shared-cache.md)."""
        key_where = self.project.settings_where.get("signing_key")
        if self.project.settings.get("signing_key") and key_where is not None \
                and not key_where.path.endswith("local.yaml"):
            raise UserError("signing_key belongs in local.yaml (it names this machine's private key)", key_where,
                            hint="move it to local.yaml, or set BUILDSYS_SIGNING_KEY")
        live = self.project.settings.get("live_sources") or {}
        if not live:
            return
        where = self.project.settings_where.get("live_sources")
        if where is not None and not where.path.endswith("local.yaml"):
            raise UserError("live_sources belongs in local.yaml (it names directories of this machine)", where,
                            hint="move it to local.yaml, or use `buildsys source RECIPE --local DIR`")
        for name in live:
            if name not in self.project.recipe_files:
                raise UserError(f"live_sources names recipe '{name}', which no layer has", where,
                                hint=schema.suggest(name, self.project.recipe_files) or "see `buildsys recipes`")

    def _apply_overrides(self, values, history, params, blocks, variant: str) -> None:
        arch = HOST_ARCH if variant == "native" else self.board.arch
        selectors = [f"arch:{arch}"]
        if variant == "target":
            selectors.append(f"board:{self.board.name}")
        else:
            selectors.append("native")
        for block, _ in blocks:
            overrides = block.get("overrides")
            if overrides is None:
                continue
            if not isinstance(overrides, yamlio.Map):
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

    def variables(self, recipe: Recipe) -> dict[str, str]:
        native = recipe.variant == "native"
        board_vars = self._board_vars.get(recipe.variant)
        if board_vars is None:  # the same for every recipe of this variant
            from .minisign import keys_variable
            board_vars = self._board_vars[recipe.variant] = {
                "arch": HOST_ARCH if native else self.board.arch,
                "board": "native" if native else self.board.name,
                "kernel_arch": "x86" if native else self.board.kernel_arch,
                "cross_compile": "" if native else self.board.cross_prefix,
                "destdir": SANDBOX_DEST,
                "S": SANDBOX_SRC,
                "B": SANDBOX_OBJ,
                "sysroot": SANDBOX_SYSROOT,
                "native": SANDBOX_NATIVE,
                # The developer's SSH public keys, one per line (sshkeys.py):
                # a recipe naming them has them in its signature.
                "ssh_authorized_keys": "\n".join(sshkeys.project_keys(self.project.settings, self.project.environ)),
                # The product's update keys, KEYID:BASE64 each (minisign.py): the
                # update-client recipe installs them, so a new key rebuilds it.
                "update_keys": keys_variable(self.project.root, self.project.settings,
                                             self.project.settings_where),
                # The secure boot db certificate as PEM text ("" without one): an
                # image's value, so its signature covers the certificate, never
                # the secret key (secureboot.py finds that at signing time).
                "secure_boot_cert": secureboot.project_cert(self.project),
            }
        return {"name": recipe.name, "pn": recipe.pn, "version": recipe.version, **board_vars}

    def _expand(self, recipe: Recipe, skip=frozenset()) -> None:
        variables = self.variables(recipe)
        values = recipe.values
        for key, value in list(values.items()):
            if key == "version" or key in skip or (value.__class__ is str and "${" not in value):
                continue  # nothing to expand: keep the very same value
            # The position is only worked out for an error: most values have none.
            values[key] = expand_value(value, variables, lambda key=key: recipe.where(key), schema.suggest)

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
        name = dep
        if dep.endswith("-native"):
            name, variant = dep[: -len("-native")], "native"
        if name.startswith("virtual/"):
            if variant == "native":
                raise UserError(f"virtual dependency '{dep}' in a native build", _as_where(where),
                                hint="native recipes name their native dependencies directly")
            name = self._provider(name, requester, where)
        elif name not in self.project.recipe_files:
            if name in self.providers():
                name = self._provider(name, requester, where)
            else:
                known = list(self.project.recipe_files) + [n + "-native" for n in self.project.recipe_files]
                raise UserError(f"{requester.pn}: unresolved dependency '{dep}'", _as_where(where),
                                hint=schema.suggest(dep, known) or "no recipe or provider has this name")
        return self.recipe(name, variant, where)

    def _provider(self, virtual: str, requester: Recipe, where) -> str:
        candidates = self.providers().get(virtual, [])
        preferred = (self.board.get("preferred_providers") or {}).get(virtual)
        if preferred:
            if preferred not in self.project.recipe_files:
                raise UserError(f"preferred provider '{preferred}' for '{virtual}' is not a recipe",
                                self.board.where("preferred_providers", virtual),
                                hint=schema.suggest(preferred, self.project.recipe_files))
            return preferred
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise UserError(f"{requester.pn}: nothing provides '{virtual}'", _as_where(where),
                            hint=schema.suggest(virtual, self.providers()) or
                            f"add a recipe with provides: [{virtual}]")
        raise UserError(f"{requester.pn}: several recipes provide '{virtual}': {', '.join(sorted(candidates))}",
                        _as_where(where), hint=f"set preferred_providers: {{{virtual}: ...}} in {self.board.path}")

    def build_class(self, recipe: Recipe) -> BuildClass:
        cls = self._classes.get(recipe.class_name)
        if cls is None:
            cls = self._classes[recipe.class_name] = classes.get(recipe.class_name, recipe.where("class"))
        return cls()

    def depends(self, recipe: Recipe) -> list[Recipe]:
        """Build-time dependencies, including the class's implicit ones."""
        names: list[tuple[str, object]] = []   # (name, position or a callable giving it)
        build_class = self.build_class(recipe)
        class_where = lambda: recipe.where("class")  # noqa: E731 -- only for errors
        if recipe.variant == "target":
            implicit = [d for d in build_class.implicit_depends if d != "virtual/toolchain"]
            wants = recipe.values.get("toolchain")
            if wants or (wants is None and "virtual/toolchain" in build_class.implicit_depends):
                implicit.append("virtual/toolchain")
            names += [(d, class_where) for d in implicit]
        elif recipe.variant == "native":
            names += [(d, class_where) for d in getattr(build_class, "native_implicit_depends", ())]
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
            if isinstance(value, list) and item in value and entry.where is not None:
                return entry.where
        return recipe.where(key)


# What a recipe does not take from the one it extends: its identity.
_NOT_EXTENDED = ("format", "overrides", "name", "extends")


def _check_files(value) -> None:
    """Every layer file a resolved recipe names exists and is inside its layer
    (found now, at its position, rather than when a task needs it)."""
    refs: list
    if isinstance(value, FileRef):
        refs = [value]
    elif isinstance(value, list):
        refs = [v.file if v.__class__ is SourceEntry else v for v in value]
    else:
        return
    for ref in refs:
        if ref.__class__ is not FileRef:
            continue
        path = ref.path
        root = os.path.realpath(ref.layer_root)
        real = os.path.realpath(path)
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            raise UserError(f"file '{ref.raw}' is outside its layer", ref.where,
                            hint=f"layer files must live under {ref.layer_root}")
        if not os.path.exists(real):
            raise UserError(f"file '{ref.raw}' does not exist", ref.where, hint=f"looked for {path}")


def _plain(default) -> bool:
    """Whether expanding a copy of this class default would only copy it again:
    no ``${`` in it and nothing nested (then the copy made when filling it in is
    the same as the expanded one)."""
    if isinstance(default, str):
        return "${" not in default
    if isinstance(default, list):
        return all(item.__class__ is str and "${" not in item for item in default)
    if isinstance(default, dict):
        return all(item.__class__ is str and "${" not in item for item in default.values())
    return isinstance(default, (int, float, type(None)))


class _Lazy:
    """A position worked out when first used (errors only); reads like a Where."""

    def __init__(self, fn):
        self._fn = fn
        self._where = None

    def _get(self) -> Where:
        if self._where is None:
            self._where = self._fn()
        return self._where

    def __getattr__(self, name):  # path, line, col
        return getattr(self._get(), name)

    def __str__(self) -> str:
        return str(self._get())


def _as_where(where):
    """A Where (or None) from a Where, None or a callable giving one."""
    return _Lazy(where) if callable(where) else where

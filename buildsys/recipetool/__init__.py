"""``buildsys recipe new URL``: a first recipe from a source (devtool add /
recipetool create).

    origin.py   what the URL is; fetch it, learn its sha256 or pin its commit
    detect.py   the build system, its pkg-config checks and options
    license.py  the license files, an SPDX guess, their sha256
    write.py    the recipe's text, with comments for what is left to decide

Nothing here shapes a build's output: it writes a recipe file, which the
build then reads like any hand-written one.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, Where
from ..fetch.source import Source
from ..fetch.unpack import unpack
from ..fileio import atomic_write
from .detect import Detected, PkgCheck, detect
from .license import guess
from .origin import fetch_origin, recipe_name
from .write import render

__all__ = ["Created", "create", "choose_layer", "map_dependencies"]

# -l libraries whose recipe is not named after them (lib<name> is tried too).
LIB_ALIASES = {"z": "zlib", "lzma": "xz", "ncurses": "ncurses", "ncursesw": "ncurses", "tinfo": "ncurses",
               "curses": "ncurses", "termcap": "ncurses", "ssl": "openssl", "crypto": "openssl", "bz2": "bzip2",
               "uuid": "util-linux", "blkid": "util-linux", "cap": "libcap", "pcre2-8": "pcre2"}
# pkg-config modules whose recipe is not named after them.
PC_ALIASES = {"liblzma": "xz", "libzstd": "zstd", "libcjson": "cjson", "libcrypto": "openssl", "libssl": "openssl",
              "libsystemd": "systemd", "libudev": "systemd", "uuid": "util-linux", "blkid": "util-linux",
              "mount": "util-linux", "libpcre2-8": "pcre2", "libcurl": "curl", "glib-2.0": "glib",
              "gio-2.0": "glib", "gobject-2.0": "glib", "libxml-2.0": "libxml2", "libmosquitto": "mosquitto"}


@dataclass
class Created:
    path: Path
    name: str
    layer: str
    text: str
    checks: list[str] = field(default_factory=list)     # things for the user to check


def _writable(layer):
    """A layer pinned from git is a shared checkout of one commit: no place for new files."""
    pin = getattr(layer, "git", None)
    if pin is not None:
        raise UserError(f"layer '{layer.name}' is pinned from git ({pin.url} at {pin.commit[:12]}), a checkout "
                        "shared by projects", Where("--layer"),
                        hint="clone its repository, add the clone as a path layer, and write the recipe there")
    return layer


def choose_layer(ws, arg: str | None) -> tuple[Path, str, bool]:
    """(directory, label, in effect) of the layer that gets the recipe.

    ``--layer`` names a layer in effect or a directory holding a layer.yaml
    (or the project root: the core layer).  Without it: the layer the
    current directory is in; else the core layer when the project has no
    other; else the choice is the user's (an error listing the layers)."""
    layers = ws.project.layers
    root = ws.project.root
    if arg:
        for layer in layers:
            if layer.name == arg:
                return _writable(layer).path, layer.name, True
        path = Path(arg).absolute().resolve()
        for layer in layers:
            if layer.path.resolve() == path:
                return _writable(layer).path, layer.name, True
        if (path / "layer.yaml").is_file():
            return path, str(path), False
        raise UserError(f"no layer named '{arg}', and no layer.yaml in {path}", Where("--layer"),
                        hint="layers: " + ", ".join(layer.name for layer in layers) +
                             "; or make one with 'buildsys layer create DIR'")
    cwd = Path.cwd().resolve()
    inside = [layer for layer in layers if layer.name != "core"
              and (cwd == layer.path.resolve() or layer.path.resolve() in cwd.parents)]
    if inside:
        best = max(inside, key=lambda layer: len(layer.path.resolve().parts))
        return _writable(best).path, best.name, True
    if all(layer.name == "core" for layer in layers):
        return root, "core", True
    raise UserError("the project has several layers: say which one gets the recipe", Where("--layer"),
                    hint="--layer NAME or DIR, or run it inside the layer's directory; layers: "
                         + ", ".join(layer.name for layer in layers))


def _providers(ws) -> dict[str, str]:
    """{recipe name or provided name: recipe} of every recipe the project has."""
    out = {name: name for name in ws.project.recipe_files}
    for name in ws.project.recipe_files:
        try:
            _, _, data = ws.resolver.raw(name)
        except UserError:
            continue             # a broken recipe elsewhere is not this command's business
        provides = data.get("provides") or []
        for item in provides if isinstance(provides, list) else []:
            out.setdefault(str(item), name)
    return out


def _recipe_for(module: str, providers: dict[str, str]) -> str | None:
    base = module.split("-")[0] if "-" in module and module.rsplit("-", 1)[-1][:1].isdigit() else module
    for candidate in (PC_ALIASES.get(module), module, recipe_name(module), base, module.removeprefix("lib"),
                      "lib" + module, recipe_name(base)):
        if candidate and candidate in providers:
            return providers[candidate]
    return None


def map_dependencies(checks: list[PkgCheck], providers: dict[str, str], self_name: str
                     ) -> tuple[list[str], list[str]]:
    """(depends, comment lines) for the pkg-config and -l checks a build makes."""
    depends: list[str] = []
    comments: list[str] = []
    # -l checks are often alternatives (AC_SEARCH_LIBS, a terminal library among five):
    # the unmapped ones make one line per build file, not one TODO each.
    libraries: dict[str, list[str]] = {}
    for check in checks:
        if check.library:
            recipe = next((providers[c] for c in (LIB_ALIASES.get(check.module), check.module,
                                                  "lib" + check.module) if c and c in providers), None)
        else:
            recipe = _recipe_for(check.module, providers)
        if recipe == self_name:
            continue
        if check.library and not recipe:
            libraries.setdefault(check.where, []).append(f"-l{check.module}")
            continue
        what = f"-l{check.module}" if check.library else f"pkg-config '{check.module}'"
        where = f"{what}, {check.where}"
        if recipe and check.required is not False:
            if recipe not in depends:
                depends.append(recipe)
        elif recipe:
            comments.append(f"optional: {recipe} ({where}): add it to depends to build with it")
        elif check.required is False:
            comments.append(f"optional: {check.module} ({where}): no recipe provides it, built without it")
        else:
            comments.append(f"TODO: needs {check.module} ({where}), no recipe provides it"
                            + ("" if check.required else " (if the build requires it)"))
    for where, names in libraries.items():
        comments.append(f"TODO: {where} checks for {' '.join(names)}, which no recipe provides: the build may "
                        f"need {'it' if len(names) == 1 else 'one of them'}")
    return depends, comments


def _unpack_tree(archive: Path, tmp: Path) -> tuple[Path, int]:
    """Unpack (buildsys' safe unpacker) and find the top: (tree, strip)."""
    unpack(archive, tmp, Source(url=archive.as_uri(), strip=0))
    entries = [p for p in tmp.iterdir() if not p.name.startswith(".unpack-")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0], 1
    return tmp, 0


def create(ws, spec: str, layer_arg: str | None = None, name: str | None = None, version: str | None = None,
           rev: str | None = None, force: bool = False) -> Created:
    layer_dir, layer_label, in_effect = choose_layer(ws, layer_arg)

    def target(rname: str) -> Path:
        path = layer_dir / "recipes" / rname / f"{rname}.yaml"
        if path.exists() and not force:
            raise UserError("the recipe file exists", Where(str(path)), hint="--force replaces it")
        return path

    if name:
        target(recipe_name(name))       # before downloading anything
    origin = fetch_origin(spec, ws.fetch_config(), name, version, rev)
    rname = recipe_name(name or origin.name)
    path = target(rname)
    tmp = Path(tempfile.mkdtemp(prefix="recipe-new-"))
    try:
        tree, origin.strip = _unpack_tree(origin.path, tmp)
        det: Detected = detect(tree)
        lic = guess(tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    depends, dep_comments = map_dependencies(det.checks, _providers(ws), rname)
    text = render(rname, origin, det, lic, depends, dep_comments)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    checks = list(origin.notes)
    checks.append(f"class {det.cls}: {det.system}")
    checks += det.notes
    checks += lic.notes
    checks += [line for line in dep_comments + det.todos if line.startswith("TODO")]
    if det.options:
        checks.append(f"{len(det.options)} build option(s) listed as comments: choose what the image needs")
    checks.append("add a 'summary:' line")
    if rname in ws.project.recipe_files and all(p != path for _, p in ws.project.recipe_files[rname]):
        others = ", ".join(layer.name for layer, _ in ws.project.recipe_files[rname])
        checks.append(f"recipe '{rname}' is also in layer(s) {others}: the one of the highest priority wins")
    if not in_effect:
        checks.append(f"{layer_dir} is not one of the project's layers: add it with 'buildsys layer add "
                      f"{layer_dir}' before building")
    return Created(path, rname, layer_label, text, checks)

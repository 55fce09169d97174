"""Which keys each file kind accepts, and their types.

One table per file kind drives validation and the "did you mean" hints; build
classes add their own parameters (classes/base.py Param).
"""
from __future__ import annotations

import difflib

from .classes.base import Param
from .errors import UserError
from .yamlio import Map, Seq

FORMAT = 1

RECIPE_KEYS: dict[str, Param] = {
    "format": Param("int", doc="file format version, 1"),
    "name": Param("str", doc="recipe name"),
    "version": Param("str", doc="upstream version"),
    "license": Param("str", doc="SPDX license expression"),
    "summary": Param("str"),
    "homepage": Param("str"),
    "sources": Param("sources", [], "where the source comes from"),
    "patches": Param("files", [], "patches applied in order with -p1"),
    "depends": Param("list", [], "build-time dependencies"),
    "rdepends": Param("list", [], "also installed in an image that installs this"),
    "provides": Param("list", [], "virtual names this recipe provides"),
    "class": Param("str", "script", "build class"),
    "env": Param("map", {}, "variables exported to every step"),
    "steps": Param("map", {}, "explicit shell steps replacing the class's"),
    "variants": Param("list", ["target"], "target and/or native"),
    "source_date_epoch": Param("int", None, "fixed SOURCE_DATE_EPOCH"),
    "permissions": Param("any", [], "owners, modes and device nodes in the image"),
    "toolchain": Param("bool", None, "depend on virtual/toolchain (default: as the class says)"),
    "overrides": Param("overrides", {}, "arch:/board:/native overrides"),
}
APPEND_ONLY = {"format", "overrides"}
META_KEYS = {"format", "overrides"}

SOURCE_KEYS = {"url", "sha256", "git", "rev", "file", "name", "strip", "unpack", "dest", "allow_branch"}

LAYER_KEYS: dict[str, Param] = {
    "format": Param("int"),
    "name": Param("str"),
    "priority": Param("int", 1),
    "depends": Param("list", []),
    "summary": Param("str"),
}

PROJECT_KEYS: dict[str, Param] = {
    "format": Param("int"),
    "layers": Param("list", []),
    "default_board": Param("str", "x86-virtio"),
    "premirrors": Param("list", []),
    "mirrors": Param("list", None),
    "offline": Param("bool", False),
    "debian_archive": Param("str", None),
    "source_date_epoch": Param("int", 315532800),
    "cache": Param("str", None),
}

BOARD_KEYS: dict[str, Param] = {
    "format": Param("int"),
    "name": Param("str"),
    "summary": Param("str"),
    "arch": Param("str"),
    "kernel_arch": Param("str"),
    "toolchain": Param("map", {}),
    "tune": Param("list", []),
    "preferred_providers": Param("map", {}),
    "default_image": Param("str"),
    "console": Param("str", "ttyS0"),
    "disk": Param("any", {}),
    "qemu": Param("any", None),
    "kernel": Param("any", {}),
    "boot": Param("any", {}),
}

_TYPES = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "list": (list,),
    "map": (dict,),
    "file": (str,),
    "files": (list,),
    "sources": (list,),
    "overrides": (dict,),
}
_TYPE_NAMES = {"str": "a string", "int": "an integer", "bool": "true or false", "list": "a list",
               "map": "a mapping", "file": "a file path", "files": "a list of file paths",
               "sources": "a list of sources", "overrides": "a mapping of overrides"}


def suggest(word: str, choices) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def check_type(value, param: Param, where) -> object:
    """Return the value, coerced where YAML is ambiguous (a version 1.0 is a float)."""
    if value.__class__ is str and (param.kind == "str" or param.kind == "file"):
        return value  # the common case, first
    if value is None or param.kind == "any":
        return value
    if param.kind in ("str", "file") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # `version: 1.2` parses as a float
    types = _TYPES[param.kind]
    if isinstance(value, bool) and param.kind == "int":
        types = ()
    if not isinstance(value, types):
        got = type(value).__name__ if not isinstance(value, (Map, Seq)) else (
            "a mapping" if isinstance(value, Map) else "a list")
        raise UserError(f"expected {_TYPE_NAMES[param.kind]}, got {got}", where)
    if param.kind in ("list", "files"):
        for i, item in enumerate(value):
            if item.__class__ is str:
                continue
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                value[i] = str(item)
            elif not isinstance(item, str):
                raise UserError(f"expected a list of strings, item {i + 1} is not a string",
                                value.where(i) if isinstance(value, Seq) else where)
    if param.kind == "map":
        for k, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                value[k] = str(v)
            elif not isinstance(v, str):
                raise UserError(f"expected a mapping of strings, '{k}' is not a string",
                                value.where(k) if isinstance(value, Map) else where)
    return value


def split_op(key: str) -> tuple[str, str]:
    """'depends+' -> ('depends', '+'); 'depends' -> ('depends', '=')."""
    if key.endswith(("+", "-")) and len(key) > 1:
        return key[:-1], key[-1]
    return key, "="


def check_format(data: Map, kind: str) -> None:
    if "format" not in data:
        raise UserError(f"missing 'format: {FORMAT}'", data.where(), hint=f"every {kind} file starts with format: {FORMAT}")
    if data["format"] != FORMAT:
        raise UserError(f"unsupported format {data['format']!r}", data.where("format"),
                        hint=f"this buildsys reads format {FORMAT}")


def validate_plain(data: Map, table: dict[str, Param], kind: str, required=()) -> dict:
    """Validate a file without operators (layer, board, project); return values with defaults."""
    check_format(data, kind)
    for key in data:
        if key not in table:
            raise UserError(f"unknown key '{key}' in {kind}", data.where(key, of_key=True),
                            hint=suggest(str(key), table) or f"known keys: {', '.join(sorted(table))}")
    for key in required:
        if key not in data:
            raise UserError(f"missing required key '{key}' in {kind}", data.where())
    out = {}
    for key, param in table.items():
        if key in data:
            out[key] = check_type(data[key], param, data.where(key))
        else:
            out[key] = param.default
    return out

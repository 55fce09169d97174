"""Applying recipe blocks (recipe, appends, overrides) with operators, keeping history.

A block is a mapping of keys, each optionally suffixed with an operator:
``key`` sets, ``key+`` appends, ``key-`` removes, ``key: null`` unsets.
Every change is recorded with the file:line that made it, for `buildsys show`.
"""
from __future__ import annotations

import os

from .classes.base import Param
from .errors import UserError, Where
from .model import FileRef, HistoryEntry
from .schema import SOURCE_KEYS, check_type, split_op, suggest
from .yamlio import Map, Seq


def _base(block: Map) -> str:
    # str(Path(p).parent) for the normalised paths the layer scan produces,
    # at a tenth of the cost (every recipe with sources comes here).
    return os.path.dirname(block.path) or "."


def _to_files(value, block: Map, key: str, layer_root: str):
    base = _base(block)
    if isinstance(value, str):
        return FileRef(value, base, layer_root, block.where(key))
    return [FileRef(item, base, layer_root, value.where(i) if isinstance(value, Seq) else block.where(key))
            for i, item in enumerate(value)]


def _to_sources(value: Seq, block: Map, key: str, layer_root: str):
    base = _base(block)
    out = []
    for i, entry in enumerate(value):
        where = value.where(i) if isinstance(value, Seq) else block.where(key)
        if isinstance(entry, str):
            entry_map = {"url": entry}
        elif isinstance(entry, dict):
            entry_map = dict(entry)
            for k in entry:
                if k not in SOURCE_KEYS:
                    raise UserError(f"unknown key '{k}' in source", entry.where(k, of_key=True),
                                    hint=suggest(k, SOURCE_KEYS) or f"known keys: {', '.join(sorted(SOURCE_KEYS))}")
        else:
            raise UserError("a source is a mapping (url/git/file ...)", where)
        kinds = [k for k in ("url", "git", "file") if k in entry_map]
        if len(kinds) != 1:
            raise UserError("a source names exactly one of url, git or file", where)
        for k, v in list(entry_map.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("strip",):
                entry_map[k] = str(v)
        if "file" in entry_map:
            entry_map["file"] = FileRef(entry_map["file"], base, layer_root, where)
        entry_map["_where"] = where
        out.append(entry_map)
    return out


def apply_block(values: dict, history: dict, block: Map, params: dict[str, Param], why: str,
                layer_root: str, skip=("format", "overrides")) -> None:
    path, val_pos = block.path, block.val_pos
    for raw_key, value in block.items():
        if raw_key in skip:
            continue
        if raw_key.__class__ is str and raw_key[-1:] not in ("+", "-"):
            key, op = raw_key, "="           # the common case, without the call
        else:
            key, op = split_op(str(raw_key))
        where = Where(path, *val_pos[raw_key])   # block.where(raw_key), without the call
        param = params.get(key)
        if param is None:
            raise UserError(f"unknown key '{key}'", block.where(raw_key, of_key=True),
                            hint=suggest(key, params) or "see docs/formats.md")
        if key in ("name",) and why != "recipe":
            raise UserError(f"'{key}' can only be set in the recipe itself", where)
        if value is None:
            if op != "=":
                raise UserError(f"'{raw_key}: null' makes no sense; use '{key}: null' to unset", where)
            values.pop(key, None)
            history.setdefault(key, []).append(HistoryEntry("unset", where, None, why))
            continue
        if op in "+-" and param.kind in ("list", "files", "sources") and isinstance(value, str):
            value = Seq([value])
            value.path, value.pos, value.item_pos = block.path, block.val_pos[raw_key], [block.val_pos[raw_key]]
        value = check_type(value, param, where)
        kind = param.kind
        if kind == "file" or kind == "files":
            value = _to_files(value, block, raw_key, layer_root)
        elif kind == "sources":
            value = _to_sources(value, block, raw_key, layer_root)
        if op == "=":
            values[key] = value
        else:
            current = values.get(key)
            if current is None:
                current = param.default
            values[key] = _combine(current, value, op, key, where)
        history.setdefault(key, []).append(HistoryEntry(op, where, value, why))


def _combine(current, value, op: str, key: str, where):
    if isinstance(current, list):
        items = list(value) if isinstance(value, list) else [value]
        if op == "+":
            return list(current) + items
        return [x for x in current if x not in items and getattr(x, "raw", None) not in items]
    if isinstance(current, dict):
        if op == "+":
            if not isinstance(value, dict):
                raise UserError(f"'{key}+' needs a mapping", where)
            merged = dict(current)
            merged.update(value)
            return merged
        keys = list(value) if isinstance(value, (list, dict)) else [value]
        return {k: v for k, v in current.items() if k not in keys}
    if isinstance(current, str):
        if op == "+":
            return (current + " " + str(value)).strip()
        raise UserError(f"'{key}-' removes list items; '{key}' is a string", where)
    raise UserError(f"'{key}' cannot be appended to or removed from", where)

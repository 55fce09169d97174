"""Applying recipe blocks (recipe, appends, overrides) with operators, keeping history.

A block is a mapping of keys, each optionally suffixed with an operator:
``key`` sets, ``key+`` appends, ``key-`` removes, ``key: null`` unsets.
Every value is checked and converted by its key's setting (schema.py) as the
block is applied, and every change is recorded with the file:line that made
it, for `buildsys show`.
"""
from __future__ import annotations

from .errors import UserError, Where
from .model import HistoryEntry
from .schema import Setting, split_op, suggest
from .yamlio import Seq


def apply_block(values: dict, history: dict, block, params: dict[str, Setting], why: str,
                layer_root: str, skip=("format", "overrides")) -> None:
    path, val_pos = block.path, block.val_pos
    for raw_key, value in block.items():
        if raw_key in skip:
            continue
        if raw_key.__class__ is str and raw_key[-1:] not in ("+", "-"):
            key, op = raw_key, "="           # the common case, without the call
        else:
            key, op = split_op(str(raw_key))
        setting = params.get(key)
        if setting is None:
            raise UserError(f"unknown key '{key}'", block.where(raw_key, of_key=True),
                            hint=suggest(key, params) or "see docs/formats.md")
        where = Where(path, *val_pos[raw_key])   # block.where(raw_key), without the call
        if key == "name" and why != "recipe":
            raise UserError(f"'{key}' can only be set in the recipe itself", where)
        if value is None:
            if op != "=":
                raise UserError(f"'{raw_key}: null' makes no sense; use '{key}: null' to unset", where)
            values.pop(key, None)
            history.setdefault(key, []).append(HistoryEntry("unset", where, None, why))
            continue
        if op != "=" and setting.listy and value.__class__ is str:
            value = Seq([value])
            value.path, value.pos, value.item_pos = path, val_pos[raw_key], [val_pos[raw_key]]
        if op == "-":
            value = setting.parse_removal(value, where, layer_root)
        else:
            value = setting.parse(value, where, layer_root)
        if op == "=":
            values[key] = value
        else:
            current = values.get(key)
            if current is None:
                current = setting.default
            values[key] = _combine(current, value, op, key, where)
        history.setdefault(key, []).append(HistoryEntry(op, where, value, why))


def _combine(current, value, op: str, key: str, where):
    if isinstance(current, list):
        items = list(value) if isinstance(value, list) else [value]
        if op == "+":
            return list(current) + items
        # Files are removed by the path as written (the FileRefs of an append
        # or override have another base directory and position).
        drop = [getattr(item, "raw", item) for item in items]
        return [x for x in current if getattr(x, "raw", x) not in drop]
    if isinstance(current, dict):
        if op == "+":
            if not isinstance(value, dict):
                raise UserError(f"'{key}+' needs a mapping", where)
            merged = dict(current)
            merged.update(value)
            return merged
        return {k: v for k, v in current.items() if k not in value}
    if isinstance(current, str):
        if op == "+":
            return (current + " " + str(value)).strip()
        raise UserError(f"'{key}-' removes list items; '{key}' is a string", where)
    raise UserError(f"'{key}' cannot be appended to or removed from", where)

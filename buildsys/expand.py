"""``${...}`` expansion of recipe values, after overrides.

Lower-case names are ours and must be known.  Upper-case names (``${CC}``,
``${DESTDIR}``) are left alone for the shell, which sees the same values in the
sandbox environment; so steps may use either spelling.

Every value of every recipe passes through here, and very few hold a ``${``:
positions (``where``) may be given as a callable and are only worked out for
an error, and lists of plain strings are copied in one go.
"""
from __future__ import annotations

import re

from .errors import UserError
from .model import FileRef
from .yamlio import Map, Seq

_VAR = re.compile(r"\$\{([^}]*)\}")


def _at(where):
    return where() if callable(where) else where


def _expand_str(text: str, variables: dict[str, str], where, suggest) -> str:
    if "${" not in text:
        return text

    def sub(match):
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name.isupper() or (name[:1].isupper() and name.replace("_", "").isalnum()):
            return match.group(0)
        raise UserError(f"unknown variable '${{{name}}}'", _at(where),
                        hint=suggest(name, variables) or f"known: {', '.join(sorted(variables))}")

    return _VAR.sub(sub, text)


def _plain_strings(items) -> bool:
    for item in items:
        if item.__class__ is not str or "${" in item:
            return False
    return True


def expand_value(value, variables: dict[str, str], where, suggest):
    """The value with variables expanded; lists and mappings come back as new
    plain lists and dicts.  ``where`` is a Where or a callable returning one."""
    cls = value.__class__
    if cls is str:
        return _expand_str(value, variables, where, suggest) if "${" in value else value
    if (cls is list or cls is Seq) and _plain_strings(value):   # the common cases first
        return list(value)
    if (cls is dict or cls is Map) and _plain_strings(value.values()):
        return dict(value)
    if isinstance(value, str):
        return _expand_str(value, variables, where, suggest)
    if isinstance(value, FileRef):
        if "${" not in value.raw:
            return value  # frozen: sharing it is the same as a copy
        return FileRef(_expand_str(value.raw, variables, value.where, suggest), value.base, value.layer_root, value.where)
    if isinstance(value, list):
        if _plain_strings(value):
            return list(value)
        out = []
        positions = hasattr(value, "where")
        for i, item in enumerate(value):
            if item.__class__ is str and "${" not in item:
                out.append(item)
                continue
            item_where = where
            if positions and not isinstance(item, FileRef):
                item_where = (lambda i=i: value.where(i))
            elif isinstance(item, dict) and "_where" in item:
                item_where = item["_where"]
            out.append(expand_value(item, variables, item_where, suggest))
        return out
    if isinstance(value, dict):
        if _plain_strings(value.values()):
            return dict(value)
        positions = hasattr(value, "where")
        return {k: (v if k == "_where" or (v.__class__ is str and "${" not in v) else
                    expand_value(v, variables, (lambda k=k: value.where(k)) if positions else value.get("_where", where),
                                 suggest))
                for k, v in value.items()}
    return value

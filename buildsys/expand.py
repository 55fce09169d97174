"""``${...}`` expansion of recipe values, after overrides.

Lower-case names are ours and must be known.  Upper-case names (``${CC}``,
``${DESTDIR}``) are left alone for the shell, which sees the same values in the
sandbox environment; so steps may use either spelling.
"""
from __future__ import annotations

import re

from .errors import UserError
from .model import FileRef

_VAR = re.compile(r"\$\{([^}]*)\}")


def _expand_str(text: str, variables: dict[str, str], where, suggest) -> str:
    if "${" not in text:
        return text

    def sub(match):
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name.isupper() or (name[:1].isupper() and name.replace("_", "").isalnum()):
            return match.group(0)
        raise UserError(f"unknown variable '${{{name}}}'", where,
                        hint=suggest(name, variables) or f"known: {', '.join(sorted(variables))}")

    return _VAR.sub(sub, text)


def expand_value(value, variables: dict[str, str], where, suggest):
    if value.__class__ is str:
        return _expand_str(value, variables, where, suggest) if "${" in value else value
    if isinstance(value, str):
        return _expand_str(value, variables, where, suggest)
    if isinstance(value, FileRef):
        return FileRef(_expand_str(value.raw, variables, value.where, suggest), value.base, value.layer_root, value.where)
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            item_where = where
            if hasattr(value, "where") and not isinstance(item, FileRef):
                item_where = value.where(i)
            elif isinstance(item, dict) and "_where" in item:
                item_where = item["_where"]
            out.append(expand_value(item, variables, item_where, suggest))
        return out
    if isinstance(value, dict):
        return {k: (v if k == "_where" else expand_value(v, variables,
                    value.where(k) if hasattr(value, "where") else value.get("_where", where), suggest))
                for k, v in value.items()}
    return value

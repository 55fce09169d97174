"""``${...}`` expansion of recipe values, after overrides.

The rule (docs/formats.md, "Variables"), the same in every value:

* ``${name}``, a plain identifier that is a buildsys variable: replaced.
* ``${NAME}``, a plain identifier with an upper-case letter (``${CC}``,
  ``${DESTDIR}``, ``${Foo_1}``): left for the shell, which has the same values
  in the step environment.
* ``${name}``, an all-lower-case identifier that is not a buildsys variable:
  an error at its position, with a suggestion (a typo'd ``${versoin}`` must
  not reach a build).  A shell variable of that name is written ``$name`` or
  ``$${name}``.
* anything else -- ``${link%/*}``, ``${x:-d}``, ``${#x}``, ``${@}``, ``${1}``,
  ``${a[1]}`` -- is shell parameter expansion and is left as it is, after
  expanding the buildsys variables inside it (``${x:-${version}}``).  One
  exception: an operator applied to a lower-case buildsys variable
  (``${version%.*}``) is an error, because the shell has no such variable and
  would expand it to nothing.
* ``$${`` is a literal ``${``: buildsys leaves what follows alone.

Every value of every recipe passes through here, and very few hold a ``${``:
positions (``where``) may be given as a callable and are only worked out for
an error, and lists of plain strings are copied in one go.
"""
from __future__ import annotations

import re

from .errors import UserError
from .model import FileRef, SourceEntry
from .yamlio import Map, Seq

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LEAD = re.compile(r"[#!]?([A-Za-z_][A-Za-z0-9_]*)")


def _at(where):
    return where() if callable(where) else where


def _close(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start``, or -1."""
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if not depth:
                return i
    return -1


def _expand_str(text: str, variables: dict[str, str], where, suggest) -> str:
    if "${" not in text:
        return text
    out = []
    i = 0
    while True:
        j = text.find("${", i)
        if j < 0:
            out.append(text[i:])
            break
        end = _close(text, j + 2)
        if end < 0:                      # unterminated: the shell's business
            out.append(text[i:])
            break
        if j and text[j - 1] == "$":     # $${...}: a literal ${...}
            out.append(text[i:j - 1])
            out.append(text[j:end + 1])
            i = end + 1
            continue
        out.append(text[i:j])
        body = text[j + 2:end]
        if body in variables:
            out.append(variables[body])
        elif _IDENT.match(body):
            if body.lower() != body:
                out.append(text[j:end + 1])          # ${CC}: the shell's
            else:
                raise UserError(f"unknown variable '${{{body}}}'", _at(where),
                                hint=suggest(body, variables) or f"known: {', '.join(sorted(variables))}; "
                                f"a shell variable is written ${body} or $${{{body}}}")
        else:
            lead = _LEAD.match(body)
            if lead and lead.group(1) in variables and lead.group(1).lower() == lead.group(1):
                name = lead.group(1)
                raise UserError(f"'${{{body}}}' applies a shell operator to the buildsys variable '{name}', "
                                "which the shell does not have", _at(where),
                                hint=f"e.g. v=\"${{{name}}}\" first, then ${{{body.replace(name, 'v', 1)}}}; "
                                     f"or $${{{body}}} for a shell variable")
            out.append("${" + _expand_str(body, variables, where, suggest) + "}")
        i = end + 1
    return "".join(out)


def _plain_strings(items) -> bool:
    for item in items:
        if item.__class__ is not str or "${" in item:
            return False
    return True


def _expand_file(ref: FileRef, variables, suggest) -> FileRef:
    if "${" not in ref.raw:
        return ref  # frozen: sharing it is the same as a copy
    return FileRef(_expand_str(ref.raw, variables, ref.where, suggest), ref.base, ref.layer_root, ref.where)


def _expand_source(entry: SourceEntry, variables, suggest) -> SourceEntry:
    url, git, rev, name, dest, file = entry.url, entry.git, entry.rev, entry.name, entry.dest, entry.file
    where = entry.where
    changed = False
    if url is not None and "${" in url:
        url, changed = _expand_str(url, variables, where, suggest), True
    if git is not None and "${" in git:
        git, changed = _expand_str(git, variables, where, suggest), True
    if rev is not None and "${" in rev:
        rev, changed = _expand_str(rev, variables, where, suggest), True
    if name is not None and "${" in name:
        name, changed = _expand_str(name, variables, where, suggest), True
    if dest is not None and "${" in dest:
        dest, changed = _expand_str(dest, variables, where, suggest), True
    if file is not None and "${" in file.raw:
        file, changed = _expand_file(file, variables, suggest), True
    if not changed:
        return entry
    return SourceEntry(url, entry.sha256, git, rev, file, name, entry.strip, entry.unpack, dest,
                       entry.allow_branch, where)


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
    if cls is SourceEntry:
        return _expand_source(value, variables, suggest)
    if isinstance(value, str):
        return _expand_str(value, variables, where, suggest)
    if isinstance(value, FileRef):
        return _expand_file(value, variables, suggest)
    if isinstance(value, list):
        out = []
        positions = isinstance(value, Seq)
        for i, item in enumerate(value):
            if item.__class__ is str and "${" not in item:
                out.append(item)
                continue
            out.append(expand_value(item, variables, (lambda i=i: value.where(i)) if positions else where,  # type: ignore[attr-defined]
                                    suggest))
        return out
    if isinstance(value, dict):
        if not isinstance(value, Map):
            return {k: (v if v.__class__ is str and "${" not in v else expand_value(v, variables, where, suggest))
                    for k, v in value.items()}
        return {k: (v if v.__class__ is str and "${" not in v else
                    expand_value(v, variables, lambda k=k: value.where(k), suggest))
                for k, v in value.items()}
    return value

"""A fast path for the plain block YAML that recipes are written in.

libyaml spends ~50 us on a 15-line recipe, mostly creating a Python object per
token, mark and node; reading the same lines with one regular expression each
takes about half of that.  This reader understands only a strict subset:

    key: plain scalar          key: 'single'  key: "double, no escapes"
    key: [a, 'b', 1]           key: []        key: {}
    key:                       (a nested block mapping or block sequence)
    - item                     - key: value   (sequence items)
    # comments, blank lines

and returns None for anything else (anchors, tags, flow mappings, multi-line
or block scalars, tabs, non-ASCII text, duplicate keys, odd indentation,
anything it is unsure of).  Anchors and aliases in particular never get past
it ('&' and '*' cannot start a value or key it takes, nor appear in a flow
item), so yamlio's refusal of them, on the libyaml path, cannot be bypassed.
yamlio then parses the text with libyaml, so every error and every unusual
file still gets libyaml's reading and exact positions.  What it does accept it returns exactly as yamlio would build it
from libyaml's nodes -- same values, types, key order and positions;
tests/unit/test_yamlfast.py checks that against libyaml on every recipe in the
repository and on thousands of mutated ones.
"""
from __future__ import annotations

import re

# A plain key (no quotes, no spaces, may hold ':' inside as in 'arch:aarch64'),
# then ':' and either the end of the line or spaces and a value.
_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_+./-]*(?::[A-Za-z0-9_+./-]+)*):(?: +(.*))?$")
# A value that cannot be a plain scalar's start in block context (YAML
# indicators, and '?'/':' which it could be in rare forms), or a '-' followed
# by a space or nothing.
_NOT_PLAIN = re.compile(r"""[\[\]{},#&*!|>'"%@`?:]|-(?: |$)""")
# A plain scalar's end: a comment, or a ': ' / trailing ':' that would make it a key.
_PLAIN_END = re.compile(r" #|: |:$")
_SINGLE = re.compile(r"'((?:[^']|'')*)'(?: +#.*| *)$")
_DOUBLE = re.compile(r'"([^"\\]*)"(?: +#.*| *)$')
# One flow-sequence item: a simple quoted scalar or a plain one with no flow
# indicators, quotes or ':' (libyaml and the YAML spec disagree on ':' there).
_FLOW_ITEM = re.compile(r""" *(?:'((?:[^']|'')*)'|"([^"\\]*)"|([^\s\[\]{},#&*!|>'"%@`:?-][^\[\]{},#'":]*?|-[^\s\[\]{},#'":-][^\[\]{},#'":]*?)) *(,|$)""")  # noqa: E501


# Characters that cannot start a plain scalar that this reader takes as is
# (it sends values starting with them down the careful path).
_SPECIAL_FIRST = frozenset("[]{},#&*!|>'\"%@`?:-")
# Characters that end or complicate a plain flow-sequence item.
_FLOW_BAD = re.compile(r"""[\[\]{}#&*!|>%@`?:'"]""")


class _Unsupported(Exception):
    """Not in the subset: let libyaml read it."""


class _Reader:
    def __init__(self, lines, path, map_cls, seq_cls, scalar, typed_first):
        self.lines = lines          # (line number, indent, content) of significant lines
        self.i = 0
        self.path = path
        self.Map, self.Seq, self.scalar, self.typed = map_cls, seq_cls, scalar, typed_first

    def _new_map(self, pos):
        out = self.Map()
        out.path, out.pos, out.key_pos, out.val_pos = self.path, pos, {}, {}
        return out

    def mapping(self, indent: int):
        # The hot loop: one iteration per key, plain one-line values inline.
        lines, typed, scalar = self.lines, self.typed, self.scalar
        i, n = self.i, len(self.lines)
        out = self._new_map((lines[i][0], indent + 1))
        key_pos, val_pos = out.key_pos, out.val_pos
        while i < n:
            lineno, ind, content = lines[i]
            if ind != indent:
                if ind < indent:
                    break
                raise _Unsupported
            match = _KEY.match(content)
            if match is None:
                raise _Unsupported
            raw_key, rest = match.groups()
            key = scalar(raw_key) if raw_key[0] in typed else raw_key
            if key in out:
                raise _Unsupported   # libyaml's path reports the duplicate
            key_pos[key] = (lineno, indent + 1)
            i += 1
            if rest is None or rest[0] == "#":
                self.i = i
                value, pos = self.nested(indent)
                i = self.i
            else:
                col = indent + len(content) - len(rest)
                pos = (lineno, col + 1)
                if rest[0] not in _SPECIAL_FIRST and " #" not in rest and ": " not in rest and rest[-1] != ":":
                    value = scalar(rest) if rest[0] in typed else rest
                else:
                    value = self.value(rest, lineno, col)
                if i < n and lines[i][1] > indent:
                    raise _Unsupported   # a deeper line would continue the value
            out[key] = value
            val_pos[key] = pos
        self.i = i
        return out

    def nested(self, indent: int):
        """The block node under ``key:`` at ``indent``: a mapping indented
        more, or a sequence indented more or as much."""
        if self.i >= len(self.lines):
            raise _Unsupported       # an empty value: null, at a position libyaml picks
        lineno, ind, content = self.lines[self.i]
        if content[:2] == "- " and ind >= indent:
            return self.sequence(ind), (lineno, ind + 1)
        if ind > indent and _KEY.match(content):
            return self.mapping(ind), (lineno, ind + 1)
        raise _Unsupported

    def sequence(self, indent: int):
        lines = self.lines
        out = self.Seq()
        out.path, out.pos, out.item_pos = self.path, (lines[self.i][0], indent + 1), []
        while self.i < len(lines):
            lineno, ind, content = lines[self.i]
            if ind < indent or (ind == indent and content[:2] != "- "):
                break
            if ind > indent:
                raise _Unsupported
            item = content[2:].lstrip(" ")
            col = indent + len(content) - len(item)
            if not item or item.startswith(("- ", "#")) or item == "-":
                raise _Unsupported   # nested sequences and empty items
            if _KEY.match(item):
                # '- key: value': a mapping whose keys sit at the item's column
                lines[self.i] = (lineno, col, item)
                value = self.mapping(col)
            else:
                self.i += 1
                value = self.value(item, lineno, col)
                if self.i < len(lines) and lines[self.i][1] > indent:
                    raise _Unsupported
            out.append(value)
            out.item_pos.append((lineno, col + 1))
        return out

    def value(self, text: str, lineno: int, col: int):
        """A one-line value starting at 0-based column ``col``."""
        first = text[0]
        if first == "'":
            match = _SINGLE.match(text)
            if match is None:
                raise _Unsupported
            return match.group(1).replace("''", "'")
        if first == '"':
            match = _DOUBLE.match(text)
            if match is None:
                raise _Unsupported
            return match.group(1)
        if first == "[":
            return self.flow(text, lineno, col)
        if first == "{":
            if text != "{}" and not re.match(r"\{\} +#", text):
                raise _Unsupported
            return self._new_map((lineno, col + 1))
        if _NOT_PLAIN.match(text):
            raise _Unsupported
        end = _PLAIN_END.search(text)
        if end is not None:
            if end.group() != " #":
                raise _Unsupported
            text = text[:end.start()].rstrip(" ")
        return self.scalar(text) if text[0] in self.typed else text

    def flow(self, text: str, lineno: int, col: int):
        close = text.rfind("]")
        if close < 0:
            raise _Unsupported
        if close != len(text) - 1:
            tail = text[close + 1:]
            if not tail.lstrip(" ").startswith("#") or tail[0] != " ":
                raise _Unsupported
        out = self.Seq()
        out.path, out.pos = self.path, (lineno, col + 1)
        inner, start = text[1:close], col + 1
        if not inner.strip(" "):
            out.item_pos = []
            return out
        if _FLOW_BAD.search(inner) is None:
            # plain items only (the usual `depends: [a, b]`): split at commas
            typed, scalar = self.typed, self.scalar
            items, positions, at = [], [], start
            for piece in inner.split(","):
                item = piece.strip(" ")
                if not item or (item[0] == "-" and (len(item) == 1 or item[1] in " -")):
                    raise _Unsupported   # an empty item or a trailing comma, or '- x'
                items.append(scalar(item) if item[0] in typed else item)
                positions.append((lineno, at + len(piece) - len(piece.lstrip(" ")) + 1))
                at += len(piece) + 1
            out.extend(items)
            out.item_pos = positions
            return out
        out.item_pos = []
        at = 0
        while at < len(inner):
            match = _FLOW_ITEM.match(inner, at)
            if match is None or match.end() == at:
                raise _Unsupported
            single, double, plain, comma = match.groups()
            item_col = start + at + (len(match.group()) - len(match.group().lstrip(" ")))
            if single is not None:
                out.append(single.replace("''", "'"))
            elif double is not None:
                out.append(double)
            else:
                out.append(self.scalar(plain))
            out.item_pos.append((lineno, item_col + 1))
            at = match.end()
            if comma == "," and at >= len(inner):
                raise _Unsupported   # a trailing comma: valid YAML, rare, leave it to libyaml
        return out


def _significant(text: str) -> list[tuple[int, int, str]] | None:
    lines = []
    number = 0
    for line in text.split("\n"):
        number += 1
        content = line.lstrip(" ")
        if not content or content[0] == "#":
            continue
        indent = len(line) - len(content)
        if not indent and content.startswith(("---", "...", "%")):
            return None              # document markers and directives
        lines.append((number, indent, content.rstrip(" ")))
    return lines


def parse(text: str, path: str, map_cls, seq_cls, scalar, typed_first=frozenset("0123456789")):
    """The top-level mapping of ``text``, or None when it is not plain block
    YAML (the caller then uses libyaml).  ``scalar(plain_text)`` types a plain
    scalar as libyaml's resolver would (raising ValueError when it cannot);
    it is only called for scalars starting with a character in
    ``typed_first`` -- the others are strings."""
    if not text.isascii() or "\t" in text or "\r" in text:
        return None
    lines = _significant(text)
    if not lines or lines[0][2][:2] == "- " or lines[0][2] == "-":
        return None
    reader = _Reader(lines, path, map_cls, seq_cls, scalar, typed_first)
    try:
        out = reader.mapping(lines[0][1])
    except (_Unsupported, ValueError):
        return None
    return out if reader.i == len(lines) else None

"""YAML loading that remembers where every key and value came from.

libyaml (CSafeLoader) composes the node tree; we build plain dict/list
subclasses from it that carry (line, col) for each key and value, so any later
stage can report ``file:line:col``.  Duplicate keys are an error here, because
YAML would silently keep the last one.
"""
from __future__ import annotations

import yaml

from .errors import UserError, Where

try:  # libyaml is several times faster; fall back so a bare install still works
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

_constructor = yaml.constructor.SafeConstructor()


class Map(dict):
    """A mapping with positions: ``key_pos[k]`` and ``val_pos[k]`` are (line, col)."""

    __slots__ = ("path", "pos", "key_pos", "val_pos")

    def where(self, key=None, of_key: bool = False) -> Where:
        if key is None:
            return Where(self.path, *self.pos)
        table = self.key_pos if of_key else self.val_pos
        line, col = table.get(key, self.pos)
        return Where(self.path, line, col)


class Seq(list):
    """A list with positions: ``item_pos[i]`` is (line, col)."""

    __slots__ = ("path", "pos", "item_pos")

    def where(self, index=None) -> Where:
        if index is None or index >= len(self.item_pos):
            return Where(self.path, *self.pos)
        return Where(self.path, *self.item_pos[index])


def _pos(node) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _build(node, path: str):
    # Hot path: ~35 nodes per recipe, 10,000 recipes; keep it lean.
    cls = node.__class__
    if cls is yaml.ScalarNode:
        if node.tag == _STR_TAG:
            return node.value
        try:
            return _constructor.construct_object(node)
        except yaml.YAMLError as exc:
            raise UserError(f"bad value: {exc}", Where(path, *_pos(node))) from None
    mark = node.start_mark
    if cls is yaml.MappingNode:
        out = Map()
        key_pos, val_pos = {}, {}
        out.path, out.pos, out.key_pos, out.val_pos = path, (mark.line + 1, mark.column + 1), key_pos, val_pos
        for key_node, value_node in node.value:
            if key_node.__class__ is not yaml.ScalarNode or key_node.tag == _MERGE_TAG:
                what = "YAML merge keys ('<<') are not supported" if key_node.tag == _MERGE_TAG else \
                    "a mapping key must be a plain value"
                raise UserError(what, Where(path, *_pos(key_node)))
            key = key_node.value if key_node.tag == _STR_TAG else _build(key_node, path)
            km = key_node.start_mark
            if key in out:
                first = key_pos[key]
                raise UserError(f"duplicate key '{key}'", Where(path, km.line + 1, km.column + 1),
                                hint=f"first set at line {first[0]}")
            out[key] = _build(value_node, path)
            key_pos[key] = (km.line + 1, km.column + 1)
            vm = value_node.start_mark
            val_pos[key] = (vm.line + 1, vm.column + 1)
        return out
    out = Seq()
    out.path, out.pos = path, (mark.line + 1, mark.column + 1)
    items = node.value
    out.item_pos = [(item.start_mark.line + 1, item.start_mark.column + 1) for item in items]
    out.extend([_build(item, path) for item in items])
    return out


def loads(text: str, path: str):
    """Parse YAML text; ``path`` is used in positions and error messages."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Where(path, mark.line + 1, mark.column + 1) if mark else Where(path)
        problem = exc.problem or exc.context or "syntax error"
        raise UserError(f"YAML syntax error: {problem}", where) from None
    except yaml.YAMLError as exc:
        raise UserError(f"YAML error: {exc}", Where(path)) from None
    if node is None:
        empty = Map()
        empty.path, empty.pos, empty.key_pos, empty.val_pos = path, (1, 1), {}, {}
        return empty
    return _build(node, path)


def load(path) -> Map:
    """Load a YAML file whose top level must be a mapping."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text: {exc.reason}", Where(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", Where(path)) from None
    data = loads(text, path)
    if not isinstance(data, Map):
        raise UserError("the top level must be a mapping of keys", Where(path, 1, 1))
    return data

"""YAML loading that remembers where every key and value came from.

libyaml (CSafeLoader) composes the node tree; we build plain dict/list
subclasses from it that carry (line, col) for each key and value, so any later
stage can report ``file:line:col``.  Duplicate keys are an error here, because
YAML would silently keep the last one, and so are anchors and aliases
(``&a``/``*a``): building plain trees from them copies the aliased node at
every use, so a few lines ("billion laughs") could take all memory, and no
buildsys file needs them.

Parsing is the largest part of a cold run (10,000 recipes), so plain block
YAML, which most recipes are, is read by the fast path in yamlfast.py (the same
trees, or None when unsure), and the libyaml path is trimmed too: see
``_plain_tag`` and ``_build``.
"""
from __future__ import annotations

import yaml

from . import yamlfast
from .errors import UserError, Where

try:  # libyaml is several times faster; fall back so a bare install still works
    _Base = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Base = yaml.SafeLoader  # type: ignore[misc,assignment]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_ScalarNode, _MappingNode = yaml.ScalarNode, yaml.MappingNode


# A resolver with CSafeLoader's own table of implicit tags (int, bool, null...).
_RESOLVER = type("_Resolver", (yaml.resolver.BaseResolver,),
                 {"yaml_implicit_resolvers": _Base.yaml_implicit_resolvers})()
_FIRST = frozenset(_Base.yaml_implicit_resolvers)
_TAGS: dict[str, str] = {}


def _plain_tag(value: str) -> str:
    """The tag the stock resolver gives a plain scalar.  It tries up to 6
    regular expressions per scalar (a third of libyaml's parse time), but
    only a scalar whose first character starts one of them (digits, signs,
    ``y/n/t/f/o``, ``~``...) can be anything but a string."""
    if value and value[0] not in _FIRST:
        return _STR_TAG
    tag = _TAGS.get(value)
    if tag is None:
        tag = _RESOLVER.resolve(_ScalarNode, value, (True, False))
        if len(value) <= 16:  # keys like 'name', values like '1.2': few distinct ones
            _TAGS[value] = tag
    return tag


class _Loader(_Base):
    def resolve(self, kind, value, implicit):
        if kind is _ScalarNode:
            return _plain_tag(value) if implicit[0] else _STR_TAG
        return _Base.resolve(self, kind, value, implicit)

    # No path resolvers are registered, so the composer's two bookkeeping
    # calls per node do nothing; C callables that take the same arguments and
    # ignore them (types are not bound as methods) save 700,000 Python calls.
    descend_resolver = slice   # type: ignore[assignment]  # slice(current_node, current_index)
    ascend_resolver = tuple    # type: ignore[assignment]  # tuple()


if _Base.yaml_path_resolvers:  # pragma: no cover -- someone registered one: honour it
    del _Loader.descend_resolver, _Loader.ascend_resolver
    _Loader.resolve = _Base.resolve  # type: ignore[method-assign]

_constructor = yaml.constructor.SafeConstructor()


def _construct(node):
    try:
        return _constructor.construct_object(node)
    finally:  # it remembers every node it built: forget them
        _constructor.constructed_objects.clear()
        _constructor.recursive_objects.clear()


_VALUES: dict[str, object] = {}


def _fast_scalar(value: str):
    """A plain scalar for the fast path, typed as libyaml's path would."""
    tag = _plain_tag(value)
    if tag == _STR_TAG:
        return value
    if value in _VALUES:   # `format: 1` in every file: ints, bools, None are immutable
        return _VALUES[value]
    try:
        out = _construct(yaml.ScalarNode(tag, value))
    except Exception as exc:  # noqa: BLE001 -- libyaml's path reports it with its position
        raise ValueError(value) from exc
    if len(value) <= 16 and isinstance(out, (int, float, type(None))):   # bool is an int
        _VALUES[value] = out
    return out


class Map(dict):
    """A mapping with positions: ``key_pos[k]`` and ``val_pos[k]`` are (line, col)."""

    __slots__ = ("path", "pos", "key_pos", "val_pos")
    path: str
    pos: tuple[int, int]
    key_pos: dict
    val_pos: dict

    def where(self, key=None, of_key: bool = False) -> Where:
        if key is None:
            return Where(self.path, *self.pos)
        table = self.key_pos if of_key else self.val_pos
        line, col = table.get(key, self.pos)
        return Where(self.path, line, col)


class Seq(list):
    """A list with positions: ``item_pos[i]`` is (line, col)."""

    __slots__ = ("path", "pos", "item_pos")
    path: str
    pos: tuple[int, int]
    item_pos: list

    def where(self, index=None) -> Where:
        if index is None or index >= len(self.item_pos):
            return Where(self.path, *self.pos)
        return Where(self.path, *self.item_pos[index])


def _pos(node) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def _scalar(node, path: str):
    if node.tag == _STR_TAG:
        return node.value
    try:
        return _construct(node)
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # e.g. `!!int abc`
        raise UserError(f"bad value: {exc}", Where(path, *_pos(node))) from None


def _build(node, path: str):
    # Hot path: ~35 nodes per recipe, 10,000 recipes; keep it lean (locals,
    # no helper calls for the common string scalars).
    cls = node.__class__
    if cls is _ScalarNode:
        return node.value if node.tag == _STR_TAG else _scalar(node, path)
    mark = node.start_mark
    if cls is _MappingNode:
        out = Map()
        key_pos: dict = {}
        val_pos: dict = {}
        out.path, out.pos, out.key_pos, out.val_pos = path, (mark.line + 1, mark.column + 1), key_pos, val_pos
        for key_node, value_node in node.value:
            if key_node.__class__ is not _ScalarNode or key_node.tag == _MERGE_TAG:
                what = "YAML merge keys ('<<') are not supported" if key_node.tag == _MERGE_TAG else \
                    "a mapping key must be a plain value"
                raise UserError(what, Where(path, *_pos(key_node)))
            key = key_node.value if key_node.tag == _STR_TAG else _scalar(key_node, path)
            km = key_node.start_mark
            if key in out:
                first = key_pos[key]
                raise UserError(f"duplicate key '{key}'", Where(path, km.line + 1, km.column + 1),
                                hint=f"first set at line {first[0]}")
            if value_node.__class__ is _ScalarNode and value_node.tag == _STR_TAG:
                out[key] = value_node.value
            else:
                out[key] = _build(value_node, path)
            key_pos[key] = (km.line + 1, km.column + 1)
            vm = value_node.start_mark
            val_pos[key] = (vm.line + 1, vm.column + 1)
        return out
    seq = Seq()
    seq.path, seq.pos = path, (mark.line + 1, mark.column + 1)
    items = node.value
    seq.item_pos = [(item.start_mark.line + 1, item.start_mark.column + 1) for item in items]
    seq.extend([item.value if item.__class__ is _ScalarNode and item.tag == _STR_TAG else _build(item, path)
                for item in items])
    return seq


def _empty(path: str) -> Map:
    empty = Map()
    empty.path, empty.pos, empty.key_pos, empty.val_pos = path, (1, 1), {}, {}
    return empty


def loads(text: str, path: str):
    """Parse YAML text; ``path`` is used in positions and error messages."""
    tree = yamlfast.parse(text, path, Map, Seq, _fast_scalar, _FIRST)
    return tree if tree is not None else _loads_libyaml(text, path)


def _syntax_error(exc: yaml.YAMLError, path: str) -> UserError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = Where(path, mark.line + 1, mark.column + 1) if mark else Where(path, 1, 1)
        problem = exc.problem or exc.context or "syntax error"
        return UserError(f"YAML syntax error: {problem}", where)
    return UserError(f"YAML error: {exc}", Where(path, 1, 1))


def _refuse_anchors(text: str, path: str) -> None:
    """A positioned error at the first anchor or alias.  Only texts holding a
    '&' or '*' can have one; the events of those are read (libyaml, no nodes)."""
    try:
        for event in yaml.parse(text, Loader=_Base):
            anchor = getattr(event, "anchor", None)
            if anchor is None:
                continue
            what = "aliases ('*" if event.__class__ is yaml.AliasEvent else "anchors ('&"
            mark = event.start_mark
            raise UserError(f"YAML {what}{anchor}') are not supported",
                            Where(path, mark.line + 1, mark.column + 1) if mark else Where(path, 1, 1),
                            hint="write the value out where it is needed")
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, path) from None


def _loads_libyaml(text: str, path: str):
    if "&" in text or "*" in text:
        _refuse_anchors(text, path)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, path) from None
    if node is None:
        return _empty(path)
    return _build(node, path)


def read(path: str) -> bytes:
    """A file's bytes, or a UserError naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", Where(path)) from None


def load_bytes(data: bytes, path: str) -> Map:
    """Parse a file's bytes; the top level must be a mapping."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text: {exc.reason} (byte 0x{data[exc.start]:02x})",
                        _byte_where(data, exc.start, path), hint="save the file as UTF-8") from None
    tree = loads(text, path)
    if not isinstance(tree, Map):
        raise UserError("the top level must be a mapping of keys", Where(path, 1, 1))
    return tree


def _byte_where(data: bytes, offset: int, path: str) -> Where:
    """The line and column (in characters) of byte ``offset``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return Where(path, data.count(b"\n", 0, offset) + 1, col)


def load(path) -> Map:
    """Load a YAML file whose top level must be a mapping."""
    path = str(path)
    return load_bytes(read(path), path)

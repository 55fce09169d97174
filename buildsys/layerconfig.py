"""Editing the ``layers:`` list of buildsys.yaml or local.yaml as text.

`buildsys layer add/remove/update` change one item and nothing else: the
file's comments, order, quoting and indentation stay as the user wrote them
(a YAML dump would lose all of it).  PyYAML's composer gives each node's
start and end offsets; an edit replaces, inserts or deletes the text of one
item there, in the style (block or flow) the list already has.  The result is
parsed and validated again before it is written (atomically); the caller then
loads the whole project and puts the old text back if that fails.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import schema, yamlio
from .errors import UserError, Where
from .fileio import atomic_write

_PLAIN = re.compile(r"[A-Za-z0-9_./~+][A-Za-z0-9_./~+@=:-]*")
_NULL = "tag:yaml.org,2002:null"


def scalar(text: str, flow: bool = False) -> str:
    """``text`` as a YAML scalar: plain when that reads back as the same string, else double-quoted."""
    if _PLAIN.fullmatch(text) and not (flow and "," in text):
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text)     # a JSON string is a YAML double-quoted scalar


def entry_lines(entry: str | dict) -> list[str]:
    """An item in block style, without the dash: one line, or key lines (the first unindented)."""
    if isinstance(entry, str):
        return [scalar(entry)]
    return [f"{k}: {scalar(str(v))}" for k, v in entry.items() if v is not None]


def entry_flow(entry: str | dict) -> str:
    if isinstance(entry, str):
        return scalar(entry, flow=True)
    return "{" + ", ".join(f"{k}: {json.dumps(str(v))}" for k, v in entry.items() if v is not None) + "}"


@dataclass
class Item:
    index: int
    value: str | dict          # the item as plain Python values
    node: yaml.Node


class LayersFile:
    """One project file (buildsys.yaml or local.yaml) and its ``layers:`` list."""

    def __init__(self, path: Path):
        self.path = path
        self.exists = path.is_file()
        self.text = yamlio.read(str(path)).decode("utf-8") if self.exists else "format: 1\n"
        yamlio.loads(self.text, str(path))   # positioned errors for a file we cannot read (anchors too)
        root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        self.root = root if isinstance(root, yaml.MappingNode) else None
        self.key_node: yaml.ScalarNode | None = None
        self.value_node: yaml.Node | None = None
        for key, value in (self.root.value if self.root else ()):
            if isinstance(key, yaml.ScalarNode) and key.value == "layers":
                self.key_node, self.value_node = key, value

    # --- reading -----------------------------------------------------------------------
    def items(self) -> list[Item]:
        node = self.value_node
        if not isinstance(node, yaml.SequenceNode):
            return []
        return [Item(i, yaml.safe_load(yaml.serialize(child)), child) for i, child in enumerate(node.value)]

    def where(self, item: Item) -> Where:
        mark = item.node.start_mark
        return Where(str(self.path), mark.line + 1, mark.column + 1)

    # --- edits: each returns the new text -------------------------------------------------
    def added(self, entry: str | dict) -> str:
        text, node = self.text, self.value_node
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            if node is not None:        # `layers:` / `layers: null`: drop the null, add a block list
                text = text[:node.start_mark.index] + text[node.end_mark.index:]
                assert self.key_node is not None
                return self._insert_block(text, self.key_node.start_mark.line, self.key_node.start_mark.column + 2,
                                          entry)
            if text and not text.endswith("\n"):
                text += "\n"
            return text + "layers:\n" + self._block(entry, 2)
        if not isinstance(node, yaml.SequenceNode):
            raise UserError("'layers' is not a list", self._value_where(), hint="make it a list of layers")
        if node.flow_style:
            close = node.end_mark.index - 1          # the ']'
            sep = ", " if node.value else ""
            return text[:close].rstrip() + sep + entry_flow(entry) + text[close:]
        last = node.value[-1]
        return self._insert_block(text, _content_end_line(last), _dash_col(text, last), entry)

    def removed(self, item: Item) -> str:
        node = self.value_node
        assert isinstance(node, yaml.SequenceNode)
        text = self.text
        if node.flow_style:
            kept = [text[c.start_mark.index:c.end_mark.index] for c in node.value if c is not item.node]
            return text[:node.start_mark.index] + "[" + ", ".join(kept) + "]" + text[node.end_mark.index:]
        lines = text.splitlines(keepends=True)
        first, last = item.node.start_mark.line, _content_end_line(item.node)
        del lines[first:last + 1]
        text = "".join(lines)
        if len(node.value) == 1:     # the list is empty now: say so, `layers:` alone would be null
            assert self.key_node is not None
            lines = text.splitlines(keepends=True)
            line = lines[self.key_node.start_mark.line]
            colon = line.index(":", self.key_node.end_mark.column)
            lines[self.key_node.start_mark.line] = line[:colon + 1] + " []" + line[colon + 1:]
            text = "".join(lines)
        return text

    def with_commit(self, item: Item, commit: str) -> str:
        """The text with the ``commit:`` of a git item replaced."""
        node = item.node
        assert isinstance(node, yaml.MappingNode)
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "commit":
                return self.text[:value.start_mark.index] + commit + self.text[value.end_mark.index:]
        raise UserError("this layer entry has no 'commit'", self.where(item))

    # --- writing ----------------------------------------------------------------------
    def check(self, text: str) -> dict:
        """The settings ``text`` holds, validated as the project loader would."""
        data = yamlio.loads(text, str(self.path))
        if not isinstance(data, yamlio.Map):
            raise UserError("the top level must be a mapping of keys", Where(str(self.path), 1, 1))
        kind = "local config" if self.path.name == "local.yaml" else "project file"
        return schema.validate_plain(data, schema.PROJECT_KEYS, kind)

    def write(self, text: str) -> None:
        self.check(text)
        atomic_write(self.path, text)

    def restore(self) -> None:
        """Put back the text read at the start (the edited file did not load)."""
        if self.exists:
            atomic_write(self.path, self.text)
        else:
            self.path.unlink(missing_ok=True)

    # --- helpers ----------------------------------------------------------------------
    def _value_where(self) -> Where:
        assert self.value_node is not None
        mark = self.value_node.start_mark
        return Where(str(self.path), mark.line + 1, mark.column + 1)

    @staticmethod
    def _block(entry: str | dict, dash_col: int) -> str:
        pad = " " * dash_col
        lines = entry_lines(entry)
        return "".join([f"{pad}- {lines[0]}\n"] + [f"{pad}  {line}\n" for line in lines[1:]])

    def _insert_block(self, text: str, after_line: int, dash_col: int, entry: str | dict) -> str:
        lines = text.splitlines(keepends=True)
        if after_line < len(lines) and not lines[after_line].endswith("\n"):
            lines[after_line] += "\n"
        lines.insert(after_line + 1, self._block(entry, dash_col))
        return "".join(lines)


def _content_end_line(node: yaml.Node) -> int:
    """The 0-based line of a node's last character: its last scalar's line
    (a block collection's end mark is where the next token starts)."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    mark = node.end_mark
    return mark.line - 1 if mark.column == 0 and mark.line > node.start_mark.line else mark.line


def _dash_col(text: str, item: yaml.Node) -> int:
    """The column of the '-' that starts a block sequence item."""
    lines = text.splitlines()
    line, col = item.start_mark.line, item.start_mark.column
    dash = lines[line].rfind("-", 0, col) if line < len(lines) else -1
    return dash if dash >= 0 else max(col - 2, 0)

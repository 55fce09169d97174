"""Reading a Kconfig tree (Linux's ``Kconfig``, busybox's ``Config.in``) far
enough to say why a symbol was dropped: each symbol's prompts, ``depends on``
(with the ``if`` blocks, menus and choices around it) and who ``select``s it.

Why not kconfiglib: Linux's Kconfig calls the compiler and scripts of the
source tree through ``$(shell,...)`` macros, which would run untrusted code
on the host, outside the sandbox.  Here macros are never expanded: an
expression that uses one is shown as written and counted as met (Kconfig
already evaluated it, in the sandbox, when it configured).  The source tree
is step-writable, so every file is read without following links.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import kconfiglines
from .errors import BuildError
from .fileio import read_text_beneath

MAX_FILES = 5000        # Linux 6.1 has ~1,500 Kconfig files
MAX_DEPTH = 32          # `source` nesting (Linux: under 10); a loop stops here
TOP_FILES = ("Kconfig", "Config.in")


class TreeError(Exception):
    pass


# --- expressions ---------------------------------------------------------------
# An expression is a nested tuple: ("sym", NAME) ("const", TEXT) ("macro", TEXT)
# ("not", e) ("and", a, b) ("or", a, b) ("cmp", op, a, b).

_TOKEN = re.compile(r"\s*(\|\||&&|!=|<=|>=|[!()=<>]|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\$\(|[A-Za-z0-9_.+-]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read {text[pos:]!r}")
        tok = m.group(1)
        pos = m.end()
        if tok == "$(":              # a macro: keep it whole, parentheses balanced
            depth, start = 1, pos
            while pos < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[pos], 0)
                pos += 1
            tok = "$(" + text[start:pos]
        out.append(tok)
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ValueError("unexpected end")
        self.i += 1
        return tok

    def expr(self):
        left = self.conj()
        while self.peek() == "||":
            self.take()
            left = ("or", left, self.conj())
        return left

    def conj(self):
        left = self.unary()
        while self.peek() == "&&":
            self.take()
            left = ("and", left, self.unary())
        return left

    def unary(self):
        if self.peek() == "!":
            self.take()
            return ("not", self.unary())
        left = self.atom()
        if self.peek() in ("=", "!=", "<", ">", "<=", ">="):
            op = self.take()
            return ("cmp", op, left, self.atom())
        return left

    def atom(self):
        tok = self.take()
        if tok == "(":
            inner = self.expr()
            if self.take() != ")":
                raise ValueError("missing )")
            return inner
        if tok.startswith("$("):
            return ("macro", tok)
        if tok[0] in "\"'":
            return ("const", tok[1:-1])
        if tok in ("y", "m", "n") or re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", tok):
            return ("const", tok)
        return ("sym", tok)


def parse_expr(text: str):
    p = _Parser(text)
    e = p.expr()
    if p.peek() is not None:
        raise ValueError(f"unexpected {p.peek()!r}")
    return e


def show(e, top: bool = True) -> str:
    kind = e[0]
    if kind == "sym":
        return e[1]
    if kind == "const":
        return e[1] if e[1] in ("y", "m", "n") or re.fullmatch(r"-?\w+", e[1]) else f'"{e[1]}"'
    if kind == "macro":
        return e[1]
    if kind == "not":
        return "!" + show(e[1], False)
    if kind == "cmp":
        return f"{show(e[2], False)}{e[1]}{show(e[3], False)}"
    op = " && " if kind == "and" else " || "
    text = show(e[1], False) + op + show(e[2], False)
    return text if top else f"({text})"


_TRI = {"n": 0, "m": 1, "y": 2}


def tristate(e, values: dict[str, str]) -> int:
    """0/1/2 for n/m/y, as Kconfig computes it (macros count as y: see above)."""
    kind = e[0]
    if kind == "sym":
        return _TRI.get(values.get(e[1], "n"), 0)
    if kind == "const":
        return _TRI.get(e[1], 0)
    if kind == "macro":
        return 2
    if kind == "not":
        return 2 - tristate(e[1], values)
    if kind == "and":
        return min(tristate(e[1], values), tristate(e[2], values))
    if kind == "or":
        return max(tristate(e[1], values), tristate(e[2], values))
    a, b = _text(e[2], values), _text(e[3], values)
    if e[1] in ("=", "!="):
        return 2 if (a == b) == (e[1] == "=") else 0
    try:
        order = (int(a, 0) > int(b, 0)) - (int(a, 0) < int(b, 0))
    except ValueError:
        order = (a > b) - (a < b)
    ok = {"<": order < 0, ">": order > 0, "<=": order <= 0, ">=": order >= 0}[e[1]]
    return 2 if ok else 0


def _text(e, values):
    if e[0] == "sym":
        return values.get(e[1], "n")
    if e[0] == "const":
        return e[1]
    return "?"


def conjuncts(e) -> list:
    """``A && (B && A) && C`` -> [A, B, C]: each part once, in order (menus
    and ``if`` blocks repeat the same dependency many times)."""
    if e is None:
        return []
    if e[0] == "and":
        parts = conjuncts(e[1]) + conjuncts(e[2])
    else:
        parts = [e]
    out: list = []
    for part in parts:
        if part not in out:
            out.append(part)
    return out


def show_all(parts: list) -> str:
    return " && ".join(show(p, len(parts) == 1) for p in parts)


def unmet_leaves(e, values: dict[str, str], want: int = 2) -> list:
    """The parts of ``e`` that keep it below ``want``: for ``A && B`` the
    failing conjuncts, for ``A || B`` all of it, for ``!A`` A itself."""
    return [part for part in conjuncts(e) if tristate(part, values) < want]


def symbols_in(e) -> list[str]:
    if e[0] == "sym":
        return [e[1]]
    if e[0] in ("not",):
        return symbols_in(e[1])
    if e[0] in ("and", "or"):
        return symbols_in(e[1]) + symbols_in(e[2])
    if e[0] == "cmp":
        return symbols_in(e[2]) + symbols_in(e[3])
    return []


def _and(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return ("and", a, b)


# --- the tree --------------------------------------------------------------------
@dataclass
class Definition:
    """One ``config``/``menuconfig`` block."""
    where: str                      # file:line
    type: str = ""
    prompt: bool = False
    prompt_if: list = field(default_factory=list)   # conditions of its prompts (None: always)
    depends: object = None          # own `depends on` lines and the blocks around it, and-ed


@dataclass
class Selector:
    symbol: str                     # who selects
    condition: object               # `if` part of the select, or None
    where: str


class Tree:
    def __init__(self):
        self.defs: dict[str, list[Definition]] = {}
        self.selected_by: dict[str, list[Selector]] = {}
        self.files = 0
        self._asked: frozenset[str] | set[str] = frozenset()

    # A symbol may be defined in several places (per arch, per menu): Kconfig
    # ORs their dependencies.
    def depends(self, name: str):
        exprs = [d.depends for d in self.defs.get(name, [])]
        if not exprs or any(e is None for e in exprs):
            return None
        out = exprs[0]
        for e in exprs[1:]:
            out = ("or", out, e)
        return out

    def explain(self, symbol: str, line: str, values: dict[str, str], asked: frozenset[str] | set[str] = frozenset(),
                depth: int = 3) -> list[str]:
        """Why .config does not hold ``line`` for ``symbol``: lines for a report.
        ``asked``: the symbols the fragments set that were dropped too."""
        self._asked = asked
        name = symbol.removeprefix("CONFIG_")
        want_off = line.endswith(" is not set")
        defs = self.defs.get(name)
        if not defs:
            return [f"{name} is not defined by any Kconfig file of this tree (a typo, a symbol of "
                    "another architecture or kernel version, or one that was renamed)"]
        if want_off:
            return self._why_on(name, values)
        wanted = line.split("=", 1)[1] if "=" in line else "y"
        out: list[str] = []
        kinds = {d.type for d in defs if d.type}
        if wanted in ("y", "m") and kinds and not kinds & {"bool", "tristate"}:
            out.append(f"{name} is a {'/'.join(sorted(kinds))} symbol: give it a value, not {wanted}")
        if wanted == "m":
            if "tristate" not in kinds:
                out.append(f"{name} is a bool: it can be y, not m")
            elif values.get("MODULES", "n") != "y":
                out.append("=m needs CONFIG_MODULES=y (these kernels are built without modules: use =y)")
        out.extend(self._why_off(name, values, depth, set()))
        if not out:
            out.append(f"{name}'s dependencies are met in this .config; a later fragment line, a `select`, "
                       "or a choice may have set it otherwise")
        return out

    def _why_off(self, name: str, values, depth: int, seen: set[str], indent: str = "") -> list[str]:
        seen.add(name)
        out: list[str] = []
        dep = self.depends(name)
        unmet = [leaf for leaf in unmet_leaves(dep, values) if leaf != ("sym", name)]
        defs = self.defs.get(name, [])
        where = defs[0].where if defs else "?"
        if unmet:
            out.append(f"{indent}{name} ({where}) depends on: {show_all(conjuncts(dep))}")
            for leaf in unmet:
                syms = symbols_in(leaf)
                now = ", ".join(f"{s}={values.get(s, 'n')}" for s in syms) or "?"
                out.append(f"{indent}  unmet: {show(leaf)}  (now {now})")
                for s in syms:
                    if s in seen or depth <= 1 or values.get(s, "n") not in ("n", ""):
                        continue
                    if leaf[0] == "not":
                        continue      # it must be off: nothing to chase
                    if s not in self.defs:
                        out.append(f"{indent}    {s} is not defined in this tree (another architecture's symbol?)")
                        continue
                    if s in self._asked:
                        out.append(f"{indent}    {s}: a fragment sets it, but it was dropped too (see its line)")
                        continue
                    sub = self._why_off(s, values, depth - 1, seen, indent + "    ")
                    out.extend(sub or [f"{indent}    {s}: its dependencies are met; set CONFIG_{s}=y in a fragment"])
        elif any(d.prompt for d in defs) and (hidden := self._prompt_hidden(name, values)):
            out.append(f"{indent}{name} ({where}) can only be set when its prompt shows: {hidden}")
        elif not any(d.prompt for d in defs):
            sel = self.selected_by.get(name, [])
            names = ", ".join(sorted({s.symbol for s in sel})[:8]) or "nothing in this tree"
            out.append(f"{indent}{name} ({where}) has no prompt: a fragment cannot set it; only a `select` "
                       f"can (selected by: {names})")
        return out

    def _prompt_hidden(self, name: str, values) -> str:
        """"needs X" when every prompt of ``name`` has an ``if`` that is off, else ""."""
        conds = [c for d in self.defs.get(name, []) for c in d.prompt_if]
        if not conds or any(c is None or tristate(c, values) > 0 for c in conds):
            return ""
        return " or ".join(sorted({f"{show(c)} (now " + ", ".join(f"{s}={values.get(s, 'n')}" for s in symbols_in(c))
                                   + ")" for c in conds}))

    def _why_on(self, name: str, values) -> list[str]:
        """A line says `is not set` but .config has the symbol on."""
        sel = [s for s in self.selected_by.get(name, [])
               if values.get(s.symbol, "n") in ("y", "m")
               and (s.condition is None or tristate(s.condition, values) > 0)]
        if sel:
            return [f"{name} is forced on by `select` from: "
                    + ", ".join(f"{s.symbol} ({s.where})" for s in sel)
                    + " — turn those off, or drop this line"]
        hidden = self._prompt_hidden(name, values)
        if hidden:
            return [f"{name} defaults on and can only be turned off when its prompt shows: {hidden}"]
        if not any(d.prompt for d in self.defs.get(name, [])):
            return [f"{name} has no prompt and defaults on where its dependencies are met: a fragment cannot "
                    "turn it off"]
        return [f"{name} is on although no enabled symbol selects it: another fragment line, or its default"]


def values_from_config(text: str) -> dict[str, str]:
    """SYMBOL (without CONFIG_) -> value: y/m/n, or the string/number."""
    out: dict[str, str] = {}
    for symbol, line in kconfiglines.symbols(text).items():
        name = symbol.removeprefix("CONFIG_")
        if line.endswith(" is not set"):
            out[name] = "n"
        else:
            value = line.split("=", 1)[1]
            out[name] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return out


# --- the reader ---------------------------------------------------------------------
_SOURCE = re.compile(r'^(o?r?source)\s+"?([^"\s]+)"?\s*$')
_TYPES = ("bool", "tristate", "string", "int", "hex")


def _logical_lines(text: str):
    """(line number, text) with backslash continuations joined."""
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        yield start, buf + raw
        buf = ""
    if buf:
        yield start, buf


def _strip_cond(text: str):
    """``X if EXPR`` -> (X, EXPR or None); quotes respected."""
    in_quote = ""
    for i, ch in enumerate(text):
        if ch in "\"'":
            in_quote = "" if in_quote == ch else (ch if not in_quote else in_quote)
        if not in_quote and text.startswith(" if ", i):
            return text[:i].strip(), text[i + 4:].strip()
    return text.strip(), None


def _expr_or_none(text: str):
    try:
        return parse_expr(text)
    except ValueError:
        return ("macro", text)     # unreadable: shown as written, counted as met


def load(srctree: Path, arch: str | None) -> Tree:
    """Parse the tree from its top Kconfig file (raises TreeError)."""
    top = next((name for name in TOP_FILES if (Path(srctree) / name).is_file()), None)
    if top is None:
        raise TreeError(f"no {' or '.join(TOP_FILES)} in {srctree}")
    tree = Tree()
    variables = {"SRCARCH": arch or "", "ARCH": arch or "", "srctree": "."}
    _Reader(tree, Path(srctree), variables).read(top, None)
    return tree


class _Reader:
    def __init__(self, tree: Tree, root: Path, variables: dict[str, str]):
        self.tree = tree
        self.root = root
        self.variables = variables

    def _subst(self, text: str) -> str:
        return re.sub(r"\$\((\w+)\)|\$(\w+)", lambda m: self.variables.get(m.group(1) or m.group(2), ""), text)

    def read(self, rel: str, outer, depth: int = 0) -> None:
        """Read one file; ``outer`` is the dependency of the block it is sourced in."""
        self.tree.files += 1
        if self.tree.files > MAX_FILES or depth > MAX_DEPTH:
            raise TreeError(f"{rel}: more than {MAX_FILES} Kconfig files or `source` nested more than "
                            f"{MAX_DEPTH} deep (a `source` loop?)")
        try:
            text = read_text_beneath(self.root, rel)
        except (OSError, BuildError):
            return          # osource, an arch dir this tree lacks, or a link a step planted
        # A stack of block dependencies: if/menu/choice push, end* pop.
        stack: list[object] = [outer]
        current: Definition | None = None
        current_name = ""
        block = None            # the menu/choice/comment whose attributes follow
        help_indent: int | None = None
        lines = list(_logical_lines(text))
        for number, raw in lines:
            if help_indent is not None:
                indent = len(raw) - len(raw.lstrip())
                if not raw.strip() or indent >= help_indent:
                    if help_indent == -1 and raw.strip():
                        help_indent = indent      # the first help line sets the indentation
                    continue
                help_indent = None
            line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith('"') else raw.strip()
            if not line:
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            where = f"{rel}:{number}"
            if word in ("config", "menuconfig"):
                current = Definition(where, depends=stack[-1])
                current_name = rest
                self.tree.defs.setdefault(rest, []).append(current)
                block = None
            elif word in ("menu", "choice", "comment"):
                current = None
                block = word
                if word in ("menu", "choice"):
                    stack.append(stack[-1])
            elif word == "if":
                current, block = None, None
                stack.append(_and(stack[-1], _expr_or_none(rest)))
            elif word in ("endif", "endmenu", "endchoice"):
                current, block = None, None
                if len(stack) > 1:
                    stack.pop()
            elif word in ("help", "---help---"):
                help_indent = -1
            elif word == "depends" and rest.startswith("on "):
                dep = _expr_or_none(rest[3:].strip())
                if current is not None:
                    current.depends = _and(current.depends, dep)
                elif block in ("menu", "choice") and len(stack) > 1:
                    stack[-1] = _and(stack[-1], dep)
            elif word == "select" and current is not None:
                target, cond = _strip_cond(rest)
                self.tree.selected_by.setdefault(target, []).append(
                    Selector(current_name, _expr_or_none(cond) if cond else None, where))
            elif current is not None and word in _TYPES + ("def_bool", "def_tristate", "prompt"):
                if word.startswith("def_"):
                    current.type = word[4:]
                else:
                    if word != "prompt":
                        current.type = word
                    label, cond = _strip_cond(rest)
                    if label:
                        current.prompt = True
                        current.prompt_if.append(_expr_or_none(cond) if cond else None)
            elif _SOURCE.match(line):
                kind, path = _SOURCE.match(line).groups()   # type: ignore[union-attr]
                path = self._subst(path)
                if kind in ("rsource", "orsource"):
                    path = str(Path(rel).parent / path)
                for sub in sorted(self._glob(path)):
                    self.read(sub, stack[-1], depth + 1)
                current, block = None, None

    def _glob(self, path: str) -> list[str]:
        if not any(ch in path for ch in "*?["):
            return [path.removeprefix("./")]
        base = self.root
        return [str(p.relative_to(base)) for p in base.glob(path.removeprefix("./")) if not p.is_symlink()]

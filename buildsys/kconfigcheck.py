"""Checking Kconfig fragments against the final .config, and saying why a
symbol was dropped.

Kconfig sets a symbol only when its dependencies are met; a fragment line
whose dependency is off is dropped without a word (Yocto's kernel audit and
Buildroot's fragment merge leave users to guess why).  Here every fragment
line is compared with the final .config; for each one that did not survive,
the report names the fragment file:line, what .config has instead, and the
unmet part of the symbol's ``depends on`` (and the menus and ``if`` blocks
around it), following each unmet symbol down to the first one the fragments
could set, with the symbols that ``select`` it.

A fragment chooses what a dropped line does with a comment line:
``# buildsys: on-drop=warn`` (or ``=fail``, the default) applies to the lines
after it, up to the next such comment.

This module only checks and reports: it never changes a .config, so it is not
output-shaping (signature.py); the fragments, which decide warn or fail, are
hashed as recipe data.
"""
from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import kconfiglines
from .errors import BuildError, UserError, Where

# `buildsys kconfig check` runs configure to print the report itself: the
# step then fails with one line instead of the report (it must still fail,
# so that no stamp says this configure succeeded).  A process-wide switch,
# because steps run on the scheduler's threads.
_report_only = False


@contextlib.contextmanager
def report_only() -> Iterator[None]:
    global _report_only
    _report_only = True
    try:
        yield
    finally:
        _report_only = False


DIRECTIVE = re.compile(r"#\s*buildsys:\s*on-drop\s*=\s*(\S+)\s*$")
MODES = ("fail", "warn")


@dataclass
class Wanted:
    """One fragment line: the symbol, the line as written, where, and what a drop does."""
    symbol: str
    line: str
    file: str          # the fragment's layer-relative name
    lineno: int
    mode: str = "fail"


@dataclass
class Dropped:
    wanted: Wanted
    got: str           # the line .config has for the symbol (or "# X is not set")
    why: list[str] = field(default_factory=list)

    def headline(self) -> str:
        w = self.wanted
        return f"{w.file}:{w.lineno}:1: {w.line} did not survive into .config (it has: {self.got})"


def parse_fragment(text: str, name: str) -> list[Wanted]:
    """The settings of one fragment, each with its line number and on-drop mode."""
    mode = "fail"
    out: list[Wanted] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        directive = DIRECTIVE.match(raw.strip())
        if directive:
            mode = directive.group(1)
            if mode not in MODES:
                raise UserError(f"unknown on-drop mode {mode!r}", Where(name, lineno, 1),
                                hint="write `# buildsys: on-drop=fail` or `# buildsys: on-drop=warn`")
            continue
        parsed = kconfiglines.parse_line(raw)
        if parsed is not None:
            out.append(Wanted(parsed[0], parsed[1], name, lineno, mode))
    return out


def wanted_lines(fragments) -> dict[str, Wanted]:
    """symbol -> its last setting over the fragments (later files win, as in the merge)."""
    wanted: dict[str, Wanted] = {}
    for frag in fragments:
        path = Path(frag.path) if hasattr(frag, "path") else Path(frag)
        name = getattr(frag, "layer_relative", None) or str(path)    # a FileRef, or a plain path
        for w in parse_fragment(Path(path).read_text(), name):
            wanted[w.symbol] = w
    return wanted


def survived(line: str, have: dict[str, str], symbol: str) -> bool:
    """Does .config hold ``line``?  "is not set" also holds when .config does
    not mention the symbol at all (Kconfig omits invisible symbols)."""
    got = have.get(symbol)
    if got == line:
        return True
    return line.endswith(" is not set") and (got is None or got.endswith(" is not set"))


def compare(config_text: str, fragments) -> list[Dropped]:
    """The fragment lines that are not in the final .config."""
    have = kconfiglines.symbols(config_text)
    dropped = []
    for symbol, w in wanted_lines(fragments).items():
        if not survived(w.line, have, symbol):
            dropped.append(Dropped(w, have.get(symbol, f"# {symbol} is not set")))
    return dropped


def explain(dropped: list[Dropped], config_text: str, srctree: Path | None, arch: str | None) -> None:
    """Fill in each drop's ``why`` from the source tree's Kconfig files."""
    if not dropped or srctree is None:
        return
    from . import kconfigtree

    try:
        tree = kconfigtree.load(srctree, arch)
    except kconfigtree.TreeError as exc:
        for d in dropped:
            d.why = [f"(cannot read the Kconfig tree: {exc})"]
        return
    values = kconfigtree.values_from_config(config_text)
    asked = {d.wanted.symbol.removeprefix("CONFIG_") for d in dropped}
    for d in dropped:
        d.why = tree.explain(d.wanted.symbol, d.wanted.line, values, asked)


def format_report(dropped: list[Dropped]) -> str:
    lines = []
    for d in dropped:
        lines.append(f"{d.headline()} [{d.wanted.mode}]")
        lines.extend("    " + why for why in d.why)
    return "\n".join(lines)


def enforce(ctx, config_text: str, fragments) -> None:
    """After configure: log the report; fail the step if a fail-mode line was
    dropped, warn on the console for warn-mode ones."""
    dropped = compare(config_text, fragments)
    if not dropped:
        ctx.log(f"config fragments: every line of {len(list(fragments))} fragment(s) is in .config")
        return
    # The recipe's Kconfig tree (Linux's Kconfig or busybox's Config.in) and $ARCH.
    explain(dropped, config_text, Path(ctx.paths.src), ctx.env.get("ARCH"))
    pn = ctx.recipe.pn
    report = format_report(dropped)
    ctx.log(f"config fragments: {len(dropped)} line(s) dropped by Kconfig:\n{report}")
    failing = [d for d in dropped if d.wanted.mode == "fail"]
    warning = [d for d in dropped if d.wanted.mode == "warn"]
    if _report_only:
        if failing:
            raise BuildError(f"{pn}: {len(failing)} config fragment line(s) did not survive into .config")
        return
    if warning:
        print(f"warning: {pn}: {len(warning)} config fragment line(s) dropped by Kconfig (on-drop=warn):\n"
              + format_report(warning), file=sys.stderr, flush=True)
    if failing:
        raise BuildError(f"{pn}: {len(failing)} config fragment line(s) did not survive into .config "
                         f"(`buildsys kconfig check {pn}` prints this again):\n" + format_report(failing))

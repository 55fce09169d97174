"""The text of a new recipe: the keys a hand-written recipe has, in the same
order, with comments for everything ``buildsys recipe new`` could not decide.

Written as text, not through a YAML dumper: the comments are half the value.
Every scalar goes through ``scalar()``, so a version such as ``59`` or
``1.10`` stays a string and a value with YAML syntax in it is quoted.
"""
from __future__ import annotations

import json
import textwrap

import yaml

from .detect import Detected
from .license import LicenseGuess
from .origin import Origin

# Class parameters that take the options listed in comments.
_ARGS_KEY = {"meson": "meson_args", "cmake": "cmake_args", "autotools": "conf_args", "make": "make_args",
             "kconfig": "make_args"}


def scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    try:
        plain = yaml.safe_load(text) == text and "\n" not in text and not text.startswith(("*", "&", "!", "%", "@"))
    except yaml.YAMLError:
        plain = False
    if plain and ": " not in text and " #" not in text and text == text.strip():
        return text
    return json.dumps(text)     # a JSON string is a YAML double-quoted scalar


def flow_list(values) -> str:
    return "[" + ", ".join(scalar(v) for v in values) + "]"


def comment(text: str, indent: str = "", width: int = 100) -> list[str]:
    """Comment lines, long ones wrapped (a template's lines are kept as they are)."""
    out = []
    for line in text.splitlines():
        wrapped = textwrap.wrap(line, width - len(indent) - 2, break_on_hyphens=False) if len(line) > width else [line]
        out += [f"{indent}# {part}".rstrip() for part in wrapped or [""]]
    return out


def render(name: str, origin: Origin, det: Detected, lic: LicenseGuess, depends: list[str],
           dep_comments: list[str]) -> str:
    out = ["format: 1", f"name: {scalar(name)}", f"version: {scalar(origin.version)}"]
    if lic.expression == "NOASSERTION":
        out.append("# TODO: the license was not recognised; put its SPDX expression here")
    out.append(f"license: {scalar(lic.expression)}")
    if lic.files:
        out.append("license_files:      # sha256 of each text: a change fails the build at patch time")
        for f in lic.files:
            what = f"  # {f.spdx}" if f.spdx else "  # not recognised: read it"
            out.append(f"  - {{path: {scalar(f.path)}, sha256: {f.sha256}}}{what}")
    out.append("# TODO: summary: one line saying what it is")
    if origin.homepage:
        out.append(f"homepage: {scalar(origin.homepage)}")
    out.append("sources:")
    for line in origin.comments:
        out += comment(line, "  ")
    first = True
    for key, value in origin.entry.items():
        out.append(f"  {'- ' if first else '  '}{key}: {scalar(value)}")
        first = False
    if origin.strip != 1:
        out.append(f"    strip: {origin.strip}")
    out.append(f"class: {det.cls}")
    if det.cls != "script-cc":
        out.append(f"# {det.system}, found by 'buildsys recipe new'")
    for key, value in det.params.items():
        out.append(f"{key}: {flow_list(value) if isinstance(value, list) else scalar(value)}")
    if depends:
        out.append(f"depends: {flow_list(depends)}")
    for line in dep_comments + det.todos:
        out += comment(line)
    args_key = _ARGS_KEY.get(det.cls)
    if det.options and args_key:
        shown = det.options[:40]
        out.append(f"# Options left at their defaults (add what you need to {args_key}):")
        out += [f"#   {option}" for option in shown]
        if len(det.options) > len(shown):
            out.append(f"#   ... and {len(det.options) - len(shown)} more")
    if det.cls == "script-cc":
        out += comment("No build system recognised: write the steps, e.g.\n"
                       "steps:\n"
                       "  compile: |\n"
                       "    $CC $CFLAGS -o \"$B\"/prog \"$S\"/prog.c $LDFLAGS\n"
                       "  install: |\n"
                       "    install -D -m 0755 \"$B\"/prog \"$DESTDIR\"/usr/bin/prog")
    if det.cls != "kconfig":
        out.append("rdepends: [virtual/libc]")
    return "\n".join(out) + "\n"

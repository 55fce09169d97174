"""A first guess at a source tree's license: its license files, an SPDX
identifier for each from characteristic phrases of the license texts, and the
files' sha256 for the recipe's ``license_files`` (a later upstream change of
a license text then fails the build at patch time, docs/compliance.md).

A guess, not a finding: the recipe says so, and the user reads the files.
Whether a GPL is "-only" or "-or-later" is not in the license text but in
the notices that point to it, so those are looked for in the README and the
heads of the source files.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

NOASSERTION = "NOASSERTION"
MAX_LICENSE_FILE = 1 << 20
MAX_FILES = 20
# Names of license files, at the top of the tree or in LICENSES/ (REUSE).
_LICENSE_NAME = re.compile(r"^(?:COPYING|COPYRIGHT|LICEN[CS]E|UNLICENSE|MIT-LICENSE|GPL|LGPL)(?:[._-].*)?$",
                           re.IGNORECASE)
_NOT_LICENSE = re.compile(r"\.(?:c|h|py|sh|in|am|html?|xml|sig|asc)$", re.IGNORECASE)


def _squash(text: str) -> str:
    """Lower case, one space between words: phrases match across line breaks and comment marks."""
    text = re.sub(r"(?m)^\s*(?:#|//|/?\*+|;|--|dnl)\s?", " ", text)
    return re.sub(r"\s+", " ", text.lower())


# (SPDX id, phrases that must all appear); first match wins, so narrower texts come first.
# The GNU licenses are found by their title (_GNU_TITLE, below).
_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("EPL-2.0", ("eclipse public license", "2.0")),
    ("BSL-1.0", ("boost software license - version 1.0",)),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("CC0-1.0", ("cc0 1.0 universal",)),
    ("CC-BY-SA-4.0", ("attribution-sharealike 4.0 international",)),
    ("CC-BY-4.0", ("creative commons attribution 4.0 international",)),
    ("Zlib", ("provided 'as-is', without any express or implied warranty",
              "the origin of this software must not be misrepresented")),
    ("MIT", ("permission is hereby granted, free of charge, to any person obtaining a copy",)),
    ("ISC", ("permission to use, copy, modify, and", "distribute this software for any purpose with or without fee",
             "provided that the above copyright notice and this permission notice appear in all copies")),
    ("0BSD", ("permission to use, copy, modify, and", "distribute this software for any purpose with or without fee")),
    ("BSD-4-Clause", ("redistribution and use in source and binary forms", "all advertising materials")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "endorse or promote products")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
]
_GNU = ("GPL-2.0", "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0", "AGPL-3.0")
# Short notices naming a license (a README or a source file's head).
_LATER = re.compile(r"(?:or \(?at your option\)? any later version|or any later version|gpl-[23]\.[01]?-or-later"
                    r"|gpl-[23]\.[01]?\+)")
_SPDX_TAG = re.compile(r"spdx-license-identifier:\s*([a-z0-9.+ ()-]+?)(?:\s*\*/|\s*$|\s+-->)",
                       re.IGNORECASE | re.MULTILINE)


@dataclass
class LicenseFile:
    path: str           # relative to the tree
    sha256: str
    spdx: str | None    # None: not recognised


@dataclass
class LicenseGuess:
    expression: str                         # SPDX expression, or NOASSERTION
    files: list[LicenseFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_GNU_TITLE = re.compile(r"gnu (lesser |library |affero )?general public license,? version (\d(?:\.\d)?)")
_GNU_IDS = {("", "2"): "GPL-2.0", ("", "3"): "GPL-3.0", ("lesser ", "2.1"): "LGPL-2.1", ("lesser ", "3"): "LGPL-3.0",
            ("library ", "2"): "LGPL-2.0", ("affero ", "3"): "AGPL-3.0"}


def identify(text: str) -> str | None:
    """The SPDX id of one license text (GNU ones without -only/-or-later), or None."""
    squashed = _squash(text)
    # A GNU text names the other GNU licenses in passing ("...covered by the GNU Library
    # General Public License instead"): the title is the first name followed by its version.
    title = _GNU_TITLE.search(squashed)
    if title:
        spdx = _GNU_IDS.get((title.group(1) or "", title.group(2).removesuffix(".0")))
        if spdx:
            return spdx
    for spdx, phrases in _RULES:
        if all(p in squashed for p in phrases):
            return spdx
    return None


def license_files(tree: Path) -> list[str]:
    """Paths (relative) of the files that look like license texts: at the top, in
    LICENSES/ (REUSE), and one directory down (lz4's lib/LICENSE, a bundled library's
    COPYING), at most MAX_FILES."""
    out = []
    # Not debian/: a distribution's packaging (debian/copyright), not upstream's license.
    subdirs = sorted(e.name for e in os.scandir(tree) if e.is_dir(follow_symlinks=False)
                     and not e.name.startswith(".") and e.name != "debian")
    for sub in ["", *subdirs]:
        directory = tree / sub if sub else tree
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False):
                continue
            if (sub == "LICENSES" or _LICENSE_NAME.match(entry.name)) and not _NOT_LICENSE.search(entry.name):
                if entry.stat(follow_symlinks=False).st_size <= MAX_LICENSE_FILE:
                    out.append(f"{sub}/{entry.name}" if sub else entry.name)
    return out[:MAX_FILES]


def guess(tree: Path) -> LicenseGuess:
    tree = Path(tree)
    found: list[LicenseFile] = []
    for rel in license_files(tree):
        data = (tree / rel).read_bytes()
        text = data.decode("utf-8", "replace")
        spdx = identify(text)
        if spdx is None:
            tag = _SPDX_TAG.search(text)
            spdx = tag.group(1).strip() if tag else None
        if spdx is None and rel.startswith("LICENSES/"):
            spdx = Path(rel).stem       # REUSE names each text by its SPDX id: LICENSES/MIT.txt
        found.append(LicenseFile(rel, hashlib.sha256(data).hexdigest(), spdx))
    result = LicenseGuess(NOASSERTION, found)
    if not found:
        result.notes.append("no license file found (COPYING, LICENSE*, LICENCE*, COPYRIGHT...): set 'license' "
                            "and 'license_files' from what the source says")
        return result
    ids = list(dict.fromkeys(f.spdx for f in found if f.spdx))
    for f in found:
        if f.spdx is None:
            result.notes.append(f"{f.path}: license not recognised; read it (its sha256 is recorded)")
    if not ids:
        result.notes.append("license not recognised: 'license: NOASSERTION' until you set the SPDX expression")
        return result
    if any(i in _GNU for i in ids):
        later = _or_later(tree)
        suffix = "-or-later" if later else "-only"
        ids = [i + suffix if i in _GNU else i for i in ids]
        result.notes.append(f"{'a notice says' if later else 'no notice found saying'} 'or (at your option) any "
                            f"later version': {', '.join(i for i in ids if i.endswith(suffix))} "
                            "(check the source files' headers)")
    result.expression = " AND ".join(ids)
    if len(ids) > 1:
        result.notes.append(f"several licenses ({', '.join(ids)}): 'AND' is a guess, the files may say which part "
                            "is under which (or a choice: 'OR')")
    return result


def _or_later(tree: Path) -> bool:
    """Does a notice (README, the heads of up to 200 source files) say 'any later version'?"""
    texts = []
    # Not COPYING: the GPL's own text shows the "any later version" notice as an example.
    for name in ("README", "README.md", "README.rst", "README.txt"):
        path = tree / name
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                texts.append(f.read(64 << 10))
    count = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if count >= 200:
                break
            if name.endswith((".c", ".h", ".cc", ".cpp", ".py", ".sh")):
                source = os.path.join(dirpath, name)
                if os.path.islink(source):
                    continue
                count += 1
                with open(source, "rb") as f:
                    texts.append(f.read(4096))
        if count >= 200:
            break           # a kernel-sized tree is not walked to the end
    for raw in texts:
        squashed = _squash(raw.decode("utf-8", "replace"))
        if _LATER.search(squashed):
            return True
    return False

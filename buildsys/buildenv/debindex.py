"""Debian binary package indices (Packages.xz) and the dependency closure of
a list of packages -- what `buildsys lock update` pins.

The resolver is deliberately simple and deterministic: for every dependency
it takes the first alternative that exists in the indices (or a package that
Provides it), at the version the index has; versions in the relations are not
compared (one suite and its updates are one consistent release).  Pre-Depends
count as Depends; Recommends and Suggests are ignored, as with
``--no-install-recommends``.
"""
from __future__ import annotations

import lzma
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    filename: str           # pool/main/g/gcc-12/gcc-12_12.2.0-14_amd64.deb
    sha256: str
    size: int
    depends: tuple[tuple[str, ...], ...]      # AND of ORs, names only
    provides: tuple[str, ...]
    essential: bool = False


def parse_packages(text: str) -> list[Package]:
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" not in fields or "Filename" not in fields:
            continue
        deps = []
        for field in ("Pre-Depends", "Depends"):
            for group in _split(fields.get(field, ""), ","):
                alts = tuple(_name(a) for a in _split(group, "|"))
                if alts:
                    deps.append(alts)
        out.append(Package(
            name=fields["Package"], version=fields["Version"], architecture=fields.get("Architecture", ""),
            filename=fields["Filename"], sha256=fields.get("SHA256", ""), size=int(fields.get("Size", "0")),
            depends=tuple(deps), provides=tuple(_name(p) for p in _split(fields.get("Provides", ""), ",")),
            essential=fields.get("Essential") == "yes"))
    return out


def _split(text: str, sep: str) -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def _name(relation: str) -> str:
    # "libc6 (>= 2.34)" -> "libc6"; "python3:any" -> "python3"
    name = re.split(r"[\s(\[]", relation.strip(), maxsplit=1)[0]
    return name.split(":", 1)[0]


class Index:
    """Packages of one or more (suite, component, architecture) indices;
    a later index (e.g. bookworm-updates) overrides an earlier one."""

    def __init__(self, packages: list[Package], architectures: tuple[str, ...]):
        self.by_name: dict[str, Package] = {}
        self.providers: dict[str, list[str]] = {}
        for pkg in packages:
            if pkg.architecture not in architectures:
                continue
            current = self.by_name.get(pkg.name)
            # Prefer the first architecture listed (amd64 over all is irrelevant: one name, one arch).
            if current is None or current.architecture == pkg.architecture or pkg.architecture == architectures[0]:
                self.by_name[pkg.name] = pkg
        for pkg in self.by_name.values():
            for virtual in pkg.provides:
                self.providers.setdefault(virtual, []).append(pkg.name)
        for names in self.providers.values():
            names.sort()

    def pick(self, name: str) -> Package | None:
        if name in self.by_name:
            return self.by_name[name]
        for provider in self.providers.get(name, []):
            return self.by_name[provider]
        return None

    def closure(self, roots: list[str], where=None) -> list[Package]:
        chosen: dict[str, Package] = {}
        stack = list(reversed(roots))
        while stack:
            name = stack.pop()
            pkg = self.pick(name)
            if pkg is None:
                raise UserError(f"no package '{name}' in the Debian indices", where,
                                hint="check the name in buildenv.yaml (binary package names, as apt shows them)")
            if pkg.name in chosen:
                continue
            chosen[pkg.name] = pkg
            for alternatives in pkg.depends:
                if any(alt in chosen for alt in alternatives):
                    continue
                found = next((alt for alt in alternatives if self.pick(alt) is not None), None)
                if found is None:
                    raise UserError(f"{pkg.name} depends on {' | '.join(alternatives)}, which no index has", where)
                stack.append(found)
        return sorted(chosen.values(), key=lambda p: p.name)


def read_index(path: Path) -> list[Package]:
    with lzma.open(path, "rt", encoding="utf-8", errors="replace") as f:
        return parse_packages(f.read())

"""Which build system an unpacked source tree uses, what it checks for with
pkg-config, and which of its options a recipe may want to set.

Only reads the tree (buildsys' own unpack of a verified archive, links
checked to stay inside), a bounded amount of each file.  The order is the
one a packager would choose when a tree offers several: Meson, CMake,
Autotools (a generated ``configure`` first), Kconfig, plain make; anything
else gets the ``script-cc`` class with a commented template.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_READ = 4 << 20      # a build file bigger than this is read up to here


@dataclass(frozen=True)
class PkgCheck:
    """One pkg-config module (or, ``library``, one -l library) the build looks for."""

    module: str
    required: bool | None       # None: could not tell
    where: str                  # "meson.build", "CMakeLists.txt", ...
    library: bool = False       # a plain -l<module> check (AC_CHECK_LIB, find_library...)


# The C library's own parts: no recipe but virtual/libc.
LIBC_PARTS = {"c", "m", "dl", "pthread", "rt", "util", "crypt", "resolv", "anl", "nsl", "socket", "intl", "iconv"}


def _library_checks(text: str, where: str) -> list[PkgCheck]:
    """-l libraries a build file checks for without pkg-config."""
    found = []
    patterns = (r"AC_CHECK_LIB\(\s*\[?([\w+.-]+)",                          # configure.ac
                r"AC_SEARCH_LIBS\(\s*\[?\w+\]?\s*,\s*\[?([\w+. -]+)",         # (several, space separated)
                r"\bfind_library\s*\(\s*\w+\s+(?:NAMES\s+)?\"?([\w+.-]+)",      # CMake
                r"\bfind_library\s*\(\s*'([\w+.-]+)'")                        # Meson (cc.find_library)
    for pattern in patterns:
        for m in re.finditer(pattern, text):
            for name in m.group(1).split():
                if name not in LIBC_PARTS and not name.startswith("$"):
                    found.append(PkgCheck(name, None, where, library=True))
    return found


@dataclass
class Detected:
    cls: str                                        # meson | cmake | autotools | kconfig | make | script-cc
    system: str                                     # what was recognised, for people ("Meson (meson.build)")
    params: dict = field(default_factory=dict)      # class parameters to write (autoreconf, defconfig, ...)
    checks: list[PkgCheck] = field(default_factory=list)
    options: list[str] = field(default_factory=list)    # comment lines: options not decided
    notes: list[str] = field(default_factory=list)      # things the user must check
    todos: list[str] = field(default_factory=list)      # both: written in the recipe and to check


def read(path: Path) -> str:
    """A build file's text (bounded; undecodable bytes replaced); '' when it is not a regular file."""
    try:
        if not path.is_file() or path.is_symlink():
            return ""
        with open(path, "rb") as f:
            return f.read(MAX_READ).decode("utf-8", "replace")
    except OSError:
        return ""


def detect(tree: Path) -> Detected:
    tree = Path(tree)
    for probe in (_meson, _cmake, _autotools, _kconfig, _make):
        found = probe(tree)
        if found is not None:
            found.checks = _unique(found.checks)
            return found
    return Detected("script-cc", "no build system recognised", notes=[
        "no meson.build, CMakeLists.txt, configure(.ac), Kconfig or Makefile at the top of the source: "
        "the recipe has class script-cc and a commented template of the steps to write"])


def _unique(checks: list[PkgCheck]) -> list[PkgCheck]:
    out: dict[tuple[str, bool], PkgCheck] = {}
    for c in checks:
        seen = out.get((c.module, c.library))
        if seen is None or (c.required and not seen.required):
            out[(c.module, c.library)] = c
    return list(out.values())


# --- Meson -----------------------------------------------------------------------------------
# Dependencies Meson finds without pkg-config (or that are no package).
_MESON_SPECIAL = {"threads", "openmp", "dl", "iconv", "intl", "mpi", "boost", "gtest", "gmock", "cuda", "llvm",
                  "python3", "appleframeworks", "blocks", "coarray", "hdf5", "netcdf", "objfw", "shaderc",
                  "valgrind", "vulkan", "curses", "libwmf", "jni", "jdk", "qt5", "qt6", "sdl2", "wxwidgets",
                  "gpgme", "dub", "pcap", "cups", "libgcrypt", "gpg-error", "zlib-native"}


def _call_args(text: str, start: int) -> str:
    """The text of a call's arguments from ``start`` (just after its '(') to the matching ')'."""
    depth, i = 1, start
    while i < len(text) and depth:
        ch = text[i]
        if ch in "'\"":
            end = text.find(ch, i + 1)
            i = end if end >= 0 else len(text)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        i += 1
    return text[start:i - 1]


def _meson(tree: Path) -> Detected | None:
    text = read(tree / "meson.build")
    if not text:
        return None
    det = Detected("meson", "Meson (meson.build)")
    sources = [("meson.build", text)] + [
        (str(p.relative_to(tree)), read(p)) for p in sorted(tree.glob("*/meson.build"))[:50]]
    for rel, body in sources:
        for m in re.finditer(r"\bdependency\s*\(", body):
            args = _call_args(body, m.end())
            names = re.match(r"\s*((?:'[^']*'\s*,?\s*)+)", args)
            if not names:
                continue
            required_arg = re.search(r"\brequired\s*:\s*([^,)\n]+)", args)
            required: bool | None = True
            if required_arg:
                value = required_arg.group(1).strip()
                required = {"true": True, "false": False}.get(value)
            if re.search(r"\bmethod\s*:\s*'(?!pkg-config)", args) or re.search(r"\bnative\s*:\s*true", args):
                continue
            for name in re.findall(r"'([^']*)'", names.group(1)):
                if name and name not in _MESON_SPECIAL:
                    det.checks.append(PkgCheck(name, required, rel))
        det.checks += _library_checks(body, rel)
    project = re.search(r"\bproject\s*\(", text)
    if project and re.search(r"'(cpp|c\+\+)'", _call_args(text, project.end())):
        det.notes.append("the project enables C++ (project(... 'cpp')): the build environment has no "
                         "aarch64 g++, so arm64 boards need g++-aarch64-linux-gnu in buildenv.yaml")
    for name in ("meson.options", "meson_options.txt"):
        options = read(tree / name)
        if options:
            det.options = _meson_options(options)
            break
    return det


def _meson_options(text: str) -> list[str]:
    out = []
    for m in re.finditer(r"\boption\s*\(", text):
        args = _call_args(text, m.end())
        name = re.match(r"\s*'([^']+)'", args)
        if not name:
            continue
        kind = re.search(r"\btype\s*:\s*'(\w+)'", args)
        value = re.search(r"\bvalue\s*:\s*(\[[^\]]*\]|'[^']*'|[\w.-]+)", args)
        desc = re.search(r"\bdescription\s*:\s*'([^']*)'", args)
        default = value.group(1).strip("'") if value else {"feature": "auto", "boolean": "true"}.get(
            kind.group(1) if kind else "", "-")
        out.append(f"-D{name.group(1)}=...  ({kind.group(1) if kind else '?'}, default {default})"
                   + (f": {desc.group(1)}" if desc else ""))
    return out


# --- CMake -----------------------------------------------------------------------------------
_CMAKE_KEYWORDS = {"REQUIRED", "QUIET", "IMPORTED_TARGET", "GLOBAL", "NO_CMAKE_PATH", "NO_CMAKE_ENVIRONMENT_PATH"}
# find_package() names with a well-known pkg-config module, so they can be looked up like the others.
_FIND_PACKAGE_PC = {"zlib": "zlib", "liblzma": "liblzma", "openssl": "openssl", "curl": "libcurl",
                    "png": "libpng", "jpeg": "libjpeg", "libxml2": "libxml-2.0", "bzip2": "bzip2",
                    "expat": "expat", "sqlite3": "sqlite3", "cjson": "libcjson", "libuv": "libuv",
                    "zstd": "libzstd", "lz4": "liblz4", "libusb": "libusb-1.0", "freetype": "freetype2"}
_FIND_PACKAGE_SKIP = {"pkgconfig", "threads", "git", "doxygen", "python", "python3", "perl", "bison", "flex",
                      "gtest", "sphinx", "intl", "iconv", "cmakepackageconfighelpers"}


def _cmake(tree: Path) -> Detected | None:
    text = read(tree / "CMakeLists.txt")
    if not text:
        return None
    det = Detected("cmake", "CMake (CMakeLists.txt)")
    bodies = [("CMakeLists.txt", text)] + [
        (str(p.relative_to(tree)), read(p)) for p in sorted(tree.glob("cmake/*.cmake"))[:50]]
    for rel, body in bodies:
        for m in re.finditer(r"\bpkg_(?:check_modules|search_module)\s*\(", body, re.IGNORECASE):
            words = _call_args(body, m.end()).replace('"', " ").split()[1:]
            required = "REQUIRED" in words
            for word in words:
                if word in _CMAKE_KEYWORDS or re.match(r"^[<>=]", word) or re.match(r"^[\d.]+$", word):
                    continue
                det.checks.append(PkgCheck(re.split(r"[<>=]", word)[0], required, rel))
        det.checks += _library_checks(body, rel)
        for m in re.finditer(r"\bfind_package\s*\(", body, re.IGNORECASE):
            words = _call_args(body, m.end()).split()
            if not words:
                continue
            name = words[0].strip('"')
            module = _FIND_PACKAGE_PC.get(name.lower())
            if name.lower() in _FIND_PACKAGE_SKIP or name.startswith("${"):
                continue
            if module:
                det.checks.append(PkgCheck(module, "REQUIRED" in words, f"{rel} find_package({name})"))
            else:
                det.todos.append(f"TODO: {rel} has find_package({name}{' REQUIRED' if 'REQUIRED' in words else ''})"
                                 ": find or write the recipe that installs its CMake package, and add it to depends")
    project = re.search(r"\bproject\s*\(", text, re.IGNORECASE)
    if project:
        args = _call_args(text, project.end())
        langs = re.search(r"\bLANGUAGES\b([^)]*)", args)
        if not langs or re.search(r"\bCXX\b", langs.group(1)):
            det.notes.append("project() enables C++ (no LANGUAGES C): the build environment has no aarch64 g++, "
                             "so arm64 boards need 'LANGUAGES C' in a patch or g++-aarch64-linux-gnu in buildenv.yaml")
    for m in re.finditer(r"\boption\s*\(\s*(\w+)\s+\"([^\"]*)\"\s*([^)\s]*)\s*\)", text, re.IGNORECASE):
        det.options.append(f"-D{m.group(1)}=ON|OFF  (default {m.group(3) or 'OFF'}): {m.group(2)}")
    return det


# --- Autotools -------------------------------------------------------------------------------
# Options every configure has, or that buildsys' autotools class sets itself.
_STANDARD_CONFIGURE = {"option-checking", "FEATURE", "PACKAGE", "silent-rules", "dependency-tracking", "shared",
                       "static", "pic", "fast-install", "aix-soname", "gnu-ld", "sysroot", "libtool-lock",
                       "rpath", "libiconv-prefix", "libintl-prefix", "maintainer-mode", "largefile", "year2038",
                       "x", "pic=PIC", "included-gettext"}


def _autotools(tree: Path) -> Detected | None:
    configure = tree / "configure"
    script = read(configure)
    ac = read(tree / "configure.ac") or read(tree / "configure.in")
    if not script and not ac:
        return None
    det = Detected("autotools", "Autotools (configure)" if script else "Autotools (configure.ac, no configure)")
    # In the source tree, as `./configure && make` does: every autotools
    # package builds there, not every one in a separate dir (GNU hello 2.10's
    # non-recursive Makefile does not create lib/ in $B).
    det.params["out_of_tree"] = False
    if not script:
        det.params["autoreconf"] = True
        det.notes.append("there is no generated configure, only configure.ac: the recipe sets 'autoreconf: true', "
                         "which needs autoconf, automake and libtool in the build environment (buildenv.yaml does "
                         "not have them); a release tarball with a configure script is the easier way")
    elif not (configure.stat().st_mode & 0o111):
        det.notes.append("configure is not executable in the archive")
    for m in re.finditer(r"PKG_CHECK_MODULES(?:_STATIC)?\s*\(\s*\[?\w+\]?\s*,\s*\[?([^\],)]+)\]?\s*(,?)", ac):
        modules = re.sub(r"[<>=!]+\s*[\w.$@{}-]+", " ", m.group(1)).split()
        for module in modules:
            if re.match(r"^[A-Za-z0-9][\w.+-]*$", module):
                det.checks.append(PkgCheck(module, None, "configure.ac"))
    det.checks += _library_checks(ac, "configure.ac")
    if not ac:
        # Only the generated script: its pkg-config calls name the modules.
        for m in re.finditer(r'--exists --print-errors "([^"]+)"', script):
            for module in re.sub(r"[<>=!]+\s*[\w.$@{}-]+", " ", m.group(1)).split():
                if re.match(r"^[A-Za-z0-9][\w.+-]*$", module):
                    det.checks.append(PkgCheck(module, None, "configure"))
    det.options = _configure_options(script)
    return det


def _configure_options(script: str) -> list[str]:
    out = []
    for m in re.finditer(r"^  (--(?:enable|disable|with|without)-([\w.-]+)(?:\[?=[^\s\]]+\]?)?)[ \t]*(.*)$",
                         script, re.MULTILINE):
        name = m.group(2)
        if name in _STANDARD_CONFIGURE or name.startswith("FEATURE") or name.startswith("PACKAGE"):
            continue
        out.append(f"{m.group(1)}" + (f": {m.group(3).strip()}" if m.group(3).strip() else ""))
    return list(dict.fromkeys(out))


# --- Kconfig and plain make ------------------------------------------------------------------
_MAKEFILES = ("GNUmakefile", "makefile", "Makefile")


def _makefile(tree: Path) -> tuple[str, str]:
    for name in _MAKEFILES:
        text = read(tree / name)
        if text:
            return name, text
    return "", ""


def _kconfig(tree: Path) -> Detected | None:
    name, text = _makefile(tree)
    if not (read(tree / "Kconfig") or read(tree / "Config.in")) or not text:
        return None
    if not re.search(r"(%config|menuconfig|defconfig|oldconfig)", text):
        return None
    det = Detected("kconfig", f"Kconfig (Kconfig and a {name} with *config targets)")
    det.params["defconfig"] = "defconfig"
    if "defconfig" not in text:
        det.notes.append(f"{name} names no defconfig target: set 'config: files/<name>.config' (a full .config) "
                         "instead of 'defconfig'")
    else:
        det.notes.append("defconfig is the tree's default configuration: save yours with 'buildsys menuconfig' "
                         "and name it with 'config:' or 'config_fragments:'")
    return det


def _make(tree: Path) -> Detected | None:
    name, text = _makefile(tree)
    if not text:
        return None
    det = Detected("make", f"plain make ({name})")
    # The install prefix, as the Makefiles spell it (sub-makes get command-line variables too).
    makefiles = text + "".join(read(p) for p in sorted(tree.glob("*/Makefile"))[:20])
    for var in ("PREFIX", "prefix"):
        if re.search(rf"^[ \t]*(?:override[ \t]+)?{var}[ \t]*[:?]?=", makefiles, re.MULTILINE):
            det.params["make_args"] = [f"{var}=/usr"]
            break
    if not re.search(r"^(?:[\w.$()-]+[ \t]+)*install(?:[ \t]+[\w.$()-]+)*[ \t]*::?(?!=)", text, re.MULTILINE):
        det.notes.append(f"{name} has no 'install' target: write an install step "
                         "(steps: install: install -D -m 0755 prog \"$DESTDIR\"/usr/bin/prog)")
    elif "DESTDIR" not in makefiles:
        det.notes.append(f"{name} does not use DESTDIR: its install target would write outside the package; "
                         "write an install step")
    for m in re.finditer(r"(?:pkg-config|\$[({]PKG_CONFIG[)}])\s+(?:--[\w-]+\s+)+([A-Za-z][\w.+-]*)", text):
        det.checks.append(PkgCheck(m.group(1), None, name))
    return det

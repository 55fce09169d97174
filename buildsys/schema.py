"""Which keys each file kind accepts, and their types.

Every key is a typed *setting*: a small object with one ``parse(value, where,
layer)`` that checks a value as written (raising a positioned UserError) and
returns what the rest of buildsys sees, plus its default and its doc.  One
table per file kind (recipe, source entry, layer, project, board and the
board's disk/qemu/boot sections) drives validation, defaults and the "did you
mean" hints; build classes add their own keys (``BuildClass.params``) with the
same types, and ``class_params_doc()`` turns those tables into the "Class
parameters" section of docs/formats.md (a test keeps it in sync:
``python -m buildsys.schema docs/formats.md`` rewrites it).

``parse`` gets a value that is not None (``key: null`` unsets, elsewhere), the
value's position, and the layer directory (for file paths).  Lists and
mappings come as yamlio Seq/Map, whose items carry their own positions; they
are returned as they are (coerced in place where YAML is ambiguous: ``1.2``
is a string where a string is wanted), so later stages can still point at an
item.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
import typing

from .errors import UserError, Where
from .model import FileRef, SourceEntry
from .yamlio import Map, Seq

FORMAT = 1
VARIANTS = ("target", "native")
ARCHES = ("x86_64", "aarch64", "arm", "riscv64")
# The engine's tasks whose steps a recipe may replace (classes/base.py CLASS_TASKS).
STEP_NAMES = ("configure", "compile", "install")


def suggest(word: str, choices) -> str | None:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _got(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 40 else f"'{value[:37]}...'"
    return f"{type(value).__name__} {value!r}"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _at(container, key, fallback: Where) -> Where:
    """The position of ``container[key]`` (a Map key or Seq index), else ``fallback``."""
    if isinstance(container, Map):
        return container.where(key) if key in container else fallback
    if isinstance(container, Seq):
        return container.where(key)
    return fallback


_VAR = re.compile(r"\$\{(\w+)\}")


def _check_variables(text: str, names, where: Where) -> None:
    for match in _VAR.finditer(text):
        if match.group(1) not in names:
            raise UserError(f"unknown variable '${{{match.group(1)}}}'", where,
                            hint=suggest(match.group(1), names) or f"known: {', '.join(names)}")


# --- the setting types ------------------------------------------------------------
class Setting:
    """A key of a YAML file: its type (``parse``), default and doc."""

    __slots__ = ("default", "doc")
    what = "a value"          # for messages: "expected a string, got ..."
    kind_doc = "any value"    # for docs/formats.md (see type_doc)
    listy = False             # `key+: item` / `key-: item` may name one item without brackets
    holds_files = False       # the parsed value holds FileRefs (checked once resolved)

    def __init__(self, default=None, doc: str = ""):
        self.default = default
        self.doc = doc

    def parse(self, value, where: Where, layer: str = ""):
        return value

    def parse_removal(self, value, where: Where, layer: str = ""):
        """The value of ``key-:``: what to remove (by default, a value of the type)."""
        return self.parse(value, where, layer)

    def type_doc(self) -> str:
        """The type, as docs/formats.md names it."""
        return self.kind_doc

    def fail(self, value, where: Where):
        raise UserError(f"expected {self.what}, got {_got(value)}", where)

    def default_doc(self) -> str:
        return _yaml_inline(self.default)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default={self.default!r})"


class Any(Setting):
    """Anything YAML can hold; the consumer checks it."""

    __slots__ = ()


class Str(Setting):
    """A string; numbers are taken as written (``version: 1.2``).  ``choices``
    limits the values; ``variables`` are the only ``${name}``s it may use."""

    __slots__ = ("choices", "variables")
    what = "a string"

    def __init__(self, default=None, doc: str = "", choices=None, variables=None):
        super().__init__(default, doc)
        self.choices = tuple(choices) if choices else None
        self.variables = tuple(variables) if variables is not None else None

    def parse(self, value, where, layer=""):
        if value.__class__ is not str:
            if not _number(value):
                self.fail(value, where)
            value = str(value)
        if self.choices is not None and value not in self.choices:
            raise UserError(f"unknown value '{value}'", where,
                            hint=suggest(value, self.choices) or f"one of: {', '.join(self.choices)}")
        if self.variables is not None and "${" in value:
            _check_variables(value, self.variables, where)
        return value

    def type_doc(self) -> str:
        return "one of " + ", ".join(self.choices) if self.choices else "string"


class Int(Setting):
    __slots__ = ("minimum",)
    what = "an integer"
    kind_doc = "integer"

    def __init__(self, default=None, doc: str = "", minimum=None):
        super().__init__(default, doc)
        self.minimum = minimum

    def parse(self, value, where, layer=""):
        if value.__class__ is not int:
            self.fail(value, where)        # bool is not an int here
        if self.minimum is not None and value < self.minimum:
            raise UserError(f"expected an integer of at least {self.minimum}, got {value}", where)
        return value


class Bool(Setting):
    __slots__ = ()
    what = "true or false"
    kind_doc = "true or false"

    def parse(self, value, where, layer=""):
        if value is not True and value is not False:
            self.fail(value, where)
        return value


class Size(Setting):
    """Bytes: an integer, or a string such as ``4096``, ``512KiB``, ``1MiB``.
    Checked here, kept as written (image/disk.py reads it)."""

    __slots__ = ()
    what = "a size (bytes, or e.g. 512KiB, 4MiB)"
    kind_doc = "size"

    def parse(self, value, where, layer=""):
        from .image.disk import parse_size

        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(value, where)
        if isinstance(value, int) and value < 0:
            self.fail(value, where)
        parse_size(value, where)
        return value


class StrList(Setting):
    """A list of strings (numbers taken as written)."""

    __slots__ = ("choices", "variables")
    what = "a list"
    kind_doc = "list of strings"
    listy = True

    def __init__(self, default=None, doc: str = "", choices=None, variables=None):
        super().__init__(default, doc)
        self.choices = tuple(choices) if choices else None
        self.variables = tuple(variables) if variables is not None else None

    def parse(self, value, where, layer=""):
        if not isinstance(value, list):
            self.fail(value, where)
        for i, item in enumerate(value):
            if item.__class__ is not str:
                if not _number(item):
                    raise UserError(f"expected a list of strings, item {i + 1} is {_got(item)}",
                                    _at(value, i, where))
                value[i] = item = str(item)
            if self.choices is not None and item not in self.choices:
                raise UserError(f"unknown value '{item}'", _at(value, i, where),
                                hint=suggest(item, self.choices) or f"one of: {', '.join(self.choices)}")
            if self.variables is not None and "${" in item:
                _check_variables(item, self.variables, _at(value, i, where))
        return value


class StrMap(Setting):
    """A mapping of names to strings (numbers taken as written)."""

    __slots__ = ("variables",)
    what = "a mapping"
    kind_doc = "mapping of strings"

    def __init__(self, default=None, doc: str = "", variables=None):
        super().__init__(default, doc)
        self.variables = tuple(variables) if variables is not None else None

    def parse(self, value, where, layer=""):
        if not isinstance(value, dict):
            self.fail(value, where)
        for k, v in value.items():
            if v.__class__ is not str:
                if not _number(v):
                    raise UserError(f"expected a mapping of strings, '{k}' is {_got(v)}", _at(value, k, where))
                value[k] = v = str(v)
            if self.variables is not None and "${" in v:
                _check_variables(v, self.variables, _at(value, k, where))
        return value

    def parse_removal(self, value, where, layer=""):
        """``key-: [A, B]`` (or one name, or a mapping) removes those keys."""
        if isinstance(value, dict):
            return list(value)
        if value.__class__ is str:
            return [value]
        return _KEY_LIST.parse(value, where, layer)


class Steps(StrMap):
    """``steps:``: shell text per task.  ``<task>`` replaces the class's step;
    ``pre_<task>`` / ``post_<task>`` run before / after it (classes/base.py)."""

    __slots__ = ("names",)
    kind_doc = "mapping of step name to shell text"

    def __init__(self, default=None, doc: str = "", names=STEP_NAMES):
        super().__init__(default, doc)
        self.names = tuple(names) + tuple(f"{when}_{task}" for when in ("pre", "post") for task in names)

    def parse(self, value, where, layer=""):
        value = super().parse(value, where, layer)
        for k in value:
            if k not in self.names:
                tasks = ", ".join(n for n in self.names if "_" not in n)
                raise UserError(f"unknown step '{k}'", value.where(k, of_key=True) if isinstance(value, Map) else where,
                                hint=suggest(k, self.names) or f"steps: {tasks}, each also as pre_<task> and "
                                                               f"post_<task> (a hook around it)")
        return value


_KEY_LIST = StrList()


class File(Setting):
    """A path relative to the YAML file that names it, in the same layer."""

    __slots__ = ()
    what = "a file path"
    kind_doc = "file"
    holds_files = True

    def parse(self, value, where, layer=""):
        if value.__class__ is not str:
            if not _number(value):
                self.fail(value, where)
            value = str(value)
        return FileRef(value, os.path.dirname(where.path) or ".", layer, where)


class Files(Setting):
    __slots__ = ()
    what = "a list of file paths"
    kind_doc = "list of files"
    listy = True
    holds_files = True

    def parse(self, value, where, layer=""):
        if not isinstance(value, list):
            self.fail(value, where)
        base = os.path.dirname(where.path) or "."
        out = []
        for i, item in enumerate(value):
            at = _at(value, i, where)
            if item.__class__ is not str:
                if not _number(item):
                    raise UserError(f"expected a file path, got {_got(item)}", at)
                item = str(item)
            out.append(FileRef(item, base, layer, at))
        return out

    def parse_removal(self, value, where, layer=""):
        """Files are removed by the path as written (see overrides._combine)."""
        return _KEY_LIST.parse(value, where, layer)


class Struct(Setting):
    """A mapping with its own table of keys (the board's disk, qemu, boot)."""

    __slots__ = ("keys", "required", "name")
    what = "a mapping"

    def __init__(self, keys: dict, default=None, doc: str = "", required=(), name: str = ""):
        super().__init__(default, doc)
        self.keys, self.required, self.name = keys, tuple(required), name

    def type_doc(self) -> str:
        return f"mapping ({', '.join(self.keys)})"

    def parse(self, value, where, layer=""):
        if not isinstance(value, dict):
            self.fail(value, where)
        for key in value:
            if key not in self.keys:
                raise UserError(f"unknown key '{key}'" + (f" in {self.name}" if self.name else ""),
                                value.where(key, of_key=True) if isinstance(value, Map) else where,
                                hint=suggest(key, self.keys) or f"known keys: {', '.join(self.keys)}")
        for key in self.required:
            if value.get(key) is None:
                raise UserError(f"missing required key '{key}'" + (f" in {self.name}" if self.name else ""),
                                where)
        for key, setting in self.keys.items():
            item = value.get(key)
            if item is not None:
                value[key] = setting.parse(item, _at(value, key, where), layer)
        return value


class ListOf(Setting):
    """A list whose items are all of one setting's type."""

    __slots__ = ("item",)
    what = "a list"

    def __init__(self, item: Setting, default=None, doc: str = ""):
        super().__init__(default, doc)
        self.item = item

    def type_doc(self) -> str:
        return f"list of {self.item.type_doc()}"

    def parse(self, value, where, layer=""):
        if not isinstance(value, list):
            self.fail(value, where)
        for i, item in enumerate(value):
            at = _at(value, i, where)
            if item is None:
                raise UserError(f"expected {self.item.what}, got nothing", at)
            value[i] = self.item.parse(item, at, layer)
        return value


class Overrides(Setting):
    """``overrides:`` (arch:/board:/native blocks); resolve.py checks the inside."""

    __slots__ = ()
    what = "a mapping of overrides"
    kind_doc = "mapping of override blocks"

    def parse(self, value, where, layer=""):
        if not isinstance(value, dict):
            self.fail(value, where)
        return value


class Sha256(Str):
    __slots__ = ()
    what = "a sha256 (64 hex digits)"
    _HEX = re.compile(r"[0-9a-f]{64}")

    def parse(self, value, where, layer=""):
        if value.__class__ is int and self._HEX.fullmatch(str(value)):
            return str(value)    # all digits: YAML read a number
        if value.__class__ is not str or self._HEX.fullmatch(value) is None:
            shown = _got(value)
            if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value):
                raise UserError(f"sha256 {shown} has upper-case digits", where, hint="write it in lower case")
            raise UserError(f"sha256 {shown} is not 64 hex digits", where,
                            hint="the output of sha256sum for the file")
        return value


class Pattern(Str):
    """A string that must match a regular expression (``what`` names the form)."""

    __slots__ = ("regex", "form")
    what = "a string"

    def __init__(self, regex: str, form: str, default=None, doc: str = ""):
        super().__init__(default, doc)
        self.regex, self.form = re.compile(regex), form

    def parse(self, value, where, layer=""):
        value = super().parse(value, where, layer)
        # ${version} and friends expand later: check the form around them.
        if self.regex.fullmatch(re.sub(r"\$\{\w+\}", "x", value)) is None:
            raise UserError(f"'{value}' is not {self.form}", where)
        return value


# A license file of a recipe (license_files:): its path in the unpacked,
# patched source tree and the sha256 it must have.
LICENSE_FILE_KEYS: dict[str, Setting] = {
    "path": Pattern(r"(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\0]+", "a relative path inside the source tree",
                    doc="path relative to the unpacked source"),
    "sha256": Sha256(doc="sha256 of the file after unpack and patch"),
}

_FULL_COMMIT = re.compile(r"[0-9a-f]{40}")

# The keys of one entry of ``sources:``.
SOURCE_KEYS: dict[str, Setting] = {
    "url": Str(doc="https://, http:// or debian:<package>/<file>; needs sha256"),
    "sha256": Sha256(doc="sha256 of the downloaded file, 64 lower-case hex digits"),
    "git": Str(doc="a git repository URL; needs rev"),
    "rev": Str(doc="the full 40-hex commit id of a git source"),
    "file": File(doc="a file or directory of the layer, relative to the YAML file"),
    "name": Str(doc="file name in the download dir"),
    "strip": Int(minimum=0, doc="leading path components removed when unpacking (default 1, files 0)"),
    "unpack": Bool(doc="unpack an archive (default true)"),
    "dest": Str(doc="subdirectory of the source tree"),
    "allow_branch": Bool(doc="git: accept a branch or tag as rev (not reproducible)"),
}
_SOURCE_KINDS = ("url", "git", "file")
_PLAIN_SOURCE_KEYS = frozenset(("url", "git", "rev", "name", "dest"))   # any string is right


class Sources(Setting):
    """``sources:``: a list of mappings (see SOURCE_KEYS), each becoming a
    SourceEntry that carries its position beside its values."""

    __slots__ = ()
    what = "a list of sources"
    kind_doc = "list of sources"
    listy = True
    holds_files = True

    def parse(self, value, where, layer=""):
        if not isinstance(value, list):
            self.fail(value, where)
        return [self.entry(item, _at(value, i, where), layer) for i, item in enumerate(value)]

    @staticmethod
    def entry(item, where: Where, layer: str) -> SourceEntry:
        if not isinstance(item, dict):
            raise UserError(f"a source is a mapping, not {_got(item)}", where,
                            hint="write {url: ..., sha256: ...}, {git: ..., rev: ...} or {file: ...}")
        fields: dict[str, typing.Any] = {}
        for key, v in item.items():
            if v.__class__ is str and key in _PLAIN_SOURCE_KEYS:
                fields[key] = v          # the common case, without a position
                continue
            if key == "sha256" and v.__class__ is str and Sha256._HEX.fullmatch(v) is not None:
                fields[key] = v
                continue
            setting = SOURCE_KEYS.get(key)
            if setting is None:
                raise UserError(f"unknown key '{key}' in source", _at_key(item, key, where),
                                hint=suggest(key, SOURCE_KEYS) or f"known keys: {', '.join(SOURCE_KEYS)}")
            if v is None:
                raise UserError(f"'{key}' has no value", _at(item, key, where))
            fields[key] = setting.parse(v, _at(item, key, where), layer)
        kinds = [k for k in _SOURCE_KINDS if k in fields]
        if len(kinds) != 1:
            raise UserError("a source names exactly one of url, git or file" +
                            (f", not {' and '.join(kinds)}" if kinds else ""), where)
        if "url" in fields and "sha256" not in fields:
            raise UserError(f"source {fields['url']} has no sha256", where,
                            hint="add 'sha256: <64 hex digits>', the sha256sum of the file")
        if "git" in fields:
            rev = fields.get("rev")
            if rev is None:
                raise UserError(f"git source {fields['git']} has no rev", where,
                                hint="add 'rev: <full 40-hex commit id>'")
            if not fields.get("allow_branch") and "${" not in rev and _FULL_COMMIT.fullmatch(rev) is None:
                raise UserError(f"rev '{rev}' is not a full 40-hex commit id", _at(item, "rev", where),
                                hint="pin the commit, or set 'allow_branch: true' to follow a branch "
                                     "(not reproducible)")
        elif "rev" in fields or "allow_branch" in fields:
            key = "rev" if "rev" in fields else "allow_branch"
            raise UserError(f"'{key}' is for git sources", _at_key(item, key, where))
        return SourceEntry(where=where, **fields)


def _at_key(container, key, fallback: Where) -> Where:
    return container.where(key, of_key=True) if isinstance(container, Map) else fallback


# The kind strings of the former ``Param(kind, default, doc)``, for classes
# written against it (classes/base.py Param).
PARAM_KINDS: dict[str, type[Setting]] = {
    "str": Str, "int": Int, "bool": Bool, "list": StrList, "map": StrMap, "file": File, "files": Files,
    "sources": Sources, "any": Any, "overrides": Overrides,
}


# --- the tables -------------------------------------------------------------------
RECIPE_KEYS: dict[str, Setting] = {
    "format": Int(doc="file format version, 1"),
    "name": Str(doc="recipe name"),
    "version": Str(doc="upstream version"),
    "license": Str(doc="SPDX license expression"),
    "summary": Str(),
    "homepage": Str(),
    "sources": Sources([], "where the source comes from"),
    "patches": Files([], "patches applied in order with -p1"),
    "depends": StrList([], "build-time dependencies"),
    "rdepends": StrList([], "also installed in an image that installs this"),
    "provides": StrList([], "virtual names this recipe provides"),
    "class": Str("script", "build class"),
    "env": StrMap({}, "variables exported to every step"),
    "steps": Steps({}, "explicit shell steps replacing the class's"),
    "variants": StrList(["target"], "target and/or native", choices=VARIANTS),
    "source_date_epoch": Int(None, "fixed SOURCE_DATE_EPOCH", minimum=0),
    "permissions": Any([], "owners, modes and device nodes in the image"),
    "license_files": ListOf(Struct(LICENSE_FILE_KEYS, required=("path", "sha256"), name="license file"), None,
                            "license texts in the source, checked after patch (docs/compliance.md)"),
    "cpe": Pattern(r"(?:[aho]:)?[^:\s]+:[^:\s]+", "vendor:product (or part:vendor:product, part a, o or h)",
                   doc="the CPE vendor:product for the SBOM (default name:name)"),
    "purl": Pattern(r"pkg:[^\s/]+/\S+", "a package URL (pkg:type/namespace/name@version)",
                    doc="the package URL for the SBOM (default pkg:generic/<name>@<version>)"),
    "toolchain": Bool(None, "depend on virtual/toolchain (default: as the class says)"),
    "extends": Str(None, "start from this recipe's values (and its appends), then apply this file's "
                         "(BitBake's require); file paths stay relative to the file that names them"),
    "overrides": Overrides({}, "arch:/board:/native overrides"),
}
APPEND_ONLY = {"format", "overrides"}
META_KEYS = {"format", "overrides"}

# A layer's name: also a directory name and a word in messages and manifests.
LAYER_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
LAYER_KEYS: dict[str, Setting] = {
    "format": Int(),
    "name": Pattern(LAYER_NAME, "a layer name (letters, digits, '.', '_', '+', '-'; a letter or digit first)"),
    "priority": Int(1),
    "depends": StrList([]),
    "summary": Str(),
}


class SshKeys(StrList):
    """OpenSSH public keys, one per item, each checked (sshkeys.py)."""

    __slots__ = ()
    kind_doc = "list of SSH public keys"

    def parse(self, value, where, layer=""):
        from .sshkeys import check_setting

        value = super().parse(value, where, layer)
        return check_setting(value, lambda i: _at(value, i, where))


class LayerEntry(Setting):
    """One item of ``layers:``: a directory (relative to the project), or a git
    repository pinned to a commit, kas-style: ``{url, commit, branch, path}``
    (layerrepo.py clones and checks it).  A mapping is returned as the Map it
    is, so later errors can point at its keys."""

    __slots__ = ()
    what = "a layer directory or a mapping {url, commit, branch, path}"
    kind_doc = "directory, or mapping (url, commit, branch, path)"
    KEYS: dict[str, Setting] = {
        "url": Str(doc="the git repository (https://, ssh://, file://, git@host:path)"),
        "commit": Str(doc="the full 40-hex commit the layer is pinned to"),
        "branch": Str(doc="the branch the commit must be on (checked when fetched)"),
        "path": Pattern(r"(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\0]+", "a relative path inside the repository",
                        doc="the directory of the repository holding layer.yaml (default: its top)"),
    }

    def parse(self, value, where, layer=""):
        if value.__class__ is str:
            return value
        if not isinstance(value, dict):
            self.fail(value, where)
        value = Struct(self.KEYS, required=("url", "commit"), name="a git layer").parse(value, where, layer)
        commit = value["commit"]
        if not _FULL_COMMIT.fullmatch(commit):
            raise UserError(f"commit '{commit}' is not a full 40-hex commit id", _at(value, "commit", where),
                            hint="pin the whole hash (git rev-parse), or run `buildsys layer update NAME`")
        return value


PROJECT_KEYS: dict[str, Setting] = {
    "format": Int(),
    "layers": ListOf(LayerEntry(), []),
    # Where git-pinned layers are cloned (default ~/.cache/buildsys/layers; env BUILDSYS_LAYER_CACHE wins).
    "layer_cache": Str(None, "directory of the git layers' mirrors and checkouts, shared between projects"),
    "default_board": Str("x86-virtio"),
    "premirrors": StrList([]),
    "mirrors": StrList(None),
    "offline": Bool(False),
    "debian_archive": Str(None),
    "source_date_epoch": Int(315532800, minimum=0),
    "cache": Str(None, "this machine's artifact cache: a directory (default <build>/cache) or an http(s) URL"),
    # Team scale (docs/shared-cache.md): a shared cache behind the local one, signed artifacts, a build cluster.
    "shared_cache": Str(None, "the team's artifact cache (http(s) URL of an nginx WebDAV dir, or a directory): "
                              "read through the local cache, pushed to unless read-only"),
    "shared_cache_mode": Str("read-write", "read-only: never push (developer machines); read-write: push what "
                                           "this machine builds (needs signing_key)",
                             choices=("read-write", "read-only")),
    "trusted_keys": StrList([], "public keys (NAME:BASE64, from `buildsys key new`) one of which must have signed "
                                "an artifact from the shared cache"),
    # Per machine (a private key's path), local.yaml or BUILDSYS_SIGNING_KEY.
    "signing_key": Str(None, "private key file signing what this machine pushes (local.yaml only)"),
    # UEFI Secure Boot (secureboot.py, docs/updates.md): images' EFI binaries are
    # signed for this public certificate (it may be committed); the secret key
    # is per machine, local.yaml only (or BUILDSYS_SECURE_BOOT_KEY).
    "secure_boot_cert": Str(None, "X.509 certificate (PEM) whose key signs the images' EFI binaries: the db "
                                  "entry of the product (`buildsys key new NAME --kind secure-boot`)"),
    "secure_boot_key": Str(None, "this machine's secret key file of secure_boot_cert (local.yaml only)"),
    "cluster": Str(None, "Dask scheduler address (tcp://HOST:8786): recipes are built on its workers"),
    "build_env": Str("auto", "locked: steps run against the pinned environment of buildenv.lock.json; host: "
                             "against this host's /usr (artifacts only good for this host); auto: locked when "
                             "the project has a buildenv.lock.json"),
    # Per machine: set it in local.yaml (or BUILDSYS_SSH_AUTHORIZED_KEYS), never in a committed file.
    "ssh_authorized_keys": SshKeys([], "the developer's SSH public keys, installed in /root/.ssh/authorized_keys "
                                       "by the ssh-authorized-keys recipe"),
    # Per machine, local.yaml only (`buildsys source RECIPE --local DIR`): a
    # working tree replaces the recipe's sources (devtool modify/externalsrc).
    "live_sources": StrMap({}, "recipe: working tree it builds from instead of its sources (local.yaml only)"),
    # Update bundles (docs/updates.md): the product's public keys go into the
    # images (/etc/update/keys, by the update-client recipe); the secret key
    # signing bundles is per machine.
    "update_keys": StrList([], "minisign public key files (from `buildsys key new --kind update`), relative to "
                               "the project: an image's updater installs bundles signed by one of them"),
    "update_signing_key": Str(None, "minisign secret key file signing `buildsys bundle` (local.yaml only)"),
    # Incremental rebuilds keep a recipe's object dir when only what its build
    # system tracks changed (a kernel fragment, a live-source file).
    "incremental": Bool(True, "reuse the previous object dir of a recipe when only tracked inputs changed"),
}

# ``${...}`` names the image class fills into the board's boot command line and
# partition text files, and the ones `buildsys run/test` fill into qemu args.
BOOT_VARIABLES = ("console", "root", "root_partuuid")
TEXT_VARIABLES = ("cmdline",) + BOOT_VARIABLES
QEMU_VARIABLES = ("image", "deploy", "ssh_port")
FILESYSTEMS = ("vfat", "squashfs", "raw")

PARTITION_KEYS: dict[str, Setting] = {
    "name": Str(doc="partition name (GPT PARTLABEL)"),
    "type": Str("linux", "gpt: esp, linux, root or a GUID; mbr: fat32-lba, fat16, linux, esp, root or a byte"),
    "filesystem": Str("raw", "the root is the one squashfs", choices=FILESYSTEMS),
    "files": StrMap({}, "path: <recipe>:<path in its package>"),
    "text": StrMap({}, "path: contents", variables=TEXT_VARIABLES),
    "size": Size(0, "minimum size"),
    "label": Str(doc="filesystem label (default: the name)"),
    "bootable": Bool(False, "MBR active flag"),
    # A/B layouts (disk_ab): which slot a partition belongs to; none = shared.
    "slot": Str(None, "disk_ab only: the slot (a or b) this partition belongs to; none: shared by both",
                choices=("a", "b")),
}
DISK_KEYS: dict[str, Setting] = {
    "table": Str("gpt", choices=("gpt", "mbr")),
    "align": Size(4096, "partition start and size boundary"),
    "power_of_two": Bool(False, "pad the disk to a power of two"),
    "partitions": ListOf(Struct(PARTITION_KEYS, required=("name",), name="partition")),
}
# A board's A/B layout (image recipes with ab_slots; docs/updates.md): the
# disk keys, plus the updater backend that switches slots on this board.
DISK_AB_KEYS: dict[str, Setting] = {
    **DISK_KEYS,
    "backend": Str(None, "the updater's slot-switching backend on this board (/usr/lib/update/backend-NAME.sh): "
                         "rpi (tryboot), jetson (nvbootctrl)"),
}
QEMU_KEYS: dict[str, Setting] = {
    "binary": Str(doc="qemu-system-..."),
    "args": StrList([], variables=QEMU_VARIABLES),
}
BOOT_KEYS: dict[str, Setting] = {
    "cmdline": Str(doc="kernel command line", variables=BOOT_VARIABLES),
}
BOARD_TOOLCHAIN_KEYS: dict[str, Setting] = {
    "prefix": Str("", "cross prefix, e.g. aarch64-linux-gnu-"),
}

BOARD_KEYS: dict[str, Setting] = {
    "format": Int(),
    "name": Str(),
    "summary": Str(),
    "arch": Str(choices=ARCHES),
    "kernel_arch": Str(),
    "toolchain": Struct(BOARD_TOOLCHAIN_KEYS, {}, name="toolchain"),
    "tune": StrList([]),
    "preferred_providers": StrMap({}),
    "default_image": Str(),
    "console": Str("ttyS0"),
    "disk": Struct(DISK_KEYS, {}, name="disk"),
    "disk_ab": Struct(DISK_AB_KEYS, None, name="disk_ab"),
    "qemu": Struct(QEMU_KEYS, None, required=("binary",), name="qemu"),
    "kernel": Any({}),
    "boot": Struct(BOOT_KEYS, {}, name="boot"),
}


# --- whole files --------------------------------------------------------------------
def split_op(key: str) -> tuple[str, str]:
    """'depends+' -> ('depends', '+'); 'depends' -> ('depends', '=')."""
    if key.endswith(("+", "-")) and len(key) > 1:
        return key[:-1], key[-1]
    return key, "="


def check_format(data: Map, kind: str) -> None:
    if "format" not in data:
        raise UserError(f"missing 'format: {FORMAT}'", data.where(),
                        hint=f"every {kind} file starts with format: {FORMAT}")
    if data["format"] != FORMAT:
        raise UserError(f"unsupported format {data['format']!r}", data.where("format"),
                        hint=f"this buildsys reads format {FORMAT}")


def fresh(default):
    """A default value the caller may change without changing the table's."""
    if isinstance(default, list):
        return list(default)
    if isinstance(default, dict):
        return dict(default)
    return default


def validate_plain(data: Map, table: dict[str, Setting], kind: str, required=(), layer: str = "") -> dict:
    """Validate a file without operators (layer, board, project); return values with defaults."""
    check_format(data, kind)
    for key in data:
        if key not in table:
            raise UserError(f"unknown key '{key}' in {kind}", data.where(key, of_key=True),
                            hint=suggest(str(key), table) or f"known keys: {', '.join(sorted(table))}")
    for key in required:
        if key not in data:
            raise UserError(f"missing required key '{key}' in {kind}", data.where())
    out = {}
    for key, setting in table.items():
        value = data.get(key)
        out[key] = setting.parse(value, data.where(key), layer) if value is not None else fresh(setting.default)
    return out


# --- docs -------------------------------------------------------------------------
def _yaml_inline(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value == "" or value != value.strip() or ":" in value else value
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_inline(v)}" for k, v in value.items()) + "}"
    return str(value)


DOC_BEGIN = "<!-- class parameters: generated by `python -m buildsys.schema docs/formats.md`; do not edit -->"
DOC_END = "<!-- end of class parameters -->"


def class_params_doc() -> str:
    """The "Class parameters" section of docs/formats.md, from the classes' tables."""
    from .classes import BuildClass, _load_all

    _load_all()
    lines = [DOC_BEGIN, ""]
    for name in sorted(BuildClass.registry):
        cls = BuildClass.registry[name]
        if not cls.__module__.startswith("buildsys.classes."):
            continue      # a class defined elsewhere (a test, a plugin): not ours to document
        # The class's own docstring, or its module's when that is about it.
        doc = cls.__dict__.get("__doc__") or ""
        module_doc = sys.modules[cls.__module__].__doc__ or ""
        if not doc and module_doc.startswith(f"``class: {name}``"):
            doc = module_doc
        doc = " ".join(doc.strip().split("\n\n")[0].split())
        doc = re.sub(r"^``class: [\w-]+`` -- ", "", doc).replace("``", "`")
        lines.append(f"`{name}`" + (f": {doc}" if doc else ""))
        lines.append("")
        if not cls.params:
            lines += ["No parameters of its own (the recipe keys above, `steps` in particular).", ""]
            continue
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, setting in cls.params.items():
            text = setting.doc.replace("|", "\\|")
            lines.append(f"| `{key}` | {setting.type_doc()} | `{setting.default_doc()}` | {text} |")
        lines.append("")
    lines.append(DOC_END)
    return "\n".join(lines)


def update_doc(path: str) -> bool:
    """Rewrite the generated section of ``path``; True when it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.index(DOC_BEGIN), text.index(DOC_END) + len(DOC_END)
    new = text[:start] + class_params_doc() + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":  # pragma: no cover
    for doc_path in sys.argv[1:] or ["docs/formats.md"]:
        print(f"{doc_path}: {'updated' if update_doc(doc_path) else 'up to date'}")

"""Extracting tar archives without trusting them, on every Python we support.

tarfile's extraction filters (PEP 706) arrived in Python 3.11.4, and Debian 12
ships 3.11.2 without them.  So the checks that matter are ours: each member is
checked just before tarfile writes it -- extractall() consumes our generator
lazily, so links written by earlier members are seen through realpath() and a
chain of harmless-looking links cannot lead outside.  Where the 'data' filter
exists it runs as well, as a second opinion.
"""
from __future__ import annotations

import copy
import os
import posixpath
import tarfile


class UnsafeMember(Exception):
    def __init__(self, name: str, reason: str):
        super().__init__(f"member '{name}' {reason}")
        self.name = name
        self.reason = reason


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_name(name: str) -> None:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeMember(name, "has an absolute path")
    if ".." in name.split("/"):
        raise UnsafeMember(name, "leaves the tree through '..'")


def check_symlink(name: str, linkname: str, dest: str) -> None:
    """A symlink ``name`` -> ``linkname`` must stay inside ``dest``, both as
    written and as resolved through the links already on disk."""
    if linkname.startswith("/"):
        raise UnsafeMember(name, f"is a link to the absolute path '{linkname}'")
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(name), linkname))
    real_dest = os.path.realpath(dest)
    resolved = os.path.realpath(os.path.join(os.path.dirname(os.path.join(dest, name)), linkname))
    if lexical == ".." or lexical.startswith("../") or not _inside(resolved, real_dest):
        raise UnsafeMember(name, f"is a link pointing outside the tree ('{linkname}')")


def checked(member: tarfile.TarInfo, dest: str, keep_mode: bool) -> tarfile.TarInfo:
    """A sanitised copy of ``member``, or UnsafeMember."""
    name = member.name
    check_name(name)
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeMember(name, "is a device, fifo or other special file")
    real_dest = os.path.realpath(dest)
    target = os.path.join(dest, name)
    if not _inside(os.path.realpath(os.path.dirname(target)), real_dest):
        raise UnsafeMember(name, "would be written through a link that leads outside the tree")
    if member.issym():
        check_symlink(name, member.linkname, dest)
    if member.islnk():
        check_name(member.linkname)
        if not _inside(os.path.realpath(os.path.join(dest, member.linkname)), real_dest):
            raise UnsafeMember(name, f"is a hard link to '{member.linkname}' outside the tree")
    if hasattr(tarfile, "data_filter"):
        try:
            tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise UnsafeMember(name, str(exc)) from None
    safe = copy.copy(member)
    safe.uid = safe.gid = 0
    safe.uname = safe.gname = ""
    if not member.issym():
        # Packages keep their exact modes; sources lose setuid/setgid/sticky and
        # group/other write, as tarfile's data filter would do.
        safe.mode = member.mode & 0o7777 if keep_mode else (member.mode & 0o755) | 0o600
    return safe


def extract(tar: tarfile.TarFile, dest, members, keep_mode: bool = False) -> None:
    """Extract ``members`` (an iterable, consumed lazily) of ``tar`` into ``dest``."""
    dest = str(dest)

    def gen():
        for member in members:
            yield checked(member, dest, keep_mode)

    kwargs = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
    tar.extractall(dest, members=gen(), **kwargs)   # sets directory times last

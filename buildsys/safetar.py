"""Extracting tar archives without trusting them, on every Python we support.

Two sets of rules:

* **Sources** (``extract``): what upstream ships must stay inside the tree.
  Absolute names, ``..`` components, device or fifo members, symlinks and
  hard links leading out of the tree are refused.  Each member is checked
  just before tarfile writes it -- extractall() consumes our generator
  lazily, so links written by earlier members are seen through realpath() --
  and once everything is written, every symlink in the tree is resolved again
  (``check_links``), because a link written *later* can change where an
  earlier, harmless-looking one leads.  tarfile's extraction filters (PEP 706)
  arrived in Python 3.11.4 and Debian 12 ships 3.11.2 without them; where the
  'data' filter exists it runs as well, as a second opinion.

* **Packages** (``extract_package``): a root filesystem is full of links such
  as ``bin/sh -> /bin/busybox`` or ``lib -> ../../lib``, so any symlink target
  is allowed -- and extraction itself never follows a link: every parent
  directory is opened with O_NOFOLLOW relative to the one above it, files are
  created with O_EXCL|O_NOFOLLOW after removing whatever non-directory was at
  their name (a link is replaced, never written through), and a hard link
  must point at a regular file the archive wrote earlier.

Errors name the member exactly as it is stored in the archive (before any
``strip``), and for a hard link also where it points as stored.
"""
from __future__ import annotations

import copy
import errno
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterable


class UnsafeMember(Exception):
    def __init__(self, name: str, reason: str):
        super().__init__(f"member '{name}' {reason}")
        self.name = name
        self.reason = reason


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def stripped(name: str, strip: int) -> str | None:
    """``name`` without its first ``strip`` components; None when nothing is left."""
    parts = _parts(name)
    return "/".join(parts[strip:]) if len(parts) > strip else None


def check_name(name: str) -> None:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeMember(name, "has an absolute path")
    if ".." in name.split("/"):
        raise UnsafeMember(name, "leaves the tree through '..'")


def check_symlink(name: str, linkname: str, dest: str, shown: str | None = None) -> None:
    """A symlink ``name`` -> ``linkname`` must stay inside ``dest``, both as
    written and as resolved through the links already on disk.  ``shown`` is
    the member's name as stored in the archive, for the error."""
    shown = shown or name
    if linkname.startswith("/"):
        raise UnsafeMember(shown, f"is a link to the absolute path '{linkname}'")
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(name), linkname))
    real_dest = os.path.realpath(dest)
    resolved = os.path.realpath(os.path.join(os.path.dirname(os.path.join(dest, name)), linkname))
    if lexical == ".." or lexical.startswith("../") or not _inside(resolved, real_dest):
        raise UnsafeMember(shown, f"is a link pointing outside the tree ('{linkname}')")


def checked(member: tarfile.TarInfo, dest: str, keep_mode: bool,
            stored: tuple[str, str] | None = None) -> tarfile.TarInfo:
    """A sanitised copy of ``member`` (source rules), or UnsafeMember.

    ``stored`` is (name, linkname) as the archive has them, when ``member``
    was renamed (strip); errors name those."""
    name = member.name
    shown, shown_link = stored or (member.name, member.linkname)
    try:
        check_name(name)
    except UnsafeMember as exc:
        raise UnsafeMember(shown, exc.reason) from None
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeMember(shown, "is a device, fifo or other special file")
    real_dest = os.path.realpath(dest)
    target = os.path.join(dest, name)
    if not _inside(os.path.realpath(os.path.dirname(target)), real_dest):
        raise UnsafeMember(shown, "would be written through a link that leads outside the tree")
    if member.issym():
        check_symlink(name, member.linkname, dest, shown)
    else:
        if os.path.islink(target) and not member.isdir():
            # GNU tar replaces a link by a file of the same name; tarfile would
            # write through it.
            os.unlink(target)
        if not _inside(os.path.realpath(target), real_dest):
            raise UnsafeMember(shown, "would be written through a link that leads outside the tree")
    if member.islnk():
        try:
            check_name(member.linkname)
        except UnsafeMember:
            raise UnsafeMember(shown, f"is a hard link to '{shown_link}', outside the tree") from None
        if not _inside(os.path.realpath(os.path.join(dest, member.linkname)), real_dest):
            raise UnsafeMember(shown, f"is a hard link to '{shown_link}', outside the tree")
    if hasattr(tarfile, "data_filter"):
        try:
            tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise UnsafeMember(shown, str(exc)) from None
    safe = copy.copy(member)
    safe.uid = safe.gid = 0
    safe.uname = safe.gname = ""
    if not member.issym():
        # Packages keep their exact modes; sources lose setuid/setgid/sticky and
        # group/other write, as tarfile's data filter would do.
        safe.mode = member.mode & 0o7777 if keep_mode else (member.mode & 0o755) | 0o600
    return safe


def _renamed(members: Iterable[tarfile.TarInfo], strip: int, names: dict[str, str]):
    """(stored name and linkname, member with ``strip`` components dropped), skipping what strip empties."""
    for member in members:
        stored = (member.name, member.linkname)
        check_name(member.name)
        name = stripped(member.name, strip) if strip else member.name
        if name is None:
            continue
        member = copy.copy(member)
        if member.islnk():
            try:
                check_name(member.linkname)
            except UnsafeMember:
                raise UnsafeMember(member.name, f"is a hard link to '{member.linkname}', outside the tree") from None
            link = stripped(member.linkname, strip) if strip else member.linkname
            if link is None:
                raise UnsafeMember(member.name, f"is a hard link to '{member.linkname}', outside the tree")
            member.linkname = link
        member.name = name
        names[posixpath.normpath(name)] = stored[0]
        yield stored, member


def extract(tar: tarfile.TarFile, dest, members: Iterable[tarfile.TarInfo] | None = None,
            keep_mode: bool = False, strip: int = 0) -> None:
    """Extract ``members`` (default: all, consumed lazily) of ``tar`` into ``dest``
    under the source rules, dropping ``strip`` leading components of each name."""
    dest = str(dest)
    names: dict[str, str] = {}     # name on disk -> name in the archive, for check_links' errors

    def gen():
        for stored, member in _renamed(tar if members is None else members, strip, names):
            yield checked(member, dest, keep_mode, stored)

    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=gen(), filter="fully_trusted")  # our checks ran; sets directory times last
    else:
        tar.extractall(dest, members=gen())
    check_links(dest, names.get)


def check_links(dest, stored_name: Callable[[str], str | None] = lambda rel: None) -> None:
    """Every symlink below ``dest`` resolves inside it, now that all are written.

    Each link was checked when it was written, against the links on disk then;
    a later link can change where an earlier one leads (``a -> b/../../x``
    written while ``b`` did not exist, then ``b -> ..``)."""
    dest = str(dest)
    real_dest = os.path.realpath(dest)
    stack = [dest]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    if not _inside(os.path.realpath(entry.path), real_dest):
                        rel = os.path.relpath(entry.path, dest)
                        raise UnsafeMember(stored_name(rel) or rel,
                                           f"is a link pointing outside the tree ('{os.readlink(entry.path)}') "
                                           "once the archive's other links are in place")
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


# --- packages: any link target, nothing followed ---------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Dirs:
    """Directory fds below a root, opened component by component with O_NOFOLLOW.

    The last one is kept open: members come sorted, so neighbours share it."""

    def __init__(self, root: str):
        self.root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._last: tuple[tuple[str, ...], int] | None = None

    def open(self, parts: list[str], shown: str, create: bool) -> int:
        key = tuple(parts)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        fd = os.dup(self.root)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[: i + 1])
                        kind = "link" if _lstat(fd, part, stat.S_ISLNK) else "non-directory"
                        raise UnsafeMember(shown, f"would be written through the {kind} '{where}'") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._drop_last()
        self._last = (key, fd)
        return fd

    def _drop_last(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def close(self) -> None:
        self._drop_last()
        os.close(self.root)


def _lstat(dir_fd: int, name: str, test=None):
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return test(st.st_mode) if test else st


def _clear(dir_fd: int, name: str, shown: str, what: str) -> None:
    """Remove a non-directory at ``name`` (a link is removed, not followed); a directory there is an error."""
    st = _lstat(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeMember(shown, f"is {what} where the archive already has a directory")
    os.unlink(name, dir_fd=dir_fd)


def extract_package(tar: tarfile.TarFile, dest, members: Iterable[tarfile.TarInfo] | None = None) -> None:
    """Extract a package archive (``artifact.pack``'s output) into ``dest``, a
    new directory nobody else writes: exact modes, any symlink target, and no
    link ever followed while writing."""
    dirs = _Dirs(str(dest))
    deferred: list[tuple[list[str], str, int, int]] = []   # directories' modes and times, set last
    try:
        for member in (tar if members is None else members):
            _extract_package_member(tar, member, dirs, deferred)
        deferred.sort(key=lambda d: d[0], reverse=True)   # children before parents
        for parts, shown, mode, mtime in deferred:
            pfd = dirs.open(parts[:-1], shown, create=False)
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=pfd)
            try:
                os.utime(fd, (mtime, mtime))
                os.chmod(fd, mode)
            finally:
                os.close(fd)
    finally:
        dirs.close()


def _extract_package_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dirs: _Dirs, deferred: list) -> None:
    shown = member.name
    check_name(shown)
    parts = _parts(shown)
    mode, mtime = member.mode & 0o7777, int(member.mtime)
    if not parts:
        if not member.isdir():
            raise UnsafeMember(shown, "has an empty name")
        return          # the top directory itself: dest is ours, its attributes stay
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeMember(shown, "is a device, fifo or other special file")
    pfd = dirs.open(parts[:-1], shown, create=True)
    leaf = parts[-1]
    if member.isdir():
        st = _lstat(pfd, leaf)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(leaf, dir_fd=pfd)         # a link or file there is replaced, never followed
            st = None
        if st is None:
            os.mkdir(leaf, 0o700, dir_fd=pfd)
        deferred.append((parts, shown, mode, mtime))
    elif member.issym():
        _clear(pfd, leaf, shown, "a link")
        os.symlink(member.linkname, leaf, dir_fd=pfd)
        os.utime(leaf, (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
    elif member.islnk():
        _hard_link(member, dirs, parts, shown)
    else:
        _clear(pfd, leaf, shown, "a file")
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        with os.fdopen(fd, "wb") as out:
            src = tar.extractfile(member)
            if src is not None:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            out.flush()                 # before the time is set: a later write would change it
            os.chmod(out.fileno(), mode)
            os.utime(out.fileno(), (mtime, mtime))


def _hard_link(member: tarfile.TarInfo, dirs: _Dirs, parts: list[str], shown: str) -> None:
    link = member.linkname
    outside = f"is a hard link to '{link}', outside the tree"
    try:
        check_name(link)
    except UnsafeMember:
        raise UnsafeMember(shown, outside) from None
    tparts = _parts(link)
    if not tparts:
        raise UnsafeMember(shown, outside)
    try:
        tfd = os.dup(dirs.open(tparts[:-1], shown, create=False))
    except FileNotFoundError:
        raise UnsafeMember(shown, f"is a hard link to '{link}', which the archive does not hold before it") from None
    except UnsafeMember:
        raise UnsafeMember(shown, f"is a hard link to '{link}', which goes through a link") from None
    try:
        st = _lstat(tfd, tparts[-1])
        if st is None:
            raise UnsafeMember(shown, f"is a hard link to '{link}', which the archive does not hold before it")
        if not stat.S_ISREG(st.st_mode):
            kind = "a link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise UnsafeMember(shown, f"is a hard link to '{link}', which is {kind}")
        pfd = dirs.open(parts[:-1], shown, create=True)
        _clear(pfd, parts[-1], shown, "a hard link")
        os.link(tparts[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(tfd)

"""What the dynamic loader will need from a root filesystem: ELF headers,
PT_INTERP and the dynamic section (DT_NEEDED, DT_SONAME, DT_RUNPATH/DT_RPATH),
read with struct; and the search ld.so does for each needed library, done
inside the tree (links resolve against the tree's /, never the host's).

Only what the checks need is parsed; a file that is not an ELF of a known
class and byte order is skipped, a truncated or inconsistent one raises
ValueError (a step's output is untrusted: every offset is bounds-checked).
"""
from __future__ import annotations

import os
import posixpath
import struct
from dataclasses import dataclass
from pathlib import Path

# ELF e_machine of each architecture we build for.
MACHINES = {"x86_64": 62, "aarch64": 183, "arm": 40, "riscv64": 243}
# Multiarch triplets: Debian's glibc searches /lib/<triplet> and /usr/lib/<triplet> too.
TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "arm": "arm-linux-gnueabihf",
            "riscv64": "riscv64-linux-gnu"}
ET_DYN = 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29


@dataclass(frozen=True)
class Elf:
    machine: int
    bits: int                   # 32 or 64
    little: bool
    type: int                   # e_type: 2 executable, 3 shared object or PIE
    interp: str | None
    needed: tuple[str, ...] = ()
    soname: str | None = None
    runpath: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()

    @property
    def dynamic(self) -> bool:
        return self.interp is not None or bool(self.needed)


def read(path: str | os.PathLike) -> Elf | None:
    """The ELF facts of ``path`` (a regular file), None when it is no ELF we judge."""
    with open(path, "rb") as f:
        head = f.read(64)
        # Magic, class 32/64, byte order, version 1: otherwise not an ELF we can judge.
        if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2) \
                or head[6] != 1:
            return None
        f.seek(0)
        data = f.read()
    try:
        return _parse(data)
    except struct.error:
        raise ValueError("truncated ELF") from None


def _parse(data: bytes) -> Elf:
    bits = 64 if data[4] == 2 else 32
    o = "<" if data[5] == 1 else ">"
    etype, machine = struct.unpack_from(o + "HH", data, 16)
    if bits == 64:
        phoff, = struct.unpack_from(o + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(o + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(o + "I", data, 28)
        phentsize, phnum = struct.unpack_from(o + "HH", data, 42)
    loads, dynamic, interp = [], None, None
    for i in range(phnum):
        at = phoff + i * phentsize
        if bits == 64:
            ptype, _, offset, vaddr, _, filesz = struct.unpack_from(o + "IIQQQQ", data, at)
        else:
            ptype, offset, vaddr, _, filesz = struct.unpack_from(o + "IIIII", data, at)
        if offset + filesz > len(data):
            raise ValueError(f"program header {i} reaches past the end of the file")
        if ptype == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif ptype == PT_DYNAMIC:
            dynamic = (offset, filesz)
        elif ptype == PT_INTERP:
            interp = data[offset:offset + filesz].split(b"\0", 1)[0].decode(errors="replace")
    if dynamic is None:
        return Elf(machine, bits, o == "<", etype, interp)
    entries = []
    fmt, size = (o + "qQ", 16) if bits == 64 else (o + "iI", 8)
    offset, filesz = dynamic
    for at in range(offset, offset + filesz - size + 1, size):
        tag, value = struct.unpack_from(fmt, data, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab is None:
        return Elf(machine, bits, o == "<", etype, interp)
    # DT_STRTAB is an address: the PT_LOAD segment holding it gives the file offset.
    base = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz), None)
    if base is None:
        raise ValueError("DT_STRTAB is outside every loaded segment")

    def string(index: int) -> str:
        start = base + index
        end = data.find(b"\0", start)
        if start >= len(data) or end < 0:
            raise ValueError("a dynamic string reaches past the end of the file")
        return data[start:end].decode(errors="replace")

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    sonames = [string(v) for t, v in entries if t == DT_SONAME]
    return Elf(machine, bits, o == "<", etype, interp, tuple(string(v) for t, v in entries if t == DT_NEEDED),
               sonames[0] if sonames else None, paths(DT_RUNPATH), paths(DT_RPATH))


def walk(tree: Path):
    """(path in the image, host path, Elf) of every regular ELF file under ``tree``."""
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(filenames):
            host = Path(dirpath) / name
            if host.is_symlink() or not host.is_file():
                continue
            try:
                info = read(host)
            except ValueError as e:
                raise ValueError(f"/{host.relative_to(tree)}: {e}") from None
            if info is not None:
                yield "/" + str(host.relative_to(tree)), host, info


def resolve(tree: Path, path: str) -> str | None:
    """``path`` (absolute, in the image) with every link resolved inside
    ``tree``; None when it does not exist or the links loop."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    for _ in range(256):
        if not parts:
            return "/" + "/".join(done)
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        host = tree.joinpath(*done, name)
        if host.is_symlink():
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        elif os.path.lexists(host):
            done.append(name)
        else:
            return None
    return None


def search_dirs(program: str, info: Elf, arch: str) -> list[str]:
    """Where ld.so looks for ``program``'s libraries without an ld.so.cache:
    DT_RPATH (ignored when DT_RUNPATH is there), DT_RUNPATH, then the
    system dirs.  $ORIGIN is the program's own dir."""
    origin = posixpath.dirname(program)
    given = list(info.rpath if not info.runpath else ()) + list(info.runpath)
    out = [p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for p in given]
    triplet = TRIPLETS.get(arch)
    system = ([f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []) + ["/lib", "/usr/lib"]
    return [posixpath.normpath(p) for p in out + system]


def preloaded(tree: Path, elves) -> dict[str, str]:
    """{name: path} of the interpreters the ELF files ``elves`` (Elf objects)
    name and the image has.  ld.so is loaded before anything else, so a
    DT_NEEDED of its name (libc.so.6 needs ld-linux-x86-64.so.2, which lives
    in /lib64, off the search path) is satisfied by it."""
    out: dict[str, str] = {}
    for info in elves:
        if info.interp and info.interp not in out.values() and resolve(tree, info.interp) is not None:
            out[posixpath.basename(info.interp)] = info.interp
    return out


def find_library(tree: Path, soname: str, dirs: list[str], want: Elf,
                 loaded: dict[str, str] | None = None) -> str | None:
    """The image path ld.so would load for ``soname``: the first one in
    ``dirs`` that is an ELF of the same class and machine (ld.so skips
    others), with links resolved; else an already loaded interpreter of
    that name (``loaded``, from preloaded())."""
    if "/" in soname:
        candidates = [soname if soname.startswith("/") else None]
    else:
        candidates = [f"{d}/{soname}" for d in dirs]
    for candidate in candidates:
        if candidate is None:
            continue
        real = resolve(tree, candidate)
        if real is None:
            continue
        host = tree / real.lstrip("/")
        if not host.is_file():
            continue
        try:
            info = read(host)
        except ValueError:
            continue
        if info is not None and (info.machine, info.bits) == (want.machine, want.bits):
            return real
    if loaded and soname in loaded:
        return resolve(tree, loaded[soname])
    return None

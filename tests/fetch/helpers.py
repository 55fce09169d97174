"""Plain helpers for the fetch tests: hashes, archives, git repositories, a fake Debian archive."""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256(Path(path).read_bytes())


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic, incompressible bytes."""
    import random

    return random.Random(seed).randbytes(size)


# --- archives ---------------------------------------------------------------------------------

TOP_FILES = {"pkg-1.0/README": b"read me\n", "pkg-1.0/src/main.c": b"int main(void) { return 0; }\n"}


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """An uncompressed tar.  A member is a TarInfo (written as is) or (name, data) for a file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1_600_000_000
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    """Compress a tar for the suffix kind: tar, tar.gz, tar.bz2, tar.xz, tar.lz4, tar.zst."""
    if kind == "tar":
        return data
    if kind == "tar.gz":
        import gzip

        return gzip.compress(data, mtime=0)
    if kind == "tar.bz2":
        import bz2

        return bz2.compress(data)
    if kind == "tar.xz":
        return lzma.compress(data)
    if kind == "tar.lz4":
        import lz4.frame

        return lz4.frame.compress(data)
    if kind == "tar.zst":
        if shutil.which("zstd") is None:
            pytest.skip("zstd not installed")
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    raise ValueError(kind)


def write_tar(path: Path, members, kind: str = "tar") -> Path:
    path.write_bytes(compress(tar_bytes(members), kind))
    return path


ZIP_SYMLINK = 0o120777


def write_zip(path: Path, files: dict[str, bytes | tuple[bytes, int]], unix_mode: int | None = 0o100644) -> Path:
    """A zip.  unix_mode goes into external_attr as the `zip` tool writes it (type and permission
    bits); None leaves what ZipFile.writestr(name, data) writes: permissions 0o600, no type bits.
    A value (data, mode) gives one member its own mode, e.g. (b"target", ZIP_SYMLINK)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            mode = unix_mode
            if isinstance(data, tuple):
                data, mode = data
            if mode is None:
                zf.writestr(name, data)
                continue
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    """A tar member that is not a regular file (symlink, hardlink, device, fifo)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    info.mtime = 1_600_000_000
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: relative path -> file bytes, 'dir' or 'link:<target>'."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_bytes()
    return out


# --- git --------------------------------------------------------------------------------------

def git(repo: Path, *args: str, date: int | None = None) -> str:
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.invalid",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.invalid")
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{date} +0000"
    proc = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout.strip()


@dataclass
class GitRepo:
    path: Path
    commits: list[str]       # full ids, oldest first
    times: list[int]         # committer times, oldest first
    contents: list[dict[str, bytes]]  # tree of each commit

    @property
    def url(self) -> str:
        return f"git+file://{self.path}"


def make_git_repo(path: Path) -> GitRepo:
    """A repo on branch 'main' with two commits at fixed times."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    first = {"README": b"first\n", "src/a.c": b"int a;\n"}
    second = {"README": b"second\n", "src/a.c": b"int a;\n", "src/b.c": b"int b;\n"}
    commits, times = [], [1_500_000_000, 1_600_000_000]
    for files, when in zip((first, second), times, strict=True):
        for rel, data in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(data)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit at {when}", date=when)
        commits.append(git(path, "rev-parse", "HEAD"))
    return GitRepo(path, commits, times, [first, second])


# --- a fake Debian archive --------------------------------------------------------------------

def debian_archive_files(suite: str, package: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """Paths (relative to the archive root) of a minimal archive holding one source package."""
    directory = f"pool/main/{package[0]}/{package}"
    md5 = "\n".join(f" {hashlib.md5(d).hexdigest()} {len(d)} {n}" for n, d in files.items())
    sha = "\n".join(f" {sha256(d)} {len(d)} {n}" for n, d in files.items())
    stanza = (f"Package: {package}\nBinary: {package}\nVersion: 1.0-1\nMaintainer: Test <t@example.invalid>\n"
              f"Architecture: any\nFormat: 3.0 (quilt)\nDirectory: {directory}\n"
              f"Files:\n{md5}\nChecksums-Sha256:\n{sha}\n")
    other = ("Package: other\nBinary: other\nVersion: 2.0-1\nDirectory: pool/main/o/other\n"
             "Files:\n 00000000000000000000000000000000 3 other_2.0.orig.tar.gz\n"
             "Checksums-Sha256:\n " + "0" * 64 + " 3 other_2.0.orig.tar.gz\n")
    release = (f"Origin: Debian\nSuite: {suite}\nCodename: {suite}\nComponents: main\n"
               f"Architectures: amd64 arm64\n")
    out = {f"dists/{suite}/Release": release.encode(),
           f"dists/{suite}/main/source/Sources.xz": lzma.compress((other + "\n" + stanza).encode())}
    for name, data in files.items():
        out[f"{directory}/{name}"] = data
    return out

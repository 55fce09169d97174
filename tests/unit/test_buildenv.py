"""The pinned build environment: lock resolution, assembly from .debs without
maintainer scripts, the seal, and the lock's place in every signature."""
import io
import json
import lzma
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from buildsys import buildenv
from buildsys.buildenv import assemble, debindex
from buildsys.errors import UserError
from conftest import ROOT, copy_project, run_buildsys

PACKAGES = """\
Package: app
Version: 1.0-1
Architecture: amd64
Depends: libfoo (>= 1), awk | mawk, python3:any
Filename: pool/main/a/app/app_1.0-1_amd64.deb
Size: 10
SHA256: {sha}

Package: libfoo
Version: 2.0-1
Architecture: amd64
Pre-Depends: libc6
Filename: pool/main/libf/libfoo/libfoo_2.0-1_amd64.deb
Size: 10
SHA256: {sha}

Package: mawk
Version: 1.3
Architecture: amd64
Provides: awk
Filename: pool/main/m/mawk/mawk_1.3_amd64.deb
Size: 10
SHA256: {sha}

Package: libc6
Version: 2.36-9
Architecture: amd64
Filename: pool/main/g/glibc/libc6_2.36-9_amd64.deb
Size: 10
SHA256: {sha}

Package: python3
Version: 3.11.2-1
Architecture: amd64
Filename: pool/main/p/python3/python3_3.11.2-1_amd64.deb
Size: 10
SHA256: {sha}

Package: unrelated
Version: 1
Architecture: amd64
Filename: pool/main/u/unrelated/unrelated_1_amd64.deb
Size: 10
SHA256: {sha}
""".format(sha="0" * 64)


def test_closure_takes_dependencies_alternatives_and_providers():
    index = debindex.Index(debindex.parse_packages(PACKAGES), ("amd64", "all"))
    names = [p.name for p in index.closure(["app"])]
    assert names == ["app", "libc6", "libfoo", "mawk", "python3"]     # sorted, no 'unrelated'
    with pytest.raises(UserError, match="no package 'nosuch'"):
        index.closure(["nosuch"])


def _deb(path: Path, files: dict[str, bytes | str], links: dict[str, str] = ()) -> Path:
    """A real .deb: ar archive with debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        dirs = set()
        for name in list(files) + list(dict(links)):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "./" + "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1234567890
                    tar.addfile(info)
        for name, content in files.items():
            raw = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo("./" + name)
            info.size, info.mode, info.mtime = len(raw), 0o755, 1234567890
            tar.addfile(info, io.BytesIO(raw))
        for name, target in dict(links).items():
            info = tarfile.TarInfo("./" + name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(b"")),
               ("data.tar.xz", lzma.compress(data.getvalue()))]
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, payload in members:
            f.write(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(payload):<10}`\n".encode())
            f.write(payload + (b"\n" if len(payload) % 2 else b""))
    return path


def _lock(tmp_path, names, links=()):
    pkgs = tuple(buildenv.LockedPackage(n, "1", "amd64", f"pool/main/x/{n}/{n}_1_amd64.deb", "a" * 64, 1)
                 for n in names)
    return buildenv.Lock(tmp_path / "buildenv.lock.json", ("bookworm",), "amd64", pkgs, tuple(links))


def test_assembly_merges_usr_makes_links_and_clamps_times(tmp_path):
    debs = [_deb(tmp_path / "a.deb", {"bin/tool": "#!/bin/sh\n", "usr/lib/x86_64-linux-gnu/libx.so.1": "x"},
                 {"bin/tool2": "/bin/tool"}),
            _deb(tmp_path / "b.deb", {"usr/bin/gawk": "awk", "etc/tool.conf": "conf\n"})]
    lock = _lock(tmp_path, ["a", "b"], [("usr/bin/awk", "gawk"), ("usr/bin/sh", "dash")])
    dest = tmp_path / "env"
    assemble.assemble(lock, debs, dest)
    assert (dest / "usr/bin/tool").read_text() == "#!/bin/sh\n"            # /bin moved under /usr
    assert os.readlink(dest / "usr/bin/tool2") == "/usr/bin/tool"          # absolute link rewritten, kept
    assert os.readlink(dest / "bin") == "usr/bin" and os.readlink(dest / "usr/bin/awk") == "gawk"
    assert (dest / "etc/tool.conf").read_text() == "conf\n"
    assert {os.lstat(p).st_mtime for p in dest.rglob("*")} == {0}


def test_the_seal_notices_a_changed_byte(tmp_path):
    lock = _lock(tmp_path, ["a"])
    env = buildenv.BuildEnv(lock, tmp_path / "store")
    env.root.mkdir(parents=True)
    (env.root / "usr/bin").mkdir(parents=True)
    tool = env.root / "usr/bin/xz"
    tool.write_bytes(b"real xz")
    buildenv._seal(env.root)
    assert env.ready()
    data = tool.read_bytes()
    tool.write_bytes(data[:-1] + b"X")          # same size
    os.utime(tool, (0, 0))                       # and the time put back: ctime still moves
    assert not env.ready()


def test_lock_errors_are_one_positioned_line(tmp_path):
    bad = tmp_path / "buildenv.lock.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        buildenv.load_lock(bad)
    bad.write_text(json.dumps({"format": 1, "suites": ["bookworm"], "architecture": "amd64", "links": {},
                               "packages": [{"name": "x", "version": "1", "architecture": "amd64",
                                             "filename": "../../etc/passwd", "sha256": "a" * 64, "size": 1}]}))
    with pytest.raises(UserError, match="is not a pool/... .deb path"):
        buildenv.load_lock(bad)


@pytest.mark.skipif(not (ROOT / "buildenv.lock.json").is_file(), reason="the project has no lock")
def test_one_lock_entry_changes_every_signature(tmp_path):
    """The lock is an input of every recipe: change one package's sha256 and
    no signature of any board's image stays the same."""
    from buildsys.layers import load_project
    from buildsys.plan import Plan
    from buildsys.resolve import Resolver, load_board

    project_dir = copy_project(tmp_path / "p")

    def signatures(board_name):
        project = load_project(project_dir)
        env = buildenv.for_project(project)
        assert env is not None
        board = load_board(project, board_name)
        resolver = Resolver(project, board)
        targets = [resolver.recipe(board.get("default_image"), "target")]
        return Plan(resolver, board, targets, env).sigs

    before = {b: signatures(b) for b in ("x86-virtio", "qemu-arm64")}
    lock_path = project_dir / "buildenv.lock.json"
    data = json.loads(lock_path.read_text())
    entry = next(p for p in data["packages"] if p["name"] == "xz-utils")
    entry["sha256"] = ("0" if entry["sha256"][0] != "0" else "1") + entry["sha256"][1:]
    lock_path.write_text(json.dumps(data))
    for board, sigs in before.items():
        after = signatures(board)
        assert sigs.keys() == after.keys()
        assert all(sigs[pn] != after[pn] for pn in sigs), board


def test_lock_show_and_host_mode(tiny, tmp_path):
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "b")}
    proc = run_buildsys("--project", tiny, "lock", "show", env=env, check=0)
    assert "host's /usr" in proc.stdout
    (tiny / "buildsys.yaml").write_text((tiny / "buildsys.yaml").read_text() + "build_env: locked\n")
    proc = run_buildsys("--project", tiny, "lock", "show", env=env)
    assert proc.returncode == 2 and "no buildenv.lock.json" in proc.stderr


def test_sandbox_mounts_the_environment_not_the_host(tmp_path):
    from buildsys import sandbox

    root = tmp_path / "env"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    argv = sandbox.bwrap_argv([], {}, "/", ["true"], root=root)
    joined = " ".join(argv)
    assert f"--ro-bind {root}/usr /usr" in joined and f"--ro-bind {root}/etc /etc" in joined
    assert "--symlink usr/bin /bin" in joined and "--ro-bind /usr /usr" not in joined
    assert shutil.which("bwrap")


def test_describe_changes():
    from buildsys.buildenv.lockupdate import describe_changes

    def lock(**versions):
        return buildenv.Lock(Path("x"), ("bookworm",), "amd64", tuple(
            buildenv.LockedPackage(n, v, "amd64", f"pool/main/{n}_{v}.deb", "a" * 64, 1)
            for n, v in versions.items()), ())

    assert describe_changes(lock(a="1", b="2"), lock(a="1", b="3", c="1")) == ["~ b 2 -> 3", "+ c 1"]
    assert describe_changes(lock(a="1"), lock()) == ["- a 1"]


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "buildenv.yaml").is_file(), reason="the project has no buildenv.yaml")
def test_lock_update_against_the_archive(tmp_path):
    """`buildsys lock update` reads the signed indices and writes a lock that
    loads, with every package buildenv.yaml names, and says what changed."""
    project = copy_project(tmp_path / "p")
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "b"), "BUILDSYS_DL_DIR": str(tmp_path / "dl")}
    proc = run_buildsys("--project", project, "lock", "update", env=env)
    assert proc.returncode == 0, proc.stderr
    lock = buildenv.load_lock(project / "buildenv.lock.json")
    names = {p.name for p in lock.packages}
    assert {"gcc", "make", "xz-utils", "gcc-aarch64-linux-gnu", "libc6-dev"} <= names
    assert proc.stdout.strip()          # "no change" or the changed packages

"""Hostile build steps, run by root and by a normal user: no capability, no
way to regain one, no write to the host or to another recipe's package, and
no host-side code following a link a step planted."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, run_buildsys

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

NOBODY = 65534
# What buildsys needs to run, copied where an unprivileged user can read it
# (the test's own venv may live under /root).
_DISTS = ("networkx", "yaml", "requests", "urllib3", "idna", "charset_normalizer", "certifi", "lz4",
          "tqdm", "filelock")

ATTEMPTS = {
    "remount /usr rw": "mount -o remount,rw,bind /usr",
    "remount the sysroot rw": "mount -o remount,rw,bind /build/sysroot",
    "mount a tmpfs": "mkdir -p /build/home/m && mount -t tmpfs none /build/home/m",
    "unshare a mount namespace": "unshare -m true",
    "unshare a user namespace": "unshare -U true",
    "unshare as mapped root": "unshare -Ur true",
    "pivot_root": "mkdir -p /build/home/old && pivot_root /build/home /build/home/old",
    "ptrace a host process": "python3 -c \"import ctypes,sys; libc=ctypes.CDLL(None,use_errno=True); "
                             "sys.exit(0 if libc.ptrace(16, HOSTPID, 0, 0) == 0 else 1)\"",
    "signal a host process": "kill -0 HOSTPID",
    "write to /usr": "echo x > /usr/bin/buildsys-escape",
    "append to a dependency file": "echo x >> /build/sysroot/usr/lib/libgreet.a",
    "chmod a dependency file": "chmod 0666 /build/sysroot/usr/lib/libgreet.a",
    "remove a dependency file": "rm -f /build/sysroot/usr/lib/libgreet.a"
                                " && test ! -e /build/sysroot/usr/lib/libgreet.a",
    "make a device node": "mknod /build/home/null c 1 3",
    "write a sysctl": "echo 1 > /proc/sys/kernel/sysrq",
    "chown to another user": "touch /build/home/f && chown 1:1 /build/home/f",
}


def _hostile_project(root: Path, host_pid: int) -> None:
    shutil.copytree(FIXTURES / "tiny", root)
    lines = ['r() { if sh -c "$2" >/dev/null 2>&1; then echo "SUCCEEDED: $1"; else echo "failed: $1"; fi; }',
             "exec > /build/dest/report.txt 2>&1",
             "grep CapEff /proc/self/status"]
    for name, command in ATTEMPTS.items():
        command = command.replace("HOSTPID", str(host_pid)).replace("'", "'\\''")
        lines.append(f"r '{name}' '{command}'")
    body = "\n".join("    " + line for line in lines)
    recipe = root / "recipes/hostile/hostile.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"format: 1\nname: hostile\nversion: '1'\ndepends: [libgreet]\nsteps:\n  install: |\n{body}\n")


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = f"{st.st_mode:o}:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = f"{st.st_mode:o}"
    return out


def _user_runner(base: Path):
    """argv prefix and env that run buildsys as an unprivileged user (needs root)."""
    pydir = base / "py"
    shutil.copytree(ROOT / "buildsys", pydir / "buildsys", ignore=shutil.ignore_patterns("__pycache__"))
    for name in _DISTS:
        try:
            module = __import__(name)
        except ImportError:
            continue
        src = Path(module.__file__)
        if src.name == "__init__.py":
            shutil.copytree(src.parent, pydir / src.parent.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, pydir / src.name)
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python, "-m", "buildsys"]
    env = {"PYTHONPATH": str(pydir), "HOME": str(base / "home"), "PATH": "/usr/bin:/bin"}
    return argv, env


@pytest.mark.parametrize("who", ["root", "user"])
def test_hostile_step_gains_nothing(who, tmp_path):
    if who == "root" and os.geteuid() != 0:
        pytest.skip("run the tests as root to check the root case")
    if who == "user" and (os.geteuid() != 0 or shutil.which("setpriv") is None):
        pytest.skip("needs root (to become another user) and setpriv")
    base = Path(tempfile.mkdtemp(prefix="buildsys-hostile-", dir="/tmp"))
    host = subprocess.Popen(["sleep", "300"])
    try:
        project = base / "project"
        _hostile_project(project, host.pid)
        build_dir = base / "build"
        env = {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_CACHE_DIR": str(base / "cache"),
               "BUILDSYS_DL_DIR": str(base / "dl"), "BUILDSYS_PARSE_CACHE": "0"}
        prefix = [sys.executable, "-m", "buildsys"]
        if who == "user":
            prefix, user_env = _user_runner(base)
            env.update(user_env)
            (base / "home").mkdir()
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(base)], check=True)
            os.chmod(base, 0o755)
        full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        full_env.update(env)

        def build(target):
            return subprocess.run(prefix + ["--project", str(project), "build", target], env=full_env,
                                  capture_output=True, text=True, timeout=600)

        first = build("libgreet")
        assert first.returncode == 0, first.stderr
        packages = build_dir / "packages"
        before = _tree_digest(packages)
        proc = build("hostile")
        assert proc.returncode == 0, proc.stderr
        report = next(packages.glob("*/report.txt")).read_text()
        assert "CapEff:\t0000000000000000" in report, report
        for name in ATTEMPTS:
            assert f"failed: {name}" in report, report
        assert "SUCCEEDED" not in report, report
        assert host.poll() is None                           # the host process was not touched
        assert not Path("/usr/bin/buildsys-escape").exists()
        after = _tree_digest(packages)
        assert {k: v for k, v in after.items() if k in before} == before   # libgreet's package unchanged
        # Nothing the step could write to shares an inode with the package store.
        store = {os.lstat(p).st_ino for p in packages.rglob("*") if p.is_file() and not p.is_symlink()}
        work = build_dir / "work"
        staged = {os.lstat(p).st_ino for p in work.rglob("*") if p.is_file() and not p.is_symlink()}
        assert not store & staged
    finally:
        host.kill()
        shutil.rmtree(base, ignore_errors=True)


def _write_recipe(project: Path, name: str, text: str) -> None:
    path = project / "recipes" / name / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_links_planted_by_steps_are_not_followed(tiny, tmp_path):
    """A step plants links where host code writes or reads later: the canary
    outside the build dir stays untouched, and what host code would read
    through a link makes the build fail with a clear message."""
    canary_dir = tmp_path / "outside"
    canary_dir.mkdir()
    canary = canary_dir / "canary"
    canary.write_text("CONFIG_HOST_SECRET=y\n")
    plant = "\n".join(f"    ln -sfn {canary} {target} || true" for target in (
        "/build/scripts/compile.step1.sh", "/build/scripts/install.step1.sh", "/build/files/x",
        "/build/stage/rootfs", "/build/obj/.config", "/build/dest/x", "/build/home/.profile"))
    _write_recipe(tiny, "planter", "format: 1\nname: planter\nversion: '1'\nsteps:\n  configure: |\n"
                  f"{plant}\n  compile: |\n    echo compiled > /build/obj/out\n"
                  f"  install: |\n    cp /build/obj/out /build/dest/out\n    ln -s {canary} /build/dest/abs-link\n")
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_buildsys("--project", tiny, "build", "planter", env=env)
    assert proc.returncode == 0, proc.stderr
    assert canary.read_text() == "CONFIG_HOST_SECRET=y\n" and os.listdir(canary_dir) == ["canary"]
    pkg = next((tmp_path / "build/packages").glob("*/out")).parent
    assert (pkg / "out").read_text() == "compiled\n"
    assert os.readlink(pkg / "abs-link") == str(canary)      # kept as a link, harmless on the host

    # A Kconfig package whose configure step turns .config into a link to a host file.
    files = tiny / "recipes/kc/files"
    files.mkdir(parents=True)
    (files / "Makefile").write_text(f"olddefconfig:\n\tln -sf {canary} .config\n")
    (files / "frag.cfg").write_text("CONFIG_FOO=y\n")
    _write_recipe(tiny, "kc", "format: 1\nname: kc\nversion: '1'\nclass: kconfig\ntoolchain: false\n"
                  "sources:\n  - file: files/Makefile\nconfig_fragments: [files/frag.cfg]\n")
    proc = run_buildsys("--project", tiny, "build", "kc", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "refusing to follow a link" in proc.stderr and "HOST_SECRET" not in proc.stderr
    assert canary.read_text() == "CONFIG_HOST_SECRET=y\n"


def test_hostile_archive_is_bad_input(tiny, tmp_path):
    import io
    import tarfile

    files = tiny / "recipes/evil/files"
    files.mkdir(parents=True)
    with tarfile.open(files / "evil-1.0.tar", "w") as tar:
        for name, data in (("evil-1.0/ok.c", b"int x;\n"), ("evil-1.0/../../escape", b"pwned\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _write_recipe(tiny, "evil", "format: 1\nname: evil\nversion: '1.0'\nsources:\n  - file: files/evil-1.0.tar\n"
                  "    strip: 1\nsteps:\n  compile: 'true'\n")
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_buildsys("--project", tiny, "build", "evil", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "'evil-1.0/../../escape'" in proc.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path / "build/escape").exists()

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run_buildsys(*args, cwd=None, env=None, check=None, umask=-1, timeout=1800):
    """Run the real CLI in a subprocess; returns CompletedProcess with text output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "buildsys", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, umask=umask)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture
def tiny(tmp_path):
    """A copy of the tiny fixture project (C library + app) in a temp dir."""
    dest = tmp_path / "tiny"
    shutil.copytree(FIXTURES / "tiny", dest)
    return dest


_NOT_PROJECT = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def project_files(root: Path = ROOT) -> list[str]:
    """The checkout's own files, relative to ``root``: what git tracks plus new
    files not ignored by .gitignore, never build dirs, the venv or caches.

    Without git (an unpacked tarball) the tree is walked instead, skipping the
    same directories, *.egg-info and symlinks to nowhere: `make run` leaves
    `build/` with dangling links into the sandbox's /build, and a copy of the
    project must not trip over them or drag gigabytes of build output along.
    """
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout.decode()
        names = sorted({name for name in out.split("\0") if name})
    except (OSError, subprocess.CalledProcessError):
        names = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _NOT_PROJECT and not d.endswith(".egg-info")
                                 and not os.path.islink(os.path.join(dirpath, d)))
            names += [os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(filenames)]
    return [name for name in names if not set(Path(name).parts) & _NOT_PROJECT
            and os.path.lexists(root / name) and (not os.path.islink(root / name) or os.path.exists(root / name))]


def copy_project(dest: Path, root: Path = ROOT, exclude: tuple[str, ...] = ()) -> Path:
    """Copy the project's own files (see project_files) to ``dest``; top-level
    entries named in ``exclude`` (e.g. "layers", "tests") are left out."""
    for name in project_files(root):
        if Path(name).parts[0] in exclude:
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target, follow_symlinks=False)
    return dest

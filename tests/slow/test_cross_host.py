"""Reproducible on another host: the x86-virtio image built on this Debian 12
machine and inside a Debian 13 root (debootstrap from the same archive, its
own Python 3.13 and bubblewrap, entered with unshare + pivot_root), there as
an unprivileged user, is the same to the byte -- because every step runs in
the pinned build environment, not on the host's /usr.  Both builds are cold:
own build dirs, empty artifact caches, environments assembled anew."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, copy_project

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("debootstrap") is None
                                 or shutil.which("unshare") is None,
                                 reason="needs root, debootstrap and unshare")]

NOBODY = 65534
ROOT_PACKAGES = "python3,bubblewrap,python3-networkx,python3-yaml,python3-requests,python3-lz4,python3-tqdm," \
                "python3-filelock,ca-certificates"


def _archive() -> str:
    sys.path.insert(0, str(ROOT))
    from buildsys.fetch import aptsources

    urls = aptsources.archive_urls()
    if not urls:
        pytest.skip("apt has no Debian archive configured")
    return urls[0]


def _debian13_root() -> Path:
    """A Debian 13 (trixie) root, made once and kept beside the downloads."""
    cache = Path(os.environ.get("BUILDSYS_DL_DIR") or Path.home() / ".cache/buildsys/downloads").parent
    root = cache / "roots" / "debian-13"
    if (root / ".complete").is_file():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={ROOT_PACKAGES}", "trixie", str(root),
                    _archive()], check=True, capture_output=True, timeout=1800)
    (root / ".complete").touch()
    return root


def _disk_sha(build: Path) -> str:
    image = build / "deploy/x86-virtio/image-minimal-x86-virtio.img"
    return hashlib.sha256(image.read_bytes()).hexdigest()


def test_x86_image_is_the_same_on_debian_13_as_another_user(tmp_path):
    if not (ROOT / "buildenv.lock.json").is_file():
        pytest.skip("the project has no pinned build environment")
    dl = Path(os.environ.get("BUILDSYS_DL_DIR") or tmp_path / "dl")
    dl.mkdir(parents=True, exist_ok=True)
    release = (_debian13_root() / "etc/debian_version").read_text().strip()
    assert release.startswith("13") or "trixie" in release, release

    # One snapshot of the project, buildsys's code included, for both builds.
    there = tmp_path / "deb13"
    project = copy_project(there / "project")

    # Debian 12, this host, as root.
    here = tmp_path / "deb12"
    env = dict(os.environ, BUILDSYS_BUILD_DIR=str(here / "build"), BUILDSYS_CACHE_DIR=str(here / "cache"),
               BUILDSYS_ENV_DIR=str(here / "buildenv"), BUILDSYS_DL_DIR=str(dl), BUILDSYS_PARSE_CACHE="0",
               PYTHONPATH=str(project))
    proc = subprocess.run([sys.executable, "-m", "buildsys", "--project", str(project), "build"], env=env,
                          cwd=project, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # Debian 13, inside its root, as an unprivileged user.
    user_dl = there / "dl"                  # the user's own download dir: links to the same files
    user_dl.mkdir(parents=True)
    for f in dl.iterdir():
        if f.is_file() and not f.name.startswith("."):
            try:
                os.link(f, user_dl / f.name)
            except OSError:
                shutil.copy2(f, user_dl / f.name)
    work = there / "work"
    (work / "home").mkdir(parents=True)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(there)], check=True)
    for d in (tmp_path, there):
        os.chmod(d, 0o755)
    proc = subprocess.run([str(ROOT / "scripts/build-in-root.sh"), str(_debian13_root()), str(project),
                           str(user_dl), str(work), str(NOBODY), "--", "build"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Python 3.11" not in proc.stderr

    assert _disk_sha(work / "build") == _disk_sha(here / "build")
    # Same keys too: the two builds' signatures for every recipe agree.
    ours = sorted(p.name for p in (here / "build/packages").glob("*.json"))
    theirs = sorted(p.name for p in (work / "build/packages").glob("*.json"))
    assert ours == theirs

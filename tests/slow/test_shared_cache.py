"""The team's shared cache, end to end on the real x86-virtio image, with a
real nginx (tests/servers.py) as the server and three "machines" (separate
build, cache and download dirs):

A  has the warm cache (BUILDSYS_TEST_CACHE_DIR, else ~/.cache/buildsys/cache:
   nothing compiles), builds the image, signs and pushes every artifact the
   image needs (`cache push`) and fills the premirror (`cache upload-downloads`);
B  starts empty, with no mirror and offline: restores everything from the
   shared cache, runs no compile step, deploys the same image bit for bit;
C  starts empty, after busybox's archive was tampered with on the server's
   disk: refuses it (one line naming busybox), fetches busybox's sources from
   the premirror alone and builds it, and deploys the same image again.
"""
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from buildsys import signing
from conftest import ROOT, run_buildsys
from servers import nginx_cache, nginx_root

pytestmark = pytest.mark.slow

WARM_CACHE = os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(Path.home() / ".cache/buildsys/cache")
TEAM_DL = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")


def ran(stderr: str) -> list[str]:
    return re.findall(r"^\[\d+/\d+\] (\S+)", stderr, re.M)


def image_sha(build: Path) -> str:
    deploy = build / "deploy/x86-virtio"
    manifest = json.loads((deploy / "manifest.json").read_text())
    image = deploy / next(f for f in manifest["files"] if f.endswith(".img"))
    return hashlib.sha256(image.read_bytes()).hexdigest()


def machine(tmp_path: Path, name: str, url: str, **extra) -> dict:
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / name / "build"), "BUILDSYS_DL_DIR": str(tmp_path / name / "dl"),
           "BUILDSYS_CACHE_DIR": str(tmp_path / name / "cache"), "BUILDSYS_SHARED_CACHE": f"{url}/artifacts",
           # no mirror of any kind: what is not in the shared cache cannot be had
           "BUILDSYS_PREMIRRORS": "", "BUILDSYS_MIRRORS": "", "BUILDSYS_DEBIAN_ARCHIVE": "http://127.0.0.1:9/debian",
           "BUILDSYS_OFFLINE": "1"}
    env.update(extra)
    return env


def test_a_fresh_machine_restores_the_image_from_the_shared_cache_and_refuses_a_tampered_artifact(tmp_path):
    key = signing.new_key("ci-1")
    secret = tmp_path / "ci-1.secret"
    secret.write_text(key.line() + "\n")
    trusted = key.public().line()
    with nginx_cache(tmp_path) as url:
        # A: the warm cache, the team's download dir, the signing key
        env_a = machine(tmp_path, "a", url, BUILDSYS_CACHE_DIR=WARM_CACHE, BUILDSYS_DL_DIR=TEAM_DL,
                        BUILDSYS_SIGNING_KEY=str(secret), BUILDSYS_PREMIRRORS=f"{url}/downloads")
        del env_a["BUILDSYS_MIRRORS"], env_a["BUILDSYS_DEBIAN_ARCHIVE"]
        a = run_buildsys("--project", ROOT, "build", "-j2", env=env_a, check=0)
        sha_a = image_sha(tmp_path / "a/build")
        push = run_buildsys("--project", ROOT, "cache", "push", env=env_a, check=0)
        assert " 0 not in the local cache" in push.stdout, push.stdout
        served = nginx_root(tmp_path) / "artifacts"
        assert all("signatures" in json.loads(p.read_text()) for p in served.glob("*.json"))
        run_buildsys("--project", ROOT, "cache", "upload-downloads", env=env_a, check=0)

        # B: nothing local, offline, no mirror: everything from the shared cache
        b = run_buildsys("--project", ROOT, "build", "-j2", check=0,
                         env=machine(tmp_path, "b", url, BUILDSYS_TRUSTED_KEYS=trusted))
        assert ran(b.stderr) and all(t.endswith(":restore") for t in ran(b.stderr)), b.stderr
        assert image_sha(tmp_path / "b/build") == sha_a
        # ... and the image's own packages: --force assembles the image again from them
        b2 = run_buildsys("--project", ROOT, "build", "-j2", "--force", "image-minimal", check=0,
                          env=machine(tmp_path, "b2", url, BUILDSYS_TRUSTED_KEYS=trusted))
        restored = [t for t in ran(b2.stderr) if t.endswith(":restore")]
        assert len(restored) >= 3 and "busybox:restore" in restored and "linux:restore" in restored, b2.stderr
        assert not [t for t in ran(b2.stderr) if t.endswith(":compile") and not t.startswith("image-minimal:")]
        assert image_sha(tmp_path / "b2/build") == sha_a

        # C: busybox's archive changed on the server's disk
        busybox = next(json.loads(p.read_text()) for p in served.glob("*.json")
                       if json.loads(p.read_text()).get("pn") == "busybox")
        archive = served / f"{busybox['key']}.tar.lz4"
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0x01
        archive.write_bytes(bytes(data))
        c = run_buildsys("--project", ROOT, "build", "-j2", "--force", "image-minimal", check=0,
                         env=machine(tmp_path, "c", url, BUILDSYS_TRUSTED_KEYS=trusted, BUILDSYS_OFFLINE="0",
                                     BUILDSYS_PREMIRRORS=f"{url}/downloads"))
        why = [line for line in c.stderr.splitlines() if "the archive is refused" in line]
        assert len(why) == 1 and f"busybox ({busybox['key'][:12]})" in why[0], c.stderr
        assert "busybox:compile" in ran(c.stderr) and "linux:restore" in ran(c.stderr)
        assert image_sha(tmp_path / "c/build") == sha_a
    assert a.returncode == 0

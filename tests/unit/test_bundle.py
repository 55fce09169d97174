"""bundle.py: the ustar bundle from an A/B image's deploy outputs -- its
manifest, byte-for-byte reproducibility, the signature the minisign tool
checks, and the inputs it refuses; `buildsys bundle`'s one-line errors."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from buildsys import bundle, minisign
from buildsys.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
STEM = "image-base-ab-x86-virtio"
EPOCH = 315532800


def make_deploy(tmp_path: Path, root_bytes: bytes = b"hsqs" + bytes(8188)) -> bundle.Inputs:
    """Deploy outputs as the image class writes them (content made up here)."""
    deploy = tmp_path / "deploy" / "x86-virtio"
    deploy.mkdir(parents=True)
    (deploy / f"{STEM}.esp.vfat").write_bytes(b"\xeb\x3c\x90mkfs.fat" + bytes(4085))
    (deploy / f"{STEM}.root.img").write_bytes(root_bytes)
    slot = {"compatible": "x86-virtio/image-base-ab", "version": "1.1",
            "root": {"sha256": hashlib.sha256(root_bytes).hexdigest(), "size": len(root_bytes),
                     "verity_root_hash": "ab" * 32}}
    (deploy / f"{STEM}.slot.json").write_text(json.dumps(slot))
    (deploy / "manifest.json").write_text(json.dumps({"image": "image-base-ab", "board": "x86-virtio",
                                                      "version": "1.1", "recipes": [{"name": "busybox"}]}))
    return bundle.Inputs(deploy, STEM)


def test_bundle_layout_and_manifest(tmp_path):
    inputs = make_deploy(tmp_path)
    key = minisign.SecretKey.generate()
    out = tmp_path / "b.bundle"
    manifest = bundle.write(inputs, out, key, EPOCH)
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["manifest.json", "manifest.json.minisig", "esp.vfat", "root.img"]
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid, member.mode, member.uname, member.gname) == \
                (EPOCH, 0, 0, 0o644, "", "")
            assert member.isreg()
        text = tar.extractfile("manifest.json").read()
        root = tar.extractfile("root.img").read()
    assert json.loads(text) == manifest
    assert text == bundle.manifest_bytes(manifest)
    assert manifest["compatible"] == "x86-virtio/image-base-ab" and manifest["version"] == "1.1"
    assert manifest["format"] == 1 and manifest["build"]["recipes"] == [{"name": "busybox"}]
    esp, rootimg = manifest["images"]
    assert (esp["name"], esp["file"], esp["partition"]) == ("esp", "esp.vfat", "esp")
    assert rootimg["sha256"] == hashlib.sha256(root).hexdigest() and rootimg["size"] == len(root)
    assert rootimg["verity_root_hash"] == "ab" * 32
    # The line shape the device's sed reader relies on (one top-level key per line).
    lines = text.decode().splitlines()
    assert ' "compatible": "x86-virtio/image-base-ab",' in lines and ' "version": "1.1"' in lines
    # As the device checks it: signed by the key, not by another.
    assert bundle.read_manifest(out, [key.public()])[0] == manifest
    with pytest.raises(UserError, match="not signed by a trusted key"):
        bundle.read_manifest(out, [minisign.SecretKey.generate().public()])
    assert b"ustar\x0000" in out.read_bytes()[:512]      # POSIX ustar, not GNU


def test_bundle_is_reproducible(tmp_path):
    inputs = make_deploy(tmp_path)
    key = minisign.SecretKey.generate()
    bundle.write(inputs, tmp_path / "1.bundle", key, EPOCH)
    os.utime(inputs.path(".root.img"), (1, 1))      # file times and order of writing do not matter
    bundle.write(inputs, tmp_path / "2.bundle", key, EPOCH)
    assert (tmp_path / "1.bundle").read_bytes() == (tmp_path / "2.bundle").read_bytes()
    # Another key: only the signature member differs.
    bundle.write(inputs, tmp_path / "3.bundle", minisign.SecretKey.generate(), EPOCH)
    with tarfile.open(tmp_path / "1.bundle") as a, tarfile.open(tmp_path / "3.bundle") as b:
        for name in ("manifest.json", "esp.vfat", "root.img"):
            assert a.extractfile(name).read() == b.extractfile(name).read()
        assert a.extractfile("manifest.json.minisig").read() != b.extractfile("manifest.json.minisig").read()


@pytest.mark.skipif(shutil.which("minisign") is None, reason="needs the minisign tool (apt)")
def test_minisign_tool_checks_the_bundle(tmp_path):
    """The device's check, with the real tool: extract, minisign -V -p KEY.pub."""
    inputs = make_deploy(tmp_path)
    key = minisign.SecretKey.generate()
    bundle.write(inputs, tmp_path / "b.bundle", key, EPOCH)
    (tmp_path / "k.pub").write_text(key.public().text())
    x = tmp_path / "x"
    x.mkdir()
    with tarfile.open(tmp_path / "b.bundle") as tar:     # (no extraction filters in Debian 12's Python 3.11.2)
        for name in ("manifest.json", "manifest.json.minisig"):
            member = tar.extractfile(name)
            assert member is not None
            (x / name).write_bytes(member.read())
    out = subprocess.run(["minisign", "-V", "-p", str(tmp_path / "k.pub"), "-m", str(x / "manifest.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "buildsys bundle x86-virtio/image-base-ab 1.1" in out.stdout


def test_refused_inputs(tmp_path):
    key = minisign.SecretKey.generate()
    inputs = make_deploy(tmp_path)
    out = tmp_path / "b.bundle"
    # An image changed after the build: its sha256 is not the one recorded.
    inputs.path(".root.img").write_bytes(b"changed")
    with pytest.raises(UserError, match="does not match the sha256"):
        bundle.write(inputs, out, key, EPOCH)
    assert not out.exists()
    # A link planted instead of a deploy output.
    inputs.path(".root.img").unlink()
    inputs.path(".root.img").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="cannot read"):
        bundle.write(inputs, out, key, EPOCH)
    inputs.path(".root.img").unlink()
    with pytest.raises(UserError, match="missing deploy output") as exc:
        bundle.write(inputs, out, key, EPOCH)
    assert str(inputs.path(".root.img")) in str(exc.value.where)
    assert not out.exists() and not list(out.parent.glob(".b.bundle*"))


@pytest.mark.parametrize("change, message", [
    (lambda slot, build: slot.update(version="1.1; reboot"), "version '1.1; reboot' is not usable"),
    (lambda slot, build: slot["root"].pop("verity_root_hash"), "no verity root hash"),
    (lambda slot, build: build.update(image="image-other"), "describes image-other on x86-virtio"),
])
def test_refused_descriptions(tmp_path, change, message):
    inputs = make_deploy(tmp_path)
    slot = json.loads(inputs.path(".slot.json").read_text())
    build = json.loads((inputs.deploy / "manifest.json").read_text())
    change(slot, build)
    inputs.path(".slot.json").write_text(json.dumps(slot))
    (inputs.deploy / "manifest.json").write_text(json.dumps(build))
    with pytest.raises(UserError, match=message):
        bundle.write(inputs, tmp_path / "b.bundle", minisign.SecretKey.generate(), EPOCH)


def test_not_a_bundle(tmp_path):
    path = tmp_path / "x.bundle"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("root.img")
        tar.addfile(info)
    with pytest.raises(UserError, match="manifest.json and its signature must come first"):
        bundle.read_manifest(path, [minisign.SecretKey.generate().public()])


def test_project_keys_variable(tmp_path):
    key = minisign.SecretKey.generate()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "prod.pub").write_text(key.public().text())
    value = minisign.keys_variable(tmp_path, {"update_keys": ["keys/prod.pub"]}, {})
    assert value == f"{minisign.key_id_hex(key.key_id)}:{key.public().line()}"
    (tmp_path / "keys" / "bad.pub").write_text(key.text())       # a secret key named as a public one
    with pytest.raises(UserError, match="not a minisign public key"):
        minisign.keys_variable(tmp_path, {"update_keys": ["keys/bad.pub"]}, {})


def cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "buildsys", "--project", str(ROOT), *argv], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_command_refuses_an_image_without_slots():
    out = cli("bundle", "image-base")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "command line: 'image-base' has no A/B slots: a bundle holds the contents of a slot "
        "(name an image with ab_slots, e.g. image-base-ab)"]


def test_command_refuses_a_bad_key(tmp_path):
    (tmp_path / "k.key").write_text("not a key\n")
    out = cli("bundle", "image-base", "--key", str(tmp_path / "k.key"))
    assert out.returncode == 2 and "has no A/B slots" in out.stderr   # the image is checked first
    if (ROOT / "recipes" / "image-base-ab").is_dir():
        out = cli("bundle", "image-base-ab", "--key", str(tmp_path / "k.key"))
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1 and "not a usable minisign secret key" in out.stderr

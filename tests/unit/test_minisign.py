"""minisign.py against the real ``minisign`` tool (apt package minisign), both ways:
what buildsys signs minisign verifies, what minisign signs buildsys verifies,
keys made by either are read by the other; and the refusals."""
from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from buildsys import minisign

needs_minisign = pytest.mark.skipif(shutil.which("minisign") is None, reason="needs the minisign tool (apt)")


def run(*argv, cwd=None, check=True):
    return subprocess.run(["minisign", *argv], cwd=cwd, capture_output=True, text=True, check=check,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def message(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(b'{"format": 1, "version": "1.2"}\n' * 1000)
    return path


@needs_minisign
def test_buildsys_signs_minisign_verifies(tmp_path, message):
    key = minisign.SecretKey.generate()
    (tmp_path / "k.pub").write_text(key.public().text())
    sig = key.sign(message.read_bytes(), "compatible:x86-virtio/image-base-ab\tversion:1.2")
    (tmp_path / "manifest.json.minisig").write_text(sig)
    out = run("-V", "-p", str(tmp_path / "k.pub"), "-m", str(message))
    assert "Trusted comment: compatible:x86-virtio/image-base-ab\tversion:1.2" in out.stdout
    # The base64 line alone, as the device may pass it with -P.
    run("-V", "-P", key.public().line(), "-m", str(message))
    # A changed message, a changed trusted comment, another key: refused.
    message.write_bytes(message.read_bytes() + b" ")
    assert run("-V", "-p", str(tmp_path / "k.pub"), "-m", str(message), check=False).returncode != 0
    message.write_bytes(message.read_bytes()[:-1])
    lines = sig.splitlines(keepends=True)
    lines[2] = lines[2].replace("1.2", "9.9")
    (tmp_path / "manifest.json.minisig").write_text("".join(lines))
    assert run("-V", "-p", str(tmp_path / "k.pub"), "-m", str(message), check=False).returncode != 0
    (tmp_path / "manifest.json.minisig").write_text(sig)
    other = minisign.SecretKey.generate()
    (tmp_path / "o.pub").write_text(other.public().text())
    assert run("-V", "-p", str(tmp_path / "o.pub"), "-m", str(message), check=False).returncode != 0


@needs_minisign
def test_minisign_signs_buildsys_verifies(tmp_path, message):
    run("-G", "-W", "-p", "t.pub", "-s", "t.key", cwd=tmp_path)
    run("-S", "-s", "t.key", "-m", str(message), "-t", "a trusted line", cwd=tmp_path)
    pub = minisign.PublicKey.parse((tmp_path / "t.pub").read_text())
    sig = (tmp_path / "manifest.json.minisig").read_text()
    assert pub.verify(message.read_bytes(), sig) == "a trusted line"
    with pytest.raises(minisign.BadSignature):
        pub.verify(message.read_bytes() + b"x", sig)
    # minisign's secret key file, read by buildsys, signs the same bytes (Ed25519 is deterministic).
    secret = minisign.SecretKey.parse((tmp_path / "t.key").read_text())
    assert secret.public() == pub
    assert secret.sign(message.read_bytes(), "a trusted line").splitlines()[1:] == sig.splitlines()[1:]
    # And buildsys writes minisign's key file format: minisign signs with it.
    (tmp_path / "b.key").write_text(secret.text())
    run("-S", "-s", "b.key", "-m", str(message), "-x", "b.sig", "-t", "again", cwd=tmp_path)
    assert pub.verify(message.read_bytes(), (tmp_path / "b.sig").read_text()) == "again"


@needs_minisign
def test_legacy_signature_verifies(tmp_path, message):
    run("-G", "-W", "-p", "t.pub", "-s", "t.key", cwd=tmp_path)
    run("-S", "-l", "-s", "t.key", "-m", str(message), cwd=tmp_path)
    sig = (tmp_path / "manifest.json.minisig").read_text()
    assert minisign.Signature.parse(sig).algorithm == b"Ed"
    minisign.PublicKey.parse((tmp_path / "t.pub").read_text()).verify(message.read_bytes(), sig)


def test_signatures_are_deterministic():
    key = minisign.SecretKey.generate()
    assert key.sign(b"m", "c") == key.sign(b"m", "c")
    assert key.sign(b"m", "c") != key.sign(b"m", "d")


def test_key_ids_and_refusals():
    key = minisign.SecretKey.generate()
    again = minisign.SecretKey.parse(key.text())
    assert again == key
    assert minisign.PublicKey.parse(key.public().line()) == key.public()
    sig = key.sign(b"m", "c")
    other = minisign.SecretKey.generate().public()
    with pytest.raises(minisign.BadSignature, match="signed by key"):
        other.verify(b"m", sig)
    with pytest.raises(minisign.FormatError, match="expected 4 lines"):
        key.public().verify(b"m", "\n".join(sig.splitlines()[:2]))
    with pytest.raises(minisign.FormatError, match="not base64"):
        minisign.PublicKey.parse("untrusted comment: x\n!!!!\n")
    with pytest.raises(ValueError, match="one line"):
        key.sign(b"m", "two\nlines")
    # A flipped bit in the secret key's payload: the checksum catches it.
    lines = key.text().splitlines()
    raw = bytearray(base64.b64decode(lines[1]))
    raw[60] ^= 1
    with pytest.raises(minisign.FormatError, match="checksum"):
        minisign.SecretKey.parse(f"{lines[0]}\n{base64.b64encode(bytes(raw)).decode()}\n")
    # An encrypted key (kdf "Sc") is refused with a hint, not a password prompt.
    raw = bytearray(base64.b64decode(lines[1]))
    raw[2:4] = b"Sc"
    with pytest.raises(minisign.FormatError, match="encrypted"):
        minisign.SecretKey.parse(f"{lines[0]}\n{base64.b64encode(bytes(raw)).decode()}\n")

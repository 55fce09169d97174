"""Signed cache entries (signing.py) and `buildsys key new|show`: keys in
Nix's format, what a consumer refuses, and key text that is bad input."""
import base64
import json
import os
import stat

import pytest

from buildsys import signing
from buildsys.errors import UserError
from conftest import run_buildsys

META = {"pn": "busybox", "signature": "ab" * 32, "key": "ab" * 32, "sha256": "0" * 64, "size": 123,
        "sources": [{"url": "https://example.org/x.tar.gz", "sha256": "1" * 64}], "source_date_epoch": 1}


def signed(meta, *keys):
    out = dict(meta)
    out["signatures"] = [k.sign(meta) for k in keys]
    return out


def test_a_signature_by_a_trusted_key_verifies_whatever_the_json_layout():
    key = signing.new_key("ci-1")
    meta = signed(META, key)
    trust = signing.Trust([signing.parse_public(key.public().line())])
    assert trust.check(meta) is None
    # what is signed is the content, not the bytes of one JSON layout
    assert trust.check(json.loads(json.dumps(meta, indent=3))) is None
    assert signing.canonical(meta) == signing.canonical({k: meta[k] for k in reversed(list(meta))})


def test_the_secret_key_line_round_trips_and_matches_nix_format():
    key = signing.new_key("ci-1")
    line = key.line()
    name, data = line.split(":", 1)
    assert name == "ci-1" and len(base64.b64decode(data)) == 64
    again = signing.parse_secret(line)
    assert again.public().line() == key.public().line()
    assert len(base64.b64decode(key.public().line().split(":", 1)[1])) == 32


def test_what_a_consumer_refuses():
    ci, other = signing.new_key("ci-1"), signing.new_key("mallory")
    trust = signing.Trust([ci.public()])
    assert trust.check(dict(META)) == "unsigned"
    assert trust.check(dict(META, signatures=[])) == "unsigned"
    assert "not in trusted_keys (mallory)" in trust.check(signed(META, other))
    # the content changed after signing: the sha256 of another archive
    forged = dict(signed(META, ci), sha256="f" * 64)
    assert "does not verify" in trust.check(forged)
    # a signature of the trusted key over other content, copied onto this entry
    elsewhere = signed(dict(META, pn="zlib"), ci)
    assert "does not verify" in trust.check(dict(META, signatures=elsewhere["signatures"]))
    # an impostor using the trusted key's name
    impostor = signing.new_key("ci-1")
    assert "does not verify" in trust.check(signed(META, impostor))
    for bad in ("nope", [1], [{"key": 1, "sig": "x"}]):
        assert "malformed" in trust.check(dict(META, signatures=bad))
    # one good signature among others is enough
    assert trust.check(signed(META, other, ci)) is None


def test_a_rotated_key_under_the_same_name_is_trusted_too():
    old, new = signing.new_key("ci"), signing.new_key("ci")
    trust = signing.Trust([old.public(), new.public()])
    assert trust.check(signed(META, old)) is None and trust.check(signed(META, new)) is None


@pytest.mark.parametrize("text, says", [
    ("no-colon", "not NAME:BASE64"),
    ("bad name:AAAA", "bad key name"),
    ("ci:not base64!", "not base64"),
    ("ci:" + base64.b64encode(b"x" * 31).decode(), "31 bytes"),
])
def test_bad_public_key_text(text, says):
    with pytest.raises(signing.KeyError_, match=says):
        signing.parse_public(text)


def test_a_secret_key_whose_public_half_is_not_its_own_is_refused(tmp_path):
    a, b = signing.new_key("k"), signing.new_key("k")
    seed = base64.b64decode(a.line().split(":")[1])[:32]
    pub = base64.b64decode(b.line().split(":")[1])[32:]
    path = tmp_path / "k.secret"
    path.write_text("k:" + base64.b64encode(seed + pub).decode() + "\n")
    with pytest.raises(UserError, match="does not belong") as info:
        signing.load_secret(path)
    assert str(info.value.where) == f"{path}:1:1"


def test_key_new_writes_0600_prints_the_lines_and_never_overwrites(tmp_path):
    out = tmp_path / "keys"
    proc = run_buildsys("key", "new", "ci-1", "--out", out, check=0, umask=0o022)
    secret, public = out / "ci-1.secret", out / "ci-1.public"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    line = public.read_text().strip()
    assert f"signing_key: {secret}" in proc.stdout and f"  - {line}" in proc.stdout
    assert signing.load_secret(secret).public().line() == line
    assert run_buildsys("key", "show", secret, check=0).stdout.strip() == line
    before = secret.read_bytes()
    again = run_buildsys("key", "new", "ci-1", "--out", out, check=2)
    assert again.stderr.strip().startswith(f"{secret}: this file exists") and len(again.stderr.splitlines()) == 1
    assert secret.read_bytes() == before
    assert sorted(os.listdir(out)) == ["ci-1.public", "ci-1.secret"], "no temp file left"


def test_key_new_never_writes_through_a_planted_link(tmp_path):
    out = tmp_path / "keys"
    out.mkdir()
    (out / "ci-1.secret").symlink_to(tmp_path / "elsewhere")
    run_buildsys("key", "new", "ci-1", "--out", out, check=2)
    assert not (tmp_path / "elsewhere").exists()


def test_key_show_of_a_public_key_is_one_line_exit_2(tmp_path):
    run_buildsys("key", "new", "ci-1", "--out", tmp_path, check=0)
    proc = run_buildsys("key", "show", tmp_path / "ci-1.public", check=2)
    assert proc.stderr.startswith(f"{tmp_path / 'ci-1.public'}:1:1: ") and len(proc.stderr.splitlines()) == 1
    proc = run_buildsys("key", "new", "no spaces", "--out", tmp_path, check=2)
    assert "bad key name" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_a_build_without_a_shared_cache_needs_neither_cryptography_nor_dask(tiny, tmp_path):
    """Keys and the cluster are imported only when used: a build with no
    shared cache runs where `cryptography` and `distributed` are missing
    (the cross-host test's Debian 13 root has neither)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['cryptography'] = None; sys.modules['distributed'] = None; "
            "from buildsys.cli import main; rc = main(); "
            "assert 'cryptography.hazmat' not in sys.modules and 'distributed.client' not in sys.modules; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "--project", str(tiny), "--build-dir", str(tmp_path / "b"),
                           "build", "hello"], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if not k.startswith("BUILDSYS_")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hello:package" in proc.stderr

"""The shared cache stack (sharedcache.py) against a real nginx on 127.0.0.1
(tests/servers.py): pushes and restores, the local fill, read-only and
--no-push, every way an entry from the server is refused (and built instead),
and servers that are dead, never answer or trickle."""
import argparse
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from buildsys import signing
from buildsys.cache import HttpCache, LocalCache
from buildsys.errors import UserError
from buildsys.sharedcache import LayeredCache, artifact_cache
from buildsys.workspace import Workspace
from conftest import run_buildsys
from servers import nginx_cache, nginx_root

SIGS = [f"{i:02x}" + "cd" * 31 for i in range(6)]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def archive(tmp_path, sig, size=5000) -> Path:
    path = tmp_path / "src" / f"{sig}.tar.lz4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def stack(tmp_path, url, name, signer=None, trusted=(), push=True) -> LayeredCache:
    trust = signing.Trust([k.public() for k in trusted])
    return LayeredCache(LocalCache(tmp_path / name), HttpCache(f"{url}/artifacts"), trust, signer, push=push)


def on_server(tmp_path, sig) -> tuple[Path, Path]:
    root = nginx_root(tmp_path) / "artifacts"
    return root / f"{sig}.json", root / f"{sig}.tar.lz4"


@pytest.fixture
def key():
    return signing.new_key("ci-1")


@pytest.fixture
def url(tmp_path):
    with nginx_cache(tmp_path) as base:
        yield base


def test_push_then_restore_through_the_stack_fills_the_local_cache(tmp_path, url, key):
    a = stack(tmp_path, url, "a", signer=key)
    src = archive(tmp_path, SIGS[0])
    a.put(SIGS[0], src, {"pn": "busybox", "signature": SIGS[0]})
    meta_path, archive_path = on_server(tmp_path, SIGS[0])
    meta = json.loads(meta_path.read_text())
    assert archive_path.read_bytes() == src.read_bytes()
    assert meta["signatures"][0]["key"] == "ci-1" and meta["key"] == SIGS[0]
    assert (tmp_path / "a" / SIGS[0][:2] / f"{SIGS[0]}.json").is_file(), "written locally too"

    b = stack(tmp_path, url, "b", trusted=[key])
    assert b.contains(SIGS[0]) and not b.contains(SIGS[1])
    assert b.get_meta(SIGS[0])["pn"] == "busybox"
    dest = tmp_path / "out.tar.lz4"
    assert b.get(SIGS[0], dest) and dest.read_bytes() == src.read_bytes()
    assert b.local.contains(SIGS[0]), "a verified entry from the server is kept locally"
    # the second read is local: it works with the server's copy gone
    archive_path.unlink()
    meta_path.unlink()
    fresh = stack(tmp_path, url, "b", trusted=[key])
    assert fresh.contains(SIGS[0]) and fresh.get(SIGS[0], tmp_path / "again") and \
        (tmp_path / "again").read_bytes() == src.read_bytes()


def test_read_only_no_push_and_no_key_push_nothing(tmp_path, url, key):
    for i, cache in enumerate([stack(tmp_path, url, "ro", signer=key, push=False),
                               stack(tmp_path, url, "nokey", signer=None, push=True)]):
        cache.put(SIGS[i], archive(tmp_path, SIGS[i]), {"pn": "x", "signature": SIGS[i]})
        assert cache.local.contains(SIGS[i])
    assert list((nginx_root(tmp_path) / "artifacts").iterdir()) == []


def refuse_archive_flipped(tmp_path, sig, key):
    path = on_server(tmp_path, sig)[1]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))


def refuse_archive_longer(tmp_path, sig, key):
    path = on_server(tmp_path, sig)[1]
    path.write_bytes(path.read_bytes() + b"backdoor")


def refuse_json_edited(tmp_path, sig, key):
    path = on_server(tmp_path, sig)[0]
    meta = json.loads(path.read_text())
    meta["version"] = "6.6.6"
    path.write_text(json.dumps(meta))


def refuse_json_and_archive_swapped(tmp_path, sig, key):
    """A consistent entry (archive + its sha256) whose signature is the trusted key's over other content."""
    meta_path, archive_path = on_server(tmp_path, sig)
    evil = os.urandom(5000)
    archive_path.write_bytes(evil)
    meta = json.loads(meta_path.read_text())
    import hashlib
    meta.update(sha256=hashlib.sha256(evil).hexdigest(), size=len(evil))
    meta_path.write_text(json.dumps(meta))


def refuse_unsigned(tmp_path, sig, key):
    path = on_server(tmp_path, sig)[0]
    meta = json.loads(path.read_text())
    del meta["signatures"]
    path.write_text(json.dumps(meta))


def refuse_unknown_key(tmp_path, sig, key):
    path = on_server(tmp_path, sig)[0]
    meta = json.loads(path.read_text())
    meta["signatures"] = [signing.new_key("mallory").sign(meta)]
    path.write_text(json.dumps(meta))


def refuse_other_entrys_signature(tmp_path, sig, key):
    """The trusted key's signature of another entry, pasted onto this one."""
    path = on_server(tmp_path, sig)[0]
    meta = json.loads(path.read_text())
    meta["signatures"] = [key.sign(dict(meta, pn="zlib"))]
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("tamper, says", [
    (refuse_archive_flipped, "the archive is refused"),
    (refuse_archive_longer, "the archive is refused"),
    (refuse_json_edited, "does not verify"),
    (refuse_json_and_archive_swapped, "does not verify"),
    (refuse_unsigned, "not used: unsigned"),
    (refuse_unknown_key, "not in trusted_keys (mallory)"),
    (refuse_other_entrys_signature, "does not verify"),
])
def test_what_the_server_holds_is_refused_unless_signed_and_intact(tmp_path, url, key, tamper, says, capsys):
    stack(tmp_path, url, "a", signer=key).put(SIGS[0], archive(tmp_path, SIGS[0]),
                                               {"pn": "busybox", "signature": SIGS[0]})
    tamper(tmp_path, SIGS[0], key)
    capsys.readouterr()
    b = stack(tmp_path, url, "b", trusted=[key])
    dest = tmp_path / "out" / "x.tar.lz4"
    dest.parent.mkdir()
    assert not (b.contains(SIGS[0]) and b.get(SIGS[0], dest))
    assert not b.local.contains(SIGS[0]) and list(dest.parent.iterdir()) == []
    assert not b.contains(SIGS[0]), "refused once: planned as a build from then on"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and says in err[0] and "busybox (" in err[0], err


def test_the_recipe_name_in_a_message_comes_from_a_json_only_when_plausible(tmp_path, url, key, capsys):
    a = stack(tmp_path, url, "a", signer=signing.new_key("mallory"))
    a.put(SIGS[0], archive(tmp_path, SIGS[0]), {"pn": "\x1b[2Jevil", "signature": SIGS[0]})
    capsys.readouterr()
    assert not stack(tmp_path, url, "b", trusted=[key]).contains(SIGS[0])
    err = capsys.readouterr().err
    assert "\x1b" not in err and f"entry {SIGS[0][:12]}" in err


def test_a_directory_as_the_shared_cache(tmp_path, key):
    shared = LocalCache(tmp_path / "nas")
    a = LayeredCache(LocalCache(tmp_path / "a"), shared, signing.Trust(), key, push=True)
    src = archive(tmp_path, SIGS[0])
    a.put(SIGS[0], src, {"pn": "zlib", "signature": SIGS[0]})
    b = LayeredCache(LocalCache(tmp_path / "b"), LocalCache(tmp_path / "nas"), signing.Trust([key.public()]))
    assert b.get(SIGS[0], tmp_path / "out") and (tmp_path / "out").read_bytes() == src.read_bytes()
    nobody = LayeredCache(LocalCache(tmp_path / "c"), LocalCache(tmp_path / "nas"), signing.Trust())
    assert not nobody.contains(SIGS[0])


# --- servers that fail -------------------------------------------------------------------------

@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(HttpCache, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(HttpCache, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(HttpCache, "GRACE", 1.0)


def exercise(tmp_path, cache, key) -> float:
    start = time.monotonic()
    for sig in SIGS:
        assert not cache.contains(sig)
        assert not cache.get(sig, tmp_path / "out")
        cache.put(sig, archive(tmp_path, sig), {"pn": "x", "signature": sig})
        assert cache.local.contains(sig), "a dead server never stops the local cache"
    return time.monotonic() - start


def test_a_dead_server_costs_one_warning(tmp_path, key, fast, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # nothing listens there once closed
    cache = LayeredCache(LocalCache(tmp_path / "a"), HttpCache(f"http://127.0.0.1:{port}/artifacts"),
                         signing.Trust([key.public()]), key, push=True)
    assert exercise(tmp_path, cache, key) < 5
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "connection refused" in err


def test_a_server_that_never_answers_costs_one_warning_and_a_bounded_delay(tmp_path, key, fast, capsys):
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(50)], daemon=True).start()
    try:
        cache = LayeredCache(LocalCache(tmp_path / "a"),
                             HttpCache(f"http://127.0.0.1:{listener.getsockname()[1]}/artifacts"),
                             signing.Trust([key.public()]), key, push=True)
        assert exercise(tmp_path, cache, key) < 3
        err = capsys.readouterr().err
        assert err.count("warning") == 1 and "timed out" in err
    finally:
        for conn in held:
            conn.close()
        listener.close()


def test_a_body_that_trickles_is_given_up(tmp_path, key, fast, capsys):
    """Headers at once, then a byte every 0.2 s: each read is within the
    timeout, the average rate is not."""
    a = stack(tmp_path, "http://unused", "a", signer=key)
    good = tmp_path / "good.tar.lz4"
    good.write_bytes(os.urandom(4000))
    from buildsys.cache import entry_record
    record = entry_record(SIGS[0], good, {"pn": "busybox", "signature": SIGS[0]})
    record["signatures"] = [key.sign(record)]
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            request = conn.recv(65536).decode()
            if ".json" in request.split("\r\n")[0]:
                body = json.dumps(record).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n")
                for byte in good.read_bytes():
                    if stop.wait(0.2):
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        cache = LayeredCache(a.local, HttpCache(f"http://127.0.0.1:{listener.getsockname()[1]}/artifacts"),
                             signing.Trust([key.public()]))
        start = time.monotonic()
        assert cache.contains(SIGS[0])
        assert not cache.get(SIGS[0], tmp_path / "out")
        assert time.monotonic() - start < 4
        err = capsys.readouterr().err
        assert err.count("warning") == 1 and "too slow" in err
        assert not (tmp_path / "out").exists()
    finally:
        stop.set()
        listener.close()


def test_a_refused_put_is_one_warning_and_reads_go_on(tmp_path, url, key, capsys):
    """An nginx that takes GET but not PUT (the production set-up for a machine
    without the builders' password): one warning, the build goes on, and
    reads still work."""
    a = stack(tmp_path, url, "a", signer=key)
    src = archive(tmp_path, SIGS[0])
    a.put(SIGS[0], src, {"pn": "x", "signature": SIGS[0]})
    with_password = url.replace("http://", "http://ci:secret@")
    cache = LayeredCache(LocalCache(tmp_path / "b"), HttpCache(f"{with_password}/not-dav"),
                         signing.Trust([key.public()]), key, push=True)
    for sig in SIGS[1:4]:
        cache.put(sig, archive(tmp_path, sig), {"pn": "x", "signature": sig})
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "HTTP 404" in err and "nothing more is pushed" in err
    assert "secret" not in err and "***@" in err
    assert cache.shared.down is None, "a refused PUT does not stop reads"
    assert requests.get(f"{url}/artifacts/{SIGS[0]}.json", timeout=5).status_code == 200


# --- from the settings --------------------------------------------------------------------------

def workspace(project: Path, tmp_path: Path, **env) -> Workspace:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUILDSYS_")}
    environ.update(BUILDSYS_DL_DIR=str(tmp_path / "dl"), BUILDSYS_CACHE_DIR=str(tmp_path / "cache"),
                   BUILDSYS_OFFLINE="1", **env)
    return Workspace(argparse.Namespace(project=str(project), build_dir=str(tmp_path / "build"), board=None),
                     environ)


def local_yaml(project: Path, text: str) -> None:
    (project / "local.yaml").write_text("format: 1\n" + text)


def test_settings_build_the_stack(tiny, tmp_path, key, capsys):
    secret = tmp_path / "ci-1.secret"
    secret.write_text(key.line() + "\n")
    local_yaml(tiny, f"shared_cache: http://127.0.0.1:9/artifacts\nsigning_key: {secret}\n"
                     f"trusted_keys: [{signing.new_key('other').public().line()}]\n")
    cache = artifact_cache(workspace(tiny, tmp_path))
    assert isinstance(cache, LayeredCache) and cache.push and cache.signer.name == "ci-1"
    assert set(cache.trust.keys) == {"ci-1", "other"}, "the own key is trusted too"
    assert not artifact_cache(workspace(tiny, tmp_path), push=False).push
    assert capsys.readouterr().err == ""
    # the environment wins, and an empty BUILDSYS_SHARED_CACHE turns it off
    assert not isinstance(artifact_cache(workspace(tiny, tmp_path, BUILDSYS_SHARED_CACHE="")), LayeredCache)
    env = artifact_cache(workspace(tiny, tmp_path, BUILDSYS_SHARED_CACHE=str(tmp_path / "nas"),
                                   BUILDSYS_TRUSTED_KEYS=signing.new_key("third").public().line()))
    assert isinstance(env.shared, LocalCache) and "third" in env.trust.keys


def test_read_write_without_a_key_is_one_note_and_no_trusted_key_one_warning(tiny, tmp_path, capsys):
    local_yaml(tiny, "shared_cache: http://127.0.0.1:9/artifacts\n")
    cache = artifact_cache(workspace(tiny, tmp_path))
    assert isinstance(cache, LayeredCache) and not cache.push
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no trusted_keys" in err[0] and err[1].startswith("note:") and "no signing_key" in err[1]
    local_yaml(tiny, "shared_cache: http://127.0.0.1:9/artifacts\nshared_cache_mode: read-only\n"
                     f"trusted_keys: [{signing.new_key('ci').public().line()}]\n")
    artifact_cache(workspace(tiny, tmp_path))
    assert capsys.readouterr().err == ""


def test_bad_trusted_key_text_is_one_line_exit_2(tiny, tmp_path):
    (tiny / "buildsys.yaml").write_text((tiny / "buildsys.yaml").read_text()
                                        + "trusted_keys:\n  - ci-1:AAAA\n  - alice:not-base64!\n")
    with pytest.raises(UserError) as info:
        artifact_cache(workspace(tiny, tmp_path))
    assert str(info.value.where) == f"{tiny / 'buildsys.yaml'}:5:5"
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", check=2,
                        env={"BUILDSYS_CACHE_DIR": str(tmp_path / "c")})
    assert proc.stderr.startswith(f"{tiny / 'buildsys.yaml'}:5:5: public key 'ci-1' has 3 bytes")
    assert len(proc.stderr.splitlines()) == 1


def test_a_bad_trusted_key_in_the_environment_names_the_variable(tiny, tmp_path):
    with pytest.raises(UserError, match="not NAME:BASE64") as info:
        artifact_cache(workspace(tiny, tmp_path, BUILDSYS_TRUSTED_KEYS="garbage"))
    assert str(info.value.where) == "BUILDSYS_TRUSTED_KEYS"


def test_signing_key_belongs_in_local_yaml_and_a_bad_key_file_is_its_position(tiny, tmp_path, key):
    (tiny / "buildsys.yaml").write_text((tiny / "buildsys.yaml").read_text() + "signing_key: ci.secret\n")
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", check=2)
    assert proc.stderr.startswith(f"{tiny / 'buildsys.yaml'}:4:") and "belongs in local.yaml" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    (tiny / "buildsys.yaml").write_text((tiny / "buildsys.yaml").read_text().replace("signing_key: ci.secret\n", ""))
    bad = tmp_path / "ci.secret"
    bad.write_text(key.public().line() + "\n")          # a public key where the secret one belongs
    local_yaml(tiny, f"shared_cache: {tmp_path / 'nas'}\nsigning_key: {bad}\n")
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", check=2,
                        env={"BUILDSYS_CACHE_DIR": str(tmp_path / "c")})
    assert proc.stderr.startswith(f"{bad}:1:1: secret key 'ci-1' has 32 bytes") and len(proc.stderr.splitlines()) == 1
    local_yaml(tiny, f"shared_cache: {tmp_path / 'nas'}\nsigning_key: {tmp_path / 'missing'}\n")
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "build", check=2,
                        env={"BUILDSYS_CACHE_DIR": str(tmp_path / "c")})
    assert proc.stderr.startswith(f"{tiny / 'local.yaml'}:3:") and "cannot read signing key" in proc.stderr


# --- whole builds: machine A pushes, machine B restores, machine C refuses a tampered one -----------

def machine(tmp_path, name, url, **extra) -> dict:
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / name / "build"), "BUILDSYS_DL_DIR": str(tmp_path / name / "dl"),
           "BUILDSYS_CACHE_DIR": str(tmp_path / name / "cache"), "BUILDSYS_OFFLINE": "1",
           "BUILDSYS_SHARED_CACHE": f"{url}/artifacts"}
    env.update(extra)
    return env


def ran(stderr: str) -> list[str]:
    return re.findall(r"^\[\d+/\d+\] (\S+)", stderr, re.M)


@needs_bwrap
def test_machines_share_signed_artifacts_and_refuse_a_tampered_one(tiny, tmp_path, url, key):
    secret = tmp_path / "ci-1.secret"
    secret.write_text(key.line() + "\n")
    a = run_buildsys("--project", tiny, "build", "-j2", check=0,
                     env=machine(tmp_path, "a", url, BUILDSYS_SIGNING_KEY=str(secret)))
    assert "hello:compile" in ran(a.stderr)
    trusted = {"BUILDSYS_TRUSTED_KEYS": key.public().line()}
    b = run_buildsys("--project", tiny, "build", "-j2", check=0, env=machine(tmp_path, "b", url, **trusted))
    assert ran(b.stderr) == ["hello:restore"], b.stderr
    # --no-push: c builds a changed recipe and the server does not get it
    before = sorted(os.listdir(nginx_root(tmp_path) / "artifacts"))
    (tiny / "recipes/hello/files/hello.c").write_text((tiny / "recipes/hello/files/hello.c").read_text() + "\n")
    run_buildsys("--project", tiny, "build", "-j2", "--no-push", check=0,
                 env=machine(tmp_path, "c", url, BUILDSYS_SIGNING_KEY=str(secret)))
    assert sorted(os.listdir(nginx_root(tmp_path) / "artifacts")) == before
    (tiny / "recipes/hello/files/hello.c").write_text((tiny / "recipes/hello/files/hello.c").read_text()[:-1])

    restored = list((tmp_path / "b/build/packages").glob("*.json"))
    assert len(restored) == 1, "b needed hello only"
    sig = json.loads(restored[0].read_text())["signature"]
    archive_path = nginx_root(tmp_path) / "artifacts" / f"{sig}.tar.lz4"
    data = bytearray(archive_path.read_bytes())
    data[len(data) // 2] ^= 0x20
    archive_path.write_bytes(bytes(data))
    d = run_buildsys("--project", tiny, "build", "-j2", check=0, env=machine(tmp_path, "d", url, **trusted))
    assert "hello:compile" in ran(d.stderr) and "libgreet:restore" in ran(d.stderr)
    why = [line for line in d.stderr.splitlines() if "the archive is refused" in line]
    assert len(why) == 1 and f"hello ({sig[:12]})" in why[0]


@needs_bwrap
def test_a_build_against_a_server_that_never_answers_costs_one_timeout(tiny, tmp_path, key):
    """The real timeouts, end to end: the whole build pays READ_TIMEOUT (5 s) once."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(50)], daemon=True).start()
    secret = tmp_path / "ci-1.secret"
    secret.write_text(key.line() + "\n")
    try:
        start = time.monotonic()
        proc = run_buildsys("--project", tiny, "build", "-j2", check=0,
                            env=machine(tmp_path, "a", f"http://127.0.0.1:{listener.getsockname()[1]}",
                                        BUILDSYS_SIGNING_KEY=str(secret)))
        elapsed = time.monotonic() - start
    finally:
        for conn in held:
            conn.close()
        listener.close()
    assert "hello:compile" in ran(proc.stderr)
    assert proc.stderr.count("warning") == 1 and "timed out" in proc.stderr
    assert HttpCache.READ_TIMEOUT <= elapsed < HttpCache.READ_TIMEOUT + 8


# --- the premirror on the same server ---------------------------------------------------------------

def blob_recipe(tiny: Path, tmp_path: Path) -> tuple[Path, str]:
    """A recipe whose source is a tarball at a dead upstream URL; the tarball."""
    import hashlib
    import tarfile

    src = tmp_path / "blob-1.0"
    src.mkdir()
    (src / "blob.txt").write_text("blob\n")
    tarball = tmp_path / "blob-1.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname="blob-1.0")
    sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (tiny / "recipes/blob.yaml").write_text(
        "format: 1\nname: blob\nversion: '1.0'\nlicense: MIT\nclass: script\n"
        f"sources:\n  - url: http://127.0.0.1:9/upstream/blob-1.0.tar.gz\n    sha256: {sha}\n"
        "steps:\n  install: install -D -m 0644 blob.txt ${destdir}/usr/share/blob.txt\n")
    return tarball, sha


def test_upload_downloads_fills_the_premirror_and_a_fresh_machine_fetches_from_it(tiny, tmp_path, url):
    tarball, sha = blob_recipe(tiny, tmp_path)
    a_dl = tmp_path / "a-dl"
    a_dl.mkdir()
    shutil.copy(tarball, a_dl / tarball.name)           # machine A fetched it earlier
    env_a = {"BUILDSYS_DL_DIR": str(a_dl), "BUILDSYS_OFFLINE": "1"}
    up = run_buildsys("--project", tiny, "--build-dir", tmp_path / "a", "cache", "upload-downloads", "blob",
                      "--to", f"{url}/downloads", env=env_a, check=0)
    assert "1 file(s) uploaded, 0 already there" in up.stdout
    served = nginx_root(tmp_path) / "downloads" / tarball.name
    assert served.read_bytes() == tarball.read_bytes()
    again = run_buildsys("--project", tiny, "--build-dir", tmp_path / "a", "cache", "upload-downloads", "blob",
                         env=dict(env_a, BUILDSYS_PREMIRRORS=f"{url}/downloads"), check=0)
    assert "0 file(s) uploaded, 1 already there" in again.stdout

    # machine B: no upstream (dead URL), no Debian archive, only the premirror
    env_b = {"BUILDSYS_DL_DIR": str(tmp_path / "b-dl"), "BUILDSYS_OFFLINE": "0", "BUILDSYS_MIRRORS": "",
             "BUILDSYS_DEBIAN_ARCHIVE": "http://127.0.0.1:9/debian", "BUILDSYS_PREMIRRORS": f"{url}/downloads"}
    run_buildsys("--project", tiny, "--build-dir", tmp_path / "b", "fetch", "blob", env=env_b, check=0)
    assert (tmp_path / "b-dl" / tarball.name).read_bytes() == tarball.read_bytes()

    # what the premirror serves is checked as any download: a changed file is refused
    served.write_bytes(served.read_bytes() + b"x")
    env_c = dict(env_b, BUILDSYS_DL_DIR=str(tmp_path / "c-dl"))
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "c", "fetch", "blob", env=env_c, check=2)
    assert "sha256 mismatch" in proc.stderr and not (tmp_path / "c-dl" / tarball.name).exists()


def test_upload_downloads_checks_the_file_it_sends(tiny, tmp_path, url):
    tarball, sha = blob_recipe(tiny, tmp_path)
    a_dl = tmp_path / "a-dl"
    a_dl.mkdir()
    (a_dl / tarball.name).write_bytes(tarball.read_bytes() + b"evil")
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "a", "cache", "upload-downloads", "blob",
                        "--to", f"{url}/downloads", env={"BUILDSYS_DL_DIR": str(a_dl), "BUILDSYS_OFFLINE": "1"},
                        check=2)
    # the fetcher's check: a file without the recipe's sha256 is not "in the download dir"
    assert len(proc.stderr.splitlines()) == 1 and "not in the download dir" in proc.stderr
    assert list((nginx_root(tmp_path) / "downloads").iterdir()) == []
    proc = run_buildsys("--project", tiny, "--build-dir", tmp_path / "a", "cache", "upload-downloads",
                        env={"BUILDSYS_DL_DIR": str(a_dl), "BUILDSYS_PREMIRRORS": ""}, check=2)
    assert proc.stderr.startswith("--to: no premirror to upload to")


def test_nginx_puts_atomically_a_killed_put_leaves_nothing(tmp_path, url):
    """nginx writes the body to client_body_temp_path and renames it when complete."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"PUT /artifacts/x.tar.lz4 HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 1_000_000)
        deadline = time.monotonic() + 5
        while not list((nginx_root(tmp_path) / ".nginx-tmp").rglob("0*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not (nginx_root(tmp_path) / "artifacts/x.tar.lz4").exists()
    deadline = time.monotonic() + 5
    while list((nginx_root(tmp_path) / ".nginx-tmp").rglob("0*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p for p in nginx_root(tmp_path).rglob("*") if p.is_file()] == []
    assert requests.get(f"{url}/artifacts/x.tar.lz4", timeout=5).status_code == 404


@needs_bwrap
def test_cache_push_seeds_the_shared_cache_from_a_warm_local_one(tiny, tmp_path, url, key):
    secret = tmp_path / "ci-1.secret"
    secret.write_text(key.line() + "\n")
    env_a = machine(tmp_path, "a", url, BUILDSYS_SHARED_CACHE="")
    run_buildsys("--project", tiny, "build", "-j2", check=0, env=env_a)       # no shared cache yet
    assert list((nginx_root(tmp_path) / "artifacts").iterdir()) == []
    env_a.update(BUILDSYS_SHARED_CACHE=f"{url}/artifacts", BUILDSYS_SIGNING_KEY=str(secret))
    push = run_buildsys("--project", tiny, "cache", "push", check=0, env=env_a)
    assert push.stdout.splitlines()[-1].endswith(": 3 pushed, 0 already there, 0 not in the local cache")
    again = run_buildsys("--project", tiny, "cache", "push", check=0, env=env_a)
    assert again.stdout.splitlines()[-1].endswith(": 0 pushed, 3 already there, 0 not in the local cache")
    b = run_buildsys("--project", tiny, "build", "-j2", check=0,
                     env=machine(tmp_path, "b", url, BUILDSYS_TRUSTED_KEYS=key.public().line()))
    assert ran(b.stderr) == ["hello:restore"]
    # nothing to push to, no key, a dead server: one line each, exit 2
    proc = run_buildsys("--project", tiny, "cache", "push", check=2, env=dict(env_a, BUILDSYS_SHARED_CACHE=""))
    assert "no shared cache to push to" in proc.stderr and len(proc.stderr.splitlines()) == 1
    proc = run_buildsys("--project", tiny, "cache", "push", check=2, env=dict(env_a, BUILDSYS_SIGNING_KEY=""))
    assert proc.stderr.splitlines()[-1].endswith("pushing needs a signing key (set signing_key in local.yaml "
                                                 "(`buildsys key new NAME` makes one))")
    proc = run_buildsys("--project", tiny, "cache", "push", check=2,
                        env=dict(env_a, BUILDSYS_SHARED_CACHE="http://127.0.0.1:9/artifacts"))
    assert "failed: " in proc.stderr.splitlines()[-1]

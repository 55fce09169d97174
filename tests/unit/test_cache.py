"""The artifact cache: verified reads, temp-file cleaning, gc by least recent
use under a size bound, concurrent use, and an HTTP cache that degrades to
"not in the cache" instead of failing or hanging."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from buildsys import cache as cachemod
from buildsys.cache import HttpCache, LocalCache, clean_temp_files, entry_lock, gc, open_cache

SIGS = [f"{i:02x}" + "ab" * 31 for i in range(8)]     # 64 hex digits, distinct shards


def archive_file(tmp_path, name, size, seed=0) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes((seed + i) % 251 for i in range(size)))
    return path


def put(cache, tmp_path, sig, size=1000, seed=0) -> bytes:
    src = archive_file(tmp_path, f"{sig}-{seed}.tar.lz4", size, seed)
    cache.put(sig, src, {"pn": "x", "signature": sig})
    return src.read_bytes()


def entry_paths(root, sig):
    return root / sig[:2] / f"{sig}.json", root / sig[:2] / f"{sig}.tar.lz4"


def shard_bytes(root) -> int:
    return sum(p.stat().st_size for p in Path(root).glob("??/*"))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


# --- verified reads ---------------------------------------------------------------------------

def test_put_then_get_round_trip(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    data = put(cache, tmp_path, SIGS[0])
    assert cache.contains(SIGS[0]) and not cache.contains(SIGS[1])
    dest = tmp_path / "out.tar.lz4"
    assert cache.get(SIGS[0], dest) and dest.read_bytes() == data
    meta = json.loads(entry_paths(tmp_path / "cache", SIGS[0])[0].read_text())
    assert meta["key"] == SIGS[0] and meta["size"] == len(data) and meta["pn"] == "x"
    assert cache.get_meta(SIGS[0])["sha256"] == meta["sha256"]
    assert not cache.get(SIGS[1], tmp_path / "absent")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.tar.lz4", "src"]


def tamper_flip(root, sig):
    _, archive = entry_paths(root, sig)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))


def tamper_truncate(root, sig):
    _, archive = entry_paths(root, sig)
    archive.write_bytes(archive.read_bytes()[:-10])


def tamper_longer(root, sig):
    _, archive = entry_paths(root, sig)
    archive.write_bytes(archive.read_bytes() + b"more")


def tamper_other_sha(root, sig):
    meta_path, _ = entry_paths(root, sig)
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))


def tamper_swapped(root, sig):
    """Another entry's (self-consistent) JSON and archive copied under this key."""
    other_meta, other_archive = entry_paths(root, SIGS[1])
    meta_path, archive = entry_paths(root, sig)
    meta_path.write_bytes(other_meta.read_bytes())
    archive.write_bytes(other_archive.read_bytes())


def tamper_bad_json(root, sig):
    entry_paths(root, sig)[0].write_text("{not json")


def tamper_json_not_a_record(root, sig):
    entry_paths(root, sig)[0].write_text('{"sha256": "abc", "size": -1}')


def tamper_no_archive(root, sig):
    entry_paths(root, sig)[1].unlink()


@pytest.mark.parametrize("tamper", [tamper_flip, tamper_truncate, tamper_longer, tamper_other_sha, tamper_swapped,
                                    tamper_bad_json, tamper_json_not_a_record, tamper_no_archive])
def test_get_refuses_what_fails_verification(tmp_path, tamper, capsys):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    put(cache, tmp_path, SIGS[0], seed=1)
    put(cache, tmp_path, SIGS[1], seed=2)
    tamper(root, SIGS[0])
    dest = tmp_path / "out" / "a.tar.lz4"
    dest.parent.mkdir()
    assert not cache.get(SIGS[0], dest)
    assert list(dest.parent.iterdir()) == [], "nothing half-written may be left in dest's dir"
    if tamper is not tamper_no_archive:
        assert "warning: artifact cache" in capsys.readouterr().err


def test_contains_is_false_for_names_that_are_not_signatures(tmp_path):
    cache = LocalCache(tmp_path / "cache")
    assert not cache.contains("../../etc/passwd")
    assert not cache.get("../../etc/passwd", tmp_path / "x")


def test_get_records_the_use(tmp_path):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    put(cache, tmp_path, SIGS[0])
    meta_path, _ = entry_paths(root, SIGS[0])
    age(meta_path, 3600)
    before = meta_path.stat().st_mtime
    assert cache.get(SIGS[0], tmp_path / "out")
    assert meta_path.stat().st_mtime > before + 3000


# --- temp files -------------------------------------------------------------------------------

def test_stale_temp_files_are_removed_live_ones_kept(tmp_path):
    root = tmp_path / "cache"
    LocalCache(root, clean=False)
    shard = root / "ab"
    shard.mkdir(parents=True)
    dead, me = dead_pid(), os.getpid()
    files = {
        "old-dead": (f".{SIGS[0]}.tar.lz4.{dead}.tmp", 120, False),        # dead pid, over a minute: gone
        "new-dead": (f".{SIGS[1]}.tar.lz4.{dead}.tmp", 5, True),           # dead pid, just written: kept
        "live": (f".{SIGS[2]}.tar.lz4.{me}.tmp", 120, True),               # a live writer: kept
        "ancient-live": (f".{SIGS[3]}.json.{me}.tmp", 3600, False),        # untouched for an hour: gone
        "not-a-temp": (f"{SIGS[4]}.tar.lz4", 3600, True),
    }
    for name, seconds, _ in files.values():
        (shard / name).write_bytes(b"x" * 100)
        age(shard / name, seconds)
    removed, freed = clean_temp_files(root)
    assert (removed, freed) == (2, 200)
    for name, _, kept in files.values():
        assert (shard / name).exists() == kept, name


def test_opening_the_cache_cleans_temp_files_now_and_then(tmp_path):
    root = tmp_path / "cache"
    (root / "ab").mkdir(parents=True)
    stale = root / "ab" / f".{SIGS[0]}.tar.lz4.{dead_pid()}.tmp"
    stale.write_bytes(b"x")
    age(stale, 3600)
    open_cache(root)
    assert not stale.exists()
    stale.write_bytes(b"x")
    age(stale, 3600)
    open_cache(root)                  # cleaned less than an hour ago: not scanned again
    assert stale.exists()
    assert gc(root, 10**12) == (0, 1)  # gc always cleans
    assert not stale.exists()


def test_a_killed_put_leaves_only_a_temp_file_that_nothing_reads(tmp_path):
    root = tmp_path / "cache"
    code = (f"import os, sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
            "from buildsys import cache\n"
            "orig = os.replace\n"
            "def boom(a, b): os._exit(9)\n"
            "os.replace = boom\n"
            f"src = __import__('pathlib').Path({str(tmp_path / 'a')!r})\n"
            f"cache.LocalCache({str(root)!r}).put({SIGS[0]!r}, src, {{}})\n")
    (tmp_path / "a").write_bytes(b"archive")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    temps = list(root.glob("??/.*.tmp"))
    assert len(temps) == 1
    cache = LocalCache(root)
    assert not cache.contains(SIGS[0]) and not cache.get(SIGS[0], tmp_path / "out")
    age(temps[0], 120)
    assert gc(root, 10**12) == (0, len(b"archive"))
    assert list(root.glob("??/*")) == [] and list(root.glob("??/.*")) == []


# --- gc -----------------------------------------------------------------------------------------

def test_gc_removes_least_recently_used_whole_entries_first(tmp_path):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    for i, sig in enumerate(SIGS[:4]):
        put(cache, tmp_path, sig, size=10_000)
        age(entry_paths(root, sig)[0], 1000 - 100 * i)    # SIGS[0] oldest ... SIGS[3] newest
    assert cache.get(SIGS[0], tmp_path / "used")           # ... but SIGS[0] was just used
    entry = sum(p.stat().st_size for p in entry_paths(root, SIGS[1]))
    total = shard_bytes(root)
    removed, freed = gc(root, total - 1)
    assert (removed, freed) == (1, entry)
    assert not any(p.exists() for p in entry_paths(root, SIGS[1]))      # archive and json together
    assert all(cache.contains(s) for s in (SIGS[0], SIGS[2], SIGS[3]))
    removed, _ = gc(root, total - 2 * entry)
    assert removed == 1 and not cache.contains(SIGS[2])


@pytest.mark.parametrize("keep", [0, 1, 2, 5])
def test_gc_honours_the_size_bound(tmp_path, keep):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    for i, sig in enumerate(SIGS[:5]):
        put(cache, tmp_path, sig, size=5000 + 100 * i)
        age(entry_paths(root, sig)[0], 500 - i)
    sizes = [sum(p.stat().st_size for p in entry_paths(root, s)) for s in SIGS[:5]]
    bound = sum(sizes[5 - keep:]) if keep else 0
    before = shard_bytes(root)
    removed, freed = gc(root, bound)
    assert shard_bytes(root) <= bound
    assert (removed, freed) == (5 - keep, before - shard_bytes(root))
    assert [cache.contains(s) for s in SIGS[:5]] == [False] * (5 - keep) + [True] * keep
    assert gc(root, bound) == (0, 0)


def test_gc_removes_incomplete_entries_first_but_not_one_being_written(tmp_path):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    put(cache, tmp_path, SIGS[0])
    orphan_json, orphan = entry_paths(root, SIGS[1])
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"a put killed before its json")
    age(orphan, 600)
    fresh = entry_paths(root, SIGS[2])[1]
    fresh.parent.mkdir(parents=True, exist_ok=True)
    fresh.write_bytes(b"being written right now")
    removed, _ = gc(root, 10**12)
    assert removed == 1 and not orphan.exists() and fresh.exists() and cache.contains(SIGS[0])


def test_gc_waits_for_a_put_holding_the_entry_lock(tmp_path):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    put(cache, tmp_path, SIGS[0])
    done = threading.Event()
    with entry_lock(root, SIGS[0]):
        worker = threading.Thread(target=lambda: (gc(root, 0), done.set()))
        worker.start()
        time.sleep(0.3)
        assert not done.is_set() and cache.contains(SIGS[0])
    worker.join(10)
    assert done.is_set() and not cache.contains(SIGS[0])


def test_a_reader_that_read_the_json_before_gc_never_uses_half_an_entry(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    cache = LocalCache(root)
    put(cache, tmp_path, SIGS[0])
    real_read = LocalCache._read

    def read_then_gc(self, name, out):
        if name.endswith(".tar.lz4"):
            gc(root, 0)                  # gc runs between the reader's json and archive
        return real_read(self, name, out)

    monkeypatch.setattr(LocalCache, "_read", read_then_gc)
    dest = tmp_path / "out" / "a.tar.lz4"
    dest.parent.mkdir()
    assert not cache.get(SIGS[0], dest)
    assert list(dest.parent.iterdir()) == []


def test_concurrent_puts_gets_and_gcs_never_give_a_bad_archive(tmp_path):
    """Two writers put *different* archives under one key (a non-reproducible
    build), gc empties the cache over and over, readers read: every get that
    succeeds gives one of the two archives, whole."""
    root = tmp_path / "cache"
    variants = {seed: archive_file(tmp_path, f"v{seed}", 200_000, seed) for seed in (1, 2)}
    good = {p.read_bytes() for p in variants.values()}
    stop = time.monotonic() + 2.0
    results, errors = [], []

    def loop(fn):
        def run():
            try:
                while time.monotonic() < stop:
                    fn()
            except Exception as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)
        return run

    def writer(seed):
        return loop(lambda: LocalCache(root, clean=False).put(SIGS[0], variants[seed], {}))

    counter = iter(range(10**9))

    def reader():
        dest = tmp_path / "out" / f"r{next(counter)}.tar.lz4"
        dest.parent.mkdir(exist_ok=True)
        if LocalCache(root, clean=False).get(SIGS[0], dest):
            results.append(dest.read_bytes() in good)
            dest.unlink()

    threads = [threading.Thread(target=writer(1)), threading.Thread(target=writer(2)),
               threading.Thread(target=loop(lambda: gc(root, 0))),
               threading.Thread(target=loop(reader)), threading.Thread(target=loop(reader))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results and all(results), f"{results.count(False)} of {len(results)} gets gave a bad archive"
    assert [p for p in (tmp_path / "out").iterdir()] == []


def test_gc_of_a_missing_cache_is_a_no_op(tmp_path):
    assert gc(tmp_path / "nothing", 0) == (0, 0)


# --- HTTP ----------------------------------------------------------------------------------------

class CacheServer:
    """GET/HEAD/PUT over a dict, with knobs: ``status`` (path -> code), ``extra``
    (path -> bytes appended to the body, with a Content-Length to match), ``hang``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.extra: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body: bool):
                server.requests.append((self.command, self.path))
                code = server.status.get(self.path)
                if code:
                    self.send_response(code)
                    for k, v in server.headers.get(self.path, {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                data += server.extra.get(self.path, b"")
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

            def do_PUT(self):
                server.requests.append((self.command, self.path))
                n = int(self.headers.get("Content-Length", 0))
                server.files[self.path] = self.rfile.read(n)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cache"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = CacheServer()
    yield s
    s.close()


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(HttpCache, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(HttpCache, "READ_TIMEOUT", 0.5)


def test_http_round_trip(server, tmp_path):
    cache = open_cache(server.url)
    data = put(cache, tmp_path, SIGS[0])
    assert cache.contains(SIGS[0]) and not cache.contains(SIGS[1])
    assert cache.get(SIGS[0], tmp_path / "out") and (tmp_path / "out").read_bytes() == data
    assert not cache.get(SIGS[1], tmp_path / "none")


def test_http_server_sending_more_than_the_json_says_is_refused(server, tmp_path, capsys):
    cache = open_cache(server.url)
    put(cache, tmp_path, SIGS[0])
    server.extra[f"/cache/{SIGS[0]}.tar.lz4"] = b"and more"
    dest = tmp_path / "out" / "a"
    dest.parent.mkdir()
    assert not cache.get(SIGS[0], dest)
    assert list(dest.parent.iterdir()) == []
    assert "refused" in capsys.readouterr().err
    server.extra.clear()
    assert cache.get(SIGS[0], dest)        # a refused entry does not disable the cache


@pytest.mark.parametrize("body", [b"{broken", b"[]", b'{"sha256": "x", "size": 1}'])
def test_http_bad_json_is_refused(server, tmp_path, body):
    cache = open_cache(server.url)
    put(cache, tmp_path, SIGS[0])
    server.files[f"/cache/{SIGS[0]}.json"] = body
    assert not cache.get(SIGS[0], tmp_path / "out") and not (tmp_path / "out").exists()


def test_http_server_errors_give_one_warning_then_not_in_cache(server, tmp_path, capsys):
    cache = open_cache(server.url)
    put(cache, tmp_path, SIGS[0])
    server.status[f"/cache/{SIGS[0]}.json"] = 500
    assert not cache.contains(SIGS[0])
    assert not cache.get(SIGS[0], tmp_path / "out")
    assert not cache.contains(SIGS[0])
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "HTTP 500" in err
    n = len(server.requests)
    assert not cache.contains(SIGS[1]) and len(server.requests) == n, "a broken server is not asked again"
    put(cache, tmp_path, SIGS[1])          # and put does not raise
    assert not (tmp_path / "out").exists()


def test_http_503_with_a_long_retry_after_does_not_hang(server, tmp_path):
    server.status[f"/cache/{SIGS[0]}.json"] = 503
    server.headers[f"/cache/{SIGS[0]}.json"] = {"Retry-After": "3600"}
    start = time.monotonic()
    assert not open_cache(server.url).contains(SIGS[0])
    assert time.monotonic() - start < 5


def test_http_connection_refused_is_not_in_cache(tmp_path, fast, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed when the block ends: nothing listens there
    cache = open_cache(f"http://user:secret@127.0.0.1:{port}/cache")
    start = time.monotonic()
    assert not cache.contains(SIGS[0])
    assert not cache.get(SIGS[0], tmp_path / "out")
    put(cache, tmp_path, SIGS[0])
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "secret" not in err
    assert not (tmp_path / "out").exists()


def test_http_server_that_never_answers_does_not_hang(tmp_path, fast, capsys):
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(20)], daemon=True).start()
    try:
        cache = open_cache(f"http://127.0.0.1:{listener.getsockname()[1]}/cache")
        start = time.monotonic()
        for sig in SIGS:
            assert not cache.contains(sig)
            assert not cache.get(sig, tmp_path / "out")
        assert time.monotonic() - start < 10
        assert capsys.readouterr().err.count("warning") == 1
    finally:
        for conn in held:
            conn.close()
        listener.close()


def test_http_body_that_stops_midway_leaves_nothing_in_dest(server, tmp_path, fast, monkeypatch):
    cache = open_cache(server.url)
    put(cache, tmp_path, SIGS[0], size=300_000)
    real = cachemod._HashingWriter.write

    def dies(self, data):
        real(self, data)
        if self.size > 100_000:
            import requests
            raise requests.ConnectionError("Connection reset")

    monkeypatch.setattr(cachemod._HashingWriter, "write", dies)
    dest = tmp_path / "out" / "a"
    dest.parent.mkdir()
    assert not cache.get(SIGS[0], dest)
    assert list(dest.parent.iterdir()) == []

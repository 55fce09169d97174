"""HTTP downloads: temp file and rename, resume, checksums, mirrors and premirrors."""
import subprocess
import sys
import threading
import time

import pytest

from buildsys.errors import ChecksumError, FetchError
from buildsys.fetch import Source, fetch, fetch_many, is_fetched

from .helpers import file_sha256, payload, sha256

NAME = "hello-1.0.tar.gz"
PATH = f"/files/{NAME}"
DATA = payload(200_000)


@pytest.fixture
def hello(server):
    """Upstream serves DATA at PATH; returns the matching Source."""
    server.files[PATH] = DATA
    return Source(server.url(PATH), sha256=sha256(DATA))


def test_fetch_puts_verified_file_in_dl_dir(hello, make_config, dl_dir):
    path = fetch(hello, make_config())
    assert path == dl_dir / NAME
    assert path.read_bytes() == DATA


def test_filename_overrides_the_name_in_dl_dir(server, make_config, dl_dir):
    server.files["/download.php"] = DATA
    source = Source(server.url("/download.php"), sha256=sha256(DATA), filename="renamed-1.0.tar.gz")
    path = fetch(source, make_config())
    assert path == dl_dir / "renamed-1.0.tar.gz"
    assert file_sha256(path) == sha256(DATA)
    assert not (dl_dir / "download.php").exists()


def test_download_streams_to_part_file_then_renames(hello, server, make_config, dl_dir):
    release = server.hold[PATH] = threading.Event()
    result = {}
    worker = threading.Thread(target=lambda: result.update(path=fetch(hello, make_config())))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not (dl_dir / f"{NAME}.part").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (dl_dir / f"{NAME}.part").exists(), sorted(p.name for p in dl_dir.iterdir())
        assert not (dl_dir / NAME).exists()
    finally:
        release.set()
        worker.join(30)
    assert result["path"].read_bytes() == DATA
    assert not (dl_dir / f"{NAME}.part").exists()


def test_interrupted_download_resumes_with_range_request(hello, server, make_config, dl_dir):
    """The first GET stops after half the body; the download continues from there.

    Either fetch() retries by itself, or it fails and keeps the .part for the next call.
    """
    server.truncate_once.add(PATH)
    try:
        path = fetch(hello, make_config())
    except FetchError as exc:
        assert not isinstance(exc, ChecksumError), exc
        assert (dl_dir / f"{NAME}.part").exists(), "interrupted download lost its .part file"
        path = fetch(hello, make_config())
    assert path.read_bytes() == DATA
    ranges = [r.headers.get("Range") for r in server.gets(PATH) if r.headers.get("Range")]
    assert ranges, "no Range request was sent"
    start = int(ranges[-1].removeprefix("bytes=").split("-")[0])
    assert 0 < start <= len(DATA) // 2


def test_wrong_checksum_raises_and_leaves_nothing(server, make_config, dl_dir):
    server.files[PATH] = DATA
    expected = "1" * 64
    with pytest.raises(ChecksumError) as info:
        fetch(Source(server.url(PATH), sha256=expected), make_config())
    text = str(info.value)
    assert expected in text
    assert f"sha256: {sha256(DATA)}" in text
    assert not (dl_dir / NAME).exists()
    assert not (dl_dir / f"{NAME}.part").exists()


def test_missing_sha256_is_an_error_that_shows_the_hash(server, make_config):
    server.files[PATH] = DATA
    with pytest.raises(FetchError) as info:
        fetch(Source(server.url(PATH)), make_config())
    assert sha256(DATA) in str(info.value)


def test_http_404_without_mirrors_is_a_fetch_error(server, make_config, dl_dir):
    with pytest.raises(FetchError) as info:
        fetch(Source(server.url(PATH), sha256=sha256(DATA)), make_config())
    assert NAME in str(info.value)
    assert not (dl_dir / NAME).exists()


def test_upstream_404_falls_back_to_mirror(server, make_server, make_config, request_log):
    mirror = make_server("mirror")
    mirror.files[f"/mirror/{NAME}"] = DATA
    source = Source(server.url(PATH), sha256=sha256(DATA))
    path = fetch(source, make_config(mirrors=[mirror.url("/mirror")]))
    assert path.read_bytes() == DATA
    order = [r.server for r in request_log if r.method == "GET"]
    assert order[0] == "upstream" and order[-1] == "mirror" and order.count("mirror") == 1, order


def test_file_url_mirror(server, tmp_path, make_config):
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    (mirror_dir / NAME).write_bytes(DATA)
    source = Source(server.url(PATH), sha256=sha256(DATA))
    path = fetch(source, make_config(mirrors=[f"file://{mirror_dir}"]))
    assert path.read_bytes() == DATA


def test_premirror_is_tried_before_upstream(hello, server, make_server, make_config):
    premirror = make_server("premirror")
    premirror.files[f"/pre/{NAME}"] = DATA
    path = fetch(hello, make_config(premirrors=[premirror.url("/pre")]))
    assert path.read_bytes() == DATA
    assert len(premirror.gets(f"/pre/{NAME}")) == 1
    assert server.requests == []


def test_premirror_without_the_file_falls_through_to_upstream(hello, server, make_server, make_config):
    premirror = make_server("premirror")
    path = fetch(hello, make_config(premirrors=[premirror.url("/pre")]))
    assert path.read_bytes() == DATA
    assert len(server.gets(PATH)) == 1


def test_second_fetch_uses_the_downloaded_file(hello, server, make_config):
    first = fetch(hello, make_config())
    second = fetch(hello, make_config())
    assert first == second
    assert len(server.gets(PATH)) == 1


def test_is_fetched(hello, make_config):
    config = make_config()
    assert not is_fetched(hello, config)
    fetch(hello, config)
    assert is_fetched(hello, config)


def test_fetch_many_returns_a_path_per_source(server, make_config, dl_dir):
    other = payload(1000, seed=2)
    server.files[PATH] = DATA
    server.files["/files/other-2.0.tar.xz"] = other
    a = Source(server.url(PATH), sha256=sha256(DATA))
    b = Source(server.url("/files/other-2.0.tar.xz"), sha256=sha256(other))
    paths = fetch_many([a, b], make_config())
    assert paths == {a: dl_dir / NAME, b: dl_dir / "other-2.0.tar.xz"}
    assert paths[b].read_bytes() == other


@pytest.mark.parametrize("leftover", [b"garbage" * 100, payload(300_000, seed=9)], ids=["shorter", "longer"])
def test_stale_part_file_of_other_content_is_discarded(hello, make_config, dl_dir, leftover):
    (dl_dir / f"{NAME}.part").write_bytes(leftover)
    path = fetch(hello, make_config())
    assert path.read_bytes() == DATA
    assert not (dl_dir / f"{NAME}.part").exists()


def test_premirror_with_corrupt_copy_falls_through_to_upstream(hello, server, make_server, make_config):
    premirror = make_server("premirror")
    premirror.files[f"/pre/{NAME}"] = b"not the file"
    path = fetch(hello, make_config(premirrors=[premirror.url("/pre")]))
    assert path.read_bytes() == DATA
    assert len(server.gets(PATH)) == 1


HANG_LIMIT = 150  # seconds: two 60 s read timeouts and some slack

FETCH_WITH_MIRROR = """
import sys
from pathlib import Path
from buildsys.fetch import FetchConfig, Source, fetch
url, digest, dl_dir, mirror = sys.argv[1:5]
print(fetch(Source(url, sha256=digest), FetchConfig(dl_dir=Path(dl_dir), mirrors=[mirror])))
"""


@pytest.mark.slow
def test_hanging_upstream_gives_way_to_the_mirror(hanging_server, make_server, dl_dir):
    """Upstream accepts the connection and never answers; the mirror must be used within HANG_LIMIT."""
    mirror = make_server("mirror")
    mirror.files[f"/m/{NAME}"] = DATA
    argv = [sys.executable, "-c", FETCH_WITH_MIRROR, hanging_server + PATH, sha256(DATA), str(dl_dir),
            mirror.url("/m")]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fetch still waiting for the hanging upstream after {HANG_LIMIT} s")
    assert proc.returncode == 0, proc.stderr
    assert (dl_dir / NAME).read_bytes() == DATA


def test_sources_with_the_same_file_name_keep_their_own_content(server, make_config):
    """Two GitHub-style URLs ending in v1.0.tar.gz: each source must get its own bytes back
    (or a clear error that the names collide) — never the other source's file."""
    one, two = payload(1000, seed=10), payload(1000, seed=11)
    server.files["/foo/archive/v1.0.tar.gz"] = one
    server.files["/bar/archive/v1.0.tar.gz"] = two
    a = Source(server.url("/foo/archive/v1.0.tar.gz"), sha256=sha256(one))
    b = Source(server.url("/bar/archive/v1.0.tar.gz"), sha256=sha256(two))
    try:
        paths = fetch_many([a, b], make_config())
    except FetchError as exc:
        assert "v1.0.tar.gz" in str(exc)
        return
    assert file_sha256(paths[a]) == sha256(one)
    assert file_sha256(paths[b]) == sha256(two)


@pytest.mark.parametrize("filename", ["../escaped.tar.gz", "sub/dir.tar.gz", "/tmp/absolute.tar.gz"])
def test_filename_cannot_leave_dl_dir(server, make_config, dl_dir, filename):
    server.files[PATH] = DATA
    with pytest.raises(FetchError):
        fetch(Source(server.url(PATH), sha256=sha256(DATA), filename=filename), make_config())
    assert not (dl_dir.parent / "escaped.tar.gz").exists()
    assert server.requests == []

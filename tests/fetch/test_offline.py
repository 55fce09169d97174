"""Offline mode: the download directory is the only source of remote files."""
import pytest

from buildsys.errors import NetworkAccessError
from buildsys.fetch import Source, fetch, fetch_many

from .helpers import payload, sha256

A, B = payload(5000, seed=3), payload(7000, seed=4)


@pytest.fixture
def sources(server):
    server.files["/alpha-1.0.tar.gz"] = A
    server.files["/beta-2.0.tar.xz"] = B
    return (Source(server.url("/alpha-1.0.tar.gz"), sha256=sha256(A)),
            Source(server.url("/beta-2.0.tar.xz"), sha256=sha256(B)))


def test_offline_reports_every_missing_file_in_one_error(sources, server, make_config):
    with pytest.raises(NetworkAccessError) as info:
        fetch_many(list(sources), make_config(offline=True))
    assert "alpha-1.0.tar.gz" in str(info.value)
    assert "beta-2.0.tar.xz" in str(info.value)
    assert server.requests == []


def test_offline_single_fetch_of_missing_file(sources, server, make_config):
    with pytest.raises(NetworkAccessError) as info:
        fetch(sources[0], make_config(offline=True))
    assert "alpha-1.0.tar.gz" in str(info.value)
    assert server.requests == []


def test_offline_mirrors_are_not_contacted(sources, server, make_server, make_config):
    mirror = make_server("mirror")
    mirror.files["/m/alpha-1.0.tar.gz"] = A
    with pytest.raises(NetworkAccessError):
        fetch(sources[0], make_config(offline=True, premirrors=[mirror.url("/m")], mirrors=[mirror.url("/m")]))
    assert mirror.requests == []


def test_offline_uses_files_fetched_earlier(sources, server, make_config):
    fetch_many(list(sources), make_config())
    seen = len(server.requests)
    paths = fetch_many(list(sources), make_config(offline=True))
    assert paths[sources[0]].read_bytes() == A
    assert paths[sources[1]].read_bytes() == B
    assert len(server.requests) == seen


def test_offline_local_file_needs_no_network(tmp_path, make_config):
    local = tmp_path / "local.patch"
    local.write_text("--- a/x\n+++ b/x\n")
    assert fetch(Source(f"file://{local}"), make_config(offline=True)) == local


def test_offline_may_use_a_local_file_premirror(sources, server, tmp_path, make_config):
    """A file:// mirror needs no network (BitBake uses file:// mirrors with BB_NO_NETWORK)."""
    local_mirror = tmp_path / "mirror"
    local_mirror.mkdir()
    (local_mirror / "alpha-1.0.tar.gz").write_bytes(A)
    path = fetch(sources[0], make_config(offline=True, premirrors=[f"file://{local_mirror}"]))
    assert path.read_bytes() == A
    assert server.requests == []

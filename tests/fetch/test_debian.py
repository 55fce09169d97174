"""The Debian archive as a mirror (lookup by sha256) and the debian: scheme.

The fast tests serve a tiny archive from 127.0.0.1 (FetchConfig.debian_archive); the slow ones
use the host's archive, which the implementation finds in /etc/apt/sources.list.d at run time.
"""
import pytest

from buildsys.errors import FetchError
from buildsys.fetch import FetchConfig, Source, fetch

from .helpers import debian_archive_files, file_sha256, payload, sha256

ORIG = payload(4000, seed=7)
ORIG_NAME = "hello_1.0.orig.tar.gz"


@pytest.fixture
def archive(make_server):
    """A server with a fake archive under /debian: suite bookworm, source package hello."""
    server = make_server("debian")
    for rel, data in debian_archive_files("bookworm", "hello", {ORIG_NAME: ORIG, "hello_1.0-1.dsc": b"dsc\n"}).items():
        server.files[f"/debian/{rel}"] = data
    return server


def test_debian_mirror_finds_file_by_sha256(archive, server, make_config, dl_dir):
    """Upstream is gone and its file name differs from Debian's; the hash finds it."""
    source = Source(server.url("/releases/hello-1.0.tar.gz"), sha256=sha256(ORIG))
    path = fetch(source, make_config(mirrors=["debian"], debian_archive=archive.url("/debian")))
    assert path == dl_dir / "hello-1.0.tar.gz"
    assert path.read_bytes() == ORIG
    assert archive.gets(f"/debian/pool/main/h/hello/{ORIG_NAME}")


def test_debian_mirror_without_the_hash_is_a_fetch_error(archive, server, make_config):
    source = Source(server.url("/releases/absent-1.0.tar.gz"), sha256="2" * 64)
    with pytest.raises(FetchError) as info:
        fetch(source, make_config(mirrors=["debian"], debian_archive=archive.url("/debian")))
    assert "absent-1.0.tar.gz" in str(info.value)


def test_debian_scheme_with_suite(archive, make_config, dl_dir):
    source = Source(f"debian:bookworm/hello/{ORIG_NAME}", sha256=sha256(ORIG))
    path = fetch(source, make_config(debian_archive=archive.url("/debian")))
    assert path == dl_dir / ORIG_NAME
    assert path.read_bytes() == ORIG


def test_debian_scheme_unknown_package(archive, make_config):
    with pytest.raises(FetchError) as info:
        fetch(Source("debian:bookworm/nosuch/nosuch_1.0.orig.tar.gz", sha256="3" * 64),
              make_config(debian_archive=archive.url("/debian")))
    assert "nosuch" in str(info.value)



def test_debian_archive_on_the_local_file_system(server, tmp_path, make_config):
    """apt accepts file: archives (and aptsources.py reads them); so should the Debian mirror."""
    root = tmp_path / "archive"
    for rel, data in debian_archive_files("bookworm", "hello", {ORIG_NAME: ORIG}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    source = Source(server.url("/releases/hello-1.0.tar.gz"), sha256=sha256(ORIG))
    path = fetch(source, make_config(mirrors=["debian"], debian_archive=f"file://{root}"))
    assert path.read_bytes() == ORIG


def test_changing_debian_archive_uses_the_new_archives_index(archive, make_server, server, make_config):
    """Indices cached in dl_dir belong to the archive they came from."""
    fetch(Source(server.url("/releases/hello-1.0.tar.gz"), sha256=sha256(ORIG)),
          make_config(mirrors=["debian"], debian_archive=archive.url("/debian")))
    other = make_server("other-archive")
    world = payload(3000, seed=8)
    for rel, data in debian_archive_files("bookworm", "world", {"world_2.0.orig.tar.gz": world}).items():
        other.files[f"/debian/{rel}"] = data
    path = fetch(Source(server.url("/releases/world-2.0.tar.gz"), sha256=sha256(world)),
                 make_config(mirrors=["debian"], debian_archive=other.url("/debian")))
    assert path.read_bytes() == world


def test_unreachable_debian_archive_does_not_stop_later_mirrors(server, make_server, make_config):
    """mirrors: [debian, backup] — the backup is still tried when the archive cannot be reached."""
    backup = make_server("backup")
    backup.files["/b/hello-1.0.tar.gz"] = ORIG
    closed = make_server("closed")
    unreachable = closed.url("/debian")
    closed.close()
    source = Source(server.url("/releases/hello-1.0.tar.gz"), sha256=sha256(ORIG))
    path = fetch(source, make_config(mirrors=["debian", backup.url("/b")], debian_archive=unreachable))
    assert path.read_bytes() == ORIG

BUSYBOX_SHA256 = "faeeb244c35a348a334f4a59e44626ee870fb07b6884d68c10ae8bc19f83a694"


@pytest.mark.slow
def test_busybox_from_host_debian_archive_when_upstream_is_unreachable(tmp_path):
    source = Source("https://busybox.net/downloads/busybox-1.35.0.tar.bz2", sha256=BUSYBOX_SHA256)
    path = fetch(source, FetchConfig(dl_dir=tmp_path, mirrors=["debian"]))
    assert path == tmp_path / "busybox-1.35.0.tar.bz2"
    assert file_sha256(path) == BUSYBOX_SHA256


@pytest.mark.slow
def test_busybox_with_debian_scheme(tmp_path):
    source = Source("debian:busybox/busybox_1.35.0.orig.tar.bz2", sha256=BUSYBOX_SHA256)
    path = fetch(source, FetchConfig(dl_dir=tmp_path))
    assert file_sha256(path) == BUSYBOX_SHA256

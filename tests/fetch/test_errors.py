"""Errors about a source point at the recipe line that declares it (Source.where)."""
import pytest

from buildsys.errors import ChecksumError, FetchError, Where
from buildsys.fetch import Source, fetch

from .helpers import sha256

WHERE = Where("recipes/hello.yaml", 7, 5)


def test_checksum_error_points_at_the_recipe(server, make_config):
    server.files["/hello-1.0.tar.gz"] = b"data"
    with pytest.raises(ChecksumError) as info:
        fetch(Source(server.url("/hello-1.0.tar.gz"), sha256="5" * 64, where=WHERE), make_config())
    assert str(info.value).startswith("recipes/hello.yaml:7:5: ")


def test_missing_sha256_points_at_the_recipe(server, make_config):
    server.files["/hello-1.0.tar.gz"] = b"data"
    with pytest.raises(FetchError) as info:
        fetch(Source(server.url("/hello-1.0.tar.gz"), where=WHERE), make_config())
    assert str(info.value).startswith("recipes/hello.yaml:7:5: ")
    assert sha256(b"data") in str(info.value)


def test_http_404_points_at_the_recipe(server, make_config):
    with pytest.raises(FetchError) as info:
        fetch(Source(server.url("/hello-1.0.tar.gz"), sha256="5" * 64, where=WHERE), make_config())
    assert str(info.value).startswith("recipes/hello.yaml:7:5: ")


def test_git_branch_rev_points_at_the_recipe(git_repo, make_config):
    with pytest.raises(FetchError) as info:
        fetch(Source(git_repo.url, rev="main", where=WHERE), make_config())
    assert str(info.value).startswith("recipes/hello.yaml:7:5: ")


def test_git_repository_that_does_not_exist_points_at_the_recipe(tmp_path, make_config):
    source = Source(f"git+file://{tmp_path}/no-such-repo", rev="6" * 40, where=WHERE)
    with pytest.raises(FetchError) as info:
        fetch(source, make_config())
    assert str(info.value).startswith("recipes/hello.yaml:7:5: ")
    assert "no-such-repo" in str(info.value)

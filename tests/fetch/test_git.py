"""git+ sources: pinned commits become deterministic tarballs."""
import pytest

from buildsys.errors import FetchError
from buildsys.fetch import Source, fetch, source_date_epoch, unpack

from .helpers import file_sha256, tree


def files_of(root):
    return {rel: data for rel, data in tree(root).items() if data != "dir"}


def test_fetch_commit_gives_a_tar_in_dl_dir(git_repo, make_config, dl_dir):
    path = fetch(Source(git_repo.url, rev=git_repo.commits[0]), make_config())
    assert path.name.endswith(".tar")
    assert dl_dir in path.parents


def test_unpacked_tar_holds_the_pinned_commit(git_repo, make_config, tmp_path):
    source = Source(git_repo.url, rev=git_repo.commits[0])
    dest = tmp_path / "src"
    dest.mkdir()
    unpack(fetch(source, make_config()), dest, source)
    assert files_of(dest) == git_repo.contents[0]


def test_git_tarball_is_byte_identical_across_download_dirs(git_repo, make_config, tmp_path):
    source = Source(git_repo.url, rev=git_repo.commits[0])
    dirs = [tmp_path / "dl-a", tmp_path / "dl-b"]
    for d in dirs:
        d.mkdir()
    first = fetch(source, make_config(dl_dir=dirs[0]))
    second = fetch(source, make_config(dl_dir=dirs[1]))
    assert first != second
    assert file_sha256(first) == file_sha256(second)


def test_source_date_epoch_of_git_tarball_is_commit_time(git_repo, make_config):
    path = fetch(Source(git_repo.url, rev=git_repo.commits[0]), make_config())
    assert source_date_epoch(path) == git_repo.times[0]


def test_branch_name_is_refused(git_repo, make_config):
    with pytest.raises(FetchError) as info:
        fetch(Source(git_repo.url, rev="main"), make_config())
    assert "main" in str(info.value)


def test_branch_name_allowed_with_allow_branch(git_repo, make_config, tmp_path):
    source = Source(git_repo.url, rev="main", allow_branch=True)
    dest = tmp_path / "src"
    dest.mkdir()
    unpack(fetch(source, make_config()), dest, source)
    assert files_of(dest) == git_repo.contents[1]


@pytest.mark.parametrize("rev", ["short", "unknown"])
def test_short_or_unknown_commit_is_refused(git_repo, make_config, rev):
    bad = git_repo.commits[0][:7] if rev == "short" else "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(FetchError):
        fetch(Source(git_repo.url, rev=bad), make_config())


def test_new_rev_with_same_filename_gives_the_new_commit(git_repo, make_config, tmp_path):
    """filename names the tarball; changing rev must not return the old commit's tarball."""
    for commit, expected in zip(git_repo.commits, git_repo.contents, strict=True):
        source = Source(git_repo.url, rev=commit, filename="project.tar")
        dest = tmp_path / f"src-{commit[:7]}"
        dest.mkdir()
        unpack(fetch(source, make_config()), dest, source)
        assert files_of(dest) == expected


def test_pinned_commit_needs_no_network_the_second_time(git_repo, make_config, tmp_path):
    source = Source(git_repo.url, rev=git_repo.commits[0])
    first = fetch(source, make_config())
    first.unlink()
    # the repository goes away; the mirror in dl_dir is enough
    git_repo.path.rename(tmp_path / "repo-moved")
    again = fetch(source, make_config(offline=True))
    assert again.name == first.name
    assert source_date_epoch(again) == git_repo.times[0]

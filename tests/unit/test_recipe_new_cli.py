"""buildsys recipe new end to end, through the real CLI: a tarball from an HTTP server on
127.0.0.1, the same file found in a fake Debian archive by its orig tarball name (upstream
gone), a repacked one (debian: URL), a local tarball, a git repository pinned to the commit it
resolves; then `buildsys show` loads each recipe.  No network beyond 127.0.0.1."""
import functools
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURES, run_buildsys

MESON = "project('greet', 'c')\nz = dependency('libgreet')\nexecutable('greet', 'greet.c', install: true)\n"
MIT = ("Copyright (c) 2024 A\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n"
       "of this software...\n")


def tarball(top: str, files: dict[str, str], git_commit: str | None = None) -> bytes:
    """A .tar.gz; with ``git_commit``, as `git archive` makes it (a pax global header naming the commit)."""
    buf = io.BytesIO()
    kw = {"format": tarfile.PAX_FORMAT, "pax_headers": {"comment": git_commit}} if git_commit else \
        {"format": tarfile.GNU_FORMAT}
    with tarfile.open(fileobj=buf, mode="w:gz", **kw) as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o755 if rel == "configure" else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP on 127.0.0.1; yields (dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def project(tmp_path):
    """The tiny fixture project (recipes libgreet, hello) plus an empty layer 'mine'."""
    root = tmp_path / "proj"
    shutil.copytree(FIXTURES / "tiny", root)
    layer = root / "layers" / "mine"
    layer.mkdir(parents=True)
    (layer / "layer.yaml").write_text("format: 1\nname: mine\npriority: 10\ndepends: [core]\n")
    return root


def cli(project: Path, *args, mirrors: str = "", check=None, cwd=None):
    env = {"BUILDSYS_DL_DIR": str(project / "dl"), "BUILDSYS_MIRRORS": mirrors, "BUILDSYS_PREMIRRORS": "",
           "BUILDSYS_LAYERS": ""}
    return run_buildsys("--build-dir", project / "build", *args, cwd=cwd or project, env=env, check=check,
                        timeout=120)


def debian_archive(root: Path, packages: dict[str, dict[str, bytes]]) -> None:
    """An archive (suite bookworm, component main) of these source packages under ``root``."""
    stanzas = []
    for package, files in packages.items():
        directory = f"pool/main/{package[0]}/{package}"
        sha = "\n".join(f" {hashlib.sha256(d).hexdigest()} {len(d)} {n}" for n, d in files.items())
        stanzas.append(f"Package: {package}\nVersion: 1-1\nDirectory: {directory}\nChecksums-Sha256:\n{sha}\n")
        (root / directory).mkdir(parents=True)
        for name, data in files.items():
            (root / directory / name).write_bytes(data)
    index = root / "dists/bookworm/main/source/Sources.xz"
    index.parent.mkdir(parents=True)
    index.write_bytes(lzma.compress("\n".join(stanzas).encode()))


def test_from_an_http_url_then_show_and_refuse_to_overwrite(project, served):
    www, base = served
    data = tarball("greet-1.2", {"meson.build": MESON, "greet.c": "int main(void){return 0;}\n", "COPYING": MIT})
    (www / "greet-1.2.tar.gz").write_bytes(data)
    proc = cli(project, "recipe", "new", f"{base}/greet-1.2.tar.gz", "--layer", "mine", check=0)
    path = project / "layers/mine/recipes/greet/greet.yaml"
    assert f"wrote {path}" in proc.stdout
    recipe = yaml.safe_load(path.read_text())
    assert recipe["sources"] == [{"url": f"{base}/greet-${{version}}.tar.gz",
                                  "sha256": hashlib.sha256(data).hexdigest()}]
    assert (recipe["name"], recipe["version"], recipe["class"], recipe["license"]) == ("greet", "1.2", "meson", "MIT")
    assert recipe["depends"] == ["libgreet"]            # pkg-config 'libgreet' -> the project's recipe
    assert recipe["license_files"] == [{"path": "COPYING", "sha256": hashlib.sha256(MIT.encode()).hexdigest()}]
    assert (project / "dl/greet-1.2.tar.gz").read_bytes() == data   # in the download dir, recorded as verified
    shown = cli(project, "show", "greet", check=0)
    assert "# greet 1.2" in shown.stdout and "libgreet" in shown.stdout
    again = cli(project, "recipe", "new", f"{base}/greet-1.2.tar.gz", "--layer", "mine", check=2)
    assert again.stderr.strip() == f"{path}: the recipe file exists (--force replaces it)"
    cli(project, "recipe", "new", f"{base}/greet-1.2.tar.gz", "--layer", "mine", "--force", check=0)


def test_upstream_gone_found_in_the_debian_archive_by_name(project, served, tmp_path):
    www, base = served
    same = tarball("cJSON-1.7.18", {"CMakeLists.txt": "project(cJSON C)\n", "LICENSE": MIT})
    repack = tarball("json-c-0.18", {"CMakeLists.txt": "project(json-c C)\n", "COPYING": MIT})
    tag = tarball("jq-1.7.1", {"configure.ac": "AC_INIT\n", "COPYING": MIT}, git_commit="71c2ab509a86" + "0" * 28)
    debian_archive(www / "debian", {"cjson": {"cjson_1.7.18.orig.tar.gz": same},
                                    "json-c": {"json-c_0.18+ds.orig.tar.gz": repack},
                                    "jq": {"jq_1.7.1.orig.tar.gz": tag}})
    (project / "buildsys.yaml").write_text("format: 1\ndefault_board: tiny-x86\nsource_date_epoch: 1700000000\n"
                                           f"debian_archive: {base}/debian\n")

    gh = "https://github.com/DaveGamble/cJSON/archive/refs/tags/v1.7.18.tar.gz"
    proc = cli(project, "recipe", "new", gh, "--layer", "mine", mirrors="debian", check=0)
    assert "Debian's cjson_1.7.18.orig.tar.gz" in proc.stdout
    recipe = yaml.safe_load((project / "layers/mine/recipes/cjson/cjson.yaml").read_text())
    # upstream's URL, the archive's bytes (same name, same compression), a download-dir name of its own
    assert recipe["sources"] == [{"url": "https://github.com/DaveGamble/cJSON/archive/refs/tags/v${version}.tar.gz",
                                  "sha256": hashlib.sha256(same).hexdigest(), "name": "${name}-${version}.tar.gz"}]
    assert recipe["class"] == "cmake" and (project / "dl/cjson-1.7.18.tar.gz").read_bytes() == same
    assert recipe["homepage"] == "https://github.com/DaveGamble/cJSON"

    # (upstream answers 404 here, at once: no retries for a file that is not there)
    proc = cli(project, "recipe", "new", f"{base}/json-c-0.18.tar.gz", "--layer", "mine", mirrors="debian", check=0)
    recipe = yaml.safe_load((project / "layers/mine/recipes/json-c/json-c.yaml").read_text())
    # a repack is not upstream's file: named by its Debian path
    assert recipe["sources"] == [{"url": "debian:json-c/json-c_${version}+ds.orig.tar.gz",
                                  "sha256": hashlib.sha256(repack).hexdigest()}]
    assert (project / "dl/json-c_0.18+ds.orig.tar.gz").read_bytes() == repack
    cli(project, "show", "json-c", check=0)

    # Same name and compression, but a tag's git archive where the URL names a release tarball.
    proc = cli(project, "recipe", "new", f"{base}/jq-1.7.1.tar.gz", "--layer", "mine", mirrors="debian", check=0)
    assert "is a git archive of commit 71c2ab509a86, not the release tarball jq-1.7.1.tar.gz" in proc.stdout
    recipe = yaml.safe_load((project / "layers/mine/recipes/jq/jq.yaml").read_text())
    assert recipe["sources"][0]["url"] == "debian:jq/jq_${version}.orig.tar.gz" and recipe["autoreconf"] is True
    assert (project / "dl/jq_1.7.1.orig.tar.gz").read_bytes() == tag and not (project / "dl/jq-1.7.1.tar.gz").exists()

    missing = cli(project, "recipe", "new", f"{base}/nothing-2.0.tar.gz", "--layer", "mine", mirrors="debian",
                  check=2)
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "no orig tarball of a source package named like 'nothing' at version 2.0" in missing.stderr


def test_local_tarball_and_autotools(project, tmp_path):
    configure = "#!/bin/sh\n# generated\n"
    data = tarball("tool-0.9", {"configure": configure, "Makefile.in": "all:\n", "LICENSE": "Ask me.\n"})
    path = tmp_path / "tool-0.9.tar.gz"
    path.write_bytes(data)
    proc = cli(project, "recipe", "new", str(path), check=0, cwd=project / "layers/mine")
    assert "layer mine" in proc.stdout and "put the upstream URL" in proc.stdout
    recipe = yaml.safe_load((project / "layers/mine/recipes/tool/tool.yaml").read_text())
    assert recipe["sources"] == [{"url": path.as_uri().replace("0.9", "${version}"),
                                  "sha256": hashlib.sha256(data).hexdigest()}]
    assert recipe["class"] == "autotools" and recipe["out_of_tree"] is False and recipe["license"] == "NOASSERTION"
    cli(project, "show", "tool", check=0)


def test_a_sourceforge_style_url_keeps_the_file_name(project, served):
    www, base = served
    data = tarball("sf-2.1", {"Makefile": "all:\ninstall:\n\tinstall -D x $(DESTDIR)/usr/bin/x\n"})
    (www / "sf-2.1.tar.gz").mkdir()
    (www / "sf-2.1.tar.gz" / "download").write_bytes(data)
    cli(project, "recipe", "new", f"{base}/sf-2.1.tar.gz/download", "--layer", "mine", check=0)
    recipe = yaml.safe_load((project / "layers/mine/recipes/sf/sf.yaml").read_text())
    assert recipe["sources"] == [{"url": f"{base}/sf-${{version}}.tar.gz/download",
                                  "sha256": hashlib.sha256(data).hexdigest(), "name": "sf-${version}.tar.gz"}]
    assert recipe["class"] == "make" and (project / "dl/sf-2.1.tar.gz").read_bytes() == data


def test_several_layers_need_a_choice_and_bad_input_is_one_line(project, tmp_path):
    proc = cli(project, "recipe", "new", str(tmp_path / "x-1.0.tar.gz"), check=2)
    assert proc.stderr.startswith("--layer: the project has several layers")
    proc = cli(project, "recipe", "new", str(tmp_path / "x-1.0.tar.gz"), "--layer", "mine", check=2)
    assert proc.stderr.strip() == f"command line: {tmp_path / 'x-1.0.tar.gz'}: no such file (give a URL, a " \
                                  "tarball or a git repository)"
    (tmp_path / "notgit").mkdir()
    proc = cli(project, "recipe", "new", str(tmp_path / "notgit"), "--layer", "mine", check=2)
    assert "is a directory but not a git repository" in proc.stderr
    proc = cli(project, "recipe", "new", "https://127.0.0.1:1/archive.tar.gz", "--layer", "mine", check=2)
    assert "cannot tell the version from 'archive.tar.gz' (give it with --version)" in proc.stderr


def _git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.invalid", GIT_AUTHOR_DATE="@1700000000 +0000",
               GIT_COMMITTER_DATE="@1700000000 +0000")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_git_work_tree_and_git_url_are_pinned_to_the_commit(project, tmp_path):
    repo = tmp_path / "greeter"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "meson.build").write_text(MESON)
    (repo / "greet.c").write_text("int main(void){return 0;}\n")
    (repo / "COPYING").write_text(MIT)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one")
    _git(repo, "tag", "v1.0")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "greet.c").write_text("int main(void){return 1;}\n")
    _git(repo, "commit", "-q", "-am", "two")
    second = _git(repo, "rev-parse", "HEAD")
    (repo / "greet.c").write_text("dirty\n")

    proc = cli(project, "recipe", "new", str(repo), "--layer", "mine", check=0)
    assert "uncommitted changes" in proc.stdout
    recipe = yaml.safe_load((project / "layers/mine/recipes/greeter/greeter.yaml").read_text())
    assert recipe["sources"] == [{"git": repo.as_uri(), "rev": second}]
    assert recipe["version"] == f"1.0+git1.{second[:7]}" and recipe["class"] == "meson"
    cli(project, "show", "greeter", check=0)

    cli(project, "recipe", "new", f"git+{repo.as_uri()}", "--rev", "v1.0", "--name", "greet", "--layer", "mine",
        check=0)
    recipe = yaml.safe_load((project / "layers/mine/recipes/greet/greet.yaml").read_text())
    assert recipe["sources"] == [{"git": repo.as_uri(), "rev": first}] and recipe["version"] == "1.0"
    proc = cli(project, "recipe", "new", f"git+{repo.as_uri()}", "--rev", "nope", "--name", "g2", "--layer", "mine",
               check=2)
    assert "no branch or tag 'nope'" in proc.stderr


# --- the fetcher's "download to learn the sha256" path, without the CLI ------------------------
def test_learning_takes_a_premirror_by_name_and_refuses_offline(tmp_path):
    from buildsys.errors import NetworkAccessError
    from buildsys.fetch import FetchConfig, Source
    from buildsys.fetch.checksum import verified
    from buildsys.fetch.fetcher import fetch_learning_sha256

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = tarball("foo-1.0", {"Makefile": "all:\n"})
    (mirror / "foo-1.0.tar.gz").write_bytes(data)
    config = FetchConfig(tmp_path / "dl", premirrors=[mirror.as_uri()], mirrors=[])
    learned = fetch_learning_sha256(Source("https://127.0.0.1:1/foo-1.0.tar.gz"), config, "foo", "1.0")
    assert learned.sha256 == hashlib.sha256(data).hexdigest() and learned.origin.startswith("mirror file://")
    assert verified(learned.path, learned.sha256) and learned.path == tmp_path / "dl/foo-1.0.tar.gz"
    config.offline = True
    with pytest.raises(NetworkAccessError):
        fetch_learning_sha256(Source("https://127.0.0.1:1/foo-1.0.tar.gz"), config, "foo", "1.0")


def test_an_archive_file_that_is_not_what_its_index_lists_is_not_kept(tmp_path, served):
    from buildsys.errors import FetchError
    from buildsys.fetch import FetchConfig, Source
    from buildsys.fetch.fetcher import fetch_learning_sha256

    www, base = served
    listed = tarball("bar-2.0", {"Makefile": "all:\n"})
    debian_archive(www / "debian", {"bar": {"bar_2.0.orig.tar.gz": listed}})
    (www / "debian/pool/main/b/bar/bar_2.0.orig.tar.gz").write_bytes(b"swapped on the server")
    config = FetchConfig(tmp_path / "dl", mirrors=["debian"], debian_archive=f"{base}/debian")
    with pytest.raises(FetchError) as info:
        fetch_learning_sha256(Source(f"{base}/bar-2.0.tar.gz"), config, "bar", "2.0")
    assert f"the index lists {hashlib.sha256(listed).hexdigest()}" in str(info.value)
    assert not any(p.name.startswith("bar") for p in (tmp_path / "dl").iterdir())

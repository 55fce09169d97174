"""Layers pinned from git: real repositories on disk (file://) and over dumb HTTP on 127.0.0.1."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from buildsys import layerrepo, provenance
from buildsys.cli import main
from buildsys.errors import UserError
from buildsys.layers import load_project

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path):
    """A layer repository: layer 'shared' in sub/, two commits on main."""
    repo = tmp_path / "upstream"
    (repo / "sub/recipes").mkdir(parents=True)
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    (repo / "sub/layer.yaml").write_text("format: 1\nname: shared\npriority: 7\n")
    first = commit_all(repo, "one")
    (repo / "sub/README.md").write_text("two\n")
    second = commit_all(repo, "two")
    return repo, first, second


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "buildsys.yaml").write_text("# my project\nformat: 1\ndefault_board: x86-virtio   # keep me\n")
    monkeypatch.setenv("BUILDSYS_LAYER_CACHE", str(tmp_path / "layer-cache"))
    monkeypatch.delenv("BUILDSYS_OFFLINE", raising=False)
    monkeypatch.delenv("BUILDSYS_LAYERS", raising=False)
    return root


def run(root: Path, *args: str) -> int:
    return main(["--project", str(root), *args])


def entry(url: str, commit: str, **more: str) -> str:
    lines = [f"  - url: {url}", f"    commit: {commit}"] + [f"    {k}: {v}" for k, v in more.items()]
    return "layers:\n" + "\n".join(lines) + "\n"


def error(capsys) -> str:
    """The one line of an error (after the progress lines of fetches)."""
    lines = [line for line in capsys.readouterr().err.splitlines()
             if not line.startswith("fetching layer repository ")]
    assert len(lines) == 1, lines
    return lines[0]


def test_add_pins_the_tip_and_checks_out_exactly_that_commit(project, upstream, capsys, tmp_path):
    repo, first, second = upstream
    url = f"file://{repo}"
    assert run(project, "layer", "add", url, "--path", "sub", "--branch", "main") == 0
    text = (project / "buildsys.yaml").read_text()
    assert text == ("# my project\nformat: 1\ndefault_board: x86-virtio   # keep me\n"
                    + entry(url, second, branch="main", path="sub"))
    [layer] = [la for la in load_project(project).layers if la.name == "shared"]
    checkout = tmp_path / "layer-cache" / "checkouts" / layerrepo.repo_key(url) / second
    assert layer.path == checkout / "sub" and layer.priority == 7
    assert layer.git == layerrepo.GitPin(url, second, "main", "sub")
    assert git(checkout, "rev-parse", "HEAD") == second
    capsys.readouterr()
    assert run(project, "layers") == 0
    out = capsys.readouterr().out
    assert f"shared        7  no     {url} @ {second[:12]} path sub (branch main)\n" in out
    # The manifest's record of it.
    origin = provenance.layer_origin(layer)
    assert origin == {"url": url, "subdir": "sub", "commit": second, "dirty": False}
    (checkout / "sub/README.md").write_text("changed by hand\n")
    assert provenance.layer_origin(layer)["dirty"] is True
    run(project, "layers")
    assert f"shared        7  yes    {url}" in capsys.readouterr().out


def test_a_pinned_commit_and_a_second_project_offline(project, upstream, tmp_path, monkeypatch):
    repo, first, second = upstream
    url = f"file://{repo}"
    assert run(project, "layer", "add", url, "--commit", first[:8], "--path", "sub") == 0
    assert entry(url, first, path="sub") in (project / "buildsys.yaml").read_text()
    # Another project pinning the same commit shares the mirror and the checkout,
    # and needs no network once fetched: the upstream may be gone.
    other = tmp_path / "other"
    other.mkdir()
    (other / "buildsys.yaml").write_text("format: 1\n" + entry(url, first, path="sub"))
    shutil.move(repo, tmp_path / "gone")
    monkeypatch.setenv("BUILDSYS_OFFLINE", "1")
    layers = {la.name: la for la in load_project(other).layers}
    assert layers["shared"].path == (tmp_path / "layer-cache/checkouts" / layerrepo.repo_key(url) / first / "sub")


def test_offline_without_the_commit_is_one_line(project, upstream, capsys, monkeypatch):
    repo, first, _ = upstream
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(f"file://{repo}", first, path="sub"))
    monkeypatch.setenv("BUILDSYS_OFFLINE", "1")
    assert run(project, "layers") == 2
    assert error(capsys) == (f"{project}/buildsys.yaml:4:13: layer repository file://{repo} needs a fetch, but "
                             "buildsys is offline (fetch once online (buildsys layers), then work offline)")


def test_missing_short_and_malformed_commits(project, upstream, capsys):
    repo, first, _ = upstream
    url = f"file://{repo}"
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, "f" * 40, path="sub"))
    assert run(project, "layers") == 2
    assert error(capsys).startswith(f"{project}/buildsys.yaml:4:13: commit {'f' * 40} is not in layer repository "
                                    f"{url} (")
    for bad in (first[:12], first.upper(), first + "0"):
        (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, bad))
        assert run(project, "layers") == 2
        assert error(capsys).startswith(f"{project}/buildsys.yaml:4:13: commit '{bad}' is not a full 40-hex commit id")
    (project / "buildsys.yaml").write_text("format: 1\nlayers:\n  - {url: x}\n")
    assert run(project, "layers") == 2
    assert error(capsys) == f"{project}/buildsys.yaml:3:5: missing required key 'commit' in a git layer"
    line = f"  - {{url: {url}, commit: {first}, path: ../x}}"
    (project / "buildsys.yaml").write_text(f"format: 1\nlayers:\n{line}\n")
    assert run(project, "layers") == 2
    col = line.index("../x") + 1
    assert error(capsys) == f"{project}/buildsys.yaml:3:{col}: '../x' is not a relative path inside the repository"


def test_a_commit_no_longer_on_its_branch_is_refused(project, upstream, capsys):
    repo, first, second = upstream
    url = f"file://{repo}"
    # main is rewritten: `second` stays reachable (a tag) but is no longer on main.
    git(repo, "tag", "old", second)
    git(repo, "reset", "-q", "--hard", first)
    (repo / "sub/README.md").write_text("rewritten\n")
    commit_all(repo, "two, rewritten")
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, second, branch="main", path="sub"))
    assert run(project, "layers") == 2
    assert error(capsys) == (f"{project}/buildsys.yaml:4:13: commit {second[:12]} is no longer on branch 'main' of "
                             f"{url} (the branch moved: rewritten or force-pushed) (pin a commit of the branch: "
                             "`buildsys layer update NAME`)")
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, first, branch="nosuch", path="sub"))
    assert run(project, "layers") == 2
    assert f"layer repository {url} has no branch 'nosuch'" in error(capsys)
    # Without branch: the commit is pinned wherever it is.
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, second, path="sub"))
    assert run(project, "layers") == 0


def test_a_checkout_moved_by_hand_is_refused(project, upstream, capsys, tmp_path):
    repo, first, second = upstream
    url = f"file://{repo}"
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, second, path="sub"))
    load_project(project)
    checkout = tmp_path / "layer-cache/checkouts" / layerrepo.repo_key(url) / second
    git(checkout, "checkout", "-q", "--detach", first)
    assert run(project, "layers") == 2
    assert error(capsys) == (f"{project}/buildsys.yaml:4:13: the checkout of layer {url} at {checkout} is no longer "
                             f"commit {second[:12]} (HEAD is {first[:12]}) (moved by hand: remove that directory to "
                             "have it made again)")
    shutil.rmtree(checkout)
    assert run(project, "layers") == 0


def test_update_moves_the_pin_and_rewrites_only_the_commit(project, upstream, capsys):
    repo, first, second = upstream
    url = f"file://{repo}"
    head = "# my project\nformat: 1\nlayers:   # pinned layers\n"
    item = f"  - url: {url}   # theirs\n    commit: {first}   # the pin\n    branch: main\n    path: sub\n"
    (project / "buildsys.yaml").write_text(head + item + "default_board: x86-virtio\n")
    (repo / "sub/new.txt").write_text("three\n")
    third = commit_all(repo, "three")
    assert run(project, "layer", "update", "shared") == 0
    assert capsys.readouterr().out == f"layer 'shared': {first[:12]} -> {third[:12]} (2 new commits) in buildsys.yaml\n"
    assert (project / "buildsys.yaml").read_text() == head + item.replace(first, third) + "default_board: x86-virtio\n"
    assert run(project, "layer", "update", "shared") == 0
    assert "already at" in capsys.readouterr().out
    assert run(project, "layer", "update", url, "--commit", second[:10]) == 0
    assert f"commit: {second}   # the pin" in (project / "buildsys.yaml").read_text()
    git(repo, "checkout", "-q", "-b", "side", first)
    (repo / "sub/side.txt").write_text("side\n")
    side = commit_all(repo, "side")
    assert run(project, "layer", "update", "shared", "--commit", side) == 2
    assert "is no longer on branch 'main'" in error(capsys)
    assert f"commit: {second}" in (project / "buildsys.yaml").read_text()


def test_update_works_on_a_pin_this_machine_never_fetched(project, upstream, capsys):
    repo, first, second = upstream
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(f"file://{repo}", "e" * 40, path="sub"))
    assert run(project, "layers") == 2          # the pin is broken: the project does not load
    capsys.readouterr()
    assert run(project, "layer", "update", "shared") == 0
    assert f"commit: {second}" in (project / "buildsys.yaml").read_text()
    assert run(project, "layers") == 0


def test_remove_and_local(project, upstream, capsys, tmp_path):
    repo, first, second = upstream
    url = f"file://{repo}"
    assert run(project, "layer", "add", "--local", url, "--path", "sub") == 0
    assert (project / "local.yaml").read_text() == "format: 1\n" + entry(url, second, path="sub")
    assert (project / "buildsys.yaml").read_text() == "# my project\nformat: 1\ndefault_board: x86-virtio   # keep me\n"
    mine = tmp_path / "mine"
    assert run(project, "layer", "create", str(mine)) == 0
    # The new layer's example append is to image-base, which this project lacks:
    # the project no longer loads, so nothing is recorded.
    assert run(project, "layer", "add", str(mine)) == 2
    assert "append for recipe 'image-base', which no layer has" in capsys.readouterr().err
    assert "layers" not in (project / "buildsys.yaml").read_text()
    (mine / "recipes/images/image-base.append.yaml").unlink()
    assert run(project, "layer", "add", str(mine)) == 0
    assert (project / "buildsys.yaml").read_text().endswith("layers:\n  - ../mine\n")
    capsys.readouterr()
    assert run(project, "layer", "remove", "nosuch") == 2
    assert error(capsys) == ("command line: no layer 'nosuch' in layers: of buildsys.yaml or local.yaml "
                             "(named there: mine, shared)")
    assert run(project, "layer", "remove", "shared") == 0
    assert (project / "local.yaml").read_text() == "format: 1\nlayers: []\n"
    assert run(project, "layer", "remove", str(mine)) == 0
    assert (project / "buildsys.yaml").read_text().endswith("layers: []\n")
    assert [la.name for la in load_project(project).layers] == ["core"]


def test_add_refuses_a_second_layer_of_the_same_name_and_missing_depends(project, tmp_path, capsys):
    for name, text in (("a", "format: 1\nname: x\n"), ("b", "format: 1\nname: x\n"),
                       ("c", "format: 1\nname: c\ndepends: [core, nosuch]\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "layer.yaml").write_text(text)
    assert run(project, "layer", "add", str(tmp_path / "a")) == 0
    assert run(project, "layer", "add", str(tmp_path / "a")) == 2
    assert "layer 'x' is already in effect" in capsys.readouterr().err
    assert run(project, "layer", "add", str(tmp_path / "b")) == 2
    assert error(capsys) == f"{tmp_path}/b/layer.yaml:2:7: layer name 'x' is already used by {tmp_path}/a (rename " \
                            "one of them in its layer.yaml)"
    assert run(project, "layer", "add", str(tmp_path / "c")) == 2
    assert error(capsys) == (f"{tmp_path}/c/layer.yaml:3:17: layer 'c' depends on layer 'nosuch', which is not in "
                             "effect (add that layer first)")
    assert run(project, "layer", "add", str(tmp_path / "nosuch")) == 2
    assert "no such directory" in error(capsys)
    assert (project / "buildsys.yaml").read_text().count("- ") == 1


def test_no_hooks_and_none_of_the_callers_git_variables(project, upstream, tmp_path, monkeypatch):
    """A post-checkout hook from the user's git configuration never runs on our
    clones, and GIT_DIR of the caller does not redirect our git commands."""
    repo, _, second = upstream
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    ran = tmp_path / "hook-ran"
    for name in ("post-checkout", "reference-transaction", "post-index-change"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {ran}\n")
        (hooks / name).chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n[init]\n\ttemplateDir = {tmp_path}/tmpl\n")
    (tmp_path / "tmpl/hooks").mkdir(parents=True)
    shutil.copy(hooks / "post-checkout", tmp_path / "tmpl/hooks/post-checkout")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path / "nowhere"))
    assert run(project, "layer", "add", f"file://{repo}", "--path", "sub") == 0
    assert not ran.exists()
    checkout = tmp_path / "layer-cache/checkouts" / layerrepo.repo_key(f"file://{repo}") / second
    assert not (checkout / ".git/hooks").exists()
    assert git(checkout, "config", "core.hooksPath") == "/dev/null"


def test_a_layer_over_dumb_http(project, upstream, tmp_path):
    """git's dumb HTTP protocol from a plain static file server on 127.0.0.1."""
    repo, _, second = upstream
    served = tmp_path / "www" / "shared.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(served))
    git(served, "update-server-info")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None      # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/shared.git"
        assert run(project, "layer", "add", url, "--path", "sub", "--branch", "main") == 0
    finally:
        server.shutdown()
        server.server_close()
    assert entry(url, second, branch="main", path="sub") in (project / "buildsys.yaml").read_text()
    assert "shared" in [la.name for la in load_project(project).layers]


def test_cache_dir_choice(tmp_path):
    root = tmp_path
    assert layerrepo.cache_dir({}, {"HOME": "/h"}, root) == Path("/h/.cache/buildsys/layers")
    assert layerrepo.cache_dir({}, {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, root) == Path("/x/buildsys/layers")
    assert layerrepo.cache_dir({"layer_cache": "lc"}, {"HOME": "/h"}, root) == root / "lc"
    assert layerrepo.cache_dir({"layer_cache": "lc"}, {"BUILDSYS_LAYER_CACHE": "/e"}, root) == Path("/e")
    assert layerrepo.looks_like_url("https://h/x.git") and layerrepo.looks_like_url("git@github.com:a/b.git")
    assert not layerrepo.looks_like_url("../meta-x") and not layerrepo.looks_like_url("/srv/x:y")


def test_load_errors_are_user_errors(project, upstream):
    repo, first, _ = upstream
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(f"file://{repo}", first))   # no layer.yaml at top
    with pytest.raises(UserError, match=r"buildsys.yaml:3:5: no layer.yaml in layer directory"):
        load_project(project)


def test_a_layer_far_from_the_project_is_named_absolutely(tmp_path, monkeypatch):
    root = tmp_path / "work/proj"
    root.mkdir(parents=True)
    (root / "buildsys.yaml").write_text("format: 1\n")
    for name in ("work/beside", "far/away"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "layer.yaml").write_text(f"format: 1\nname: {name.split('/')[1]}\n")
        assert run(root, "layer", "add", "--local", str(tmp_path / name)) == 0
    assert (root / "local.yaml").read_text() == f"format: 1\nlayers:\n  - ../beside\n  - {tmp_path}/far/away\n"


@pytest.mark.skipif(shutil.which("bwrap") is None or shutil.which("mksquashfs") is None,
                    reason="needs bubblewrap and squashfs-tools")
def test_the_image_manifest_records_each_layers_origin(tiny, tmp_path):
    """A tiny image built with a git-pinned layer: the manifest names its URL and
    commit, the files it gave the build, and a clean tree; the project (a copy,
    not in git) has no commit."""
    from test_reproduce import build_image, env_for, image_project

    project = image_project(tiny)
    repo = tmp_path / "extra"
    (repo / "recipes/hello").mkdir(parents=True)
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    (repo / "layer.yaml").write_text("format: 1\nname: extra\npriority: 3\n")
    (repo / "recipes/hello/hello.append.yaml").write_text("format: 1\nenv+: {GREETING: extra}\n")
    commit = commit_all(repo, "extra layer")
    url = f"file://{repo}"
    with open(project / "buildsys.yaml", "a") as f:
        f.write(entry(url, commit, branch="main"))
    env = env_for(tmp_path, BUILDSYS_LAYER_CACHE=str(tmp_path / "layer-cache"))
    load_project(project, {k: v for k, v in env.items() if k != "BUILDSYS_OFFLINE"})     # fetched once online
    deploy, _ = build_image(project, tmp_path / "build", env)
    manifest = json.loads((deploy / "manifest.json").read_text())
    layers = {la["name"]: la for la in manifest["project"]["layers"]}
    assert layers["extra"]["origin"] == {"url": url, "subdir": None, "commit": commit, "dirty": False}
    assert layers["extra"]["path"] is None and layers["extra"]["priority"] == 3
    assert sorted(layers["extra"]["files"]) == ["layer.yaml", "recipes/hello/hello.append.yaml"]
    assert layers["core"]["origin"] == {"url": None, "subdir": None, "commit": None, "dirty": None}
    assert manifest["project"]["commit"] is None


def test_concurrent_loads_share_one_mirror_and_checkout(project, upstream, tmp_path):
    """Four processes make the same pin at once: the lock lets one clone, the others find its work."""
    import sys

    repo, _, second = upstream
    url = f"file://{repo}"
    (project / "buildsys.yaml").write_text("format: 1\n" + entry(url, second, path="sub"))
    code = ("import sys; from pathlib import Path; from buildsys.layers import load_project; "
            "print(sorted(la.name for la in load_project(Path(sys.argv[1])).layers))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(project)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    assert all(out == "['core', 'shared']\n" for out, _ in results)
    assert sum(err.count("fetching layer repository") for _, err in results) == 1
    key = layerrepo.repo_key(url)
    assert sorted(p.name for p in (tmp_path / "layer-cache/checkouts" / key).iterdir()) == [second]
    assert sorted(p.name for p in (tmp_path / "layer-cache/mirrors").iterdir()) == [f"{key}.git", f"{key}.lock"]

"""buildsys recipe new on three real upstream projects, one per build system, each fetched
through the normal fetcher (upstream is unreachable here, so the Debian archive mirror finds
the file by its orig tarball name), written into a temporary layer, and built as written for
x86-virtio: the ELF files they install must be there.

    GNU hello 2.10   autotools   hello_2.10.orig.tar.gz is upstream's hello-2.10.tar.gz
    cJSON 1.7.18     CMake       GitHub's tag archive, cjson_1.7.18.orig.tar.gz
    inih r59         Meson       GitHub's tag archive, libinih_59.orig.tar.gz

The sha256s are those of the archive's Sources index (bookworm/trixie).  About two minutes
cold (the toolchain from the cache, three small builds), seconds warm."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_buildsys

pytestmark = pytest.mark.slow

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
EM_X86_64 = 62

PROJECTS = [
    # url, recipe, class, license, sha256, an ELF file it installs
    ("https://ftp.gnu.org/gnu/hello/hello-2.10.tar.gz", "hello", "autotools", "GPL-3.0-or-later",
     "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b", "usr/bin/hello"),
    ("https://github.com/DaveGamble/cJSON/archive/refs/tags/v1.7.18.tar.gz", "cjson", "cmake", "MIT",
     "3aa806844a03442c00769b83e99970be70fbef03735ff898f4811dd03b9f5ee5", "usr/lib/libcjson.so.1.7.18"),
    ("https://github.com/benhoyt/inih/archive/refs/tags/r59.tar.gz", "inih", "meson", "BSD-3-Clause",
     "062279922805f5e9a369551a08d5ddb506140fe50774183ffdbb7c22bb97e3f4", "usr/lib/libinih.so.0"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The layer with the three new recipes, and the build dir they were built in."""
    top = tmp_path_factory.mktemp("recipe-new")
    layer = top / "layer"
    layer.mkdir()
    # Priority above every project layer: these recipes win whatever else is called hello.
    (layer / "layer.yaml").write_text("format: 1\nname: recipe-new-test\npriority: 50\ndepends: [core]\n")
    build = top / "build"
    env = {"BUILDSYS_BUILD_DIR": str(build), "BUILDSYS_DL_DIR": DL_DIR, "BUILDSYS_LAYERS": str(layer),
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(top / "cache")}
    outputs = {}
    for url, name, *_ in PROJECTS:
        proc = run_buildsys("--project", ROOT, "recipe", "new", url, "--layer", str(layer), env=env, check=0,
                            timeout=600)
        outputs[name] = proc.stdout
    run_buildsys("--project", ROOT, "build", "-j", "2", *(p[1] for p in PROJECTS), "--board", "x86-virtio",
                 env=env, check=0, timeout=1200)
    return layer, build, outputs, env


def package(build: Path, pn: str) -> Path:
    found = [p.with_suffix("") for p in (build / "packages").glob("*.json")
             if json.loads(p.read_text())["pn"] == pn]
    assert len(found) == 1, (pn, found)
    return found[0]


@pytest.mark.parametrize("url, name, cls, license, sha256, elf", PROJECTS, ids=[p[1] for p in PROJECTS])
def test_recipe_as_written_builds(made, url, name, cls, license, sha256, elf):
    layer, build, outputs, env = made
    path = layer / "recipes" / name / f"{name}.yaml"
    assert f"wrote {path}" in outputs[name]
    recipe = yaml.safe_load(path.read_text())
    assert (recipe["name"], recipe["class"], recipe["license"]) == (name, cls, license)
    source = recipe["sources"][0]
    assert source["sha256"] == sha256 and source["url"].startswith(url.split("/archive/")[0].rsplit("/", 1)[0])
    assert "${version}" in source["url"]
    assert recipe["license_files"] and all(len(f["sha256"]) == 64 for f in recipe["license_files"])
    run_buildsys("--project", ROOT, "show", name, env=env, check=0)
    installed = package(build, name) / elf
    header = installed.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_X86_64

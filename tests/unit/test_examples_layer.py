"""The examples layer (layers/examples): its recipes resolve for both QEMU
boards on the class they are meant to show, name their upstream sources and
licenses, and image-examples pulls them in.  Resolution only: nothing is
fetched or built (tests/slow/test_examples.py builds and boots them)."""
import re
import stat

import pytest

from buildsys.graph import recipe_graph
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board
from conftest import ROOT

LAYER = ROOT / "layers" / "examples"
BOARDS = ("x86-virtio", "qemu-arm64")
CLASSES = {"socat": "autotools", "mosquitto": "cmake", "iputils": "meson"}
TOOLCHAIN = {"x86-virtio": "toolchain-host", "qemu-arm64": "toolchain-aarch64"}


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT, environ={})


@pytest.fixture(scope="module", params=BOARDS)
def resolver(request, project):
    return Resolver(project, load_board(project, request.param))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_recipe_resolves_on_its_class(resolver, name):
    recipe = resolver.recipe(name)
    assert recipe.get("class") == CLASSES[name]
    assert str(recipe.path).startswith(str(LAYER))
    # Dynamically linked: the C library comes along into any image.
    assert "virtual/libc" in recipe.get("rdepends")
    deps = [d.name for d in resolver.depends(recipe)]
    assert TOOLCHAIN[resolver.board.name] in deps


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_recipe_names_its_source_and_license(resolver, name):
    recipe = resolver.recipe(name)
    remote = [s for s in recipe.get("sources") if "url" in s]
    assert len(remote) == 1
    assert re.fullmatch(r"(https?://|debian:)\S+", remote[0]["url"])
    assert re.fullmatch(r"[0-9a-f]{64}", remote[0]["sha256"])
    assert recipe.get("license") and recipe.get("cpe")
    files = recipe.get("license_files")
    assert files and all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in files)


def test_mosquitto_listens_beyond_localhost_and_starts_at_boot():
    files = LAYER / "recipes" / "mosquitto" / "files"
    conf = (files / "mosquitto.conf").read_text()
    # mosquitto 2 without a listener accepts local clients only.
    assert re.search(r"^listener 1883$", conf, re.M)
    assert re.search(r"^persistence false$", conf, re.M)      # the root is read-only
    init = files / "S60mosquitto"
    assert init.stat().st_mode & stat.S_IXUSR
    assert "mosquitto -d -c /etc/mosquitto/mosquitto.conf" in init.read_text()


def test_image_examples_is_image_base_plus_the_applications(resolver):
    image = resolver.recipe("image-examples")
    base = resolver.recipe("image-base")
    assert image.get("class") == "image"
    assert image.get("packages") == base.get("packages") + list(CLASSES)
    assert image.get("kernel") == base.get("kernel")
    graph = recipe_graph(resolver, [image])
    # The applications, their toolchain and the C library they link.
    assert set(CLASSES) | {"libc", TOOLCHAIN[resolver.board.name]} <= set(graph.nodes)

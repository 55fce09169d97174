"""class oci-bundle (buildsys/classes/ocibundle.py): the config.json it
generates for the project's bundle recipes, and its install step run on real
package trees -- the bundle's layout, modes and times, the mount points, the
ELF check inside the bundle's root, and the links it refuses to follow."""
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildsys.classes import ocibundle
from buildsys.errors import BuildError, UserError
from buildsys.layers import load_project
from buildsys.resolve import Resolver, load_board
from conftest import ROOT

EPOCH = 1704067200


@pytest.fixture(scope="module")
def resolver():
    project = load_project(ROOT, environ={})
    return Resolver(project, load_board(project, "x86-virtio"))


def test_config_json_of_oci_hello(resolver):
    config = json.loads(ocibundle.config_json(resolver.recipe("oci-hello")))
    assert config["ociVersion"] == "1.0.2"
    assert config["hostname"] == "hello"
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["process"]["args"] == ["/bin/sh"]
    assert "PS1=hello# " in config["process"]["env"]
    assert config["process"]["noNewPrivileges"] is True
    assert "CAP_SYS_ADMIN" not in config["process"]["capabilities"]["bounding"]
    linux = config["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "mount", "uts", "ipc", "network", "cgroup"]
    assert linux["cgroupsPath"] == "/containers/hello"
    assert linux["resources"] == {"memory": {"limit": 32 * 1024 * 1024}, "pids": {"limit": 64}}
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert mounts["/proc"]["type"] == "proc" and "ro" in mounts["/sys"]["options"]
    # Every mount point outside the runtime's own tmpfs exists in rootfs/.
    for dest in mounts:
        top = dest.strip("/").split("/")[0]
        assert top in ocibundle.MOUNT_POINTS


def test_config_json_is_stable_and_has_no_limit_unless_asked(resolver):
    recipe = resolver.recipe("oci-clock")            # from layers/examples
    text = ocibundle.config_json(recipe)
    assert text == ocibundle.config_json(recipe)
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    config = json.loads(text)
    assert config["hostname"] == "clock" and config["process"]["args"][:2] == ["/bin/sh", "-c"]
    assert config["linux"]["resources"]["memory"] == {"limit": 16 * 1024 * 1024}
    bare = SimpleNamespace(name="bare", get=lambda key, default=None: default, where=lambda key: None)
    config = json.loads(ocibundle.config_json(bare))
    assert config["linux"]["resources"] == {} and config["hostname"] == "bare"


def test_image_container_installs_both_bundles(resolver):
    image = resolver.recipe("image-container")
    assert image.get("kernel") == "linux-containers"
    assert {"crun", "init-containers", "oci-hello", "oci-clock"} <= set(image.get("packages"))
    assert resolver.recipe("image-base").get("packages") == image.get("packages")[:7]
    deps = {r.pn for r in resolver.depends(resolver.recipe("oci-hello"))}
    assert deps == {"busybox"}                       # no toolchain: host-side Python only


def test_bad_namespace_is_a_one_line_error(tmp_path):
    from buildsys.schema import StrList
    setting = ocibundle.OciBundle.params["namespaces"]
    assert isinstance(setting, StrList)
    from buildsys.errors import Where
    with pytest.raises(UserError) as e:
        setting.parse(["pid", "netwrok"], Where("x.yaml", 3, 1))
    assert "unknown value 'netwrok'" in str(e.value) and "network" in str(e.value)


# --- the install step on real trees ---------------------------------------------------
class Rec(SimpleNamespace):
    def get(self, key, default=None):
        return self.values.get(key, default)

    def where(self, key):
        return None


def _ctx(tmp: Path, trees: dict[str, Path], values: dict, built=None):
    recs = {pn: Rec(pn=pn, name=pn, values={}) for pn in trees}
    paths = SimpleNamespace(stage=tmp / "stage", dest=tmp / "dest")
    paths.stage.mkdir()
    paths.dest.mkdir()
    logs: list[str] = []

    def packages(names):
        if names is None:
            return [(recs[pn], trees[pn]) for pn in (built if built is not None else trees)]
        return [(recs[pn], trees[pn]) for pn in sorted(trees)]

    recipe = Rec(pn="oci-test", name="oci-test", values={"packages": list(trees), **values})
    return SimpleNamespace(recipe=recipe, board=SimpleNamespace(arch="x86_64"), paths=paths,
                           env={"SOURCE_DATE_EPOCH": str(EPOCH)}, packages=packages, log=logs.append), logs


def _tree(tmp: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp / "pkgs" / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_install_makes_the_bundle(tmp_path):
    tree = _tree(tmp_path, "tools", {"bin/hello": "#!/bin/sh\necho hi\n", "usr/include/x.h": "int x;\n"})
    os.chmod(tree / "bin/hello", 0o755)
    os.symlink("hello", tree / "bin/hi")
    ctx, logs = _ctx(tmp_path, {"tools": tree}, {"container": "demo", "memory_limit": "8M"})
    ocibundle.OciBundle().run("install", ctx)
    bundle = tmp_path / "dest/var/lib/containers/bundles/demo"
    assert sorted(p.name for p in bundle.iterdir()) == ["config.json", "rootfs"]
    root = bundle / "rootfs"
    assert (root / "bin/hello").read_text() == "#!/bin/sh\necho hi\n"
    assert (root / "bin/hello").stat().st_mode & 0o777 == 0o755
    assert os.readlink(root / "bin/hi") == "hello"
    assert not (root / "usr/include").exists(), "development files stay out of the bundle"
    for d in ocibundle.MOUNT_POINTS:
        assert (root / d).is_dir() and (root / d).stat().st_mode & 0o777 == 0o755
    assert (bundle / "config.json").stat().st_mode & 0o777 == 0o644
    times = {os.lstat(p).st_mtime for p in [bundle, *bundle.rglob("*")]}
    assert times == {EPOCH}
    config = json.loads((bundle / "config.json").read_text())
    assert config["hostname"] == "demo" and config["linux"]["resources"]["memory"]["limit"] == 8 << 20
    assert not list((tmp_path / "stage").iterdir()) or not (tmp_path / "stage/bundle").exists()
    assert any("/usr/include" in line for line in logs)


def test_install_refuses_an_rdepend_not_built(tmp_path):
    a = _tree(tmp_path, "app", {"bin/app": "x"})
    b = _tree(tmp_path, "lib", {"lib/x": "y"})
    ctx, _ = _ctx(tmp_path, {"app": a, "lib": b}, {}, built=["app"])
    with pytest.raises(UserError, match=r"lib is installed in the bundle .* \(add lib to packages\)"):
        ocibundle.OciBundle().run("install", ctx)


def test_install_refuses_a_link_where_a_mount_point_goes(tmp_path):
    tree = _tree(tmp_path, "evil", {"bin/x": "x"})
    os.symlink(str(tmp_path / "outside"), tree / "proc")
    (tmp_path / "outside").mkdir()
    ctx, _ = _ctx(tmp_path, {"evil": tree}, {})
    with pytest.raises(UserError, match=r"/proc is needed as a mount point"):
        ocibundle.OciBundle().run("install", ctx)
    assert not list((tmp_path / "outside").iterdir())


def test_install_does_not_follow_a_link_planted_in_dest(tmp_path):
    tree = _tree(tmp_path, "tools", {"bin/x": "x"})
    ctx, _ = _ctx(tmp_path, {"tools": tree}, {})
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), tmp_path / "dest/var")        # as a pre_install hook could
    with pytest.raises(BuildError, match="refusing to install the bundle"):
        ocibundle.OciBundle().run("install", ctx)
    assert not list(outside.iterdir())


@pytest.mark.skipif(shutil.which("gcc") is None or os.uname().machine != "x86_64", reason="needs the host's gcc")
def test_a_dynamic_program_needs_its_loader_inside_the_bundle(tmp_path):
    src = tmp_path / "p.c"
    src.write_text("int main(void) { return 0; }\n")
    tree = tmp_path / "pkgs/prog"
    (tree / "bin").mkdir(parents=True)
    subprocess.run(["gcc", "-o", str(tree / "bin/prog"), str(src)], check=True)
    ctx, _ = _ctx(tmp_path, {"prog": tree}, {})
    # The image around it has a C library; the container sees only rootfs/.
    with pytest.raises(BuildError, match=r"/bin/prog .*needs the interpreter"):
        ocibundle.OciBundle().run("install", ctx)


def test_bad_container_name():
    rec = Rec(pn="x", name="x", values={"container": "../up"})
    with pytest.raises(UserError, match="bad container name '../up'"):
        ocibundle.container_name(rec)

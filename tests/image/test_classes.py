"""The kernel and image build classes, with a small StepContext that runs steps
in bubblewrap through the engine's sandbox argv (as the executor does)."""
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildsys import sandbox
from buildsys.classes import base
from buildsys.classes.image import Image
from buildsys.classes.kernel import Kernel
from buildsys.errors import BuildError, UserError
from buildsys.image import gpt

ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1_600_000_000
TOOLS = ("bwrap", "mksquashfs", "unsquashfs", "mformat", "mcopy", "mmd")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="bwrap/squashfs-tools/mtools missing")


class FakeRecipe:
    def __init__(self, name, values):
        self.name = self.pn = name
        self.values, self.variant = values, "target"

    def get(self, key, default=None):
        value = self.values.get(key)
        return default if value is None else value


class FakeBoard:
    def __init__(self, values):
        self.name, self.values, self.arch = values["name"], values, values["arch"]

    def get(self, key, default=None):
        return self.values.get(key, default)


class Ctx(base.StepContext):
    def __init__(self, work: Path, recipe, board, packages=()):
        self.recipe, self.board, self.jobs = recipe, board, 2
        dirs = ("src", "obj", "dest", "home", "files", "stage", "sysroot", "native", "logs")
        self.paths = SimpleNamespace(work=work, **{d: work / d for d in dirs})
        for d in dirs:
            (work / d).mkdir(parents=True, exist_ok=True)
        self.env = {"PATH": "/build/native/usr/bin:/usr/bin:/bin", "TZ": "UTC", "LC_ALL": "C",
                    "SOURCE_DATE_EPOCH": str(EPOCH), "ARCH": "x86", "CROSS_COMPILE": "", "JOBS": "2"}
        self._packages = list(packages)
        self.scripts, self.logged = [], []

    def run(self, argv, env=None, cwd=base.SANDBOX_SRC):
        p = self.paths
        mounts = [sandbox.Mount(str(p.src), base.SANDBOX_SRC, True), sandbox.Mount(str(p.obj), base.SANDBOX_OBJ, True),
                  sandbox.Mount(str(p.dest), base.SANDBOX_DEST, True),
                  sandbox.Mount(str(p.files), base.SANDBOX_FILES, False),
                  sandbox.Mount(str(p.stage), base.SANDBOX_STAGE, False)]
        argv = sandbox.bwrap_argv(mounts, dict(self.env, **(env or {})), cwd, list(argv))
        assert sandbox.run(argv, p.logs / "log") == 0, (p.logs / "log").read_text()

    def sh(self, script, env=None, cwd=base.SANDBOX_SRC):
        self.scripts.append(script)

    def stage_file(self, host_path, name=None):
        name = name or Path(host_path).name
        shutil.copyfile(host_path, self.paths.files / name)
        return f"{base.SANDBOX_FILES}/{name}"

    def log(self, text):
        self.logged.append(text)

    def packages(self, names=None):
        alias = {"virtual/kernel": "linux"}
        wanted = {alias.get(n, n) for n in names}
        return [(r, path) for r, path in self._packages if r.name in wanted]


def _board():
    import yaml

    return FakeBoard(yaml.safe_load((ROOT / "board-configs/x86-virtio.yaml").read_text()))


# --- kernel ---------------------------------------------------------------------------


def _kernel_recipe(frags):
    return FakeRecipe("linux", {"base": "allnoconfig", "kernel_image": "bzImage", "dtbs": ["a/b.dtb"],
                                "tree_fragments": Kernel.params["tree_fragments"].default,
                                "config_fragments": [SimpleNamespace(path=Path(f)) for f in frags]})


def test_kernel_configure_checks_every_fragment_line(tmp_path):
    frag = tmp_path / "f.cfg"
    frag.write_text("CONFIG_EFI=y\nCONFIG_SQUASHFS_XZ=y\n")
    ctx = Ctx(tmp_path / "w", _kernel_recipe([frag]), _board())
    (ctx.paths.obj / ".config").write_text("CONFIG_SQUASHFS_XZ=y\n# CONFIG_EFI is not set\n")
    with pytest.raises(BuildError, match=r"f\.cfg:1:1: CONFIG_EFI=y did not survive into \.config "
                                         r"\(it has: # CONFIG_EFI is not set\)"):
        Kernel().run("configure", ctx)
    script = ctx.scripts[0]
    assert "KCONFIG_ALLCONFIG=/build/obj/buildsys-allconfig.cfg allnoconfig" in script
    assert "O=/build/obj" in script and "/build/files/fragment-0-f.cfg" in script
    assert script.index("tiny-base.config") < script.index("fragment-0")     # fragments win
    assert 'KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$SOURCE_DATE_EPOCH"' in script
    (ctx.paths.obj / ".config").write_text("CONFIG_SQUASHFS_XZ=y\nCONFIG_EFI=y\n")
    Kernel().run("configure", ctx)


def test_kernel_compile_and_install_scripts(tmp_path):
    ctx = Ctx(tmp_path / "w", _kernel_recipe([]), _board())
    k = Kernel()
    compile_ = k.script("compile", ctx)
    assert 'O=/build/obj ARCH="$ARCH"' in compile_ and compile_.rstrip().endswith("bzImage a/b.dtb")
    for var in ("KBUILD_BUILD_USER", "KBUILD_BUILD_HOST", "KBUILD_BUILD_VERSION", "unset CC"):
        assert var in compile_
    install = k.script("install", ctx)
    assert "/build/obj/arch/$ARCH/boot/bzImage /build/dest/boot/bzImage" in install
    assert "/build/dest/boot/config" in install and "/build/dest/boot/b.dtb" in install


def test_shipped_fragments_are_well_formed():
    for frag in (ROOT / "recipes/linux/files").glob("*.cfg"):
        for line in frag.read_text().splitlines():
            assert not line.strip() or line.startswith("#") or line.startswith("CONFIG_"), (frag, line)


# --- image ----------------------------------------------------------------------------


def _packages(tmp_path, cmdline_guid):
    bb = tmp_path / "pkg-busybox"
    (bb / "bin").mkdir(parents=True)
    (bb / "bin/busybox").write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    os.chmod(bb / "bin/busybox", 0o755)
    os.symlink("busybox", bb / "bin/sh")
    bf = tmp_path / "pkg-base-files"
    for d in ("etc", "dev", "tmp", "proc"):
        (bf / d).mkdir(parents=True)
    (bf / "etc/hostname").write_text("buildsys\n")
    k = tmp_path / "pkg-linux"
    (k / "boot").mkdir(parents=True)
    (k / "boot/bzImage").write_bytes(b"MZ" + bytes(range(256)) * 600)
    (k / "boot/config").write_text(f'CONFIG_CMDLINE="root=PARTUUID={cmdline_guid} rootfstype=squashfs ro '
                                   'console=ttyS0"\n')
    perms = [{"path": "/dev/console", "type": "c", "major": 5, "minor": 1, "mode": "0600"},
             {"path": "/tmp", "mode": "1777"}]
    return [(FakeRecipe("busybox", {}), bb), (FakeRecipe("base-files", {"permissions": perms}), bf),
            (FakeRecipe("linux", {}), k)]


def _image_ctx(tmp_path, name, guid=None):
    guid = guid or gpt.partition_guid("x86-virtio", "root")
    recipe = FakeRecipe("image-minimal", {"packages": ["busybox", "base-files"], "rootfs_compressor": "xz",
                                          "rootfs_block_size": 131072})
    return Ctx(tmp_path / name, recipe, _board(), _packages(tmp_path / f"{name}-pkgs", guid))


@needs_tools
def test_image_class_builds_a_verified_reproducible_disk(tmp_path):
    ctx = _image_ctx(tmp_path, "a")
    Image().run("install", ctx)
    dest = ctx.paths.dest
    assert sorted(p.name for p in dest.iterdir()) == ["bzImage", "image-minimal-x86-virtio.img",
                                                      "image-minimal-x86-virtio.rootfs.json",
                                                      "image-minimal-x86-virtio.squashfs"]
    table = gpt.read(dest / "image-minimal-x86-virtio.img")
    esp, root = table.partitions
    assert table.disk_guid == gpt.disk_guid("image-minimal", "x86-virtio")
    assert root.guid == gpt.partition_guid("x86-virtio", "root") and esp.type_guid == gpt.TYPES["esp"]
    disk = (dest / "image-minimal-x86-virtio.img").read_bytes()
    squash = (dest / "image-minimal-x86-virtio.squashfs").read_bytes()
    assert disk[root.offset:root.offset + len(squash)] == squash
    esp_file = tmp_path / "esp.vfat"
    esp_file.write_bytes(disk[esp.offset:esp.offset + esp.sectors * 512])
    env = {"PATH": os.environ["PATH"], "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
    out = subprocess.run(["mtype", "-i", str(esp_file), "::/EFI/BOOT/BOOTX64.EFI"], capture_output=True, env=env)
    assert out.stdout == (tmp_path / "a-pkgs/pkg-linux/boot/bzImage").read_bytes()
    listing = subprocess.run(["unsquashfs", "-lln", str(dest / "image-minimal-x86-virtio.squashfs")],
                             capture_output=True, text=True, check=True).stdout
    assert "crw------- 0/0                   5,  1" in listing and "drwxrwxrwt 0/0" in listing
    assert "boot/bzImage" not in listing                      # the kernel is not a rootfs package
    # Same inputs elsewhere: same bytes.
    other = _image_ctx(tmp_path, "b-somewhere-else")
    Image().run("install", other)
    assert (other.paths.dest / "image-minimal-x86-virtio.img").read_bytes() == disk


@needs_tools
def test_image_class_rejects_a_kernel_naming_another_root(tmp_path):
    ctx = _image_ctx(tmp_path, "a", guid="00000000-0000-0000-0000-000000000001")
    with pytest.raises(BuildError, match="root=PARTUUID=00000000-0000-0000-0000-000000000001"):
        Image().run("install", ctx)


@needs_tools
def test_image_class_reports_conflicts(tmp_path):
    ctx = _image_ctx(tmp_path, "a")
    (ctx._packages[1][1] / "bin").mkdir()
    (ctx._packages[1][1] / "bin/busybox").write_text("not busybox")
    with pytest.raises(UserError, match="/bin/busybox is installed by both base-files and busybox"):
        Image().run("install", ctx)


def test_image_class_declares_its_tools_and_params():
    assert Image.implicit_depends == ("squashfs-tools-native", "mtools-native")
    assert Image.installs_packages and {"packages", "rootfs_compressor", "rootfs_block_size"} <= set(Image.params)
    assert Image().build_depends(None) == ["virtual/kernel"]
    assert Image().build_depends(None, _board()) == ["virtual/kernel"]


# --- links a step planted are never followed by host code -------------------------------


def _canary(tmp_path):
    canary = tmp_path / "outside" / "canary"
    canary.parent.mkdir()
    canary.write_text("CONFIG_SECRET_OF_THE_HOST=y\n")
    return canary


def test_kernel_configure_refuses_a_config_that_is_a_link(tmp_path):
    canary = _canary(tmp_path)
    ctx = Ctx(tmp_path / "w", _kernel_recipe([]), _board())
    os.symlink(canary, ctx.paths.obj / ".config")
    with pytest.raises(BuildError, match=r"refusing to follow a link.*\.config") as info:
        Kernel().run("configure", ctx)
    assert "SECRET" not in str(info.value)


@needs_tools
def test_image_class_never_writes_through_planted_links(tmp_path):
    canary = _canary(tmp_path)
    ctx = _image_ctx(tmp_path, "a")
    # What an earlier step of the image recipe could have left in its writable dirs.
    os.symlink(canary.parent, ctx.paths.obj / "parts")
    os.symlink(canary, ctx.paths.obj / "rootfs.pseudo")
    os.symlink(canary, ctx.paths.dest / "image-minimal-x86-virtio.img")
    os.symlink(canary, ctx.paths.dest / "bzImage")
    Image().run("install", ctx)
    assert canary.read_text() == "CONFIG_SECRET_OF_THE_HOST=y\n"
    assert sorted(os.listdir(canary.parent)) == ["canary"]
    img = ctx.paths.dest / "image-minimal-x86-virtio.img"
    assert not img.is_symlink() and gpt.read(img).partitions


@needs_tools
def test_image_class_never_reads_through_a_package_link(tmp_path):
    canary = _canary(tmp_path)
    ctx = _image_ctx(tmp_path, "a")
    kernel_tree = ctx._packages[2][1]
    (kernel_tree / "boot/bzImage").unlink()
    os.symlink(canary, kernel_tree / "boot/bzImage")     # a kernel package pointing at a host file
    with pytest.raises(BuildError, match="refusing to follow a link"):
        Image().run("install", ctx)

"""``class: oci-bundle`` -- an OCI runtime bundle built from packages.

A bundle (https://github.com/opencontainers/runtime-spec, bundle.md) is a
directory holding ``config.json`` and the container's root filesystem,
``rootfs/``.  This class makes one at build time and installs it as

    /var/lib/containers/bundles/<container>/config.json
    /var/lib/containers/bundles/<container>/rootfs/...

so an image that installs the recipe carries a container crun (or runc) can
run as it is: ``crun run --bundle /var/lib/containers/bundles/<container> <container>``.

All the work is host-side Python in the install task, like the image class:
  1. merge the ``packages`` (and their rdepends) into the stage dir's rootfs
     (rootfs.merge: conflicts are errors, every time the epoch);
  2. development files out (the image's default ``rootfs_exclude``), the C
     library down to what the programs need (finalize.prune_unneeded), then
     every ELF checked *inside the bundle's root*: its machine, interpreter
     and libraries (image.check_elves) -- the container sees only this tree;
  3. the mount points config.json names made in rootfs/ (the image's root is
     a read-only squashfs: the runtime cannot make them at run time);
  4. config.json generated from the recipe's keys (config_json()), keys
     sorted, no timestamps;
  5. the bundle renamed into /build/dest without following any link a hook
     could have planted there.

Owners: the image's squashfs makes every file root's (no permissions table
here); modes are the packages' own, dirs this class makes are 0755.

The packages are build dependencies (build_depends); their rdepends are not
built unless something depends on them, so a package of the closure that is
not a dependency is a one-line error naming the one to add.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .. import rootfs
from ..errors import BuildError, UserError
from ..image import elf, finalize
from ..schema import Size
from . import image as image_class
from .base import Bool, BuildClass, Int, Str, StrList, StrMap

BUNDLES_DIR = "var/lib/containers/bundles"
OCI_VERSION = "1.0.2"
LIBC = "virtual/libc"

# podman's defaults (containers/common pkg/config/default.go and
# pkg/specgen/generate): what a container may not see or change of the host's
# /proc and /sys.  A path the kernel does not have is skipped by the runtime.
MASKED_PATHS = (
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux", "/sys/dev/block",
)
READONLY_PATHS = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# podman's default capability set (containers.conf default_capabilities).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
)
# The namespaces the issue asks for, and cgroup (podman's default on cgroup
# v2): the container's /sys/fs/cgroup is then its own cgroup, not the
# device's whole tree.  (Linux has no option for it: it comes with CGROUPS.)
NAMESPACES = ("pid", "mount", "uts", "ipc", "network", "cgroup")
NAMESPACE_TYPES = ("pid", "mount", "uts", "ipc", "network", "cgroup", "user", "time")
# The runtime-spec's default filesystems (config-linux.md), as podman mounts
# them, plus a private /tmp and /run: the root is read-only.  No /dev/mqueue:
# it needs the kernel's POSIX_MQUEUE, which a container kernel may leave out,
# and a failed mount stops the container.
MOUNTS = (
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
    {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
)
# Mount points the runtime needs in rootfs/ itself (the others are inside
# these mounts, made by the runtime in the tmpfs or provided by sysfs).
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "run")


class OciBundle(BuildClass):
    name = "oci-bundle"
    implicit_depends = ()           # host-side Python only; no compiler
    params = {
        "packages": StrList([], "recipes installed in the bundle's rootfs/ (plus their rdepends, which must be "
                                "among them or built anyway)"),
        "container": Str(None, "the container's name: the bundle's directory under /var/lib/containers/bundles "
                               "(default: the recipe's name)"),
        "args": StrList(["/bin/sh"], "the container's process (config.json process.args)"),
        "cwd": Str("/", "its working directory"),
        "process_env": StrMap({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "linux"},
                              "its environment (process.env)"),
        "terminal": Bool(False, "process.terminal: true needs a console socket (crun run --console-socket)"),
        "hostname": Str(None, "the container's host name, in its own UTS namespace (default: its name)"),
        "namespaces": StrList(list(NAMESPACES), "the namespaces the container gets (linux.namespaces)",
                              choices=NAMESPACE_TYPES),
        "readonly_root": Bool(True, "root.readonly: the rootfs is mounted read-only"),
        "memory_limit": Size(None, "linux.resources.memory.limit: past it the container's processes are "
                                   "OOM-killed (e.g. 32M); none by default"),
        "pids_limit": Int(None, "linux.resources.pids.limit: at most this many tasks", minimum=1),
        "cgroups_path": Str(None, "linux.cgroupsPath, from the cgroup2 root (default: /containers/<container>)"),
        "prune_libc": Bool(True, "drop the libraries of virtual/libc no program of the bundle needs"),
    }

    # Modules only the classes that build trees use, hashed into the version
    # (BuildClass.version covers this module): editing them rebuilds bundles.
    helpers = (elf, finalize, image_class)

    @classmethod
    def version(cls) -> str:
        h = hashlib.sha256(super().version().encode())
        for module in cls.helpers:
            h.update(b"\0" + Path(module.__file__ or "").read_bytes())
        return h.hexdigest()[:16]

    def build_depends(self, recipe, board=None):
        return list(recipe.get("packages", []))

    def run(self, task, ctx):
        steps = ctx.recipe.get("steps") or {}
        if task in steps:
            return super().run(task, ctx)
        if task == "install":
            self.install(ctx)

    def install(self, ctx) -> None:
        r = ctx.recipe
        name = container_name(r)
        sde = int(ctx.env["SOURCE_DATE_EPOCH"])
        stage = Path(ctx.paths.stage)
        bundle = stage / "bundle"
        if bundle.exists():
            shutil.rmtree(bundle)
        bundle.mkdir(mode=0o755)
        tree = bundle / "rootfs"

        trees = ctx.packages(r.get("packages", []))
        built = {rec.pn for rec, _ in ctx.packages(None)}
        for rec, path in trees:
            if rec.pn not in built or not Path(path).is_dir():
                raise UserError(f"{r.pn}: {rec.pn} is installed in the bundle (an rdepend of its packages) but "
                                "is not built for it", _where(r, "packages"),
                                hint=f"add {rec.pn} to packages")
        owners = rootfs.merge([(rec.pn, path) for rec, path in trees], tree, sde)
        gone = finalize.exclude(tree, finalize.DEFAULT_EXCLUDE)
        libcs = {rec.pn for rec, _ in trees if LIBC in (rec.get("provides") or [])}
        if libcs and r.get("prune_libc", True):
            pruned = finalize.prune_unneeded(tree, ctx.board.arch, owners, libcs, {"libc.so.6": ["libgcc_s.so.1"]})
            gone.update({p: "prune_libc" for p in pruned})
        if gone:
            ctx.log(f"bundle {name}: left out " + ", ".join(sorted(gone)))
        # The container sees this tree as its /: its programs must find
        # their loader and libraries here, not in the image around it.
        image_class.check_elves(tree, ctx.board.arch, owners, gone)
        for d in MOUNT_POINTS:
            mkdir_in_tree(tree, d)
        config = config_json(r)
        (bundle / "config.json").write_text(config)
        for path in [bundle, *bundle.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                os.utime(path, (sde, sde))
        os.utime(bundle / "config.json", (sde, sde))
        os.chmod(bundle / "config.json", 0o644)
        os.chmod(tree, 0o755)
        place_beneath(Path(ctx.paths.dest), f"{BUNDLES_DIR}/{name}", bundle)
        ctx.log(f"bundle {name}: /{BUNDLES_DIR}/{name}, {len(owners)} paths from {', '.join(sorted(built))}")


def container_name(recipe) -> str:
    name = recipe.get("container") or recipe.name
    if not name or "/" in name or name in (".", "..") or name.startswith("."):
        raise UserError(f"bad container name '{name}'", _where(recipe, "container"),
                        hint="a plain file name: letters, digits, '-', '_', '.'")
    return name


def config_json(recipe) -> str:
    """The bundle's config.json (runtime-spec 1.0), from the recipe's keys."""
    from ..image.disk import parse_size

    name = container_name(recipe)
    env = recipe.get("process_env") or {}
    resources: dict = {}
    limit = recipe.get("memory_limit")
    if limit is not None:
        nbytes = parse_size(limit, _where(recipe, "memory_limit"))
        # No "swap": crun then leaves memory.swap.max alone, which a kernel
        # without swap accounting does not have (the boards have no swap).
        resources["memory"] = {"limit": nbytes}
    if recipe.get("pids_limit") is not None:
        resources["pids"] = {"limit": int(recipe.get("pids_limit"))}
    caps = list(CAPABILITIES)
    config = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": bool(recipe.get("terminal", False)),
            "user": {"uid": 0, "gid": 0},
            "args": list(recipe.get("args", ["/bin/sh"])),
            "env": [f"{k}={v}" for k, v in sorted(env.items())],
            "cwd": recipe.get("cwd") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": bool(recipe.get("readonly_root", True))},
        "hostname": recipe.get("hostname") or name,
        "mounts": [dict(m, options=list(m["options"])) for m in MOUNTS],
        "linux": {
            "cgroupsPath": recipe.get("cgroups_path") or f"/containers/{name}",
            "namespaces": [{"type": t} for t in recipe.get("namespaces", list(NAMESPACES))],
            "resources": resources,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def mkdir_in_tree(tree: Path, rel: str) -> None:
    """mkdir -p ``tree/rel`` (mode 0755) where a package may have put links:
    never through one (an absolute link would lead to the build host)."""
    here = tree
    for part in rel.strip("/").split("/"):
        here = here / part
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            raise UserError(f"the bundle's /{rel} is needed as a mount point, but a package installs "
                            f"/{here.relative_to(tree)} as a link or a file")
        if not here.exists():
            here.mkdir(mode=0o755)
            os.chmod(here, 0o755)


def place_beneath(root: Path, rel: str, src: Path) -> None:
    """Rename the directory ``src`` to ``root/rel``; ``root`` is step-writable
    (a hook ran there), so every component is opened without following links."""
    parts = rel.split("/")
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=dfd)
            except FileExistsError:
                pass
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as e:
                raise BuildError(f"refusing to install the bundle through {root}/{rel}: {part} is not a "
                                 f"directory ({e.strerror}); a step planted it") from None
            os.close(dfd)
            dfd = nfd
        try:
            os.rename(src, parts[-1], dst_dir_fd=dfd)
        except OSError as e:
            raise BuildError(f"cannot install the bundle as {root}/{rel}: {e.strerror} (a step installed "
                             "something there already)") from None
    finally:
        os.close(dfd)


def _where(recipe, key):
    return recipe.where(key) if hasattr(recipe, "where") else None

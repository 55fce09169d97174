"""linux-containers (issue 14), checked independently of buildsys's own
fragment check: on x86-virtio and qemu-arm64 the installed /boot/config
holds every line of recipes/linux/files/containers.cfg, read here with a
regex of our own, not with buildsys.kconfigcheck; and a fragment asking for
a symbol whose dependency is off fails the configure step, exit 1, naming
the fragment file:line, the symbol and the unmet dependency.

Warm cache (BUILDSYS_TEST_CACHE_DIR holding both kernels): 1-2 s a board.
Cold, each board compiles its kernel (22-41 min on 2 cores shared with
other builds).  The dropped-symbol test unpacks the kernel source and stops
at configure: ~75 s.
"""
import json
import os
import re
from pathlib import Path

import pytest

from conftest import ROOT, copy_project, run_buildsys, write_tree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")]

DL_DIR = os.environ.get("BUILDSYS_DL_DIR") or str(Path.home() / ".cache/buildsys/downloads")
FILES = ROOT / "recipes/linux/files"
# The per-arch files are optional: today no line differs between the arches.
FRAGMENTS = {"x86-virtio": ["containers.cfg", "containers-x86_64.cfg"],
             "qemu-arm64": ["containers.cfg", "containers-arm64.cfg"]}
SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def settings(text: str) -> dict[str, str | None]:
    """symbol -> its value, None for "is not set"; other lines ignored."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := SET.match(line):
            out[m.group(1)] = m.group(2)
        elif m := UNSET.match(line):
            out[m.group(1)] = None
    return out


def env_for(build_dir: Path) -> dict[str, str]:
    return {"BUILDSYS_BUILD_DIR": str(build_dir), "BUILDSYS_DL_DIR": DL_DIR,
            "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(build_dir / "cache")}


def package_dir(build_dir: Path, recipe: str) -> Path:
    """The recipe's package tree, built or restored from the cache (a restored
    one has no work dir stamps; its metadata file names its signature)."""
    found = [build_dir / "packages" / meta["signature"]
             for meta in (json.loads(f.read_text()) for f in (build_dir / "packages").glob("*.json"))
             if meta.get("pn") == recipe]
    assert len(found) == 1, found
    return found[0]


def test_settings_parser_sees_both_kinds_of_line():
    assert settings("CONFIG_A=y\n# CONFIG_B is not set\n# a comment\nCONFIG_C=\"x y\"\n") == \
        {"CONFIG_A": "y", "CONFIG_B": None, "CONFIG_C": '"x y"'}


@pytest.mark.parametrize("board", ["x86-virtio", "qemu-arm64"])
def test_every_fragment_line_is_in_the_installed_config(board, tmp_path):
    build_dir = tmp_path / "build"
    run_buildsys("--project", ROOT, "build", "-j2", "--board", board, "linux-containers",
                 env=env_for(build_dir), check=0)
    pkg = package_dir(build_dir, "linux-containers")
    config = settings((pkg / "boot/config").read_text())
    image = "bzImage" if board == "x86-virtio" else "Image"
    assert (pkg / "boot" / image).stat().st_size > 1_000_000

    wanted: dict[str, tuple[str, int, str | None]] = {}
    for name in FRAGMENTS[board]:
        path = FILES / name
        if not path.exists():
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for symbol, value in settings(line).items():
                wanted[symbol] = (name, lineno, value)
    assert len(wanted) > 80, "containers.cfg lost its lines?"
    missing = []
    for symbol, (name, lineno, value) in wanted.items():
        # Kconfig leaves a symbol it never showed out of .config: that is "off" too.
        if config.get(symbol) != value:
            missing.append(f"{name}:{lineno}: {symbol}={value} but .config has {config.get(symbol, 'nothing')}")
    assert not missing, "\n".join(missing)
    # The fragment's point, spot-checked by name: an OCI runtime's basics are on.
    for symbol in ("CONFIG_USER_NS", "CONFIG_PID_NS", "CONFIG_MEMCG", "CONFIG_CGROUP_BPF", "CONFIG_OVERLAY_FS",
                   "CONFIG_SECCOMP_FILTER", "CONFIG_BPF_LSM", "CONFIG_VETH", "CONFIG_BRIDGE_NETFILTER"):
        assert config.get(symbol) == "y", symbol


def test_a_fragment_line_whose_dependency_is_off_fails_configure(tmp_path):
    """BRIDGE_NETFILTER depends on NETFILTER, which linux-base leaves off:
    Kconfig drops it without a word, the configure step must not."""
    project = copy_project(tmp_path / "project", exclude=("tests", "bench", "layers"))
    write_tree(project / "layers/broken", {
        "layer.yaml": "format: 1\nname: broken\npriority: 50\n",
        "recipes/linux/linux-broken.yaml": (
            "format: 1\nname: linux-broken\nextends: linux-base\nsummary: a fragment with an unmet dependency\n"
            "provides: []\nconfig_fragments+: [files/broken.cfg]\n"),
        "recipes/linux/files/broken.cfg": (
            "# The bridge itself is fine: NET is on in linux-base.\n"
            "CONFIG_BRIDGE=y\n"
            "# ...but its netfilter hook needs NETFILTER, which nothing turns on.\n"
            "CONFIG_BRIDGE_NETFILTER=y\n"),
    })
    proc = run_buildsys("--project", project, "build", "-j2", "linux-broken", env=env_for(tmp_path / "build"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "linux-broken:configure" in out, out
    assert re.search(r"broken\.cfg:4:1: CONFIG_BRIDGE_NETFILTER=y did not survive", out), out
    # ...and says why: the unmet dependency, read from the kernel's Kconfig.
    assert re.search(r"unmet:\s*NETFILTER\b", out), out
    # The line that did survive is not reported.
    assert not re.search(r"broken\.cfg:2:", out), out
    assert not (tmp_path / "build/work/x86-virtio/linux-broken/stamps/compile").exists()

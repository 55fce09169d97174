"""`buildsys kconfig check` on the real kernel: a fragment asking for a
symbol whose dependency is off gets a report naming the fragment file:line,
the symbol, and the unmet dependency read from the kernel's own Kconfig;
lines marked on-drop=warn are reported as such and do not fail the check.
Nothing is compiled (the command stops after configure)."""
import os
import re
from pathlib import Path

import pytest

from conftest import copy_project, run_buildsys, write_tree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")]

# linux (image-minimal's kernel) has no networking: BRIDGE_NETFILTER cannot
# survive, and the report must say that NET/NETFILTER/BRIDGE are what is off.
FRAGMENT = """\
# An on-purpose broken fragment for the test.
CONFIG_PRINTK_TIME=y
CONFIG_BRIDGE_NETFILTER=y
# buildsys: on-drop=warn
CONFIG_NO_SUCH_SYMBOL_ANYWHERE=y
"""


def test_kconfig_check_names_file_line_and_unmet_dependency(tmp_path):
    project = copy_project(tmp_path / "project", exclude=("tests", "bench", "layers"))
    write_tree(project / "layers/kcheck", {
        "layer.yaml": "format: 1\nname: kcheck\npriority: 50\n",
        "recipes/linux/linux.append.yaml": "format: 1\nconfig_fragments+: [files/broken.cfg]\n",
        "recipes/linux/files/broken.cfg": FRAGMENT,
    })
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"),
           "BUILDSYS_CACHE_DIR": os.environ.get("BUILDSYS_TEST_CACHE_DIR") or str(tmp_path / "cache")}
    out = run_buildsys("--project", project, "kconfig", "check", "linux", "-j2", env=env)
    assert out.returncode == 1, out.stderr[-3000:]
    report = out.stdout
    assert re.search(r"broken\.cfg:3:1: CONFIG_BRIDGE_NETFILTER=y did not survive into \.config "
                     r"\(it has: # CONFIG_BRIDGE_NETFILTER is not set\) \[fail\]", report), report
    assert re.search(r"BRIDGE_NETFILTER \(net/Kconfig:\d+\) depends on: .*NETFILTER.*BRIDGE", report), report
    assert "unmet: NET " in report or "unmet: NET  " in report, report
    assert re.search(r"broken\.cfg:5:1: CONFIG_NO_SUCH_SYMBOL_ANYWHERE=y .*\[warn\]", report), report
    assert "NO_SUCH_SYMBOL_ANYWHERE is not defined by any Kconfig file" in report
    assert "CONFIG_PRINTK_TIME" not in report                   # it survived
    assert re.search(r"linux \(x86-virtio\): \d+ fragment\(s\), \d+ line\(s\): 2 dropped by Kconfig "
                     r"\(1 that must survive\)", report), report
    assert "linux:compile" not in out.stderr                    # nothing is built

    # The build itself fails at configure with the same lines (fail mode) and
    # warns about the warn-mode one.
    build = run_buildsys("--project", project, "build", "linux", "-j2", env=env)
    assert build.returncode == 1
    assert "broken.cfg:3:1: CONFIG_BRIDGE_NETFILTER=y" in build.stderr
    assert "linux:compile" not in re.findall(r"^\[\d+/\d+\] (\S+)", build.stderr, re.M)

    # Marked warn, the same line lets the check pass (exit 0).
    fragment = project / "layers/kcheck/recipes/linux/files/broken.cfg"
    fragment.write_text(FRAGMENT.replace("CONFIG_BRIDGE_NETFILTER=y\n# buildsys: on-drop=warn\n",
                                         "# buildsys: on-drop=warn\nCONFIG_BRIDGE_NETFILTER=y\n"))
    ok = run_buildsys("--project", project, "kconfig", "check", "linux", "-j2", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    assert "(0 that must survive)" in ok.stdout

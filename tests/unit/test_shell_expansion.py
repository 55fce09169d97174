"""Shell parameter expansion in steps, as /bin/sh really runs it: buildsys
replaces its own ${name}s and leaves every other ${...} form to the shell."""
import subprocess
from pathlib import Path

import pytest

from conftest import run_buildsys, write_tree

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")

RECIPE = r"""format: 1
name: shellexp
version: "2.5.1"
license: MIT
class: script
toolchain: false
steps:
  install: |
    link=/usr/lib/libfoo.so.1
    x=
    set -- one two three
    mkdir -p ${destdir}/out
    {
      echo "dir=${link%/*}"
      echo "base=${link##*/}"
      echo "default=${x:-d}"
      x=abcd
      echo "len=${#x}"
      echo "args=${@}"
      echo "count=${#}"
      echo "first=${1}"
      echo "nested=${y:-${version}}"
      echo "upper=${HOME:+set}"
      echo "escaped=$${link}"
      echo "plain=$link"
      echo "ours=${pn}-${version} in ${destdir}"
    } > ${destdir}/out/result.txt
"""

EXPECTED = """dir=/usr/lib
base=libfoo.so.1
default=d
len=4
args=one two three
count=3
first=one
nested=2.5.1
upper=set
escaped=/usr/lib/libfoo.so.1
plain=/usr/lib/libfoo.so.1
ours=shellexp-2.5.1 in /build/dest
"""


def test_shell_parameter_expansion_in_a_real_build(tiny, tmp_path):
    write_tree(tiny, {"recipes/shellexp/shellexp.yaml": RECIPE})
    env = {"BUILDSYS_BUILD_DIR": str(tmp_path / "build"), "BUILDSYS_DL_DIR": str(tmp_path / "dl"),
           "BUILDSYS_CACHE_DIR": str(tmp_path / "cache"), "BUILDSYS_OFFLINE": "1"}
    run_buildsys("--project", tiny, "build", "shellexp", env=env, check=0)
    results = list((tmp_path / "build/packages").glob("*/out/result.txt"))
    assert len(results) == 1, results
    assert results[0].read_text() == EXPECTED


def test_what_the_shell_gets_is_what_sh_expands(tiny, tmp_path):
    """The expanded step text, run by the host's /bin/sh (no sandbox)."""
    from buildsys.layers import load_project
    from buildsys.resolve import Resolver, load_board

    write_tree(tiny, {"recipes/shellexp/shellexp.yaml": RECIPE.replace("${destdir}", str(tmp_path / "dest"))})
    project = load_project(tiny, environ={})
    recipe = Resolver(project, load_board(project, "tiny-x86")).recipe("shellexp")
    script = recipe.get("steps")["install"]
    assert "${link%/*}" in script and "${y:-2.5.1}" in script and "${link}" in script
    subprocess.run(["/bin/sh", "-ec", script], check=True, env={"HOME": "/root", "PATH": "/usr/bin:/bin"})
    text = (tmp_path / "dest/out/result.txt").read_text()
    assert text == EXPECTED.replace("/build/dest", str(tmp_path / "dest"))

"""Fragment checking (kconfigcheck) and the Kconfig reader that explains a
dropped symbol (kconfigtree), on a small Kconfig tree written here in the
shapes Linux uses: sourced files with $(SRCARCH), menus and if blocks with
dependencies, help text, prompts with conditions, selects, macros."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildsys import kconfigcheck, kconfigtree
from buildsys.errors import BuildError, UserError
from conftest import write_tree

TREE = {
    "Kconfig": '''mainmenu "Test"
source "init/Kconfig"
source "net/Kconfig"
source "arch/$(SRCARCH)/Kconfig"
osource "missing/Kconfig"
''',
    "init/Kconfig": '''config EXPERT
\tbool "Expert"

menuconfig CGROUPS
\tbool "Control groups"
\thelp
\t  This help mentions
\t  config NOT_A_SYMBOL
\t  depends on NOTHING

if CGROUPS
config MEMCG
\tbool "Memory controller"
\tdepends on MMU && \\
\t\t   SWAP_OR_NOT
endif

config MMU
\tdef_bool y

config SWAP_OR_NOT
\tbool

config BLOCK
\tbool "Block layer" if EXPERT
\tdefault y

config MODULES
\tbool "Modules"

config DRIVER
\ttristate "A driver"

config NAME
\tstring "A name"
''',
    "net/Kconfig": '''config NET_ENABLED
\tbool "Net"

menu "Networking"
\tdepends on NET_ENABLED

config NETFILTER
\tbool "Netfilter"

config BRIDGE_NETFILTER
\tbool "Bridge netfilter"
\tdepends on NETFILTER && (BRIDGE || BRIDGE_ALT)
\tselect FORCED

config FORCED
\tbool "Forced by a select"

config CHECKED
\tbool "Compiler-dependent"
\tdepends on $(cc-option,-fstack-protector)
endmenu
''',
    "arch/x86/Kconfig": '''config X86_ONLY
\tbool "x86 only"
\tselect SWAP_OR_NOT
''',
}


@pytest.fixture
def tree(tmp_path):
    write_tree(tmp_path / "src", TREE)
    return tmp_path / "src"


def explain(tree_dir, config: str, fragment: str, tmp_path: Path):
    frag = tmp_path / "frag.cfg"
    frag.write_text(fragment)
    dropped = kconfigcheck.compare(config, [frag])
    kconfigcheck.explain(dropped, config, tree_dir, "x86")
    return dropped, kconfigcheck.format_report(dropped)


def test_tree_reads_sources_blocks_and_skips_help(tree):
    t = kconfigtree.load(tree, "x86")
    assert {"CGROUPS", "MEMCG", "BRIDGE_NETFILTER", "X86_ONLY", "CHECKED"} <= set(t.defs)
    assert "NOT_A_SYMBOL" not in t.defs                     # help text is not read as Kconfig
    assert kconfigtree.show_all(kconfigtree.conjuncts(t.depends("MEMCG"))) == "CGROUPS && MMU && SWAP_OR_NOT"
    assert "NET_ENABLED" in kconfigtree.show(t.depends("NETFILTER"))                  # the menu's depends
    assert [s.symbol for s in t.selected_by["SWAP_OR_NOT"]] == ["X86_ONLY"]
    assert t.defs["BLOCK"][0].prompt_if != [None]


def test_other_arch_dir_is_not_read(tree):
    assert "X86_ONLY" not in kconfigtree.load(tree, "arm64").defs


def test_expressions():
    values = {"A": "y", "B": "n", "M": "m", "S": "foo", "N": "12"}
    ev = lambda text: kconfigtree.tristate(kconfigtree.parse_expr(text), values)  # noqa: E731
    assert ev("A && !B") == 2 and ev("A && B") == 0 and ev("B || M") == 1 and ev("!M") == 1
    assert ev('S = "foo"') == 2 and ev("S != \"foo\"") == 0 and ev("N >= 10") == 2 and ev("N < 3") == 0
    assert ev("$(success,false) && A") == 2          # macros are never run: counted as met
    with pytest.raises(ValueError):
        kconfigtree.parse_expr("A && (B")


def test_unmet_dependency_chain_is_named(tree, tmp_path):
    config = "CONFIG_NET_ENABLED=y\n# CONFIG_NETFILTER is not set\n"
    dropped, report = explain(tree, config, "CONFIG_NET_ENABLED=y\nCONFIG_BRIDGE_NETFILTER=y\n", tmp_path)
    assert [d.wanted.symbol for d in dropped] == ["CONFIG_BRIDGE_NETFILTER"]
    assert f"{tmp_path / 'frag.cfg'}:2:1: CONFIG_BRIDGE_NETFILTER=y did not survive" in report
    assert "depends on: NET_ENABLED && NETFILTER && (BRIDGE || BRIDGE_ALT)" in report
    assert "unmet: NETFILTER  (now NETFILTER=n)" in report
    assert "set CONFIG_NETFILTER=y in a fragment" in report
    assert "unmet: BRIDGE || BRIDGE_ALT" in report
    assert "BRIDGE is not defined in this tree" in report


def test_a_dependency_the_fragment_sets_but_lost_too_is_not_advised_again(tree, tmp_path):
    _, report = explain(tree, "", "CONFIG_NETFILTER=y\nCONFIG_BRIDGE_NETFILTER=y\n", tmp_path)
    assert "NETFILTER: a fragment sets it, but it was dropped too" in report
    assert "NET_ENABLED: its dependencies are met; set CONFIG_NET_ENABLED=y in a fragment" in report


def test_no_prompt_hidden_prompt_wrong_type_and_unknown(tree, tmp_path):
    config = "CONFIG_CGROUPS=y\nCONFIG_MMU=y\nCONFIG_BLOCK=y\n"
    _, report = explain(tree, config, "CONFIG_SWAP_OR_NOT=y\n# CONFIG_BLOCK is not set\nCONFIG_DRIVER=m\n"
                        "CONFIG_NAME=y\nCONFIG_TYPO=y\nCONFIG_MEMCG=m\n", tmp_path)
    assert "SWAP_OR_NOT (init/Kconfig:" in report and "has no prompt" in report and "X86_ONLY" in report
    assert "prompt shows: EXPERT (now EXPERT=n)" in report
    assert "=m needs CONFIG_MODULES=y" in report
    assert "NAME is a string symbol" in report
    assert "TYPO is not defined by any Kconfig file" in report
    assert "MEMCG is a bool: it can be y, not m" in report


def test_forced_on_by_select(tree, tmp_path):
    config = "CONFIG_NET_ENABLED=y\nCONFIG_NETFILTER=y\nCONFIG_BRIDGE_NETFILTER=y\nCONFIG_FORCED=y\n"
    _, report = explain(tree, config, "# CONFIG_FORCED is not set\n", tmp_path)
    assert "forced on by `select` from: BRIDGE_NETFILTER (net/Kconfig:" in report


def test_compare_rules(tmp_path):
    a, b = tmp_path / "a.cfg", tmp_path / "b.cfg"
    a.write_text("CONFIG_X=y\n# CONFIG_GONE is not set\nCONFIG_S=\"v\"\n")
    b.write_text("# CONFIG_X is not set\n")       # a later fragment wins, as in the merge
    config = "# CONFIG_X is not set\nCONFIG_S=\"v\"\n"   # GONE absent: counts as not set
    assert kconfigcheck.compare(config, [a, b]) == []
    assert [d.wanted.symbol for d in kconfigcheck.compare(config, [b, a])] == ["CONFIG_X"]


def test_on_drop_directives(tmp_path):
    wanted = kconfigcheck.parse_fragment(
        "CONFIG_A=y\n# buildsys: on-drop=warn\nCONFIG_B=y\n#buildsys:on-drop = fail\nCONFIG_C=y\n", "f.cfg")
    assert [(w.symbol, w.lineno, w.mode) for w in wanted] == [
        ("CONFIG_A", 1, "fail"), ("CONFIG_B", 3, "warn"), ("CONFIG_C", 5, "fail")]
    with pytest.raises(UserError) as err:
        kconfigcheck.parse_fragment("CONFIG_A=y\n# buildsys: on-drop=ignore\n", "f.cfg")
    assert str(err.value).startswith("f.cfg:2:1: unknown on-drop mode 'ignore'")


class StepContext:
    """What enforce() uses of a step's context: a log, the source dir, $ARCH."""

    def __init__(self, src: Path, log: Path):
        self.recipe = type("Recipe", (), {"pn": "linux"})()
        self.paths = type("Paths", (), {"src": src})()
        self.env = {"ARCH": "x86"}
        self._log = log

    def log(self, text):
        with open(self._log, "a") as f:
            f.write(text + "\n")


def test_enforce_fails_on_fail_lines_and_warns_on_warn_lines(tree, tmp_path, capsys):
    frag = tmp_path / "containers.cfg"
    frag.write_text("CONFIG_NET_ENABLED=y\n# buildsys: on-drop=warn\nCONFIG_TYPO=y\n")
    ctx = StepContext(tree, tmp_path / "configure.log")
    kconfigcheck.enforce(ctx, "CONFIG_NET_ENABLED=y\n", [frag])       # warn only: the step goes on
    assert "containers.cfg:3:1: CONFIG_TYPO=y did not survive" in capsys.readouterr().err
    frag.write_text("CONFIG_NETFILTER=y\n# buildsys: on-drop=warn\nCONFIG_TYPO=y\n")
    with pytest.raises(BuildError) as err:
        kconfigcheck.enforce(ctx, "", [frag])
    assert "containers.cfg:1:1: CONFIG_NETFILTER=y" in str(err.value) and "NET_ENABLED" in str(err.value)
    assert "CONFIG_TYPO" not in str(err.value)            # the warn line is a warning, not the failure
    assert "CONFIG_TYPO" in (tmp_path / "configure.log").read_text()
    with kconfigcheck.report_only(), pytest.raises(BuildError) as short:   # `kconfig check`: still fails,
        kconfigcheck.enforce(ctx, "", [frag])                # so no stamp says configure succeeded,
    assert "\n" not in str(short.value)                      # but in one line: the command prints the report


def test_links_in_the_tree_are_not_followed(tree, tmp_path):
    """The source tree is step-writable: a Kconfig file replaced by a link
    (here to a file outside defining a symbol) is not read."""
    outside = tmp_path / "outside"
    outside.write_text("config PLANTED\n\tbool \"planted\"\n")
    os.unlink(tree / "arch/x86/Kconfig")
    os.symlink(outside, tree / "arch/x86/Kconfig")
    t = kconfigtree.load(tree, "x86")
    assert "PLANTED" not in t.defs and "CGROUPS" in t.defs


def test_source_loop_is_bounded(tmp_path):
    write_tree(tmp_path / "src", {"Kconfig": 'config A\n\tbool "a"\nsource "Kconfig"\n'})
    with pytest.raises(kconfigtree.TreeError, match="source"):
        kconfigtree.load(tmp_path / "src", "x86")


def test_macros_are_never_run(tree, tmp_path):
    marker = tmp_path / "ran"
    (tree / "init/Kconfig").write_text(f'config M\n\tbool "m"\n\tdepends on $(shell,touch {marker})\n')
    t = kconfigtree.load(tree, "x86")
    assert "$(shell,touch" in kconfigtree.show(t.depends("M")) and not marker.exists()


def test_busybox_style_tree(tmp_path):
    write_tree(tmp_path / "src", {"Config.in": 'mainmenu "bb"\nsource archival/Config.in\n',
                                  "archival/Config.in": 'config TAR\n\tbool "tar"\n\tdepends on FEATURE\n'})
    t = kconfigtree.load(tmp_path / "src", None)
    assert kconfigtree.show(t.depends("TAR")) == "FEATURE"

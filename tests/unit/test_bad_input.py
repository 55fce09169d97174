"""Bad input, through the real CLI: one line on stderr, `path:line:col: what is
wrong (hint)`, exit code 2, found when the files are loaded and the recipes
resolved -- before anything is fetched or built (no network, no sandbox here)."""
import re

import pytest

from conftest import run_buildsys, write_tree

SHA = "a5" * 32
PROJECT = "format: 1\ndefault_board: b\n"
BOARD = "format: 1\nname: b\narch: x86_64\ndefault_image: app\n"
APP = "format: 1\nname: app\nversion: '1.2.3'\nlicense: MIT\ntoolchain: false\n"


def make_project(tmp_path, files: dict[str, str]):
    tree = {"buildsys.yaml": PROJECT, "board-configs/b.yaml": BOARD, "recipes/app/app.yaml": APP}
    tree.update(files)
    return write_tree(tmp_path / "p", tree)


def one_line_error(root, *args, env=None) -> str:
    """Run the CLI; it must fail with exit 2 and exactly one line on stderr."""
    proc = run_buildsys("--project", root, "--build-dir", root.parent / "build", *args,
                        env={"BUILDSYS_OFFLINE": "1", **(env or {})})
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_at(line: str, root, rel: str, pos: tuple[int, int], message: str) -> None:
    prefix = f"{root / rel}:{pos[0]}:{pos[1]}: "
    assert line.startswith(prefix), f"{line!r} does not start with {prefix!r}"
    assert re.search(message, line[len(prefix):]), line


# (recipe text after APP, position of the mistake, message) -- each resolved by `graph app`
RECIPE_CASES = {
    # 1. tracebacks before
    "strip-not-an-int": (f"sources:\n  - url: https://x.org/a.tgz\n    sha256: {SHA}\n    strip: abc\n",
                         (9, 12), r"expected an integer, got 'abc'$"),
    "strip-negative": (f"sources:\n  - url: https://x.org/a.tgz\n    sha256: {SHA}\n    strip: -1\n",
                       (9, 12), r"expected an integer of at least 0, got -1$"),
    "class-is-a-list": ("class: [script]\n", (6, 8), r"expected a string, got a list$"),
    # 3. fetch-time errors before
    "missing-sha256": ("sources:\n  - url: https://x.org/a-${version}.tgz\n", (7, 5),
                       r"source https://x\.org/a-\$\{version\}\.tgz has no sha256 \(add 'sha256: <64 hex digits>'"),
    "malformed-sha256": ("sources:\n  - url: https://x.org/a.tgz\n    sha256: 12ab\n", (8, 13),
                         r"sha256 '12ab' is not 64 hex digits"),
    "upper-case-sha256": (f"sources:\n  - url: https://x.org/a.tgz\n    sha256: {SHA.upper()}\n", (8, 13),
                          r"sha256 '.*' has upper-case digits \(write it in lower case\)"),
    "missing-file": ("sources:\n  - file: files/nosuch.c\n", (7, 11),
                     r"file 'files/nosuch\.c' does not exist \(looked for .*recipes/app/files/nosuch\.c\)"),
    "bare-string-source": ("sources:\n  - https://x.org/a.tgz\n", (7, 5),
                           r"a source is a mapping, not 'https://x\.org/a\.tgz' \(write \{url: \.\.\., sha256"),
    "git-without-rev": ("sources:\n  - git: https://x.org/r.git\n", (7, 5), r"git source .* has no rev"),
    "git-branch-rev": ("sources:\n  - git: https://x.org/r.git\n    rev: main\n", (8, 10),
                       r"rev 'main' is not a full 40-hex commit id \(pin the commit"),
    "two-kinds": (f"sources:\n  - {{url: 'https://x.org/a', file: a.c, sha256: {SHA}}}\n", (7, 5),
                  r"a source names exactly one of url, git or file, not url and file$"),
    "unknown-source-key": (f"sources:\n  - url: https://x.org/a.tgz\n    sha256: {SHA}\n    strp: 1\n", (9, 5),
                           r"unknown key 'strp' in source \(did you mean 'strip'\?\)"),
    "missing-patch": ("patches: [files/fix.patch]\n", (6, 11), r"file 'files/fix\.patch' does not exist"),
    # 4. silently accepted before
    "step-typo": ("steps:\n  compil: make\n", (7, 3), r"unknown step 'compil' \(did you mean 'compile'\?\)$"),
    "unknown-variant": ("variants: [target, natve]\n", (6, 20),
                        r"unknown value 'natve' \(did you mean 'native'\?\)"),
    # 6. variables in steps
    "typo-variable-in-step": ("steps:\n  install: |\n    mkdir -p ${destdir}/x\n    cp a ${versoin}\n", (7, 12),
                              r"unknown variable '\$\{versoin\}' \(did you mean 'version'\?\)"),
    "operator-on-buildsys-variable": ("steps:\n  install: echo ${version%.*}\n", (7, 12),
                                      r"'\$\{version%\.\*\}' applies a shell operator to the buildsys variable "
                                      r"'version', which the shell does not have"),
    "unknown-shell-looking-variable": ("env: {X: '${link}'}\n", (6, 10),
                                       r"unknown variable '\$\{link\}' \(known: .*; a shell variable is "
                                       r"written \$link or \$\$\{link\}\)"),
    # 2. anchors and aliases
    "alias": ("depends: &d [x]\nrdepends: *d\n", (6, 10), r"YAML anchors \('&d'\) are not supported"),
}


@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_bad_recipe(tmp_path, case):
    text, pos, message = RECIPE_CASES[case]
    root = make_project(tmp_path, {"recipes/app/app.yaml": APP + text})
    line = one_line_error(root, "graph", "app")
    assert_at(line, root, "recipes/app/app.yaml", pos, message)


def test_billion_laughs_is_refused_at_once(tmp_path):
    lines = [APP.rstrip("\n"), "steps:", "  install: x", "permissions:", '  - &a0 ["lol", "lol", "lol", "lol"]']
    lines += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    root = make_project(tmp_path, {"recipes/app/app.yaml": "\n".join(lines) + "\n"})
    line = one_line_error(root, "graph", "app")   # 10**11 copies if expanded: the test would never end
    assert_at(line, root, "recipes/app/app.yaml", (9, 5), r"YAML anchors \('&a0'\) are not supported")


def test_an_alias_in_a_board_file(tmp_path):
    root = make_project(tmp_path, {"board-configs/b.yaml": BOARD + "tune: &t [-O2]\nsummary: *t\n"})
    line = one_line_error(root, "graph", "app")
    assert_at(line, root, "board-configs/b.yaml", (5, 7), r"YAML anchors \('&t'\) are not supported")


def test_a_recipe_that_is_not_resolved_is_not_checked(tmp_path):
    # validation is for the recipes the command resolves for the board
    root = make_project(tmp_path, {"recipes/other.yaml": "format: 1\nname: other\nsources: [{url: x}]\n"})
    run_buildsys("--project", root, "--build-dir", tmp_path / "build", "graph", "app", check=0)
    line = one_line_error(root, "graph", "other")
    assert_at(line, root, "recipes/other.yaml", (3, 11), r"source x has no sha256")


def test_checks_are_made_where_an_override_applies(tmp_path):
    text = APP + "overrides:\n  board:b:\n    sources+:\n      - file: files/gone.c\n"
    root = make_project(tmp_path, {"recipes/app/app.yaml": text})
    line = one_line_error(root, "graph", "app")
    assert_at(line, root, "recipes/app/app.yaml", (9, 15), r"file 'files/gone\.c' does not exist")


def test_a_missing_layer_directory(tmp_path):
    root = make_project(tmp_path, {"buildsys.yaml": PROJECT + "layers: [../meta-x, ../nosuch]\n",
                                   "../meta-x/layer.yaml": "format: 1\nname: x\n"})
    line = one_line_error(root, "layers")
    assert_at(line, root, "buildsys.yaml", (3, 21), r"no layer\.yaml in layer directory .*/nosuch")


def test_dangling_append(tmp_path):
    root = make_project(tmp_path, {"layers/x/layer.yaml": "format: 1\nname: x\n",
                                   "layers/x/recipes/ap.append.yaml": "format: 1\nlicense: MIT\n"})
    line = one_line_error(root, "layers")
    assert_at(line, root, "layers/x/recipes/ap.append.yaml", (1, 1),
              r"append for recipe 'ap', which no layer has \(did you mean 'app'\?\)")


def test_unknown_default_board(tmp_path):
    root = make_project(tmp_path, {"buildsys.yaml": "format: 1\ndefault_board: bb\n"})
    line = one_line_error(root, "graph", "app")
    assert_at(line, root, "buildsys.yaml", (2, 16), r"unknown board 'bb' \(did you mean 'b'\?\)")


def test_layer_depends_on_a_missing_layer(tmp_path):
    root = make_project(tmp_path, {"layers/x/layer.yaml": "format: 1\nname: x\ndepends: [core, bps]\n"})
    line = one_line_error(root, "layers")
    assert_at(line, root, "layers/x/layer.yaml", (3, 17),
              r"layer 'x' depends on layer 'bps', which is not in effect")


def test_non_utf8_recipe(tmp_path):
    root = make_project(tmp_path, {})
    (root / "recipes/app/app.yaml").write_bytes(APP.encode() + "summary: caf\u00e9 ".encode() + b"\xe9t\xe9\n")
    line = one_line_error(root, "graph", "app")
    assert_at(line, root, "recipes/app/app.yaml", (6, 15), r"not UTF-8 text: .*byte 0xe9")


# Board sections, checked when the board is loaded (any command that needs the board).
DISK = """disk:
  table: gpt
  partitions:
    - name: esp
      type: {esp}
      filesystem: vfat
      files: {{/EFI/BOOT/BOOTX64.EFI: "virtual/kernel:boot/bzImage"}}
    - {{name: root, type: root, filesystem: squashfs}}
"""
BOARD_CASES = {
    "gpt-type-typo": (DISK.format(esp="espp"), (9, 13),
                      r"partition esp: unknown partition type 'espp' \(known: esp, linux, root, or a GUID\)"),
    "filesystem-typo": (DISK.format(esp="esp").replace("vfat", "vfta"), (10, 19),
                        r"unknown value 'vfta' \(did you mean 'vfat'\?\)"),
    "partition-key-typo": (DISK.format(esp="esp").replace("files:", "fils:"), (11, 7),
                           r"unknown key 'fils' in partition \(did you mean 'files'\?\)"),
    "two-roots": (DISK.format(esp="esp").replace("vfat", "squashfs").replace("      files: {/EFI/BOOT/BOOTX64.EFI: "
                                                                              "\"virtual/kernel:boot/bzImage\"}\n", ""),
                  (8, 5), r"exactly one partition must hold the root"),
    "disk-not-a-mapping": ("disk: [a]\n", (5, 7), r"expected a mapping, got a list"),
    "bad-size": (DISK.format(esp="esp").replace("filesystem: vfat", "filesystem: vfat\n      size: 4 TiB"), (11, 13),
                 r"bad size '4 TiB' \(bytes, or e\.g\. 512KiB, 4MiB\)"),
    "qemu-variable": ("qemu: {binary: qemu-system-x86_64, args: [-drive, 'file=${imgae}']}\n", (5, 51),
                      r"unknown variable '\$\{imgae\}' \(did you mean 'image'\?\)"),
    "qemu-without-binary": ("qemu: {args: [-m, '256']}\n", (5, 7), r"missing required key 'binary' in qemu"),
    "boot-cmdline-variable": ("boot: {cmdline: 'root=${rot} ro'}\n", (5, 17),
                              r"unknown variable '\$\{rot\}' \(did you mean 'root'\?\)"),
    "boot-key-typo": ("boot: {cmdlne: x}\n", (5, 8), r"unknown key 'cmdlne' in boot \(did you mean 'cmdline'\?\)"),
    "arch-typo": (None, (3, 7), r"unknown value 'x86-64' \(did you mean 'x86_64'\?\)"),
    "toolchain-key-typo": ("toolchain: {prefx: aarch64-linux-gnu-}\n", (5, 13),
                           r"unknown key 'prefx' in toolchain \(did you mean 'prefix'\?\)"),
}


@pytest.mark.parametrize("case", sorted(BOARD_CASES))
def test_bad_board(tmp_path, case):
    extra, pos, message = BOARD_CASES[case]
    board = BOARD.replace("x86_64", "x86-64") if extra is None else BOARD + extra
    root = make_project(tmp_path, {"board-configs/b.yaml": board})
    line = one_line_error(root, "graph", "app")
    assert_at(line, root, "board-configs/b.yaml", pos, message)


def test_a_board_with_a_good_disk_loads(tmp_path):
    root = make_project(tmp_path, {"board-configs/b.yaml": BOARD + DISK.format(esp="esp") +
                                   "boot: {cmdline: 'console=${console} root=${root}'}\n"})
    run_buildsys("--project", root, "--build-dir", tmp_path / "build", "graph", "app", check=0)


def test_missing_cross_compiler_points_at_the_board_prefix(tmp_path):
    board = BOARD + "toolchain:\n  prefix: nosuch-linux-gnu-\npreferred_providers: {virtual/toolchain: tc}\n"
    root = make_project(tmp_path, {
        "board-configs/b.yaml": board,
        "recipes/tc.yaml": "format: 1\nname: tc\nversion: '1'\nclass: toolchain\nprovides: [virtual/toolchain]\n",
        "recipes/app/app.yaml": APP.replace("toolchain: false\n", "class: make\n"),
    })
    line = one_line_error(root, "build", "app")
    assert_at(line, root, "board-configs/b.yaml", (6, 11),
              r"compiler 'nosuch-linux-gnu-gcc' is not installed \(no nosuch-linux-gnu-gcc on this host: "
              r"check the prefix")

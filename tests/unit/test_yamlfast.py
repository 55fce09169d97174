"""The YAML fast path against libyaml: whatever it accepts, it must read
exactly as libyaml does (values, types, key order, every position); whatever
it is unsure of, it must leave to libyaml (return None)."""
import random
from pathlib import Path

import pytest

from buildsys import yamlfast, yamlio
from buildsys.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def fast(text):
    return yamlfast.parse(text, "x.yaml", yamlio.Map, yamlio.Seq, yamlio._fast_scalar, yamlio._FIRST)


def _same(a, b, where="top"):
    assert type(a) is type(b), where
    if isinstance(a, yamlio.Map):
        assert list(a) == list(b), where
        assert (a.path, a.pos, a.key_pos, a.val_pos) == (b.path, b.pos, b.key_pos, b.val_pos), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, yamlio.Seq):
        assert len(a) == len(b), where
        assert (a.path, a.pos, a.item_pos) == (b.path, b.pos, b.item_pos), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where   # nan
        assert repr(a) == repr(b), where


def check(text) -> bool:
    """True when the fast path took the text (and agreed with libyaml)."""
    got = fast(text)
    if got is None:
        return False
    try:
        want = yamlio._loads_libyaml(text, "x.yaml")
    except UserError as exc:
        pytest.fail(f"fast path accepted what libyaml rejects ({exc}):\n{text}")
    _same(got, want)
    return True


def _corpus() -> list[str]:
    files = [p for p in ROOT.rglob("*.yaml") if ".venv" not in p.parts and "build" not in p.parts]
    return [p.read_text(errors="replace") for p in sorted(files)]


RECIPE = """format: 1
name: pkg00012
version: '1.12.2'
license: MIT
summary: synthetic package 12   # a comment
depends: [pkg00003, pkg00007]
sources:
  - url: https://example.org/pkg00012/pkg00012-${version}.tar.gz
    sha256: 5cb84fc939f9b1c7e2f2fdc7a0ed09a1ad890db7e5ac1afebf00f29c7169cccd
class: make
make_args: [PREFIX=/usr, "CC=$CC", 'it''s', -3, 1.0, yes, ~]
env: {}
overrides:
  arch:aarch64:
    make_args+: [ARCH64=1]
  board:x86-virtio:
    depends:
    - a
    -   b
    steps:
      install: cp x ${destdir}/y
"""


def test_typical_recipes_take_the_fast_path():
    assert check(RECIPE)
    assert check("format: 1\nname: app\n")
    assert check("# leading comment\n\n  a: 1\n  b: [ ]\n")


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: >\n  text\n", "a: {X: '1'}\n",
    "a: b\n  continued\n", "a: 'multi\n  line'\n", "a: \"esc\\n\"\n", "a:\n", "a:\nb: 1\n", "a: 1\na: 2\n",
    "- a\n", "---\na: 1\n", "%YAML 1.1\n---\na: 1\n", "a: 1\n\tb: 2\n", "a: caf\u00e9\n", "a: [a, b,]\n",
    "a: [a,\n  b]\n", "a: b: c\n", "a: b:\n", "a: [a: b]\n", "a: [[1]]\n", "? a\n: b\n", "a: @x\n", "a: `x\n",
    "'a': 1\n", "a : 1\n", "a:1\n", "a: 'x'#c\n", "a: 'x' y\n", "a: - b\n", "a:\n  - - b\n", "a:\n  -\n",
    "a: =\n", "<<: 1\n", "a: 1\r\nb: 2\r\n", "", "# only a comment\n", "a: 1\n b: 2\n", "a:\n- x\n y: 1\n",
])
def test_anything_unusual_goes_to_libyaml(text):
    assert fast(text) is None
    # and the normal entry point still reads it (or raises libyaml's error)
    try:
        yamlio.loads(text, "x.yaml")
    except UserError:
        pass


def test_the_repository_yaml_reads_the_same():
    taken = sum(check(text) for text in _corpus())
    assert taken >= 5     # most of our own recipes are plain block YAML


_ALPHABET = list(" \n-:#'\"[]{},&*!|>%@`?~0123456789abcxyz.+/\\$") + ["  ", ": ", "- ", " #", "\n  ", "yes", "null"]


def test_thousands_of_mutated_recipes():
    """Random edits of real recipes: never a silent disagreement with libyaml."""
    rng = random.Random(1234)
    bases = [RECIPE] + [t for t in _corpus() if fast(t) is not None]
    taken = 0
    for _ in range(4000):
        text = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            cut = rng.choice((0, 0, 1, 2))
            text = text[:at] + rng.choice(_ALPHABET) + text[at + cut:]
        taken += check(text)
    assert taken > 400    # the fuzzing does exercise the fast path


def _has_anchor(text: str) -> bool:
    import yaml
    try:
        return any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in yaml.parse(text))
    except yaml.YAMLError:
        return False


def test_anchors_and_aliases_never_take_the_fast_path():
    """yamlio refuses anchors and aliases on the libyaml path: the fast path
    must never accept a text holding one (or it would bypass the check)."""
    rng = random.Random(99)
    bases = [RECIPE] + [t for t in _corpus() if fast(t) is not None]
    tokens = ["&a ", "*a", "&a", " *a", "[*a]", "&x1 [a]", "- *a", "- &a x"]
    anchored = 0
    for _ in range(3000):
        text = rng.choice(bases)
        at = rng.randrange(len(text) + 1)
        text = text[:at] + rng.choice(tokens) + text[at:]
        if _has_anchor(text):
            anchored += 1
            assert fast(text) is None, text
            with pytest.raises(UserError, match=r"^x\.yaml:\d+:\d+: YAML (anchors|aliases)"):
                yamlio.loads(text, "x.yaml")
    assert anchored > 100

"""yamlio: positions on every key and value, the same values as PyYAML's safe
loader, and one-line errors with exact positions."""
import pytest
import yaml

from buildsys import yamlio
from buildsys.errors import UserError

DOC = """format: 1
name: app
depends: [a, b]
sources:
  - url: https://x.org/a.tar.gz   # a comment
    sha256: 'abc'
overrides:
  arch:aarch64:
    env: {X: "1"}
"""


def test_positions_of_keys_values_and_items():
    data = yamlio.loads(DOC, "r.yaml")
    assert str(data.where()) == "r.yaml:1:1"
    assert str(data.where("name")) == "r.yaml:2:7"
    assert str(data.where("name", of_key=True)) == "r.yaml:2:1"
    assert str(data["depends"].where(1)) == "r.yaml:3:14"
    source = data["sources"][0]
    assert str(data["sources"].where(0)) == "r.yaml:5:5"
    assert str(source.where("sha256")) == "r.yaml:6:13"
    env = data["overrides"]["arch:aarch64"]["env"]
    assert str(env.where("X")) == "r.yaml:9:14"
    assert str(data.where("nosuch")) == "r.yaml:1:1"   # unknown key: the mapping itself


SCALARS = ["1", "1.0", "1.2.3", "0x1f", "0o17", "017", "1_000", "-3", "+4", ".5", ".inf", "-.Inf", ".nan",
           "yes", "No", "on", "OFF", "true", "False", "y", "n", "~", "null", "Null", "", "2024-01-01",
           "2024-01-01 10:00:00", "=", "name", "version", "format", "overrides", "o", "t", "pkg00001",
           "'1'", '"yes"', "'~'", "1:20", "190:20:30", "-", "0", "00", "0b101", "1e3", "1.0e+3", "nulls",
           "Yes please", "!!str 1", "!!int '7'", "! 1", "https://x.org/a?b=c"]


@pytest.mark.parametrize("scalar", SCALARS)
def test_values_are_exactly_pyyamls(scalar):
    """The fast tag resolver must type every scalar as the stock one does."""
    text = f"key: {scalar}\nlist: [{scalar}]\n"
    try:
        stock = yaml.load(text, Loader=yaml.CSafeLoader)  # the stock loader on the same parser
    except yaml.YAMLError:  # e.g. '=' has no constructor: we refuse it too, with a position
        with pytest.raises(UserError, match=r"^x\.yaml:\d+:\d+: "):
            yamlio.loads(text, "x.yaml")
        return
    ours = yamlio.loads(text, "x.yaml")
    assert dict(ours) == stock
    assert [type(v) for v in ours["list"]] == [type(v) for v in stock["list"]]
    assert type(ours["key"]) is type(stock["key"])


@pytest.mark.parametrize("text, message", [
    ("a: 1\na: 2\n", "x.yaml:2:1: duplicate key 'a' (first set at line 1)"),
    ("a: {b: 1}\nc:\n  <<: {b: 2}\n", "x.yaml:3:3: YAML merge keys ('<<') are not supported"),
    ("[a]: 1\n", "x.yaml:1:1: a mapping key must be a plain value"),
    ("a: [1, 2\n", "x.yaml:2:1: YAML syntax error: did not find expected ',' or ']'"),
    ("a: !!int abc\n", "x.yaml:1:4: bad value: invalid literal for int() with base 10: 'abc'"),
])
def test_errors_name_the_exact_position(text, message):
    with pytest.raises(UserError) as err:
        yamlio.loads(text, "x.yaml")
    assert str(err.value) == message


def test_file_errors(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n")
    (tmp_path / "latin1.yaml").write_bytes(b"a: \xff\n")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(UserError, match=r"list\.yaml:1:1: the top level must be a mapping"):
        yamlio.load(tmp_path / "list.yaml")
    with pytest.raises(UserError, match=r"latin1\.yaml:1:4: not UTF-8 text"):
        yamlio.load(tmp_path / "latin1.yaml")
    with pytest.raises(UserError, match=r"missing\.yaml: cannot read"):
        yamlio.load(tmp_path / "missing.yaml")
    empty = yamlio.load(tmp_path / "empty.yaml")
    assert empty == {} and str(empty.where()).endswith("empty.yaml:1:1")

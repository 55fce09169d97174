"""${...} expansion: values, copies, and the position of an unknown variable."""
import pytest

from buildsys import yamlio
from buildsys.errors import UserError, Where
from buildsys.expand import expand_value
from buildsys.model import FileRef, SourceEntry
from buildsys.schema import suggest

VARS = {"name": "app", "version": "1.2", "destdir": "/build/dest"}


W = Where("w.yaml", 9, 9)


def expand(value, where=W):
    return expand_value(value, VARS, where, suggest)


def test_strings_lists_maps_and_files():
    assert expand("app-${version}") == "app-1.2"
    assert expand("cp x ${destdir} ${CC} ${Foo_1}") == "cp x /build/dest ${CC} ${Foo_1}"
    data = yamlio.loads("l: [a, 'b-${name}', 3]\nm: {A: x, B: '${version}'}\n", "r.yaml")
    assert expand(data["l"]) == ["a", "b-app", 3]
    assert expand(data["m"]) == {"A": "x", "B": "1.2"}
    ref = FileRef("files/${name}.cfg", "/base", "/base", Where("r.yaml", 1, 1))
    assert expand(ref) == FileRef("files/app.cfg", "/base", "/base", Where("r.yaml", 1, 1))
    source = SourceEntry(url="https://x/${name}-${version}.tgz", sha256="ab", where=Where("r.yaml", 4, 5))
    [out] = expand([source])
    assert out == SourceEntry(url="https://x/app-1.2.tgz", sha256="ab") and out.where == Where("r.yaml", 4, 5)
    assert dict(out) == {"url": "https://x/app-1.2.tgz", "sha256": "ab"}    # no position among the values
    plain = SourceEntry(url="https://x/a.tgz", sha256="ab")
    assert expand(plain) is plain


def test_lists_and_maps_come_back_as_new_plain_containers():
    data = yamlio.loads("l: [a, b]\nm: {A: x}\n", "r.yaml")
    for value in (data["l"], data["m"]):
        out = expand(value)
        assert out == value and out is not value and type(out) in (list, dict)


@pytest.mark.parametrize("text, key, position", [
    ("v: 'x ${nme}'\n", "v", "r.yaml:1:4"),            # a string: the value's own position
    ("v: [a, 'x${nme}']\n", "v", "r.yaml:1:8"),         # a list item: the item
    ("v: {A: a, B: 'x${nme}'}\n", "v", "r.yaml:1:14"),  # a map value: the value
])
def test_unknown_variable_names_the_exact_position(text, key, position):
    data = yamlio.loads(text, "r.yaml")
    with pytest.raises(UserError) as err:
        expand(data[key], lambda: data.where(key))
    assert str(err.value) == f"{position}: unknown variable '${{nme}}' (did you mean 'name'?)"


def test_position_callable_is_only_called_for_an_error():
    def where():
        raise AssertionError("position worked out without an error")

    assert expand(["a", "b"], where) == ["a", "b"]
    assert expand("${name}", where) == "app"


@pytest.mark.parametrize("text, want", [
    ("${link%/*}", "${link%/*}"),                 # shell operators: the shell's
    ("${x:-d} ${x:=d} ${x:+d} ${x:?e}", "${x:-d} ${x:=d} ${x:+d} ${x:?e}"),
    ("${#x} ${@} ${*} ${#} ${1} ${10} ${!x} ${a[1]}", "${#x} ${@} ${*} ${#} ${1} ${10} ${!x} ${a[1]}"),
    ("${x/a/b} ${x##*/} ${x%%.*}", "${x/a/b} ${x##*/} ${x%%.*}"),
    ("${y:-${version}}", "${y:-1.2}"),             # ours inside the shell's
    ("${CC} ${Foo_1} $name $version", "${CC} ${Foo_1} $name $version"),
    ("$${link} $${version} $${x:-${name}}", "${link} ${version} ${x:-${name}}"),   # $${: literal
    ("${S%/*}", "${S%/*}"),                       # upper-case: the environment has it
    ("a ${ unterminated", "a ${ unterminated"),
    ("${name}${version}", "app1.2"),
])
def test_shell_forms_are_left_to_the_shell(text, want):
    assert expand(text) == want


@pytest.mark.parametrize("text, message", [
    ("${versoin}", "unknown variable '${versoin}' (did you mean 'version'?)"),
    ("${link}", "unknown variable '${link}' (known: destdir, name, version; a shell variable is written $link "
                "or $${link})"),
    ("${x:-${versoin}}", "unknown variable '${versoin}'"),
    ("${version%.*}", "'${version%.*}' applies a shell operator to the buildsys variable 'version'"),
    ("${#name}", "'${#name}' applies a shell operator to the buildsys variable 'name'"),
])
def test_mistakes_are_errors(text, message):
    with pytest.raises(UserError) as err:
        expand(text)
    assert str(err.value).startswith(f"w.yaml:9:9: {message}"), str(err.value)

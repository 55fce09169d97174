"""Typed settings (schema.py): one parse per type, the tables of every file
kind and class, and the generated "Class parameters" section of the docs."""
import copy
from pathlib import Path

import pytest

from buildsys import schema, yamlio
from buildsys.classes import BuildClass, _load_all
from buildsys.errors import UserError, Where
from buildsys.model import FileRef
from buildsys.signature import canonical

ROOT = Path(__file__).resolve().parents[2]
W = Where("r.yaml", 3, 7)
SHA = "a5" * 32


def test_docs_class_parameters_are_generated_from_the_tables():
    text = (ROOT / "docs/formats.md").read_text()
    start, end = text.index(schema.DOC_BEGIN), text.index(schema.DOC_END) + len(schema.DOC_END)
    assert text[start:end] == schema.class_params_doc(), \
        "docs/formats.md is out of date: run `.venv/bin/python -m buildsys.schema docs/formats.md`"


def test_every_key_of_every_table_is_a_typed_setting():
    _load_all()
    tables = [schema.RECIPE_KEYS, schema.SOURCE_KEYS, schema.LAYER_KEYS, schema.PROJECT_KEYS, schema.BOARD_KEYS,
              schema.DISK_KEYS, schema.PARTITION_KEYS, schema.QEMU_KEYS, schema.BOOT_KEYS]
    tables += [cls.params for cls in BuildClass.registry.values()]
    for table in tables:
        for key, setting in table.items():
            assert isinstance(setting, schema.Setting), key
            assert isinstance(setting.type_doc(), str) and setting.default_doc()
            if setting.default is not None:   # the default is a valid value of the type
                setting.parse(copy.deepcopy(setting.default), W, "/layer")


@pytest.mark.parametrize("setting, value, want", [
    (schema.Str(), "x", "x"),
    (schema.Str(), 1.5, "1.5"),               # `version: 1.5`
    (schema.Int(), 3, 3),
    (schema.Bool(), False, False),
    (schema.StrList(), ["a", 2], ["a", "2"]),
    (schema.StrMap(), {"A": 1}, {"A": "1"}),
    (schema.Size(), "4MiB", "4MiB"),          # checked, kept as written
    (schema.Any(), {"x": [1]}, {"x": [1]}),
])
def test_parse_good_values(setting, value, want):
    assert setting.parse(value, W) == want


@pytest.mark.parametrize("setting, value, message", [
    (schema.Str(), ["a"], "expected a string, got a list"),
    (schema.Str(choices=("gpt", "mbr")), "gtp", "unknown value 'gtp' (did you mean 'gpt'?)"),
    (schema.Int(), True, "expected an integer, got true"),
    (schema.Int(), "7", "expected an integer, got '7'"),
    (schema.Int(minimum=0), -1, "expected an integer of at least 0, got -1"),
    (schema.Bool(), "yes please", "expected true or false, got 'yes please'"),
    (schema.StrList(), "a", "expected a list, got 'a'"),
    (schema.StrList(), [{"a": 1}], "expected a list of strings, item 1 is a mapping"),
    (schema.StrMap(), {"A": [1]}, "expected a mapping of strings, 'A' is a list"),
    (schema.Steps(), {"instal": "x"}, "unknown step 'instal' (did you mean 'install'?)"),
    (schema.Size(), "big", "bad size 'big'"),
    (schema.Str(variables=("root",)), "root=${rot}", "unknown variable '${rot}' (did you mean 'root'?)"),
])
def test_parse_bad_values(setting, value, message):
    with pytest.raises(UserError) as err:
        setting.parse(value, W)
    assert str(err.value).startswith(f"r.yaml:3:7: {message}"), str(err.value)


def test_list_items_are_reported_at_their_own_position():
    data = yamlio.loads("depends: [a, b, [c]]\n", "r.yaml")
    with pytest.raises(UserError) as err:
        schema.StrList().parse(data["depends"], data.where("depends"))
    assert str(err.value) == "r.yaml:1:17: expected a list of strings, item 3 is a list"


def test_files_become_filerefs_relative_to_the_yaml_file():
    data = yamlio.loads("patches: [a.patch, sub/b.patch]\n", "/l/recipes/x/x.yaml")
    refs = schema.Files().parse(data["patches"], data.where("patches"), "/l")
    assert [r.path for r in refs] == [Path("/l/recipes/x/a.patch"), Path("/l/recipes/x/sub/b.patch")]
    assert str(refs[1].where) == "/l/recipes/x/x.yaml:1:20"
    assert schema.File().parse("c.cfg", W, "/l") == FileRef("c.cfg", ".", "/l", W)


def test_sources_are_entries_with_their_position_beside_the_values():
    data = yamlio.loads(f"sources:\n  - url: https://x/a.tgz\n    sha256: {SHA}\n    strip: 2\n"
                        "  - git: https://x/r.git\n    rev: " + "0a" * 20 + "\n  - {file: f.c, dest: sub}\n",
                        "/l/r.yaml")
    url, git, file = schema.Sources().parse(data["sources"], data.where("sources"), "/l")
    assert dict(url) == {"url": "https://x/a.tgz", "sha256": SHA, "strip": 2}
    assert str(url.where) == "/l/r.yaml:2:5" and "_where" not in url
    assert (git.git, git.rev, git.sha256) == ("https://x/r.git", "0a" * 20, None)
    assert file.file == FileRef("f.c", "/l", "/l", W) and file["dest"] == "sub" and "url" not in file
    # signatures and package metadata see the keys as written, as before
    assert canonical(url) == {"url": "https://x/a.tgz", "sha256": SHA, "strip": 2}


def test_an_all_digit_sha256_is_a_string():
    data = yamlio.loads("sources: [{url: 'https://x/a', sha256: " + "1" * 64 + "}]\n", "r.yaml")
    [entry] = schema.Sources().parse(data["sources"], data.where("sources"))
    assert entry.sha256 == "1" * 64


def test_removal_values():
    # `env-: [A]` names keys; `patches-: [x.patch]` names files as written
    assert schema.StrMap().parse_removal(["A", "B"], W) == ["A", "B"]
    assert schema.StrMap().parse_removal("A", W) == ["A"]
    assert schema.Files().parse_removal(["x.patch"], W) == ["x.patch"]


def test_the_former_param_spelling_still_works():
    from buildsys.classes.base import Param

    setting = Param("list", ["install"], "targets")
    assert isinstance(setting, schema.StrList) and setting.default == ["install"] and setting.doc == "targets"

"""buildsys recipe new: names from URLs, build system detection, license guessing, dependency
mapping and the recipe text, on small trees made here."""
import hashlib

import pytest
import yaml

from buildsys.fetch.debian import _name_key, _names_match
from buildsys.recipetool import PkgCheck, map_dependencies
from buildsys.recipetool.detect import detect
from buildsys.recipetool.license import guess, identify
from buildsys.recipetool.origin import Origin, _template, is_git, recipe_name, split_name
from buildsys.recipetool.write import render, scalar
from conftest import write_tree

GPL2_HEAD = """            GNU GENERAL PUBLIC LICENSE
               Version 2, June 1991

 Copyright (C) 1989, 1991 Free Software Foundation, Inc.
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.
"""
GPL3_HEAD = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007
 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
"""
LGPL21_HEAD = """                  GNU LESSER GENERAL PUBLIC LICENSE
                       Version 2.1, February 1999
 [This is the first released version of the Lesser GPL.  It also counts
 as the successor of the GNU Library Public License, version 2, hence
 the version number 2.1.]  The GNU General Public License, version 2, June 1991...
"""
MIT = """Copyright (c) 2020 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction...
"""
BSD2 = """Copyright (c) 2020 Someone
Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:
1. Redistributions of source code must retain the above copyright notice.
2. Redistributions in binary form must reproduce the above copyright notice.
"""
BSD3 = BSD2 + """3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.
"""
ISC = """Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.
"""
ZERO_BSD = """Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
"""
APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
"""
ZLIB = """  This software is provided 'as-is', without any express or implied
  warranty.  In no event will the authors be held liable for any damages
  1. The origin of this software must not be misrepresented; you must not
"""


# --- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("filename, expected", [
    ("hello-2.10.tar.gz", ("hello", "2.10")),
    ("cJSON-1.7.18.tar.xz", ("cJSON", "1.7.18")),
    ("libfoo_0.3.1.tgz", ("libfoo", "0.3.1")),
    ("json-c-0.18-20240915.tar.gz", ("json-c", "0.18-20240915")),
    ("tool-v1.2.zip", ("tool", "1.2")),
    ("noversion.tar.gz", ("noversion", None)),
    ("hello_2.10.orig.tar.gz", ("hello", "2.10")),
])
def test_split_name(filename, expected):
    assert split_name(filename) == expected


def test_recipe_name_and_url_template():
    assert recipe_name("cJSON") == "cjson"
    assert recipe_name("Foo Bar_baz") == "foo-bar-baz"
    assert _template("https://h.example/1.2/foo-1.2.tar.gz", "1.2") == "https://h.example/${version}/foo-${version}.tar.gz"
    assert _template("https://1.2.3.4/foo-1.2.tar.gz", "1.2") == "https://1.2.3.4/foo-${version}.tar.gz"


@pytest.mark.parametrize("project, package, match", [
    ("inih", "libinih", True), ("cJSON", "cjson", True), ("libuv", "libuv1", True), ("libpng", "libpng1.6", True),
    ("xz", "xz-utils", True), ("iperf", "iperf3", True), ("hello", "hello", True),
    ("pcre2", "pcre3", False), ("xz", "xzip", False), ("zlib", "zlib-ng", False),
])
def test_debian_package_names_match_upstream_names(project, package, match):
    assert _names_match(_name_key(project), package) is match


def test_is_git(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert is_git(str(repo)) and is_git("git+https://example.org/x") and is_git("https://example.org/x.git")
    assert not is_git("https://example.org/x-1.0.tar.gz") and not is_git(str(tmp_path))


# --- build systems ---------------------------------------------------------------------------
def test_meson_wins_over_cmake_and_autotools_and_reads_dependencies_and_options(tmp_path):
    write_tree(tmp_path, {
        "meson.build": "project('x', 'c', 'cpp')\n"
                       "z = dependency('zlib', version: '>=1.2')\n"
                       "s = dependency('libsystemd', required: get_option('systemd'))\n"
                       "o = dependency('libfoo', required : false)\n"
                       "t = dependency('threads')\n"
                       "n = dependency('glib-2.0', native: true)\n",
        "meson_options.txt": "option('systemd', type: 'feature', value: 'auto', description: 'use systemd')\n"
                             "option('docs', type : 'boolean', value : false)\n",
        "CMakeLists.txt": "project(x)\n", "configure": "#!/bin/sh\n",
    })
    det = detect(tmp_path)
    assert det.cls == "meson"
    assert [(c.module, c.required) for c in det.checks] == [("zlib", True), ("libsystemd", None), ("libfoo", False)]
    assert det.options[0] == "-Dsystemd=...  (feature, default auto): use systemd"
    assert det.options[1].startswith("-Ddocs=...  (boolean, default false)")
    assert any("C++" in note for note in det.notes)


def test_cmake_pkg_check_modules_find_package_and_options(tmp_path):
    write_tree(tmp_path, {"CMakeLists.txt": (
        "cmake_minimum_required(VERSION 3.10)\nproject(x VERSION 1.0 LANGUAGES C)\n"
        "find_package(PkgConfig REQUIRED)\n"
        "pkg_check_modules(DEPS REQUIRED IMPORTED_TARGET libgreet>=1.0 \"zlib\")\n"
        "find_package(ZLIB REQUIRED)\nfind_package(Frobnicator)\n"
        'option(WITH_TESTS "Build the tests" OFF)\n'), "Makefile": "all:\n"})
    det = detect(tmp_path)
    assert det.cls == "cmake"
    assert [(c.module, c.required) for c in det.checks] == [("libgreet", True), ("zlib", True)]
    assert det.options == ["-DWITH_TESTS=ON|OFF  (default OFF): Build the tests"]
    assert det.todos == ["TODO: CMakeLists.txt has find_package(Frobnicator): find or write the recipe that installs "
                         "its CMake package, and add it to depends"]
    assert not any("C++" in note for note in det.notes)


def test_autotools_with_configure_builds_in_tree_and_lists_options(tmp_path):
    write_tree(tmp_path, {
        "configure": "#!/bin/sh\ncat <<_ACEOF\nOptional Features:\n"
                     "  --disable-option-checking  ignore unrecognized --enable/--with options\n"
                     "  --enable-silent-rules   less verbose build output (undo: \"make V=1\")\n"
                     "  --disable-nls           do not use Native Language Support\n"
                     "  --with-readline         use readline\n_ACEOF\n",
        "configure.ac": "AC_INIT([x],[1])\nPKG_CHECK_MODULES([FOO], [libgreet >= 1.0 zlib])\n"
                        "AC_CHECK_LIB([m], [sin])\nAC_SEARCH_LIBS([tgetent], [tinfo ncurses])\n",
        "Makefile.in": "all:\n",
    })
    (tmp_path / "configure").chmod(0o755)
    det = detect(tmp_path)
    assert det.cls == "autotools" and det.params == {"out_of_tree": False}
    assert det.options == ["--disable-nls: do not use Native Language Support", "--with-readline: use readline"]
    assert [(c.module, c.library) for c in det.checks] == [
        ("libgreet", False), ("zlib", False), ("tinfo", True), ("ncurses", True)]      # not libm: the C library


def test_autotools_without_configure_needs_autoreconf_and_says_so(tmp_path):
    write_tree(tmp_path, {"configure.ac": "AC_INIT([x],[1])\n", "Makefile.am": "bin_PROGRAMS = x\n"})
    det = detect(tmp_path)
    assert det.cls == "autotools" and det.params["autoreconf"] is True
    assert any("autoreconf" in note and "autoconf" in note for note in det.notes)


def test_kconfig_then_plain_make_then_script(tmp_path):
    write_tree(tmp_path / "k", {"Kconfig": "config FOO\n\tbool \"foo\"\n",
                                "Makefile": "%config:\n\t$(MAKE) -f scripts/kconfig $@\ndefconfig:\n"})
    det = detect(tmp_path / "k")
    assert det.cls == "kconfig" and det.params == {"defconfig": "defconfig"}
    write_tree(tmp_path / "m", {"Makefile": "PREFIX ?= /usr/local\nall: x\nx: x.c\n\t$(CC) `pkg-config --cflags "
                                            "--libs libgreet` -o x x.c\n"})
    det = detect(tmp_path / "m")
    assert det.cls == "make" and det.params == {"make_args": ["PREFIX=/usr"]}
    assert [c.module for c in det.checks] == ["libgreet"]
    assert any("no 'install' target" in note for note in det.notes)
    # lz4: the top Makefile delegates; the prefix is the sub-Makefile's, install shares a rule
    write_tree(tmp_path / "d", {"Makefile": "all:\n\t$(MAKE) -C lib\ninstall uninstall:\n\t$(MAKE) -C lib $@\n",
                                "lib/Makefile": "prefix ?= /usr/local\ninstall:\n\tcp x $(DESTDIR)$(prefix)\n"})
    det = detect(tmp_path / "d")
    assert det.cls == "make" and det.params == {"make_args": ["prefix=/usr"]} and not det.notes
    write_tree(tmp_path / "s", {"main.c": "int main(void){return 0;}\n"})
    assert detect(tmp_path / "s").cls == "script-cc"


# --- licenses --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, spdx", [
    (GPL2_HEAD, "GPL-2.0"), (GPL3_HEAD, "GPL-3.0"), (LGPL21_HEAD, "LGPL-2.1"), (MIT, "MIT"), (BSD2, "BSD-2-Clause"),
    (BSD3, "BSD-3-Clause"), (ISC, "ISC"), (ZERO_BSD, "0BSD"), (APACHE, "Apache-2.0"), (ZLIB, "Zlib"),
    ("All rights reserved. Do what you like.\n", None),
    # busybox: a note first, and the GPL's preamble names the Library GPL in passing
    ("--- A note on GPL versions\nBusyBox is distributed under version 2 of the General Public License.\n"
     + GPL2_HEAD + "Some other Free Software Foundation software is covered by\nthe GNU Library General Public "
     "License instead.\n", "GPL-2.0"),
    ("GNU AFFERO GENERAL PUBLIC LICENSE\n Version 3, 19 November 2007\n", "AGPL-3.0"),
])
def test_identify(text, spdx):
    assert identify(text) == spdx


def test_gpl_or_later_from_a_source_notice(tmp_path):
    write_tree(tmp_path, {"COPYING": GPL2_HEAD, "src/main.c": (
        "/* This program is free software; you can redistribute it and/or modify\n"
        " * it under the terms of the GNU General Public License as published by\n"
        " * the Free Software Foundation; either version 2 of the License, or\n"
        " * (at your option) any later version. */\n")})
    result = guess(tmp_path)
    assert result.expression == "GPL-2.0-or-later"
    assert [(f.path, f.sha256) for f in result.files] == [
        ("COPYING", hashlib.sha256(GPL2_HEAD.encode()).hexdigest())]


def test_gpl_only_without_such_a_notice_and_several_licenses(tmp_path):
    write_tree(tmp_path, {"COPYING": GPL2_HEAD, "LICENSE.MIT": MIT, "src/main.c": "int main;\n",
                          "COPYING.c": "not a license file\n"})
    result = guess(tmp_path)
    assert result.expression == "GPL-2.0-only AND MIT"
    assert [f.path for f in result.files] == ["COPYING", "LICENSE.MIT"]
    assert any("several licenses" in note for note in result.notes)


def test_license_files_one_directory_down(tmp_path):
    write_tree(tmp_path, {"LICENSE": "lib/ is BSD, the rest GPL\n", "lib/LICENSE": BSD2, "programs/COPYING": GPL2_HEAD,
                          "deep/er/COPYING": MIT, ".git/COPYING": MIT, "debian/copyright": "Format: ...\n"})
    result = guess(tmp_path)
    assert [(f.path, f.spdx) for f in result.files] == [
        ("LICENSE", None), ("lib/LICENSE", "BSD-2-Clause"), ("programs/COPYING", "GPL-2.0")]
    assert result.expression == "BSD-2-Clause AND GPL-2.0-only"


def test_unknown_and_missing_license(tmp_path):
    write_tree(tmp_path / "a", {"LICENSE": "Ask me.\n"})
    result = guess(tmp_path / "a")
    assert result.expression == "NOASSERTION" and result.files[0].spdx is None
    write_tree(tmp_path / "b", {"README": "hi\n"})
    result = guess(tmp_path / "b")
    assert result.expression == "NOASSERTION" and not result.files and result.notes


def test_reuse_licenses_dir_and_spdx_tag(tmp_path):
    write_tree(tmp_path, {"LICENSES/custom.txt": "SPDX-License-Identifier: BSD-2-Clause-Patent\nblah\n"})
    assert guess(tmp_path).expression == "BSD-2-Clause-Patent"


# --- dependencies and the recipe text ----------------------------------------------------------
def test_map_dependencies():
    providers = {"zlib": "zlib", "xz": "xz", "libgreet": "libgreet", "virtual/libc": "libc"}
    checks = [PkgCheck("zlib", True, "meson.build"), PkgCheck("liblzma", None, "configure.ac"),
              PkgCheck("greet", True, "meson.build"), PkgCheck("libfoo", True, "meson.build"),
              PkgCheck("libbar", False, "meson.build"), PkgCheck("zlib", True, "again")]
    checks += [PkgCheck("z", None, "configure.ac", library=True), PkgCheck("ncurses", None, "x", library=True),
               PkgCheck("tinfo", None, "x", library=True)]
    depends, comments = map_dependencies(checks, providers, "me")
    assert depends == ["zlib", "xz", "libgreet"]
    assert comments == ["TODO: needs libfoo (pkg-config 'libfoo', meson.build), no recipe provides it",
                        "optional: libbar (pkg-config 'libbar', meson.build): no recipe provides it, built without it",
                        "TODO: x checks for -lncurses -ltinfo, which no recipe provides: the build may need one of "
                        "them"]


def test_render_loads_as_yaml_with_string_versions(tmp_path):
    write_tree(tmp_path, {"meson.build": "project('x', 'c')\n", "meson_options.txt":
                          "option('a', type: 'boolean', value: true)\n", "COPYING": MIT})
    origin = Origin("inih", "59", {"url": "https://example.org/r${version}.tar.gz", "sha256": "a" * 64,
                                   "name": "${name}-${version}.tar.gz"}, tmp_path / "x.tar.gz",
                    comments=["a comment " * 20])
    text = render("inih", origin, detect(tmp_path), guess(tmp_path), ["zlib"], ["TODO: needs x"])
    data = yaml.safe_load(text)
    assert data["version"] == "59" and data["license"] == "MIT" and data["class"] == "meson"
    assert data["sources"] == [origin.entry]
    assert data["depends"] == ["zlib"] and data["rdepends"] == ["virtual/libc"]
    assert "#   -Da=...  (boolean, default true)" in text and "# TODO: needs x" in text
    assert max(len(line) for line in text.splitlines() if line.lstrip().startswith("# a comment")) <= 100
    assert [scalar(v) for v in ("1.10", "on", "a: b", "x #y", "plain-1.0")] == [
        '"1.10"', '"on"', '"a: b"', '"x #y"', "plain-1.0"]


# --- the layer that gets the recipe -----------------------------------------------------------
def test_choose_layer(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from buildsys.errors import UserError
    from buildsys.model import GitPin, Layer
    from buildsys.recipetool import choose_layer

    core = Layer("core", 0, tmp_path)
    mine = Layer("mine", 10, tmp_path / "layers/mine")
    pinned = Layer("theirs", 10, tmp_path / "cache/theirs", git=GitPin("https://example.org/l.git", "a" * 40))
    for layer in (mine, pinned):
        layer.path.mkdir(parents=True)
    ws = SimpleNamespace(project=SimpleNamespace(root=tmp_path, layers=[core, mine, pinned]))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="several layers"):
        choose_layer(ws, None)
    assert choose_layer(ws, "mine") == (mine.path, "mine", True)
    assert choose_layer(ws, str(tmp_path)) == (tmp_path, "core", True)
    with pytest.raises(UserError, match="pinned from git"):
        choose_layer(ws, "theirs")
    (tmp_path / "other").mkdir()
    (tmp_path / "other/layer.yaml").write_text("format: 1\nname: other\n")
    assert choose_layer(ws, str(tmp_path / "other")) == (tmp_path / "other", str(tmp_path / "other"), False)
    monkeypatch.chdir(mine.path)
    assert choose_layer(ws, None)[1] == "mine"
    monkeypatch.chdir(pinned.path)
    with pytest.raises(UserError, match="pinned from git"):
        choose_layer(ws, None)
    ws.project.layers = [core]
    monkeypatch.chdir(tmp_path)
    assert choose_layer(ws, None) == (tmp_path, "core", True)

"""`buildsys layer create DIR`: a minimal layer that loads and builds as written.

What it writes (``<name>`` is the layer's name)::

    DIR/layer.yaml
    DIR/README.md
    DIR/recipes/<name>-hello/<name>-hello.yaml     a C program, class make
    DIR/recipes/<name>-hello/files/hello.c
    DIR/recipes/<name>-hello/files/Makefile
    DIR/recipes/images/image-base.append.yaml     adds <name>-hello to image-base

The example recipe carries the layer's name so that two new layers, or a
layer and the program of the tutorial, never both define ``hello``.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import schema
from .errors import UserError, Where
from .fileio import atomic_write

DEFAULT_PRIORITY = 10


def check_name(name: str, where: Where) -> None:
    if not re.fullmatch(schema.LAYER_NAME, name):
        raise UserError(f"'{name}' is not a layer name", where,
                        hint="letters, digits, '.', '_', '+', '-'; a letter or digit first")
    if name == "core":
        raise UserError("the layer name 'core' is reserved for the project's own recipes", where)


def files(name: str, priority: int) -> dict[str, str]:
    """The layer's files by path relative to DIR."""
    hello = f"{name}-hello"
    return {
        "layer.yaml": f"""\
format: 1
name: {name}
summary: {name} - say here what this layer adds
# Higher wins when two layers have a recipe or board of the same name; the
# core layer (the project) is 0.
priority: {priority}
depends: [core]
""",
        f"recipes/{hello}/{hello}.yaml": f"""\
format: 1
# An example: a C program built from the files next to this recipe by its
# own Makefile (class make runs `make`, then `make install DESTDIR=...`,
# with CC, CFLAGS and LDFLAGS set for the board).  Replace it with yours, or
# make one from an upstream release with `buildsys recipe new URL`.
name: {hello}
version: "1.0"
license: MIT
summary: Prints a greeting - the example program of layer {name}
sources:
  - file: files/hello.c
  - file: files/Makefile
class: make
""",
        f"recipes/{hello}/files/hello.c": f"""\
#include <stdio.h>

int main(void)
{{
    puts("Hello from layer {name}!");
    return 0;
}}
""",
        f"recipes/{hello}/files/Makefile": f"""\
# CC, CFLAGS, CPPFLAGS and LDFLAGS come from the environment buildsys sets
# (the board's cross compiler); DESTDIR from `make install DESTDIR=...`.
PROG = {hello}

all: $(PROG)

$(PROG): hello.c
\t$(CC) $(CFLAGS) $(CPPFLAGS) -o $@ hello.c $(LDFLAGS)

install: $(PROG)
\tinstall -D -m 0755 $(PROG) $(DESTDIR)/usr/bin/$(PROG)

.PHONY: all install
""",
        "recipes/images/image-base.append.yaml": f"""\
format: 1
# An append changes a recipe of another layer without copying it: this one
# puts {hello} into the core's image-base.  Delete it if your project has no
# image-base (an append to a recipe no layer has is an error).
packages+: [{hello}]
""",
        "README.md": f"""\
# Layer `{name}`

Made by `buildsys layer create`. A layer adds recipes, appends and board
configs to a buildsys project without changing the project's own files.

    layer.yaml                                  name, priority ({priority}), depends
    recipes/{hello}/{hello}.yaml     an example C program (class make)
    recipes/{hello}/files/           its hello.c and Makefile
    recipes/images/image-base.append.yaml       adds {hello} to image-base

Use it from a project (run these in the project's directory):

    buildsys layer add {'<this directory>'}      # records it in buildsys.yaml (--local: local.yaml)
    buildsys layers                             # it is listed, with its origin
    buildsys build {hello}                 # just the program
    buildsys build image-base                   # the image, with the program in /usr/bin
    buildsys run image-base                     # boot it; type `{hello}` at the prompt

Next steps: replace the example with your program (`buildsys recipe new URL
--layer {'<this directory>'}` writes a recipe for an upstream release), change
recipes of other layers with `<recipe>.append.yaml` files, add boards under
`board-configs/`. Keep the layer in git: `buildsys layer add GIT-URL` pins
it by commit in another project. The file formats are in buildsys's
docs/formats.md, the layer commands in docs/layers.md.
""",
    }


def create(directory: Path, name: str | None = None, priority: int = DEFAULT_PRIORITY) -> tuple[str, list[Path]]:
    """Write a new layer into ``directory`` (absent or empty); its name and the files written."""
    where = Where(str(directory))
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir() or directory.is_symlink():
            raise UserError("exists and is not a directory", where, hint="name a new directory")
        if any(directory.iterdir()):
            raise UserError("directory exists and is not empty", where,
                            hint="name a new or empty directory; a layer is never written over files")
    if name is None:
        name = directory.resolve().name
        check_name(name, where)
    else:
        check_name(name, Where("--name"))
    written = []
    for rel, text in files(name, priority).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
        written.append(path)
    return name, written

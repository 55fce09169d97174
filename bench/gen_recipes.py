#!/usr/bin/env python3
"""Generate a synthetic buildsys project with N recipes and realistic fan-in.

Each recipe looks like a real one (version, license, a source with sha256, a
class, a few dependencies on earlier recipes, an arch override); a `world`
recipe depends on all of them so the whole tree is resolved and graphed.
"""
import argparse
import hashlib
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path)
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--buildable", action="store_true",
                        help="no sources and empty steps, so the whole tree can really be built")
    parser.add_argument("--work", type=int, default=0, metavar="N",
                        help="with --buildable: each recipe's compile step really compiles N generated C "
                             "functions with the host's cc (CPU work, as a package's compile is)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = args.dest
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    (root / "board-configs").mkdir(exist_ok=True)
    (root / "buildsys.yaml").write_text("format: 1\ndefault_board: bench\n")
    (root / "board-configs/bench.yaml").write_text(
        "format: 1\nname: bench\narch: x86_64\ndefault_image: world\n"
        "preferred_providers: {virtual/toolchain: toolchain}\n")
    (root / "recipes/toolchain.yaml").write_text(
        "format: 1\nname: toolchain\nversion: '1'\nclass: script\nprovides: [virtual/toolchain]\n")
    names = []
    for i in range(args.n):
        name = f"pkg{i:05d}"
        # fan-in: most packages need a few libraries, a few are widely used
        deps = sorted({f"pkg{rng.randrange(i):05d}" for _ in range(rng.choice((0, 1, 2, 3, 5)))}) if i else []
        if i > 10 and rng.random() < 0.3:
            deps.append(f"pkg{rng.randrange(10):05d}")
            deps = sorted(set(deps))
        digest = hashlib.sha256(name.encode()).hexdigest()
        if args.buildable and args.work:
            # awk writes the C file, cc compiles it: about 1 ms of CPU a function at -O2.
            body = ("class: script\nsteps:\n  compile: |\n"
                    f"    awk 'BEGIN {{ for (i = 0; i < {args.work}; i++) "
                    f"printf \"int f%d(int x) {{ return x * %d + {i}; }}\\n\", i, i }}' > w.c\n"
                    "    cc -O2 -c w.c -o w.o\n")
        elif args.buildable:
            body = "class: script\n"
        else:
            body = (f"sources:\n  - url: https://example.org/{name}/{name}-${{version}}.tar.gz\n"
                    f"    sha256: {digest}\nclass: make\nmake_args: [PREFIX=/usr]\n"
                    f"overrides:\n  arch:aarch64:\n    make_args+: [ARCH64=1]\n")
        (root / "recipes" / f"{name}.yaml").write_text(
            f"format: 1\nname: {name}\nversion: '1.{i % 17}.{i % 5}'\nlicense: MIT\n"
            f"summary: synthetic package {i}\ndepends: [{', '.join(deps)}]\n" + body)
        names.append(name)
    (root / "recipes/world.yaml").write_text(
        "format: 1\nname: world\nversion: '1'\nclass: script\ntoolchain: false\n"
        f"depends: [{', '.join(names)}]\n")
    print(f"wrote {args.n + 2} recipes to {root}")


if __name__ == "__main__":
    main()

"""`buildsys key new NAME` / `buildsys key show FILE`: the ed25519 keys that
sign shared-cache artifacts (signing.py, docs/shared-cache.md)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError, Where
from .base import Command


def default_dir(environ=os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "buildsys" / "keys"


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically and never over an existing file: a temp file
    (O_EXCL, ``mode`` from the start), then a hard link to the final name,
    which fails if that name exists -- where a rename would replace it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)     # the umask may have taken bits away: say exactly
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


class Key(Command):
    name = "key"
    help = "make a key that signs shared-cache artifacts (new), or print a key's public line (show)"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="key_command", metavar="ACTION", required=True)
        new = sub.add_parser("new", help="make an ed25519 signing key NAME",
                             description="make an ed25519 key pair: NAME.secret (mode 0600) and NAME.public; "
                                         "prints the lines to paste into local.yaml and the project")
        new.add_argument("key_name", metavar="NAME", help="the key's name, e.g. ci-1 or alice@laptop")
        new.add_argument("--out", type=Path, metavar="DIR",
                         help=f"where to write the files (default {default_dir()})")
        show = sub.add_parser("show", help="print the public key line of a secret key file",
                              description="print the public key line (NAME:BASE64) of a secret key file")
        show.add_argument("file", type=Path, metavar="FILE")

    def run(self, args):
        from .. import signing

        if args.key_command == "show":
            print(signing.load_secret(args.file.absolute(), Where(str(args.file))).public().line())
            return 0
        try:
            key = signing.new_key(args.key_name)
        except signing.KeyError_ as exc:
            raise UserError(str(exc), Where("command line")) from None
        out = (args.out or default_dir()).absolute()
        secret, public = out / f"{key.name}.secret", out / f"{key.name}.public"
        for path in (secret, public):
            if os.path.lexists(path):
                raise UserError("this file exists, and a key is never overwritten", Where(str(path)),
                                hint="choose another NAME, or move the old key away first")
        try:
            out.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_new(secret, (key.line() + "\n").encode(), 0o600)
            write_new(public, (key.public().line() + "\n").encode(), 0o644)
        except FileExistsError as exc:
            raise UserError("this file exists, and a key is never overwritten", Where(str(exc.filename)),
                            hint="choose another NAME") from None
        except OSError as exc:
            raise UserError(f"cannot write the key: {exc.strerror}", Where(str(exc.filename or out))) from None
        line = key.public().line()
        print(f"secret key: {secret} (mode 0600: keep it on this machine, never commit it)")
        print(f"public key: {line}")
        print()
        print("# in local.yaml of each machine that pushes (CI, builders):")
        print(f"signing_key: {secret}")
        print("# in buildsys.yaml (or local.yaml) of every machine that may use what it signs:")
        print("trusted_keys:")
        print(f"  - {line}")
        return 0

"""`buildsys key new NAME [--kind K]` / `buildsys key show FILE`: the keys
buildsys signs with, kept outside the project (default ~/.config/buildsys/keys).

Kinds: ``cache`` (the default), the ed25519 keys that sign shared-cache
artifacts (signing.py, docs/shared-cache.md); ``update``, a product's
update-bundle key in minisign's formats (minisign.py, docs/updates.md);
``secure-boot``, the product's UEFI db key and certificate (secureboot.py).
Each kind is a function below that makes the files and prints what to put
where; ``KINDS`` maps the --kind value to it."""
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


def _refuse_existing(paths) -> None:
    for path in paths:
        if os.path.lexists(path):
            raise UserError("this file exists, and a key is never overwritten", Where(str(path)),
                            hint="choose another NAME, or move the old key away first")


def _write_pair(out: Path, secret: Path, secret_text: str, public: Path, public_text: str) -> None:
    """The secret file (0600) and the public one, each never over an existing file."""
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_new(secret, secret_text.encode(), 0o600)
        write_new(public, public_text.encode(), 0o644)
    except FileExistsError as exc:
        raise UserError("this file exists, and a key is never overwritten", Where(str(exc.filename)),
                        hint="choose another NAME") from None
    except OSError as exc:
        raise UserError(f"cannot write the key: {exc.strerror}", Where(str(exc.filename or out))) from None


def new_cache_key(name: str, out: Path) -> None:
    from .. import signing

    try:
        key = signing.new_key(name)
    except signing.KeyError_ as exc:
        raise UserError(str(exc), Where("command line")) from None
    secret, public = out / f"{key.name}.secret", out / f"{key.name}.public"
    _refuse_existing((secret, public))
    _write_pair(out, secret, key.line() + "\n", public, key.public().line() + "\n")
    line = key.public().line()
    print(f"secret key: {secret} (mode 0600: keep it on this machine, never commit it)")
    print(f"public key: {line}")
    print()
    print("# in local.yaml of each machine that pushes (CI, builders):")
    print(f"signing_key: {secret}")
    print("# in buildsys.yaml (or local.yaml) of every machine that may use what it signs:")
    print("trusted_keys:")
    print(f"  - {line}")


def new_update_key(name: str, out: Path) -> None:
    """An ed25519 key pair in minisign's formats: NAME.key (unencrypted, as
    ``minisign -G -W`` writes it) signs bundles; NAME.pub goes into the project
    (``update_keys``) and from there into the images' /etc/update/keys/."""
    from .. import minisign

    if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
        raise UserError(f"'{name}' is not a usable key name", Where("command line"),
                        hint="letters, digits, '-', '_', '.', '@'; no '/', no spaces")
    key = minisign.SecretKey.generate()
    secret, public = out / f"{name}.key", out / f"{name}.pub"
    _refuse_existing((secret, public))
    _write_pair(out, secret, key.text(), public, key.public().text())
    print(f"secret key: {secret} (mode 0600: keep it on the machine that signs bundles, never commit it)")
    print(f"public key: {public} (minisign key id {minisign.key_id_hex(key.key_id)})")
    print()
    print("# copy the public key into the project (e.g. keys/) and list it in buildsys.yaml:")
    print("update_keys:")
    print(f"  - keys/{public.name}")
    print("# in local.yaml of the machine that makes bundles:")
    print(f"update_signing_key: {secret}")


def new_secure_boot_key(name: str, out: Path) -> None:
    """The product's UEFI Secure Boot key: RSA-2048 (NAME.sb.key, 0600) and a
    self-signed X.509 certificate (NAME.sb.crt) that can be enrolled as PK,
    KEK and db; images' EFI binaries are signed with it (secureboot.py)."""
    from .. import secureboot

    if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
        raise UserError(f"'{name}' is not a usable key name", Where("command line"),
                        hint="letters, digits, '-', '_', '.', '@'; no '/', no spaces")
    secret, public = out / f"{name}{secureboot.KEY_SUFFIX}", out / f"{name}{secureboot.CERT_SUFFIX}"
    _refuse_existing((secret, public))
    key_pem, cert_pem = secureboot.new_key(name)
    _write_pair(out, secret, key_pem.decode(), public, cert_pem.decode())
    print(f"secret key: {secret} (mode 0600: keep it on the machine that builds signed images, never commit it)")
    print(f"certificate: {public} (CN={name}, sha256 {secureboot.cert_sha256(cert_pem)})")
    print()
    print("# copy the certificate into the project (e.g. keys/) and name it in buildsys.yaml:")
    print(f"secure_boot_cert: keys/{public.name}")
    print("# in local.yaml of the machine that builds signed images:")
    print(f"secure_boot_key: {secret}")


# --kind value -> the function making NAME's files in a directory.
KINDS = {"cache": new_cache_key, "update": new_update_key, "secure-boot": new_secure_boot_key}


def show(path: Path) -> str:
    """The public half of a secret key file of any kind."""
    from .. import minisign, signing

    where = Where(str(path))
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise UserError(f"cannot read the key: {exc.strerror}", where) from None
    if head.startswith(minisign.COMMENT_PREFIX.encode()):
        try:
            return minisign.SecretKey.parse(path.read_text(encoding="utf-8")).public().text().rstrip("\n")
        except (minisign.FormatError, UnicodeDecodeError) as exc:
            raise UserError(f"not a minisign secret key: {exc}", where) from None
    return signing.load_secret(path, where).public().line()


class Key(Command):
    name = "key"
    help = "make a signing key: shared-cache artifacts or update bundles (new), or print a key's public part (show)"

    def setup(self, parser):
        sub = parser.add_subparsers(dest="key_command", metavar="ACTION", required=True)
        new = sub.add_parser("new", help="make an ed25519 signing key NAME",
                             description="make an ed25519 key pair: NAME.secret (mode 0600) and NAME.public; "
                                         "prints the lines to paste into local.yaml and the project")
        new.add_argument("key_name", metavar="NAME", help="the key's name, e.g. ci-1 or alice@laptop")
        new.add_argument("--kind", choices=sorted(KINDS), default="cache",
                         help="cache: ed25519 key signing shared-cache artifacts, NAME.secret/NAME.public "
                              "(default); update: ed25519 key signing update bundles in minisign's format, "
                              "NAME.key/NAME.pub; secure-boot: RSA-2048 key and self-signed X.509 certificate "
                              "for UEFI Secure Boot (PK, KEK, db), NAME.sb.key/NAME.sb.crt")
        new.add_argument("--out", type=Path, metavar="DIR",
                         help=f"where to write the files (default {default_dir()})")
        show = sub.add_parser("show", help="print the public part of a secret key file",
                              description="print the public key of a secret key file: NAME:BASE64 for a "
                                          "cache key, the minisign public key file for an update key")
        show.add_argument("file", type=Path, metavar="FILE")

    def run(self, args):
        if args.key_command == "show":
            print(show(args.file.absolute()))
            return 0
        KINDS[args.kind](args.key_name, (args.out or default_dir()).absolute())
        return 0

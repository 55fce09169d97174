"""UEFI Secure Boot: the product's db key and certificate, where the image
class finds them, and the test firmware-variable file.

* ``buildsys key new NAME --kind secure-boot`` makes an RSA-2048 key and a
  self-signed X.509 certificate (new_key), usable as PK, KEK and db.
* The project setting ``secure_boot_cert`` (a public certificate, may be
  committed in buildsys.yaml) becomes the ``${secure_boot_cert}`` variable:
  the certificate as PEM text.  An image recipe's value holding it is in the
  image's signature, so a different certificate rebuilds the image and the
  same one on any machine gives the same key (never a path, never the secret).
* ``secure_boot_key`` (local.yaml only, or BUILDSYS_SECURE_BOOT_KEY) names the
  secret key on this machine.  It never enters a recipe value, a signature or
  a log: project_cert() only remembers, for the certificate, where the key
  file is, and key_for() reads it when the image class signs
  (image/authenticode.py).  A machine with the certificate but not the key
  can still restore signed images from a cache; it cannot build one.
* At deploy of a signed A/B image, deploy_vars() writes ``<stem>.secboot-vars.fd``: OVMF's variable
  store with that certificate enrolled as PK, KEK and db and Secure Boot on
  (virt-fw-vars, PyPI virt-firmware), for QEMU with OVMF_CODE_4M.secboot.fd.

Not output-shaping: the image's bytes are decided by the certificate (in its
values) and authenticode.py (hashed into the image class); this module only
finds the matching key and writes a file for QEMU from a public certificate.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

from .errors import BuildError, UserError, Where
from .fileio import atomic_write

KEY_ENV = "BUILDSYS_SECURE_BOOT_KEY"
SETTING_CERT, SETTING_KEY = "secure_boot_cert", "secure_boot_key"
KEY_SUFFIX, CERT_SUFFIX = ".sb.key", ".sb.crt"
# The SignatureOwner GUID of the certificates we enroll (it only labels them).
OWNER = uuid.uuid5(uuid.NAMESPACE_URL, "buildsys:secure-boot-owner")
# The variable-store templates and the Secure Boot firmware builds.
# x86-64: OVMF's empty store and its SMM build (QEMU q35,smm=on, secure flash).
# arm64: Debian 12's AAVMF_CODE.fd is its Secure Boot build (AAVMF_CODE.ms.fd
# is a link to it) and runs on plain `-M virt` (no SMM on arm: the store is
# not shielded from the OS, but images are still checked).  AAVMF_VARS.fd is
# an unformatted all-zero store virt-fw-vars cannot edit, so the template is
# AAVMF_VARS.ms.fd with its Microsoft keys and its boot entries (whose
# numbers would collide with the image's Boot0001/Boot0002) deleted first.
VARS_TEMPLATE = {"x86_64": Path("/usr/share/OVMF/OVMF_VARS_4M.fd"),
                 "aarch64": Path("/usr/share/AAVMF/AAVMF_VARS.ms.fd")}
SECBOOT_CODE = {"x86_64": Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
                "aarch64": Path("/usr/share/AAVMF/AAVMF_CODE.fd")}
TEMPLATE_DELETE = {"aarch64": ("PK", "KEK", "db", "dbx", "Boot0000", "Boot0001", "Boot0002", "BootOrder",
                               "Key0000", "Key0001")}
VARS_SUFFIX = ".secboot-vars.fd"
KEY_LIMIT = 64 * 1024          # a PEM RSA key is ~1.7 KB: anything far bigger is not one


def new_key(name: str) -> tuple[bytes, bytes]:
    """An RSA-2048 key (PKCS#8 PEM, unencrypted) and a self-signed certificate
    for it (PEM), CN = ``name``: a CA certificate, so it can be PK and KEK as
    well as the db entry that signs images.  UEFI does not check validity
    dates; sbverify does, so it is valid from now until 9999-12-31 (RFC 5280's
    "no well-defined expiration date")."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))     # a guest clock a little behind
            .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def cert_sha256(cert_pem: str | bytes) -> str:
    """sha256 of the certificate's DER (what `openssl x509 -fingerprint -sha256` shows)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    return hashlib.sha256(x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)).hexdigest()


def read_cert(path: Path, where: Where | None) -> str:
    """The certificate in ``path`` (PEM or DER) as PEM text; one-line errors."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {SETTING_CERT} {path}: {exc.strerror}", where,
                        hint="`buildsys key new NAME --kind secure-boot` makes NAME.sb.crt") from None
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError as exc:
        raise UserError(f"{path} is not an X.509 certificate ({exc})", Where(str(path)),
                        hint=f"{SETTING_CERT} names the public NAME.sb.crt, not the key") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise UserError(f"{path}: UEFI secure boot needs an RSA certificate", Where(str(path)))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# cert sha256 -> (key file, where it was named).  Filled when the resolver
# computes ${secure_boot_cert}; read by key_for() in the image class, in the
# same process (task threads), so the key's path stays out of every value.
_keys: dict[str, tuple[Path, Where]] = {}
_keys_lock = threading.Lock()


def _project_path(root: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else root / path


def project_cert(project) -> str:
    """The ``${secure_boot_cert}`` variable: the PEM of the project's
    secure_boot_cert, or "" when it has none.  Remembers this machine's
    secure_boot_key for that certificate (key_for)."""
    settings, where_of, environ = project.settings, project.settings_where, project.environ
    key_where = where_of.get(SETTING_KEY)
    if settings.get(SETTING_KEY) and key_where is not None and not key_where.path.endswith("local.yaml"):
        raise UserError(f"{SETTING_KEY} belongs in local.yaml (it names this machine's secret key)", key_where,
                        hint=f"move it to local.yaml, or set {KEY_ENV}; only {SETTING_CERT} may be committed")
    value = settings.get(SETTING_CERT)
    if not value:
        return ""
    pem = read_cert(_project_path(project.root, str(value)), where_of.get(SETTING_CERT))
    key: tuple[Path, Where] | None = None
    if environ.get(KEY_ENV):
        key = (Path(os.path.expanduser(environ[KEY_ENV])).absolute(), Where(KEY_ENV))
    elif settings.get(SETTING_KEY):
        key = (_project_path(project.root, str(settings[SETTING_KEY])), key_where or Where(SETTING_KEY))
    if key is not None:
        with _keys_lock:
            _keys[cert_sha256(pem)] = key
    return pem


def _subject(cert_pem: str) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem.encode()).subject.rfc4514_string()


def key_for(cert_pem: str) -> bytes:
    """This machine's secret key (PEM) for the certificate ``cert_pem``: the
    secure_boot_key named next to the project's secure_boot_cert.  A
    UserError when there is none or it does not match the certificate."""
    from cryptography.hazmat.primitives import serialization

    digest = cert_sha256(cert_pem)
    with _keys_lock:
        found = _keys.get(digest)
    if found is None:
        raise UserError(f"this image is signed for secure boot with the certificate {_subject(cert_pem)} "
                        f"(sha256 {digest[:16]}), and this machine has no key for it",
                        hint=f"set {SETTING_KEY} in local.yaml to its NAME{KEY_SUFFIX} (or {KEY_ENV}), "
                             f"or build without {SETTING_CERT}")
    path, where = found
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(KEY_LIMIT + 1)
    except OSError as exc:
        raise UserError(f"cannot read {SETTING_KEY} {path}: {exc.strerror}", where) from None
    try:
        key = serialization.load_pem_private_key(data, password=None) if len(data) <= KEY_LIMIT else None
    except (ValueError, TypeError):
        key = None      # the message below says what; never echo a secret file's content
    if key is None:
        raise UserError(f"{path} is not an unencrypted PEM private key", where,
                        hint=f"`buildsys key new NAME --kind secure-boot` writes NAME{KEY_SUFFIX}")
    from cryptography import x509

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise UserError(f"{path} is not the key of {SETTING_CERT} ({_subject(cert_pem)})", where,
                        hint=f"{SETTING_KEY} and {SETTING_CERT} must be the NAME{KEY_SUFFIX} and "
                             f"NAME{CERT_SUFFIX} of one `buildsys key new`")
    return data


# --- the test variable store ---------------------------------------------------------
def vars_argv(template: Path, cert_file: Path, out: Path, delete: tuple[str, ...] = ()) -> list[str]:
    """virt-fw-vars (PyPI virt-firmware), run with this Python: ``delete``
    the template's variables, then PK, KEK and db = the certificate, Secure Boot on."""
    owner = str(OWNER)
    return [sys.executable, "-c", "import sys; from virt.firmware.vars import main; sys.exit(main())",
            "--loglevel", "warning", "--input", str(template), "--output", str(out),
            *(arg for name in delete for arg in ("--delete", name)),
            "--set-pk", owner, str(cert_file), "--add-kek", owner, str(cert_file),
            "--add-db", owner, str(cert_file), "--sb"]


def write_vars(cert_pem: str, out: Path, template: Path = VARS_TEMPLATE["x86_64"],
               delete: tuple[str, ...] = ()) -> None:
    """``out`` = ``template`` (OVMF_VARS_4M.fd) less ``delete``, with ``cert_pem``
    enrolled as PK, KEK and db and Secure Boot on.  The same certificate and
    template give the same bytes (virt-fw-vars writes no time stamps)."""
    try:
        import virt.firmware.vars  # noqa: F401 -- only to say what is missing
    except ImportError:
        raise UserError("writing the secure boot variable store needs virt-firmware",
                        hint="pip install virt-firmware (scripts/setup-host.sh installs it)") from None
    if not template.is_file():
        raise UserError(f"no UEFI variable store template {template}", hint="scripts/setup-host.sh "
                        "(apt install ovmf qemu-efi-aarch64)")
    with tempfile.TemporaryDirectory(prefix="buildsys-secboot-") as tmp:
        cert_file, result = Path(tmp, "db.crt"), Path(tmp, "vars.fd")
        cert_file.write_text(cert_pem)
        proc = subprocess.run(vars_argv(template, cert_file, result, delete), capture_output=True, text=True)
        if proc.returncode != 0 or not result.is_file():
            raise BuildError(f"virt-fw-vars failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        atomic_write(out, result.read_bytes())


def deploy_vars(recipe, board, out_dir: Path) -> Path | None:
    """At deploy: ``<image>-<board>.secboot-vars.fd`` beside the disk image when
    the image is signed for secure boot (its ``secure_boot_cert`` value) and
    the board's firmware has a Secure Boot build.  Rewritten only when the
    certificate or the template changed (a record beside it says which)."""
    cert_pem = recipe.get(SETTING_CERT)
    template = VARS_TEMPLATE.get(board.arch)
    # Only an A/B image has an EFI binary the image class signs (its UKI).
    if not cert_pem or not recipe.get("ab_slots") or template is None:
        return None
    stem = f"{recipe.name}-{board.name}"
    out = out_dir / f"{stem}{VARS_SUFFIX}"
    record_path = out_dir / f"{stem}.secboot-vars.json"
    record = {"cert_sha256": cert_sha256(cert_pem), "subject": _subject(cert_pem), "owner": str(OWNER),
              "template": str(template), "template_sha256": hashlib.sha256(template.read_bytes()).hexdigest(),
              "deleted": list(TEMPLATE_DELETE.get(board.arch, ())), "enrolled": ["PK", "KEK", "db"],
              "secure_boot": True, "qemu_code": str(SECBOOT_CODE[board.arch])}
    try:
        current = json.loads(record_path.read_text()) if out.is_file() else None
    except (OSError, ValueError):
        current = None
    if current != record:
        write_vars(cert_pem, out, template, TEMPLATE_DELETE.get(board.arch, ()))
        atomic_write(record_path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return out


def qemu_args(board_arch: str, vars_file: Path) -> list[str]:
    """What a Secure Boot QEMU run adds: the Secure Boot firmware and a writable
    copy of the enrolled variable store; on x86-64 also SMM and the secure flash."""
    from .qemu import pflash_args
    flash = pflash_args(SECBOOT_CODE[board_arch], vars_file)
    if board_arch == "x86_64":
        return ["-M", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on", *flash]
    return flash


def inputs_state(project) -> str:
    """What the no-op fast path (plancache) must notice: the certificate file
    and the key's env var (local.yaml and buildsys.yaml are stat'ed there)."""
    value = project.settings.get(SETTING_CERT)
    if not value:
        return ""
    path = _project_path(project.root, str(value))
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}\0missing"
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{project.environ.get(KEY_ENV, '')}"

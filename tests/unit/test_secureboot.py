"""Secure boot settings and the test variable store (buildsys/secureboot.py):
the certificate reaches images as PEM text, the secret key only through
key_for() and only on a machine that names it in local.yaml; the VARS file
has the certificate enrolled as PK, KEK and db with Secure Boot on, read back
with virt-fw-vars."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from buildsys import secureboot
from buildsys.errors import UserError, Where


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("sb")
    key, cert = secureboot.new_key("product-db")
    (d / "product.sb.key").write_bytes(key)
    (d / "product.sb.crt").write_bytes(cert)
    return d, key, cert


def project(root: Path, settings: dict, where: dict | None = None, environ=None):
    where = where if where is not None else {k: Where(str(root / "local.yaml"), 3, 1) for k in settings}
    return SimpleNamespace(root=root, settings=settings, settings_where=where, environ=environ or {})


def test_new_key_is_rsa_2048_with_a_self_signed_ca_certificate(pair):
    _, key, cert = pair
    c = x509.load_pem_x509_certificate(cert)
    k = serialization.load_pem_private_key(key, None)
    assert k.key_size == 2048
    assert c.subject == c.issuer and c.subject.rfc4514_string() == "CN=product-db"
    assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    c.verify_directly_issued_by(c)
    assert c.not_valid_after_utc.year == 9999


def test_the_variable_is_the_certificate_and_the_key_is_found_for_it(pair):
    d, key, cert = pair
    p = project(d, {"secure_boot_cert": "product.sb.crt", "secure_boot_key": str(d / "product.sb.key")},
                {"secure_boot_cert": Where(str(d / "buildsys.yaml"), 5, 1),
                 "secure_boot_key": Where(str(d / "local.yaml"), 2, 1)})
    pem = secureboot.project_cert(p)
    assert pem == cert.decode()
    assert secureboot.key_for(pem) == key
    assert secureboot.project_cert(project(d, {})) == ""


def test_the_secret_key_is_refused_outside_local_yaml(pair):
    d, _, _ = pair
    p = project(d, {"secure_boot_cert": "product.sb.crt", "secure_boot_key": "product.sb.key"},
                {"secure_boot_key": Where(str(d / "buildsys.yaml"), 7, 1)})
    with pytest.raises(UserError, match="belongs in local.yaml") as e:
        secureboot.project_cert(p)
    assert e.value.where == Where(str(d / "buildsys.yaml"), 7, 1)


def test_no_key_or_the_wrong_key_is_a_one_line_error(pair, tmp_path):
    d, _, _ = pair
    key2, cert2 = secureboot.new_key("nobody-has-its-key")
    with pytest.raises(UserError, match="no key for it") as e:
        secureboot.key_for(cert2.decode())
    assert "secure_boot_key" in str(e.value) and "\n" not in str(e.value)
    # a key file that belongs to another certificate
    (tmp_path / "c.crt").write_bytes(cert2)
    p = project(tmp_path, {"secure_boot_cert": "c.crt", "secure_boot_key": str(d / "product.sb.key")})
    with pytest.raises(UserError, match="is not the key of secure_boot_cert"):
        secureboot.key_for(secureboot.project_cert(p))
    # the env var wins over local.yaml
    (tmp_path / "k2").write_bytes(key2)
    p = project(tmp_path, {"secure_boot_cert": "c.crt", "secure_boot_key": str(d / "product.sb.key")},
                environ={"BUILDSYS_SECURE_BOOT_KEY": str(tmp_path / "k2")})
    assert secureboot.key_for(secureboot.project_cert(p)) == key2


def test_a_cert_setting_naming_a_key_file_is_a_user_error(pair):
    d, _, _ = pair
    with pytest.raises(UserError, match="not an X.509 certificate"):
        secureboot.project_cert(project(d, {"secure_boot_cert": "product.sb.key"}))
    with pytest.raises(UserError, match="cannot read secure_boot_cert"):
        secureboot.project_cert(project(d, {"secure_boot_cert": "missing.crt"}))


def print_vars(path: Path) -> str:
    return subprocess.run([sys.executable, "-c", "import sys; from virt.firmware.vars import main; sys.exit(main())",
                           "-i", str(path), "-p", "-v"], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(not secureboot.VARS_TEMPLATE["x86_64"].is_file(), reason="needs ovmf (scripts/setup-host.sh)")
def test_vars_file_enrolls_the_certificate_and_turns_secure_boot_on(pair, tmp_path):
    _, _, cert = pair
    out = tmp_path / "a.fd"
    secureboot.write_vars(cert.decode(), out)
    assert out.stat().st_size == secureboot.VARS_TEMPLATE["x86_64"].stat().st_size
    blocks = {b.split()[0]: b for b in print_vars(out).split("name=")[1:]}
    assert "bool: ON" in blocks["SecureBootEnable"]
    for var in ("PK", "KEK", "db"):
        assert "type=guid:EfiCertX509 count=1" in blocks[var] and "subject CN=product-db" in blocks[var], blocks
    # the template has none of it
    assert "CN=product-db" not in print_vars(secureboot.VARS_TEMPLATE["x86_64"])
    again = tmp_path / "b.fd"
    secureboot.write_vars(cert.decode(), again)
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.skipif(not secureboot.VARS_TEMPLATE["x86_64"].is_file(), reason="needs ovmf (scripts/setup-host.sh)")
def test_deploy_writes_the_vars_file_once_per_certificate(pair, tmp_path):
    _, _, cert = pair
    board = SimpleNamespace(name="x86-virtio", arch="x86_64")
    values = {"secure_boot_cert": cert.decode(), "ab_slots": {"root_size": "96M"}}
    recipe = SimpleNamespace(name="image-base-ab", get=values.get)
    out = secureboot.deploy_vars(recipe, board, tmp_path)
    assert out == tmp_path / "image-base-ab-x86-virtio.secboot-vars.fd"
    record = json.loads((tmp_path / "image-base-ab-x86-virtio.secboot-vars.json").read_text())
    assert record["cert_sha256"] == secureboot.cert_sha256(cert) and record["enrolled"] == ["PK", "KEK", "db"]
    stamp = out.stat().st_mtime_ns
    secureboot.deploy_vars(recipe, board, tmp_path)
    assert out.stat().st_mtime_ns == stamp          # same certificate: not rewritten
    unsigned = SimpleNamespace(name="image-base-ab", get={"ab_slots": {"root_size": "96M"}}.get)
    assert secureboot.deploy_vars(unsigned, board, tmp_path) is None
    no_uki = SimpleNamespace(name="image-minimal", get={"secure_boot_cert": cert.decode()}.get)
    assert secureboot.deploy_vars(no_uki, board, tmp_path) is None
    other = SimpleNamespace(name="raspberrypi3-32", arch="arm")      # no UEFI firmware known
    assert secureboot.deploy_vars(recipe, other, tmp_path) is None


@pytest.mark.skipif(not secureboot.VARS_TEMPLATE["aarch64"].is_file(), reason="needs qemu-efi-aarch64 (setup-host.sh)")
def test_arm64_store_is_aavmf_ms_without_microsofts_keys_and_boot_entries(pair, tmp_path):
    """AAVMF_VARS.fd is unformatted, so the arm64 store starts from
    AAVMF_VARS.ms.fd: its Microsoft PK/KEK/db and its Boot0000-0002 (which
    would collide with the image's Boot0001/Boot0002) are deleted, ours enrolled."""
    _, _, cert = pair
    arm = SimpleNamespace(name="qemu-arm64", arch="aarch64")
    recipe = SimpleNamespace(name="image-base-ab", get={"secure_boot_cert": cert.decode(),
                                                        "ab_slots": {"root_size": "96M"}}.get)
    out = secureboot.deploy_vars(recipe, arm, tmp_path)
    assert out == tmp_path / "image-base-ab-qemu-arm64.secboot-vars.fd"
    record = json.loads((tmp_path / "image-base-ab-qemu-arm64.secboot-vars.json").read_text())
    assert "Boot0001" in record["deleted"] and record["qemu_code"].endswith("AAVMF_CODE.fd")
    before, after = print_vars(secureboot.VARS_TEMPLATE["aarch64"]), print_vars(out)
    assert "Microsoft" in before and "Boot0001" in before
    assert "Microsoft" not in after and "Boot000" not in after and "CN=product-db" in after
    assert secureboot.qemu_args("aarch64", out)[:2] == ["-drive", "if=pflash,format=raw,unit=0,readonly=on,"
                                                                  "file=/usr/share/AAVMF/AAVMF_CODE.fd"]


def test_the_certificate_reaches_recipes_as_a_variable_and_changes_the_plan_key(pair, tmp_path):
    """${secure_boot_cert} expands to the PEM in a recipe value (so in its
    signature); the key's path appears in no value; editing the certificate
    file is noticed by the no-op fast path."""
    from buildsys import plancache
    from buildsys.layers import load_project
    from buildsys.resolve import Resolver, load_board
    from conftest import write_tree

    d, key, cert = pair
    root = write_tree(tmp_path / "p", {
        "buildsys.yaml": "format: 1\nsecure_boot_cert: db.crt\n",
        "local.yaml": f"format: 1\nsecure_boot_key: {d / 'product.sb.key'}\n",
        "board-configs/x86.yaml": "format: 1\nname: x86\narch: x86_64\n",
        "recipes/tc.yaml": "format: 1\nname: tc\nclass: toolchain\nprovides: [virtual/toolchain]\n",
        "recipes/app.yaml": "format: 1\nname: app\nversion: '1'\nclass: script\nenv: {CERT: '${secure_boot_cert}'}\n",
    })
    (root / "db.crt").write_bytes(cert)
    project = load_project(root, environ={})
    recipe = Resolver(project, load_board(project, "x86")).recipe("app")
    assert recipe.get("env")["CERT"] == cert.decode()
    assert "product.sb.key" not in repr(recipe.values)
    assert secureboot.key_for(recipe.get("env")["CERT"]) == key
    before = plancache.inputs_key(project, "x86", ["app"])
    _, other_cert = secureboot.new_key("rotated")
    (root / "db.crt").write_bytes(other_cert)
    assert plancache.inputs_key(project, "x86", ["app"]) != before


def test_key_new_secure_boot_writes_a_0600_key_and_its_certificate(tmp_path):
    import os
    import stat

    from conftest import run_buildsys

    out = tmp_path / "keys"
    r = run_buildsys("key", "new", "acme-db", "--kind", "secure-boot", "--out", str(out))
    assert r.returncode == 0, r.stderr
    key, crt = out / "acme-db.sb.key", out / "acme-db.sb.crt"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and stat.S_IMODE(os.stat(crt).st_mode) == 0o644
    assert f"secure_boot_cert: keys/{crt.name}" in r.stdout and f"secure_boot_key: {key}" in r.stdout
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=acme-db"
    assert serialization.load_pem_private_key(key.read_bytes(), None).public_key().public_numbers() == \
        cert.public_key().public_numbers()
    again = run_buildsys("key", "new", "acme-db", "--kind", "secure-boot", "--out", str(out))
    assert again.returncode == 2 and "never overwritten" in again.stderr

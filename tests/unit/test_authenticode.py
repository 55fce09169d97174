"""Authenticode signing in Python (buildsys/image/authenticode.py), checked by
sbsigntool: `sbverify --cert` accepts our signature and refuses it for another
certificate, and our image hash is the one `sbsign` signs.  The PE images are
made here (PE32+ and PE32, with and without data after the last section)."""
import shutil
import struct
import subprocess

import pytest

from buildsys import secureboot
from buildsys.image import authenticode

FILE_ALIGN, SECTION_ALIGN = 0x200, 0x1000
DIGEST_INFO = bytes.fromhex("300d06096086480165030402010500" "0420")     # SHA-256 DigestInfo prefix


def make_pe(sections=((b".text", b"\x90" * 700), (b".data", b"hello" * 50)), trailer=b"", pe32plus=True) -> bytes:
    """A small, well-formed PE image: DOS stub header, COFF, optional header
    with 16 data directories, the sections at FILE_ALIGN, ``trailer`` after them."""
    pe_at, opt_size = 0x80, 240 if pe32plus else 224
    headers = -(-(pe_at + 24 + opt_size + 40 * len(sections)) // FILE_ALIGN) * FILE_ALIGN
    table, raws, at, va = b"", [], headers, SECTION_ALIGN
    for name, body in sections:
        raw = body + bytes(-len(body) % FILE_ALIGN)
        table += struct.pack("<8sIIIIIIHHI", name.ljust(8, b"\0"), len(body), va, len(raw), at, 0, 0, 0, 0,
                             0x60000020)
        raws.append(raw)
        at += len(raw)
        va += -(-len(body) // SECTION_ALIGN) * SECTION_ALIGN
    dos = bytearray(pe_at)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, pe_at)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664 if pe32plus else 0x14C, len(sections), 0, 0, 0, opt_size,
                                   0x22)
    if pe32plus:
        opt = struct.pack("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, 0, 0, len(raws[0]), 0, 0, SECTION_ALIGN,
                          SECTION_ALIGN, 0, SECTION_ALIGN, FILE_ALIGN, 0, 0, 0, 0, 0, 0, 0, va, headers, 0x1234,
                          10, 0, 0, 0, 0, 0, 0, 16)
    else:
        opt = struct.pack("<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII", 0x10B, 0, 0, len(raws[0]), 0, 0, SECTION_ALIGN,
                          SECTION_ALIGN, 0, 0, SECTION_ALIGN, FILE_ALIGN, 0, 0, 0, 0, 0, 0, 0, va, headers, 0x1234,
                          10, 0, 0, 0, 0, 0, 0, 16)
    opt += bytes(16 * 8)
    head = bytes(dos) + coff + opt + table
    return head + bytes(headers - len(head)) + b"".join(raws) + trailer


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs as `buildsys key new --kind secure-boot` makes them."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("product", "other"):
        key, cert = secureboot.new_key(name)
        (d / f"{name}.key").write_bytes(key)
        (d / f"{name}.crt").write_bytes(cert)
        out[name] = (key, cert, d / f"{name}.crt", d / f"{name}.key")
    return out


def sbverify(cert, image):
    assert shutil.which("sbverify"), "sbverify missing: apt install sbsigntool (scripts/setup-host.sh)"
    return subprocess.run(["sbverify", "--cert", str(cert), str(image)], capture_output=True, text=True)


IMAGES = {"pe32+": make_pe(), "pe32": make_pe(pe32plus=False),
          "pe32+ with 3 bytes after the sections": make_pe(trailer=b"abc")}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_sbverify_accepts_our_signature_for_the_cert_and_refuses_another(tmp_path, keys, kind):
    key, cert, cert_file, _ = keys["product"]
    signed = authenticode.sign(IMAGES[kind], key, cert)
    path = tmp_path / "signed.efi"
    path.write_bytes(signed)
    ok = sbverify(cert_file, path)
    assert ok.returncode == 0 and "Signature verification OK" in ok.stdout, ok
    wrong = sbverify(keys["other"][2], path)
    assert wrong.returncode != 0, wrong
    # one byte of a section changed: the hash no longer matches
    tampered = bytearray(signed)
    tampered[0x400] ^= 1
    path.write_bytes(bytes(tampered))
    assert sbverify(cert_file, path).returncode != 0


def test_signing_is_deterministic_and_replaces_an_earlier_signature(keys):
    key, cert, _, _ = keys["product"]
    other_key, other_cert, _, _ = keys["other"]
    image = make_pe(trailer=b"xyz")
    once = authenticode.sign(image, key, cert)
    assert once == authenticode.sign(image, key, cert)
    # re-signing by someone else: the same bytes as signing the plain image
    assert authenticode.sign(once, other_key, other_cert) == authenticode.sign(image, other_key, other_cert)
    assert authenticode.sign(authenticode.sign(image, other_key, other_cert), key, cert) == once
    # the WIN_CERTIFICATE is 8-byte aligned and the directory entry points at it
    layout = authenticode.parse(once)
    at, size = layout.cert_table
    assert at % 8 == 0 and size % 8 == 0 and at + size == len(once)
    assert struct.unpack_from("<HH", once, at + 4) == (0x0200, 0x0002)
    assert authenticode.unsigned(once) == image + bytes(-len(image) % 8)


def test_our_hash_is_the_one_sbsign_signs(tmp_path, keys):
    _, _, cert_file, key_file = keys["product"]
    for name, image in IMAGES.items():
        plain = tmp_path / "plain.efi"
        plain.write_bytes(image)
        out = tmp_path / "sbsigned.efi"
        subprocess.run(["sbsign", "--key", str(key_file), "--cert", str(cert_file), "--output", str(out),
                        str(plain)], check=True, capture_output=True)
        blob, = authenticode.certificates(out.read_bytes())
        at = blob.index(DIGEST_INFO) + len(DIGEST_INFO)
        assert blob[at:at + 32] == authenticode.image_hash(image + bytes(-len(image) % 8)), name
        assert blob[at:at + 32] == authenticode.image_hash(out.read_bytes()), name


def test_the_hash_skips_the_checksum_and_the_certificate_entry_only():
    image = bytearray(make_pe())
    layout = authenticode.parse(bytes(image))
    base = authenticode.image_hash(bytes(image))
    changed = bytearray(image)
    struct.pack_into("<I", changed, layout.checksum_offset, 0xDEADBEEF)
    assert authenticode.image_hash(bytes(changed)) == base
    changed = bytearray(image)
    changed[layout.checksum_offset + 4] ^= 1          # Subsystem, right after CheckSum, counts
    assert authenticode.image_hash(bytes(changed)) != base


@pytest.mark.parametrize("data, what", [
    (b"not a pe file at all" * 10, "no MZ header"),
    (b"MZ" + bytes(0x3E) + bytes(64), "no PE signature"),
])
def test_bad_images_are_value_errors(data, what):
    with pytest.raises(ValueError, match=what):
        authenticode.image_hash(data)


def test_a_key_that_is_not_the_certificates_is_refused(keys):
    with pytest.raises(ValueError, match="does not belong"):
        authenticode.sign(make_pe(), keys["other"][0], keys["product"][1])

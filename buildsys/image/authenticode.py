"""Authenticode signatures of PE/COFF images (UEFI binaries), in Python.

What UEFI Secure Boot checks (edk2 DxeImageVerificationLib; Microsoft's
"Windows Authenticode Portable Executable Signature Format"): the image's
Certificate Table (data directory 4) holds a WIN_CERTIFICATE with a PKCS#7
SignedData whose content is an SpcIndirectDataContent carrying the SHA-256
*Authenticode hash* of the image, signed by a key whose certificate (or an
issuer of it) is in the firmware's db.

The Authenticode hash covers the headers except the CheckSum field and the
Certificate Table entry, then every section's raw data in file order, then
whatever follows the last section up to the certificate table.

Why our own instead of sbsign: sbsign (through OpenSSL's PKCS7_dataFinal)
adds a signingTime attribute, so the same image signed twice differs, and an
image build must be reproducible.  Here the signed attributes are exactly
contentType and messageDigest, and RSA PKCS#1 v1.5 is deterministic: the same
image, key and certificate always give the same bytes.  The DER is written by
hand (about 40 lines): asn1crypto models CMS, whose encapsulated content is an
OCTET STRING, while Authenticode uses PKCS#7 v1.5's [0] EXPLICIT content (the
SpcIndirectDataContent SEQUENCE itself) and has no SpcIndirectDataContent type.
`sbverify --cert` checks the result in tests/unit/test_authenticode.py.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

# --- object identifiers ----------------------------------------------------------
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"

WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
CERT_TABLE_INDEX = 4          # IMAGE_DIRECTORY_ENTRY_SECURITY
ALIGN = 8                     # the certificate table and each entry are quadword aligned


# --- DER ---------------------------------------------------------------------------
def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _set_of(*items: bytes) -> bytes:
    # DER sorts the encodings of a SET OF's members.
    return _tlv(0x31, b"".join(sorted(items)))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _int(value: int) -> bytes:
    # Two's complement, minimal: a leading zero byte keeps a positive value positive.
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


_NULL = b"\x05\x00"


def _algorithm(oid: str) -> bytes:
    return _seq(_oid(oid), _NULL)


def _explicit(number: int, content: bytes) -> bytes:
    return _tlv(0xA0 | number, content)


# --- PE/COFF -----------------------------------------------------------------------
@dataclass(frozen=True)
class PeLayout:
    checksum_offset: int        # file offset of OptionalHeader.CheckSum
    cert_entry_offset: int      # file offset of the Certificate Table data directory entry
    size_of_headers: int
    sections: tuple[tuple[int, int], ...]   # (PointerToRawData, SizeOfRawData), in file order
    cert_table: tuple[int, int]             # (file offset, size); (0, 0) when unsigned


def parse(data: bytes) -> PeLayout:
    """The parts of a PE image the Authenticode hash needs; ValueError names what is wrong."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise ValueError("not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if pe + 24 > len(data) or data[pe:pe + 4] != b"PE\0\0":
        raise ValueError("not a PE image (no PE signature where e_lfanew points)")
    nsections, = struct.unpack_from("<H", data, pe + 6)
    opt_size, = struct.unpack_from("<H", data, pe + 20)
    opt = pe + 24
    if opt + opt_size > len(data) or opt_size < 2:
        raise ValueError("truncated PE optional header")
    magic, = struct.unpack_from("<H", data, opt)
    if magic == 0x10B:          # PE32
        dirs_count_at, dirs_at = opt + 92, opt + 96
    elif magic == 0x20B:        # PE32+
        dirs_count_at, dirs_at = opt + 108, opt + 112
    else:
        raise ValueError(f"unknown PE optional header magic {magic:#x}")
    if dirs_count_at + 4 > opt + opt_size:
        raise ValueError("PE optional header too short for its data directories")
    ndirs, = struct.unpack_from("<I", data, dirs_count_at)
    if ndirs <= CERT_TABLE_INDEX or dirs_at + 8 * ndirs > opt + opt_size:
        raise ValueError("the PE image has no Certificate Table directory entry")
    size_of_headers, = struct.unpack_from("<I", data, opt + 60)
    cert_entry = dirs_at + 8 * CERT_TABLE_INDEX
    cert_table = struct.unpack_from("<II", data, cert_entry)
    section_table = opt + opt_size
    if section_table + 40 * nsections > size_of_headers or size_of_headers > len(data):
        raise ValueError("the PE section table does not fit in SizeOfHeaders")
    sections = []
    for i in range(nsections):
        raw_size, raw_at = struct.unpack_from("<II", data, section_table + 40 * i + 16)
        if raw_size == 0:
            continue
        if raw_at < size_of_headers or raw_at + raw_size > len(data):
            raise ValueError(f"PE section {i} ({raw_at:#x}+{raw_size:#x}) lies outside the file's data")
        sections.append((raw_at, raw_size))
    sections.sort()
    for (a, n), (b, _) in zip(sections, sections[1:], strict=False):
        if a + n > b:
            raise ValueError(f"PE sections at {a:#x} and {b:#x} overlap")
    if cert_table != (0, 0):
        at, size = cert_table
        end = sections[-1][0] + sections[-1][1] if sections else size_of_headers
        if at < end or at + size != len(data):
            raise ValueError("the PE image's certificate table is not at its end")
    return PeLayout(opt + 64, cert_entry, size_of_headers, tuple(sections), cert_table)


def unsigned(data: bytes) -> bytes:
    """The image without its certificate table (and without the directory entry)."""
    layout = parse(data)
    if layout.cert_table == (0, 0):
        return data
    out = bytearray(data[:layout.cert_table[0]])
    out[layout.cert_entry_offset:layout.cert_entry_offset + 8] = bytes(8)
    return bytes(out)


def image_hash(data: bytes) -> bytes:
    """The SHA-256 Authenticode hash of a PE image (Microsoft's algorithm, as
    edk2 and sbsign compute it)."""
    layout = parse(data)
    h = hashlib.sha256()
    h.update(data[:layout.checksum_offset])
    h.update(data[layout.checksum_offset + 4:layout.cert_entry_offset])
    h.update(data[layout.cert_entry_offset + 8:layout.size_of_headers])
    hashed = layout.size_of_headers
    for at, size in layout.sections:
        h.update(data[at:at + size])
        hashed += size
    end = len(data) - layout.cert_table[1]
    if end > hashed:
        h.update(data[hashed:end])
    return h.digest()


# --- signing -----------------------------------------------------------------------
def _indirect_data(digest: bytes) -> bytes:
    """SpcIndirectDataContent: SpcPeImageData (no flags, the customary
    "<<<Obsolete>>>" file link) and the image's DigestInfo."""
    obsolete = "<<<Obsolete>>>".encode("utf-16-be")
    pe_image_data = _seq(_tlv(0x03, b"\x00"),                       # flags: an empty BIT STRING
                         _explicit(0, _tlv(0xA2, _tlv(0x80, obsolete))))   # file [2] { unicode [0] }
    return _seq(_seq(_oid(OID_SPC_PE_IMAGE_DATA), pe_image_data),
                _seq(_algorithm(OID_SHA256), _tlv(0x04, digest)))


def _der_content(der: bytes) -> bytes:
    """The content octets of one DER TLV (PKCS#7 digests the content without its tag and length)."""
    n = der[1]
    if n < 0x80:
        return der[2:]
    return der[2 + (n & 0x7F):]


def signed_data(digest: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """A DER PKCS#7 ContentInfo (SignedData) over an Authenticode image hash."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("UEFI secure boot needs an RSA key")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise ValueError("the secure boot key does not belong to the certificate")
    content = _indirect_data(digest)
    attributes = [_seq(_oid(OID_CONTENT_TYPE), _set_of(_oid(OID_SPC_INDIRECT_DATA))),
                  _seq(_oid(OID_MESSAGE_DIGEST),
                       _set_of(_tlv(0x04, hashlib.sha256(_der_content(content)).digest())))]
    # Signed as a SET OF (tag 0x31), stored as [0] IMPLICIT.
    signed_attrs = _set_of(*attributes)
    signature = key.sign(signed_attrs, padding.PKCS1v15(), hashes.SHA256())
    signer_info = _seq(
        _int(1),
        _seq(cert.issuer.public_bytes(), _int(cert.serial_number)),
        _algorithm(OID_SHA256),
        b"\xa0" + signed_attrs[1:],
        _algorithm(OID_RSA_ENCRYPTION),
        _tlv(0x04, signature))
    signed = _seq(
        _int(1),
        _set_of(_algorithm(OID_SHA256)),
        _seq(_oid(OID_SPC_INDIRECT_DATA), _explicit(0, content)),
        _explicit(0, cert.public_bytes(serialization.Encoding.DER)),    # certificates [0] IMPLICIT SET OF
        _set_of(signer_info))
    return _seq(_oid(OID_SIGNED_DATA), _explicit(0, signed))


def sign(data: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """``data`` (a PE image: an EFI application, a UKI) signed with the RSA key
    ``key_pem`` whose certificate is ``cert_pem``.  An existing signature is
    replaced.  Deterministic: no signing time.

    The image is padded with zeros to 8 bytes (the hash covers the padding, as
    with sbsign), then the WIN_CERTIFICATE follows and the Certificate Table
    entry points at it.  The CheckSum field is left alone: the hash skips it
    and UEFI does not check it."""
    image = bytearray(unsigned(data))
    image += bytes(-len(image) % ALIGN)
    layout = parse(bytes(image))
    pkcs7 = signed_data(image_hash(bytes(image)), key_pem, cert_pem)
    entry = struct.pack("<IHH", 8 + len(pkcs7), WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA) + pkcs7
    entry += bytes(-len(entry) % ALIGN)
    struct.pack_into("<II", image, layout.cert_entry_offset, len(image), len(entry))
    return bytes(image) + entry


def certificates(data: bytes) -> list[bytes]:
    """The PKCS#7 blobs (DER) of a signed image's WIN_CERTIFICATE entries."""
    layout = parse(data)
    at, size = layout.cert_table
    found, end = [], at + size
    while at + 8 <= end:
        length, revision, kind = struct.unpack_from("<IHH", data, at)
        if length < 8 or at + length > end:
            raise ValueError(f"bad WIN_CERTIFICATE length {length} at {at:#x}")
        if kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            found.append(data[at + 8:at + length])
        at += length + (-length % ALIGN)
    return found

"""Distinguished names as the existing SSM and OpenSSL spell them.

The DN allow-list is compared by exact string and was written in OpenSSL's legacy
``/K=V/K=V`` form; the CA directory names its files by OpenSSL's name hash.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509

from ssm.crypto import der

# OpenSSL's short names, so DNs read exactly as ``openssl x509 -subject`` (compat) prints.
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}


def slash_dn(name: x509.Name) -> str:
    """The legacy OpenSSL ``/K=V/K=V`` form, in certificate order, unescaped: the form
    the DN allow-list was written in."""
    parts = []
    for rdn in name.rdns:
        avas = []
        for attr in rdn:
            key = _SHORT_NAMES.get(attr.oid.dotted_string, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            avas.append(f"{key}={value}")
        parts.append("/" + "+".join(avas))
    return "".join(parts)


# String types OpenSSL canonicalises for name hashes, and how their bytes read as text.
_CANONICAL_STRINGS = {12: "utf-8", 19: "latin-1", 20: "latin-1", 22: "latin-1", 26: "latin-1",
                      28: "utf-32-be", 30: "utf-16-be"}
_OSSL_SPACE = b" \t\n\v\f\r"


def name_hash(name: x509.Name) -> str:
    """OpenSSL's ``X509_NAME_hash`` of ``name``: the ``<hash>`` its CA directory files are
    named by. SHA-1 over the canonical form: each string value as UTF-8, ASCII lower-cased,
    whitespace trimmed and collapsed; the RDN SETs concatenated. '' if it cannot be read."""
    try:
        ((_, _, _, rdns),) = der.tlvs(name.public_bytes())
        canonical = b"".join(_canonical_rdn(contents) for _, _, _, contents in der.tlvs(rdns))
    except (ValueError, UnicodeDecodeError):
        return ""
    digest = hashlib.sha1(canonical).digest()  # noqa: S324 - OpenSSL's file naming, not security
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def _canonical_rdn(rdn: bytes) -> bytes:
    entries = []
    for _, _, _, ava in der.tlvs(rdn):
        (_, _, oid_header, oid), (_, tag, header, value) = der.tlvs(ava)
        encoding = _CANONICAL_STRINGS.get(tag)
        if encoding is None:
            canonical_value = header + value
        else:
            text = value.decode(encoding).encode("utf-8").strip(_OSSL_SPACE)
            text = re.sub(rb"[ \t\n\v\f\r]+", b" ", text).lower()
            canonical_value = der.encode(0x0C, text)
        entries.append(der.encode(0x30, oid_header + oid + canonical_value))
    return der.encode(0x31, b"".join(sorted(entries)))

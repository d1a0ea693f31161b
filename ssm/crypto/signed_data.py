"""CMS SignedData: the one SignerInfo, the certificate it names, and its signature.

cryptography has no public PKCS#7 verify API, so asn1crypto parses the structure and the
signature is checked here against the certificate the SignerInfo names, never just the
first certificate in the bag: that same certificate is the one whose chain is validated
and whose DN is returned.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Callable, Optional

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ssm.crypto.der import universal_values
from ssm.crypto.errors import CryptoException
from ssm.crypto.names import slash_dn

log = logging.getLogger(__name__)

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass
class Signed:
    """A SignedData with its one SignerInfo and the certificate that SignerInfo names."""

    signed_data: cms.SignedData
    signer_info: cms.SignerInfo
    signer: x509.Certificate
    signer_dn: str
    bag: list[x509.Certificate]


def parse_signed_data(der: bytes) -> cms.SignedData:
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise CryptoException(f"PKCS#7 structure is {info['content_type'].native}, not signed data")
        signed_data = info["content"]
        # Touch the top-level fields now so structural damage is reported here.
        len(signed_data["signer_infos"])
        return signed_data
    except CryptoException:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise CryptoException(f"signature is not a valid PKCS#7 structure: {e}") from e


class _BagCert:
    """A certificate from a message's bag, with what verify reads of it every time."""

    __slots__ = ("cert", "serial", "issuer_der", "dn")

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.serial = cert.serial_number
        self.issuer_der = cert.issuer.public_bytes()
        self.dn = slash_dn(cert.subject)


@functools.lru_cache(maxsize=256)
def _parse_bag_cert(der: bytes) -> Optional[_BagCert]:
    """Parsing is a function of the bytes alone, and a sender embeds the same
    certificate in every message: each is parsed once, not once per message. Nothing
    about trust is cached here; the chain, dates and CRLs are checked every time."""
    try:
        return _BagCert(x509.load_der_x509_certificate(der))
    except ValueError as e:
        log.debug("Ignoring unparsable certificate in PKCS#7 bag: %s", e)
        return None


def _bag(signed_data: cms.SignedData) -> list[_BagCert]:
    """Every certificate in the bag, de-duplicated (parsed by cryptography: much faster)."""
    out: list[_BagCert] = []
    certificates = signed_data["certificates"]
    if isinstance(certificates, core.Void):
        return out
    seen = set()
    for choice in certificates:
        if choice.name != "certificate":
            continue
        der = choice.chosen.dump()
        if der in seen:
            continue
        seen.add(der)
        parsed = _parse_bag_cert(der)
        if parsed is not None:
            out.append(parsed)
    return out


def _ski(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def identify_signer(signed_data: cms.SignedData) -> Signed:
    """The one SignerInfo and the certificate it names (never just the first in the bag)."""
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise CryptoException(f"message has {len(signer_infos)} signers; exactly one expected")
    signer_info = signer_infos[0]
    sid = signer_info["sid"]
    bag = _bag(signed_data)
    matches = []
    if sid.name == "issuer_and_serial_number":
        serial = sid.chosen["serial_number"].native
        issuer = sid.chosen["issuer"]
        issuer_der = issuer.dump()
        for entry in bag:
            if entry.serial != serial:
                continue
            # Exact DER first (the usual case); else OpenSSL-like normalised comparison.
            if entry.issuer_der == issuer_der or asn1_x509.Name.load(entry.issuer_der) == issuer:
                matches.append(entry)
    else:
        wanted = sid.chosen.native
        matches = [entry for entry in bag if _ski(entry.cert) == wanted]
    if not matches:
        raise CryptoException("signer certificate named by the signature is not included in the message")
    if len(matches) > 1:
        raise CryptoException("signature names an ambiguous signer: several certificates match")
    return Signed(signed_data, signer_info, matches[0].cert, matches[0].dn, [e.cert for e in bag])


_TAG_OCTET_STRING, _TAG_OID, _TAG_SEQUENCE, _TAG_SET = 4, 6, 16, 17
_OID_DATA = bytes.fromhex("2a864886f70d010701")  # 1.2.840.113549.1.7.1
_OID_CONTENT_TYPE = bytes.fromhex("2a864886f70d010903")  # 1.2.840.113549.1.9.3
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")  # 1.2.840.113549.1.9.4


def _attribute_values(signed_attrs: bytes) -> dict[bytes, list[tuple[int, bytes]]]:
    """Attribute OID -> its (tag, contents) values, from the DER SET OF Attribute.

    These bytes are exactly what the signature covers, so only the signer could have
    written them. Read at TLV level rather than through asn1crypto's typed CMS
    attributes, which are slow: only the content type and the message digest are used.
    """
    try:
        (set_tag, attributes), = universal_values(signed_attrs)
        if set_tag != _TAG_SET:
            raise ValueError("signed attributes are not a SET")
        values: dict[bytes, list[tuple[int, bytes]]] = {}
        for tag, attribute in universal_values(attributes):
            parts = universal_values(attribute)
            if tag != _TAG_SEQUENCE or len(parts) != 2 or parts[0][0] != _TAG_OID or parts[1][0] != _TAG_SET:
                raise ValueError("an attribute is not SEQUENCE { OID, SET }")
            values.setdefault(parts[0][1], []).extend(universal_values(parts[1][1]))
        return values
    except ValueError as e:
        raise CryptoException(f"malformed signed attributes: {e}") from e


def check_signature(signed: Signed, content: bytes) -> None:
    """Digest, content type and signature of the single SignerInfo over ``content``."""
    si = signed.signer_info
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise CryptoException(f"unsupported digest algorithm {digest_name}")
    econtent_type = signed.signed_data["encap_content_info"]["content_type"].native
    if econtent_type != "data":
        raise CryptoException(f"signed content type is {econtent_type}, not data")
    to_verify = _signed_bytes(si, digest_name, content)
    _verify_signature(si, signed.signer, to_verify, digest_name)


def _signed_bytes(si: cms.SignerInfo, digest_name: str, content: bytes) -> bytes:
    """The bytes the signature covers: the signed attributes, once they are shown to
    name ``content`` as data with its digest; without signed attributes, the content."""
    signed_attrs = si["signed_attrs"]
    if isinstance(signed_attrs, core.Void):
        return content
    to_verify = b"\x31" + signed_attrs.dump()[1:]  # the SET OF that was signed
    values = _attribute_values(to_verify)
    digests = values.get(_OID_MESSAGE_DIGEST, [])
    types = values.get(_OID_CONTENT_TYPE, [])
    if len(digests) != 1 or len(types) != 1:
        raise CryptoException("signature lacks a single message digest and content type attribute")
    if types[0] != (_TAG_OID, _OID_DATA):
        raise CryptoException("content type attribute does not match the signed content")
    if digests[0][0] != _TAG_OCTET_STRING or hashlib.new(digest_name, content).digest() != digests[0][1]:
        raise CryptoException("message digest mismatch: content was altered")
    return to_verify


def _verify_signature(
    si: cms.SignerInfo, signer: x509.Certificate, to_verify: bytes, digest_name: str
) -> None:
    """The SignerInfo's signature over ``to_verify`` with the signer's key, or why not."""
    algorithm = si["signature_algorithm"]
    try:
        signature_algo = algorithm.signature_algo
    except ValueError as e:
        raise CryptoException(f"unsupported signature algorithm: {e}") from e
    public_key = signer.public_key()
    signature = si["signature"].native
    chosen_hash = _HASHES[digest_name]()
    try:
        if signature_algo == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, to_verify, padding.PKCS1v15(), chosen_hash)
        elif signature_algo == "rsassa_pss" and isinstance(public_key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            pss_hash = params["hash_algorithm"]["algorithm"].native
            mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            if pss_hash not in _HASHES or mgf_hash not in _HASHES:
                raise CryptoException(f"unsupported RSA-PSS hash {pss_hash}/{mgf_hash}")
            public_key.verify(
                signature, to_verify,
                padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()), salt_length=params["salt_length"].native),
                _HASHES[pss_hash](),
            )
        elif signature_algo == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, to_verify, ec.ECDSA(chosen_hash))
        else:
            raise CryptoException(
                f"signature algorithm {signature_algo} does not fit the signer's "
                f"{type(public_key).__name__.replace('PublicKey', '')} key"
            )
    except InvalidSignature as e:
        raise CryptoException(
            "bad signature: the message was altered or not signed by this certificate"
        ) from e


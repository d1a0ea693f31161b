"""Signing a message and verifying a signed one: S/MIME over CMS SignedData."""

from __future__ import annotations

from typing import Optional, Union

from asn1crypto import core
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ssm.crypto.errors import CryptoException
from ssm.crypto.files import load_cert_file, load_key_file
from ssm.crypto.mime import base64_lines, new_boundary, plaintext, signed_parts
from ssm.crypto.signed_data import check_signature, identify_signer, parse_signed_data
from ssm.crypto.trust import TrustStore


def sign(text: str, certpath: str, keypath: str) -> str:
    """Detached ``multipart/signed`` S/MIME of ``text`` (``openssl smime -sign -text``):
    SHA-256, the signer certificate embedded, verifiable by ``openssl smime -verify``.
    Line breaks (CRLF, CR, LF) all become S/MIME's canonical CRLF.

    cryptography makes the signature; the MIME around it is assembled here because
    cryptography's S/MIME writer (Python's email generator) costs more than the
    signature itself for large messages.
    """
    if not isinstance(text, str):
        raise CryptoException(f"Invalid {type(text).__name__} argument to sign(): text expected")
    cert = load_cert_file(certpath)
    key = load_key_file(keypath)
    if cert.public_key() != key.public_key():
        raise CryptoException(f"certificate {certpath} does not match private key {keypath}")
    data = text.encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    content = b"Content-Type: text/plain\r\n\r\n" + data.replace(b"\n", b"\r\n")
    try:
        der = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(content)
            .add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER,
                  [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CryptoException(f"signing failed: {e}") from e
    return _multipart_signed(content, der)


def _multipart_signed(content: bytes, der: bytes) -> str:
    """The ``multipart/signed`` document around ``content`` and its detached signature,
    laid out as ``openssl smime -sign`` writes it."""
    boundary = new_boundary(content)
    head = (
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-256"; '
        f'boundary="{boundary}"\r\n\r\n'
        "This is an S/MIME signed message\r\n\r\n"
        f"--{boundary}\r\n"
    ).encode("ascii")
    tail = (
        f"\r\n--{boundary}\r\n"
        'Content-Type: application/x-pkcs7-signature; name="smime.p7s"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
    ).encode("ascii") + base64_lines(der, b"\r\n") + f"\r\n--{boundary}--\r\n".encode("ascii")
    return (head + content + tail).decode("utf-8")


def verify(
    signed_text: str, store: Union[TrustStore, str], check_crl: Optional[bool] = None
) -> tuple[str, str]:
    """Check a signed message and return (plaintext, signer DN).

    The signer is the certificate the SignerInfo names; its key must have made the
    signature, and that certificate must chain to a CA of ``store`` (and not be
    revoked, if the store checks CRLs). Any failure raises CryptoException with the reason.

    ``store`` is the caller's TrustStore, kept between messages. The existing SSM's
    form, a CA directory and ``check_crl``, still works: it makes a TrustStore for
    this one call, which then reads the CA directory afresh.
    """
    if signed_text is None:
        raise CryptoException("Invalid None argument to verify().")
    trust = _trust_store(store, check_crl)
    content, der, detached = signed_parts(signed_text)
    signed = identify_signer(parse_signed_data(der))
    if not detached:
        econtent = signed.signed_data["encap_content_info"]["content"]
        if isinstance(econtent, core.Void):
            raise CryptoException("opaque signed message carries no content")
        content = econtent.native
        if not isinstance(content, bytes):
            raise CryptoException("opaque signed message content is not an octet string")
    check_signature(signed, content)
    trust.validate(signed.signer, signed.bag, "signer certificate")
    return plaintext(content), signed.signer_dn


def _trust_store(store: Union[TrustStore, str], check_crl: Optional[bool]) -> TrustStore:
    """The store to judge by: the caller's own, or one over the CA directory it named."""
    if isinstance(store, TrustStore):
        if check_crl is not None:
            raise TypeError("verify(): check_crl goes with a CA directory; a TrustStore has its own")
        return store
    if check_crl is None:
        raise TypeError("verify(): a CA directory needs check_crl")
    return TrustStore(store, check_crl)


def get_signer_cert(signed_text: str) -> str:
    """PEM of the certificate the signature's SignerInfo names (not validated)."""
    _, der, _ = signed_parts(signed_text)
    signed = identify_signer(parse_signed_data(der))
    return signed.signer.public_bytes(serialization.Encoding.PEM).decode("ascii")

"""Encrypting a message for its receiver and decrypting one: S/MIME enveloped-data."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from ssm.crypto.errors import CryptoException
from ssm.crypto.files import load_cert_file, load_key_file
from ssm.crypto.mime import PKCS7_MIME, base64_lines, decode_base64, pkcs7_kind, top_level
from ssm.crypto.names import slash_dn

_CIPHERS = {"aes128": algorithms.AES128, "aes256": algorithms.AES256}


def encrypt(text: str, certpath: str, cipher: str = "aes128") -> str:
    """``application/x-pkcs7-mime`` enveloped-data for the holder of ``certpath``, as
    ``openssl smime -encrypt`` writes it; the bytes are kept exactly (no LF→CRLF), so
    ``openssl smime -decrypt`` returns the text byte for byte."""
    if not isinstance(text, str):
        raise CryptoException(f"Invalid {type(text).__name__} argument to encrypt(): text expected")
    algorithm = _CIPHERS.get(str(cipher).lower())
    if algorithm is None:
        supported = ", ".join(sorted(_CIPHERS))
        if str(cipher).lower() == "aes192":
            raise CryptoException(f"Invalid cipher aes192: not supported by cryptography (use {supported})")
        raise CryptoException(f"Invalid cipher {cipher}: use one of {supported}")
    cert = load_cert_file(certpath)
    try:
        der = (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(text.encode("utf-8"))
            .add_recipient(cert)
            .set_content_encryption_algorithm(algorithm)  # type: ignore[arg-type]  # AES128 or AES256
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CryptoException(f"encryption failed: {e}") from e
    head = (
        b"MIME-Version: 1.0\n"
        b'Content-Disposition: attachment; filename="smime.p7m"\n'
        b'Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\n'
        b"Content-Transfer-Encoding: base64\n\n"
    )
    return (head + base64_lines(der, b"\n")).decode("ascii")


def decrypt(encrypted_text: str, certpath: str, keypath: str) -> str:
    """The plaintext of an enveloped-data message, byte for byte as encrypted."""
    if not isinstance(encrypted_text, str):
        raise CryptoException(f"Invalid {type(encrypted_text).__name__} argument to decrypt()")
    data = encrypted_text.encode("utf-8", "surrogateescape")
    try:
        mime_type, params, headers, body = top_level(data)
    except CryptoException:
        raise CryptoException("message is not S/MIME encrypted (no MIME header)") from None
    if mime_type not in PKCS7_MIME or pkcs7_kind(params, data, body) != "enveloped-data":
        raise CryptoException(f"message is not S/MIME encrypted (Content-Type: {mime_type})")
    der = decode_base64(data[body:], headers)
    cert = load_cert_file(certpath)
    key = load_key_file(keypath)
    try:
        plain = pkcs7.pkcs7_decrypt_der(der, cert, key, [])  # type: ignore[arg-type]  # not RSA: TypeError below
    except UnsupportedAlgorithm as e:
        raise CryptoException(f"decryption failed: unsupported cipher: {e}") from e
    except (ValueError, TypeError) as e:
        raise CryptoException(f"decryption failed (not encrypted for {slash_dn(cert.subject)}?): {e}") from e
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CryptoException(f"decrypted message is not valid UTF-8: {e}") from e

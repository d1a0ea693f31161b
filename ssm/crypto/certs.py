"""Start-up checks of the host and server certificates, and their subjects."""

from __future__ import annotations

import datetime as dt
import logging
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ssm.crypto.errors import CryptoException
from ssm.crypto.files import load_cert_file, load_key_file
from ssm.crypto.names import slash_dn
from ssm.crypto.trust import TrustStore

log = logging.getLogger(__name__)

# Certificates must stay valid at least this long for the start-up checks.
EXPIRY_MARGIN = dt.timedelta(seconds=86400)


def check_cert_key(certpath: str, keypath: str) -> bool:
    """Whether the certificate and private key files belong together (start-up check).

    The same file for both is refused: a bundle there usually means a misconfiguration.
    """
    try:
        if os.path.exists(certpath) and os.path.exists(keypath) and os.path.samefile(certpath, keypath):
            log.error("Certificate and key are the same file: %s", certpath)
            return False
        cert = load_cert_file(certpath)
        key = load_key_file(keypath)
    except (CryptoException, OSError) as e:
        log.error("Cannot compare certificate and key: %s", e)
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def verify_cert(certstring: str, capath: str, check_crls: bool) -> bool:
    """Whether a PEM certificate chains to a CA in ``capath`` (and is not revoked, with
    ``check_crls``). The reason for a False is logged."""
    try:
        TrustStore(capath, check_crls).validate(_load_pem_cert(certstring))
    except CryptoException as e:
        log.warning("Certificate verification failed: %s", e)
        return False
    return True


def verify_cert_path(certpath: str, capath: str, check_crls: bool) -> bool:
    """``verify_cert`` for a certificate file (the server certificate check)."""
    try:
        cert = load_cert_file(certpath)
        TrustStore(capath, check_crls).validate(cert)
    except CryptoException as e:
        log.warning("Certificate %s failed verification: %s", certpath, e)
        return False
    return True


def verify_cert_date(certpath: str) -> bool:
    """True if the certificate stays valid for at least another day (``-checkend 86400``)."""
    try:
        cert = load_cert_file(certpath)
    except CryptoException as e:
        log.error("%s", e)
        return False
    return cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + EXPIRY_MARGIN


def get_certificate_subject(certstring: str) -> str:
    """The subject of a PEM certificate in the legacy slash form the DN allow-list uses."""
    return slash_dn(_load_pem_cert(certstring).subject)


def _load_pem_cert(certstring: str) -> x509.Certificate:
    if not isinstance(certstring, str) or not certstring.strip():
        raise CryptoException("no certificate given")
    try:
        return x509.load_pem_x509_certificate(certstring.encode("ascii", "replace"))
    except ValueError as e:
        raise CryptoException(f"not a PEM certificate: {e}") from e

"""In-process S/MIME for the messenger: sign, verify, encrypt, decrypt, certificate checks.

The public functions keep the signatures of the existing SSM's crypto module; every
failure is a ``CryptoException`` whose text says what is wrong in terms an operator can
act on. The CA store is a ``TrustStore`` its owner holds (the receiver makes one at
start-up) and passes to ``verify`` in place of the CA directory and CRL flag.

Each module does one job and imports only modules below it (docs/design.md lists them);
this package re-exports the public API.
"""

from ssm.crypto.certs import (
    EXPIRY_MARGIN,
    check_cert_key,
    get_certificate_subject,
    verify_cert,
    verify_cert_date,
    verify_cert_path,
)
from ssm.crypto.envelope import decrypt, encrypt
from ssm.crypto.errors import CryptoException
from ssm.crypto.mime import MAX_HEADER_BYTES, is_encrypted
from ssm.crypto.signing import get_signer_cert, sign, verify
from ssm.crypto.trust import TrustStore

__all__ = [
    "EXPIRY_MARGIN",
    "MAX_HEADER_BYTES",
    "CryptoException",
    "TrustStore",
    "check_cert_key",
    "decrypt",
    "encrypt",
    "get_certificate_subject",
    "get_signer_cert",
    "is_encrypted",
    "sign",
    "verify",
    "verify_cert",
    "verify_cert_date",
    "verify_cert_path",
]

"""Certificate and private key files, each parsed once per version of the file.

A sender signs every message with the same certificate and key: parsing them each time
would cost more than the signature. The version is the file's stat (mtime, size, inode,
device), so a renewed certificate is read at the next call.
"""

from __future__ import annotations

import os
import threading
from typing import Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ssm.crypto.errors import CryptoException

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
StatKey = tuple[int, int, int, int]


def stat_key(path: str) -> StatKey:
    """What says a file changed, even when rewritten in place within the same second."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


_file_lock = threading.Lock()
_cert_files: dict[str, tuple[StatKey, x509.Certificate]] = {}
_key_files: dict[str, tuple[StatKey, PrivateKey]] = {}


def load_cert_file(path: str) -> x509.Certificate:
    """The PEM certificate at ``path``, parsed once per version of the file."""
    try:
        key = stat_key(path)
    except OSError as e:
        raise CryptoException(f"cannot read certificate {path}: {e.strerror}") from e
    cached = _cert_files.get(path)
    if cached and cached[0] == key:
        return cached[1]
    try:
        with open(path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except OSError as e:
        raise CryptoException(f"cannot read certificate {path}: {e.strerror}") from e
    except ValueError as e:
        raise CryptoException(f"{path} is not a PEM certificate: {e}") from e
    with _file_lock:
        _cert_files[path] = (key, cert)
    return cert


def load_key_file(path: str) -> PrivateKey:
    """The unencrypted PEM private key at ``path``, parsed (and validated) once per version."""
    try:
        key = stat_key(path)
    except OSError as e:
        raise CryptoException(f"cannot read private key {path}: {e.strerror}") from e
    cached = _key_files.get(path)
    if cached and cached[0] == key:
        return cached[1]
    try:
        with open(path, "rb") as handle:
            private_key = serialization.load_pem_private_key(handle.read(), password=None)
    except OSError as e:
        raise CryptoException(f"cannot read private key {path}: {e.strerror}") from e
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CryptoException(f"{path} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CryptoException(f"{path}: only RSA and EC keys are supported")
    with _file_lock:
        _key_files[path] = (key, private_key)
    return private_key


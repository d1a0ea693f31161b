"""Certificate and private key files, each parsed once per version of the file.

A sender signs every message with the same certificate and key: parsing them each time
would cost more than the signature. The version is the file's stat (mtime, size, inode,
device), so a renewed certificate is read at the next call.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar, Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ssm.crypto.errors import CryptoException

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
StatKey = tuple[int, int, int, int]
_T = TypeVar("_T")


def stat_key(path: str) -> StatKey:
    """What says a file changed, even when rewritten in place within the same second."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


_file_lock = threading.Lock()
_cert_files: dict[str, tuple[StatKey, x509.Certificate]] = {}
_key_files: dict[str, tuple[StatKey, PrivateKey]] = {}


def load_cert_file(path: str) -> x509.Certificate:
    """The PEM certificate at ``path``, parsed once per version of the file."""
    return _parsed_once(path, _cert_files, "certificate", _parse_cert)


def load_key_file(path: str) -> PrivateKey:
    """The unencrypted PEM private key at ``path``, parsed (and validated) once per version."""
    return _parsed_once(path, _key_files, "private key", _parse_key)


def _parsed_once(path: str, cache: dict[str, tuple[StatKey, _T]], what: str,
                 parse: Callable[[str, bytes], _T]) -> _T:
    """``parse(path, contents)`` of the file, or the cached result while its stat is unchanged."""
    try:
        key = stat_key(path)
    except OSError as e:
        raise CryptoException(f"cannot read {what} {path}: {e.strerror}") from e
    cached = cache.get(path)
    if cached and cached[0] == key:
        return cached[1]
    try:
        with open(path, "rb") as handle:
            contents = handle.read()
    except OSError as e:
        raise CryptoException(f"cannot read {what} {path}: {e.strerror}") from e
    parsed = parse(path, contents)
    with _file_lock:
        cache[path] = (key, parsed)
    return parsed


def _parse_cert(path: str, contents: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(contents)
    except ValueError as e:
        raise CryptoException(f"{path} is not a PEM certificate: {e}") from e


def _parse_key(path: str, contents: bytes) -> PrivateKey:
    try:
        private_key = serialization.load_pem_private_key(contents, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CryptoException(f"{path} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CryptoException(f"{path}: only RSA and EC keys are supported")
    return private_key

"""In-process S/MIME for the messenger: sign, verify, encrypt, decrypt, certificate checks.

The existing SSM spawns ``openssl`` four times to verify one message and authorises
the *first* certificate in the PKCS#7 bag, whoever signed (ssm.md §12, defect 1).
Here everything runs in-process: ``cryptography`` builds and decrypts S/MIME, and,
because it has no public PKCS#7 verify API, ``asn1crypto`` parses the CMS SignedData
so the signature is checked against the certificate the SignerInfo names. That same
certificate is the one whose chain is validated and whose DN is returned.

The public functions keep the signatures of the existing SSM's crypto module so the
sender and receiver can call them unchanged. Every failure is a ``CryptoException``
whose text says what is wrong in terms an operator can act on.

Certificate paths are judged by OpenSSL's own validator (pyOpenSSL's X509Store over the
CA directory ``capath``, OpenSSL's hashed layout: ``<hash>.N`` certificates and
``<hash>.rN`` CRLs), so the verdict is ``openssl verify``'s. The store is kept between
calls; a call costs a ``stat`` of the directory plus one per CA or CRL file the chain
used, so changes (new CRLs from fetch-crl, even rewritten in place) are seen at the
next call.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as dt
import functools
import hashlib
import itertools
import logging
import os
import quopri
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import OpenSSL.crypto
from asn1crypto import cms, core
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

log = logging.getLogger(__name__)

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

# Certificates must stay valid at least this long for the start-up checks (ssm.md §7.5).
EXPIRY_MARGIN = dt.timedelta(seconds=86400)
# Top-level or inner MIME header blocks longer than this are not header blocks.
MAX_HEADER_BYTES = 64 * 1024


class CryptoException(Exception):
    """A crypto step failed; the message says why, for the log and the reject reason."""


# -- names -------------------------------------------------------------------------------

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


def _slash_dn(name: x509.Name) -> str:
    """The legacy OpenSSL ``/K=V/K=V`` form, in certificate order, unescaped (ssm.md §8).

    The DN allow-list is compared by exact string, and it was written in this form.
    """
    parts = []
    for rdn in name.rdns:
        avas = []
        for attr in rdn:
            key = _SHORT_NAMES.get(attr.oid.dotted_string, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            avas.append(f"{key}={value}")
        parts.append("/" + "+".join(avas))
    return "".join(parts)


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# -- small file caches -------------------------------------------------------------------


def _stat_key(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


_file_lock = threading.Lock()
_cert_files: dict[str, tuple[tuple[int, int, int, int], x509.Certificate]] = {}
_key_files: dict[str, tuple[tuple[int, int, int, int], PrivateKey]] = {}


def _load_cert_file(path: str) -> x509.Certificate:
    """The PEM certificate at ``path``, parsed once per version of the file."""
    try:
        key = _stat_key(path)
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


def _load_key_file(path: str) -> PrivateKey:
    """The unencrypted PEM private key at ``path``, parsed (and validated) once per version."""
    try:
        key = _stat_key(path)
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


# -- the CA directory, judged by OpenSSL -------------------------------------------------

StatKey = tuple[int, int, int, int]

# Files OpenSSL's hashed-directory lookup reads: <hash>.N certificates, <hash>.rN CRLs.
_HASHED_NAME = re.compile(r"^([0-9a-f]{8})\.(r?)[0-9]+$")

# OpenSSL's verify error codes (X509_V_ERR_*) that get a reason of their own.
_ERR_UNABLE_TO_GET_ISSUER_CERT = 2
_ERR_UNABLE_TO_GET_CRL = 3
_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE = 5
_ERR_CERT_SIGNATURE_FAILURE = 7
_ERR_CRL_SIGNATURE_FAILURE = 8
_ERR_CERT_NOT_YET_VALID = 9
_ERR_CERT_HAS_EXPIRED = 10
_ERR_CRL_NOT_YET_VALID = 11
_ERR_CRL_HAS_EXPIRED = 12
_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
_ERR_CERT_REVOKED = 23
_ERR_PATH_LENGTH_EXCEEDED = 25
_ERR_KEYUSAGE_NO_CERTSIGN = 32
_ERR_UNABLE_TO_GET_CRL_ISSUER = 33
_ERR_UNHANDLED_CRITICAL_EXTENSION = 34
_ERR_KEYUSAGE_NO_CRL_SIGN = 35
# Permitted/excluded subtree violations and name forms OpenSSL cannot check.
_ERR_NAME_CONSTRAINTS = range(47, 54)
_ERR_INVALID_CA = 79  # 24 before OpenSSL 3.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@functools.lru_cache(maxsize=1024)
def _openssl_x509(cert: x509.Certificate) -> OpenSSL.crypto.X509:
    """OpenSSL's form of a certificate, converted once: a sender's certificate and its
    CAs come with every message. Keyed by the certificate, whose equality and hash are
    its DER's; nothing about trust is cached here."""
    return OpenSSL.crypto.X509.from_cryptography(cert)


class _Snapshot:
    """An OpenSSL store over one CA directory, and the directory as it was when made.

    The store reads the directory itself (``X509_LOOKUP_hash_dir``, as ``openssl
    verify -CApath``), lazily, and keeps what it read; the stat keys say when that may
    no longer be what is on disk.
    """

    def __init__(self, capath: str, check_crls: bool) -> None:
        self.dir_key = _dir_key(capath)
        try:
            names = os.listdir(capath)
        except OSError as e:
            raise CryptoException(f"cannot read CA directory {capath}: {e.strerror}") from e
        self.files: dict[str, StatKey] = {}
        self.by_hash: dict[str, list[str]] = {}
        for name in names:
            match = _HASHED_NAME.match(name)
            if not match or (match.group(2) and not check_crls):
                continue
            try:
                self.files[name] = _stat_key(os.path.join(capath, name))
            except OSError:
                continue  # a dangling link: OpenSSL cannot read it either
            self.by_hash.setdefault(match.group(1), []).append(name)
        self.store = OpenSSL.crypto.X509Store()
        if check_crls:
            flags = OpenSSL.crypto.X509StoreFlags
            self.store.set_flags(flags.CRL_CHECK | flags.CRL_CHECK_ALL)
        self.store.load_locations(None, capath)

    def verify(self, leaf: OpenSSL.crypto.X509, bag: list[OpenSSL.crypto.X509]) -> list[OpenSSL.crypto.X509]:
        """The validated chain, leaf first; X509StoreContextError says why there is none."""
        return OpenSSL.crypto.X509StoreContext(self.store, leaf, bag or None).get_verified_chain()

    def files_for(self, chain: list[OpenSSL.crypto.X509]) -> list[str]:
        """The files OpenSSL may have read to build and check ``chain``: those named
        after a chain certificate's subject (its CA certificates and their CRLs)."""
        names: list[str] = []
        for cert in chain:
            names += self.by_hash.get(f"{cert.subject_name_hash():08x}", ())
        return names


def _dir_key(capath: str) -> StatKey:
    try:
        return _stat_key(capath)
    except OSError as e:
        raise CryptoException(f"cannot read CA directory {capath}: {e.strerror}") from e


class TrustStore:
    """The CAs (and, with ``check_crls``, CRLs) of one hashed CA directory, and the
    verdict on a certificate against them.

    OpenSSL's own validator makes the verdict, through pyOpenSSL, so it is the one
    ``openssl verify -CApath DIR -purpose any [-crl_check_all]`` gives, the tool the
    existing SSM used and operators' IGTF bundles are made for; a hand-written path
    builder disagreed with it in ways that matter (a version 1 end-entity certificate
    accepted as a CA, unknown critical extensions and name constraints ignored). No
    purpose is checked: grid host certificates lack emailProtection.

    OpenSSL keeps what it read from the directory, so a file rewritten in place
    (fetch-crl does this) would go unseen: each call costs a ``stat`` of the directory
    and of the files the chain came from, and the store is made afresh when any of
    them changed (or, after a refusal, when any file in the directory did).
    """

    def __init__(self, capath: str, check_crls: bool) -> None:
        self.capath = capath
        self.check_crls = bool(check_crls)
        self._lock = threading.Lock()
        self._snapshot: Optional[_Snapshot] = None

    def validate(
        self, cert: x509.Certificate, untrusted: Sequence[x509.Certificate] = (), what: str = "certificate"
    ) -> None:
        """Raise CryptoException saying why unless ``cert`` chains to a CA in capath
        (through ``untrusted`` intermediates, e.g. a message's certificate bag) and
        neither it nor a CA above it is expired or revoked."""
        leaf = _openssl_x509(cert)
        bag = [_openssl_x509(c) for c in untrusted if c is not cert]
        snapshot = self._current()
        try:
            if not self._changed(snapshot, snapshot.files_for(snapshot.verify(leaf, bag))):
                return
        except OpenSSL.crypto.X509StoreContextError as error:
            if not self._changed(snapshot, None):
                raise CryptoException(self._reason(error, cert, what)) from error
        # What the verdict rested on changed on disk since OpenSSL read it: judge again.
        try:
            self._rebuild().verify(leaf, bag)
        except OpenSSL.crypto.X509StoreContextError as error:
            raise CryptoException(self._reason(error, cert, what)) from error

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and _dir_key(self.capath) == snapshot.dir_key:
            return snapshot
        return self._rebuild()

    def _rebuild(self) -> _Snapshot:
        with self._lock:
            self._snapshot = _Snapshot(self.capath, self.check_crls)
            return self._snapshot

    def _changed(self, snapshot: _Snapshot, names: Optional[list[str]]) -> bool:
        """Whether the directory, or the named files (None: all), changed since ``snapshot``."""
        try:
            if _stat_key(self.capath) != snapshot.dir_key:
                return True
            for name in snapshot.files if names is None else names:
                if _stat_key(os.path.join(self.capath, name)) != snapshot.files[name]:
                    return True
        except OSError:
            return True
        return False

    # -- reasons ---------------------------------------------------------------------------

    def _reason(self, error: OpenSSL.crypto.X509StoreContextError, leaf: x509.Certificate, what: str) -> str:
        """OpenSSL's verify error as a sentence naming the certificate it concerns."""
        code, depth, text = error.errors
        try:
            cert = error.certificate.to_cryptography()
        except (ValueError, TypeError):
            cert = leaf
        failure = _Failure(code, depth, text, cert, f"{what} {_slash_dn(leaf.subject)}", self)
        explain = _EXPLANATIONS.get(code)
        if explain is None and code in _ERR_NAME_CONSTRAINTS:
            explain = _name_constraints
        if explain is None:
            return f"{failure.label} failed verification: {text} (OpenSSL verify error {code})"
        return explain(failure)

    def crls_for(self, issuer: x509.Name) -> list[tuple[str, x509.CertificateRevocationList]]:
        """The CRLs in capath that OpenSSL reads for a CA named ``issuer`` (for reasons)."""
        prefix = _name_hash(issuer)
        found: list[tuple[str, x509.CertificateRevocationList]] = []
        for index in itertools.count() if prefix else ():
            path = os.path.join(self.capath, f"{prefix}.r{index}")
            try:
                with open(path, "rb") as handle:
                    crl = x509.load_pem_x509_crl(handle.read())
            except (OSError, ValueError):
                break
            if crl.issuer == issuer:
                found.append((path, crl))
        return found


@dataclass
class _Failure:
    """One OpenSSL verify error and what a reason needs to name it."""

    code: int
    depth: int
    text: str
    cert: x509.Certificate  # the certificate the error concerns
    subject: str  # the certificate being validated: "signer certificate /C=..."
    store: TrustStore

    @property
    def label(self) -> str:
        """The certificate the error concerns, named within the chain being validated."""
        if self.depth == 0:
            return self.subject
        return f"{self.subject}: CA certificate {_slash_dn(self.cert.subject)}"

    @property
    def issuer(self) -> str:
        return _slash_dn(self.cert.issuer)


def _not_trusted(f: _Failure) -> str:
    return f"{f.label} not issued by a trusted CA in {f.store.capath} (no valid issuer {f.issuer} found)"


def _issuer_not_in_capath(f: _Failure) -> str:
    """The chain reached a CA in capath that is not self-signed: OpenSSL then looks for
    its issuer in capath only, never in the message's bag."""
    return (
        f"{f.label} not issued by a trusted CA in {f.store.capath} (no valid issuer {f.issuer} "
        f"found there; above a CA from the CA directory, every issuer must be in it too)"
    )


def _self_signed(f: _Failure) -> str:
    if f.depth == 0:
        return f"{f.label} is self-signed and not a trusted CA in {f.store.capath}"
    return (
        f"{f.subject} not issued by a trusted CA in {f.store.capath}: its chain ends at "
        f"self-signed {_slash_dn(f.cert.subject)}, which is not a trusted CA there"
    )


def _bad_signature(f: _Failure) -> str:
    return (
        f"{f.label} not issued by a trusted CA in {f.store.capath} "
        f"(its signature does not verify with the key of {f.issuer})"
    )


def _not_yet_valid(f: _Failure) -> str:
    return f"{f.label} not valid before {_when(f.cert.not_valid_before_utc)}"


def _expired(f: _Failure) -> str:
    return f"{f.label} expired on {_when(f.cert.not_valid_after_utc)}"


def _revoked(f: _Failure) -> str:
    serial = f.cert.serial_number
    for path, crl in f.store.crls_for(f.cert.issuer):
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        if entry is not None:
            return f"{f.label} revoked on {_when(entry.revocation_date_utc)} (serial {serial:#x}, CRL {path})"
    return f"{f.label} revoked (serial {serial:#x})"


def _not_a_ca(f: _Failure) -> str:
    cert = f.cert
    bc: Optional[x509.BasicConstraints]
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if cert.version == x509.Version.v1:
        why = "a version 1 certificate that is not self-signed: only a self-signed trust anchor may be v1"
    elif not _key_usage_allows(cert, "key_cert_sign"):
        why = "key usage does not allow certificate signing"
    elif bc is None:
        why = "no BasicConstraints CA:TRUE"
    elif not bc.ca:
        why = "BasicConstraints CA:FALSE"
    else:
        why = f.text
    return f"{f.label} is not a valid CA ({why})"


def _key_usage_allows(cert: x509.Certificate, usage: str) -> bool:
    try:
        return bool(getattr(cert.extensions.get_extension_for_class(x509.KeyUsage).value, usage))
    except x509.ExtensionNotFound:
        return True


def _path_length(f: _Failure) -> str:
    try:
        limit = f.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        limit = None
    return f"{f.label} path length constraint {limit} exceeded (too many CAs below it)"


def _no_cert_sign(f: _Failure) -> str:
    return f"{f.label} key usage does not allow certificate signing"


def _critical_extension(f: _Failure) -> str:
    unknown = [
        ext.oid.dotted_string for ext in f.cert.extensions
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)
    ]
    which = f" ({', '.join(unknown)})" if unknown else ""
    return f"{f.label} has an unhandled critical extension{which}"


def _name_constraints(f: _Failure) -> str:
    return f"{f.label} violates the name constraints of a CA above it (name constraints violation: {f.text})"


def _no_crl(f: _Failure) -> str:
    return f"{f.label}: no CRL for CA {f.issuer} in {f.store.capath} with CRL checking on"


def _bad_crl(f: _Failure) -> str:
    now = _now()
    crls = f.store.crls_for(f.cert.issuer)
    if f.code == _ERR_CRL_HAS_EXPIRED:
        why = [f"CRL {path} expired on {_when(crl.next_update_utc)}" for path, crl in crls
               if crl.next_update_utc is not None and crl.next_update_utc < now]
    elif f.code == _ERR_CRL_NOT_YET_VALID:
        why = [f"CRL {path} not valid before {_when(crl.last_update_utc)}" for path, crl in crls
               if crl.last_update_utc > now]
    elif f.code == _ERR_KEYUSAGE_NO_CRL_SIGN:
        why = ["the CA's key usage does not allow CRL signing"]
    elif f.code == _ERR_UNABLE_TO_GET_CRL_ISSUER:
        why = ["the CRL's issuer is not known"]
    else:
        why = [f"CRL {path} is not signed by the CA's key" for path, _ in crls] or ["bad CRL signature"]
    return f"{f.label}: no valid CRL for CA {f.issuer} with CRL checking on: {'; '.join(why) or f.text}"


_EXPLANATIONS = {
    _ERR_UNABLE_TO_GET_ISSUER_CERT: _issuer_not_in_capath,
    _ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: _not_trusted,
    _ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: _not_trusted,
    _ERR_DEPTH_ZERO_SELF_SIGNED_CERT: _self_signed,
    _ERR_SELF_SIGNED_CERT_IN_CHAIN: _self_signed,
    _ERR_CERT_SIGNATURE_FAILURE: _bad_signature,
    _ERR_CERT_NOT_YET_VALID: _not_yet_valid,
    _ERR_CERT_HAS_EXPIRED: _expired,
    _ERR_CERT_REVOKED: _revoked,
    _ERR_INVALID_CA: _not_a_ca,
    _ERR_PATH_LENGTH_EXCEEDED: _path_length,
    _ERR_KEYUSAGE_NO_CERTSIGN: _no_cert_sign,
    _ERR_UNHANDLED_CRITICAL_EXTENSION: _critical_extension,
    _ERR_UNABLE_TO_GET_CRL: _no_crl,
    _ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE: _bad_crl,
    _ERR_CRL_SIGNATURE_FAILURE: _bad_crl,
    _ERR_CRL_NOT_YET_VALID: _bad_crl,
    _ERR_CRL_HAS_EXPIRED: _bad_crl,
    _ERR_KEYUSAGE_NO_CRL_SIGN: _bad_crl,
    _ERR_UNABLE_TO_GET_CRL_ISSUER: _bad_crl,
}


# String types OpenSSL canonicalises for name hashes, and how their bytes read as text.
_CANONICAL_STRINGS = {12: "utf-8", 19: "latin-1", 20: "latin-1", 22: "latin-1", 26: "latin-1",
                      28: "utf-32-be", 30: "utf-16-be"}
_OSSL_SPACE = b" \t\n\v\f\r"


def _name_hash(name: x509.Name) -> str:
    """OpenSSL's ``X509_NAME_hash`` of ``name``: the ``<hash>`` its CA directory files are
    named by. SHA-1 over the canonical form: each string value as UTF-8, ASCII lower-cased,
    whitespace trimmed and collapsed; the RDN SETs concatenated. '' if it cannot be read."""
    try:
        ((_, _, rdns),) = _tlvs(name.public_bytes())
        canonical = b"".join(_canonical_rdn(contents) for _, _, contents in _tlvs(rdns))
    except (ValueError, UnicodeDecodeError):
        return ""
    digest = hashlib.sha1(canonical).digest()  # noqa: S324 - OpenSSL's file naming, not security
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def _canonical_rdn(rdn: bytes) -> bytes:
    entries = []
    for _, _, ava in _tlvs(rdn):
        (_, oid_header, oid), (tag, header, value) = _tlvs(ava)
        encoding = _CANONICAL_STRINGS.get(tag)
        if encoding is None:
            canonical_value = header + value
        else:
            text = value.decode(encoding).encode("utf-8").strip(_OSSL_SPACE)
            text = re.sub(rb"[ \t\n\v\f\r]+", b" ", text).lower()
            canonical_value = _der(0x0C, text)
        entries.append(_der(0x30, oid_header + oid + canonical_value))
    return _der(0x31, b"".join(sorted(entries)))


def _tlvs(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, header, contents) of each value in ``data``."""
    out = []
    while data:
        length = asn1_parser.peek(data)
        _, _, tag, header, contents, _ = asn1_parser.parse(data[:length], strict=True)
        out.append((tag, header, contents))
        data = data[length:]
    return out


def _der(tag_byte: int, contents: bytes) -> bytes:
    size = len(contents)
    if size < 0x80:
        return bytes([tag_byte, size]) + contents
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag_byte, 0x80 | len(length)]) + length + contents


_trust_lock = threading.Lock()
_trust_stores: dict[tuple[str, bool], TrustStore] = {}


def _trust_store(capath: str, check_crls: bool) -> TrustStore:
    """The shared TrustStore for ``capath``, for the module-level functions."""
    key = (capath, bool(check_crls))
    store = _trust_stores.get(key)
    if store is None:
        with _trust_lock:
            store = _trust_stores.setdefault(key, TrustStore(capath, check_crls))
    return store


def _validate(
    cert: x509.Certificate,
    capath: str,
    check_crls: bool,
    extra: Optional[list[x509.Certificate]] = None,
    what: str = "certificate",
) -> None:
    _trust_store(capath, check_crls).validate(cert, extra or (), what)


# -- MIME --------------------------------------------------------------------------------

_TOKEN = re.compile(rb"^[!#-'*+.0-9A-Z^-~-]+$")


def _split_headers(data: bytes, start: int = 0) -> Optional[tuple[dict[str, str], int]]:
    """Parse an RFC 822 header block at ``data[start:]``.

    Returns (lower-cased name -> unfolded value, offset of the body), or None when the
    text there is not a header block followed by a blank line. Only the header lines
    are looked at, so this is cheap even for a large body.
    """
    headers: dict[str, str] = {}
    last: Optional[str] = None
    pos = start
    limit = min(len(data), start + MAX_HEADER_BYTES)
    while pos < limit:
        eol = data.find(b"\n", pos, limit)
        if eol < 0:
            return None
        line = data[pos:eol]
        if line.endswith(b"\r"):
            line = line[:-1]
        pos = eol + 1
        if not line:
            return (headers, pos) if headers else None
        if line[:1] in (b" ", b"\t"):
            if last is None:
                return None
            headers[last] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            return None
        last = name.decode("ascii").lower()
        headers[last] = value.strip().decode("utf-8", "replace")
    return None


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; k=v; k="v"`` -> ("type/subtype", {k: v}) with lower-case keys."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" \t;").lower()
        i = eq + 1
        while i < len(rest) and rest[i] in " \t":
            i += 1
        if i < len(rest) and rest[i] == '"':
            j = rest.find('"', i + 1)
            j = len(rest) if j < 0 else j
            if "\\" not in rest[i + 1:j]:  # the usual case: no escapes, no need to walk it
                params[key] = rest[i + 1:j]
            else:
                j = i + 1
                chars = []
                while j < len(rest) and rest[j] != '"':
                    if rest[j] == "\\" and j + 1 < len(rest):
                        j += 1
                    chars.append(rest[j])
                    j += 1
                params[key] = "".join(chars)
            semi = rest.find(";", j)
        else:
            semi = rest.find(";", i)
            params[key] = (rest[i:] if semi < 0 else rest[i:semi]).strip()
        i = len(rest) if semi < 0 else semi + 1
    return main.strip().lower(), params


def _top_level(data: bytes) -> tuple[str, dict[str, str], dict[str, str], int]:
    start = 0
    while start < len(data) and data[start] in b"\r\n":
        start += 1  # blank lines before the headers (some transports add them)
    parsed = _split_headers(data, start)
    if parsed is None or "content-type" not in parsed[0]:
        raise CryptoException("not an S/MIME message: no MIME header with a Content-Type")
    headers, body = parsed
    mime_type, params = _parse_content_type(headers["content-type"])
    return mime_type, params, headers, body


_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
_ENVELOPED_DATA_OID = bytes.fromhex("06092a864886f70d010703")


def _pkcs7_kind(params: dict[str, str], data: bytes, body: int) -> str:
    """``signed-data`` or ``enveloped-data`` (or other) for an application/pkcs7-mime part.

    The smime-type parameter decides; without it, the ContentInfo's OID does."""
    kind = params.get("smime-type", "").lower()
    if kind:
        return kind
    head = b"".join(data[body:body + 200].split())[:64]
    try:
        der = base64.b64decode(head[: len(head) // 4 * 4])
    except (binascii.Error, ValueError):
        return ""
    if _SIGNED_DATA_OID in der[:24]:
        return "signed-data"
    if _ENVELOPED_DATA_OID in der[:24]:
        return "enveloped-data"
    return ""


_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")


def is_encrypted(text: str) -> bool:
    """Whether ``text`` is an S/MIME enveloped-data message, judged by its top-level
    Content-Type (not by a substring anywhere, which misreads opaque-signed messages)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        mime_type, params, _, body = _top_level(data)
    except CryptoException:
        return False
    return mime_type in _PKCS7_MIME and _pkcs7_kind(params, data, body) == "enveloped-data"


def _find_delimiter(data: bytes, delim: bytes, start: int) -> int:
    """Offset of the next ``--boundary`` line start at or after ``start``, or -1."""
    pos = start
    while True:
        if pos == 0 and data.startswith(delim):
            hit = 0
        else:
            found = data.find(b"\n" + delim, max(pos - 1, 0))
            if found < 0:
                return -1
            hit = found + 1
        after = data[hit + len(delim): hit + len(delim) + 2]
        if after.startswith(b"--") or after[:1] in (b"", b"\r", b"\n", b" ", b"\t"):
            return hit
        pos = hit + 1


def _multipart_parts(data: bytes, body: int, boundary: str) -> list[bytes]:
    """The parts of a multipart body; the line break before a delimiter belongs to it."""
    delim = b"--" + boundary.encode("ascii", "replace")
    hit = _find_delimiter(data, delim, body)
    if hit < 0:
        raise CryptoException("malformed multipart/signed message: boundary not found")
    parts = []
    while True:
        after = hit + len(delim)
        if data.startswith(b"--", after):
            return parts
        eol = data.find(b"\n", after)
        if eol < 0:
            break
        start = eol + 1
        nxt = _find_delimiter(data, delim, start)
        if nxt < 0:
            break
        end = nxt - 1
        if end > start and data[end - 1:end] == b"\r":
            end -= 1
        parts.append(data[start:end])
        hit = nxt
    raise CryptoException("truncated multipart/signed message: closing boundary missing")


def _canonical(content: bytes) -> bytes:
    """CRLF line endings, as the signer digested them (mail transport may have made LF).

    Counting is much cheaper than replacing, and the content is usually canonical already.
    """
    if content.count(b"\n") == content.count(b"\r\n"):
        return content
    return content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _signed_parts(signed_text: str) -> tuple[bytes, bytes, bool]:
    """(content, DER SignedData, detached) from a multipart/signed or opaque message."""
    if not isinstance(signed_text, str):
        raise CryptoException(f"Invalid {type(signed_text).__name__} argument: signed text expected")
    data = signed_text.encode("utf-8", "surrogateescape")
    if not data.strip():
        raise CryptoException("empty message: nothing to verify")
    mime_type, params, headers, body = _top_level(data)
    if mime_type == "multipart/signed":
        boundary = params.get("boundary")
        if not boundary:
            raise CryptoException("malformed multipart/signed message: no boundary parameter")
        parts = _multipart_parts(data, body, boundary)
        if len(parts) != 2:
            raise CryptoException(f"malformed multipart/signed message: {len(parts)} parts, 2 expected")
        content, signature_part = parts
        parsed = _split_headers(signature_part)
        if parsed is None:
            raise CryptoException("malformed multipart/signed message: signature part has no headers")
        sig_headers, sig_body = parsed
        sig_type, _ = _parse_content_type(sig_headers.get("content-type", ""))
        if sig_type not in _PKCS7_SIGNATURE:
            raise CryptoException(f"malformed multipart/signed message: signature part is {sig_type!r}")
        der = _decode_base64(signature_part[sig_body:], sig_headers)
        return _canonical(content), der, True
    if mime_type in _PKCS7_MIME:
        kind = _pkcs7_kind(params, data, body)
        if kind == "enveloped-data":
            raise CryptoException("message is encrypted: decrypt it before verifying")
        if kind != "signed-data":
            raise CryptoException(f"not a signed S/MIME message (smime-type={kind or 'missing'})")
        return b"", _decode_base64(data[body:], headers), False
    raise CryptoException(f"not a signed S/MIME message (Content-Type: {mime_type})")


def _decode_base64(payload: bytes, headers: dict[str, str]) -> bytes:
    cte = headers.get("content-transfer-encoding", "base64").strip().lower()
    if cte in ("binary", "8bit"):
        return payload
    if cte != "base64":
        raise CryptoException(f"unsupported Content-Transfer-Encoding {cte!r} for the PKCS#7 part")
    try:
        return base64.b64decode(payload)
    except (binascii.Error, ValueError) as e:
        raise CryptoException(f"PKCS#7 part is not valid base64: {e}") from e


# -- CMS SignedData ----------------------------------------------------------------------

_HASHES = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass
class _Signed:
    signed_data: cms.SignedData
    signer_info: cms.SignerInfo
    signer: x509.Certificate
    signer_dn: str
    bag: list[x509.Certificate]


def _parse_signed_data(der: bytes) -> cms.SignedData:
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
        self.dn = _slash_dn(cert.subject)


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
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type]


def _identify_signer(signed_data: cms.SignedData) -> _Signed:
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
    return _Signed(signed_data, signer_info, matches[0].cert, matches[0].dn, [e.cert for e in bag])


_TAG_OCTET_STRING, _TAG_OID, _TAG_SEQUENCE, _TAG_SET = 4, 6, 16, 17
_OID_DATA = bytes.fromhex("2a864886f70d010701")  # 1.2.840.113549.1.7.1
_OID_CONTENT_TYPE = bytes.fromhex("2a864886f70d010903")  # 1.2.840.113549.1.9.3
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")  # 1.2.840.113549.1.9.4


def _der_values(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, contents) of each universal value in ``data``, read by asn1crypto's parser."""
    values = []
    while data:
        length = asn1_parser.peek(data)
        class_, _method, tag, _header, contents, _trailer = asn1_parser.parse(data[:length], strict=True)
        if class_ != 0:
            raise ValueError(f"unexpected tag class {class_}")
        values.append((tag, contents))
        data = data[length:]
    return values


def _attribute_values(signed_attrs: bytes) -> dict[bytes, list[tuple[int, bytes]]]:
    """Attribute OID -> its (tag, contents) values, from the DER SET OF Attribute.

    These bytes are exactly what the signature covers, so only the signer could have
    written them. Read at TLV level: asn1crypto's typed CMS attributes cost a fifth of
    a verify, and only the content type and the message digest are used.
    """
    try:
        (set_tag, attributes), = _der_values(signed_attrs)
        if set_tag != _TAG_SET:
            raise ValueError("signed attributes are not a SET")
        values: dict[bytes, list[tuple[int, bytes]]] = {}
        for tag, attribute in _der_values(attributes):
            parts = _der_values(attribute)
            if tag != _TAG_SEQUENCE or len(parts) != 2 or parts[0][0] != _TAG_OID or parts[1][0] != _TAG_SET:
                raise ValueError("an attribute is not SEQUENCE { OID, SET }")
            values.setdefault(parts[0][1], []).extend(_der_values(parts[1][1]))
        return values
    except ValueError as e:
        raise CryptoException(f"malformed signed attributes: {e}") from e


def _check_signature(signed: _Signed, content: bytes) -> None:
    """Digest, content type and signature of the single SignerInfo over ``content``."""
    si = signed.signer_info
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise CryptoException(f"unsupported digest algorithm {digest_name}")
    econtent_type = signed.signed_data["encap_content_info"]["content_type"].native
    if econtent_type != "data":
        raise CryptoException(f"signed content type is {econtent_type}, not data")
    signed_attrs = si["signed_attrs"]
    if not isinstance(signed_attrs, core.Void):
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
    else:
        to_verify = content
    algorithm = si["signature_algorithm"]
    try:
        signature_algo = algorithm.signature_algo
    except ValueError as e:
        raise CryptoException(f"unsupported signature algorithm: {e}") from e
    public_key = signed.signer.public_key()
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


# -- inner MIME entity -------------------------------------------------------------------

_MIME_HEADERS = ("content-type", "content-transfer-encoding", "mime-version")


def _plaintext(content: bytes) -> str:
    """The message text inside the signed MIME entity, as ``openssl smime -verify -text``
    plus the old SSM's decoding would give it: the header block (``Content-Type:
    text/plain`` from ``-text``, or e.g. ``text/xml`` with quoted-printable) is removed and
    the body decoded; without a MIME header block the content is the text. Line endings
    come back as LF.
    """
    parsed = _split_headers(content)
    body = content
    charset = "utf-8"
    if parsed is not None and any(name in parsed[0] for name in _MIME_HEADERS):
        headers, offset = parsed
        body = content[offset:]
        _, params = _parse_content_type(headers.get("content-type", "text/plain"))
        charset = params.get("charset", "utf-8")
        cte = headers.get("content-transfer-encoding", "7bit").strip().lower()
        if cte == "quoted-printable":
            body = quopri.decodestring(body)
        elif cte == "base64":
            try:
                body = base64.b64decode(body)
            except (binascii.Error, ValueError) as e:
                raise CryptoException(f"signed content is not valid base64: {e}") from e
        elif cte not in ("7bit", "8bit", "binary"):
            raise CryptoException(f"unsupported Content-Transfer-Encoding {cte!r} in signed content")
    try:
        codecs.lookup(charset)
    except LookupError:
        raise CryptoException(f"unknown charset {charset!r} in signed content") from None
    try:
        return body.replace(b"\r\n", b"\n").decode(charset)
    except UnicodeDecodeError as e:
        raise CryptoException(f"signed content is not valid {charset}: {e}") from e


# -- public API --------------------------------------------------------------------------


def check_cert_key(certpath: str, keypath: str) -> bool:
    """Whether the certificate and private key files belong together (start-up check).

    The same file for both is refused: a bundle there usually means a misconfiguration.
    """
    try:
        if os.path.exists(certpath) and os.path.exists(keypath) and os.path.samefile(certpath, keypath):
            log.error("Certificate and key are the same file: %s", certpath)
            return False
        cert = _load_cert_file(certpath)
        key = _load_key_file(keypath)
    except (CryptoException, OSError) as e:
        log.error("Cannot compare certificate and key: %s", e)
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


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
    cert = _load_cert_file(certpath)
    key = _load_key_file(keypath)
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
    boundary = _boundary(content)
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
    ).encode("ascii") + _base64_lines(der, b"\r\n") + f"\r\n--{boundary}--\r\n".encode("ascii")
    return (head + content + tail).decode("utf-8")


def _boundary(content: bytes) -> str:
    """A random MIME boundary that does not occur in ``content``."""
    while True:
        boundary = "----" + os.urandom(16).hex().upper()
        if boundary.encode("ascii") not in content:
            return boundary


def _base64_lines(der: bytes, newline: bytes) -> bytes:
    """Base64 in 64-column lines (as openssl writes it), each line ended by ``newline``."""
    encoded = base64.b64encode(der)
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    return newline.join(lines) + newline


def verify(signed_text: str, capath: str, check_crl: bool) -> tuple[str, str]:
    """Check a signed message and return (plaintext, signer DN).

    The signer is the certificate the SignerInfo names; its key must have made the
    signature, and that certificate must chain to a CA in ``capath`` (and not be revoked,
    with ``check_crl``). Any failure raises CryptoException with the reason.
    """
    if signed_text is None:
        raise CryptoException("Invalid None argument to verify().")
    content, der, detached = _signed_parts(signed_text)
    signed = _identify_signer(_parse_signed_data(der))
    if not detached:
        econtent = signed.signed_data["encap_content_info"]["content"]
        if isinstance(econtent, core.Void):
            raise CryptoException("opaque signed message carries no content")
        content = econtent.native
        if not isinstance(content, bytes):
            raise CryptoException("opaque signed message content is not an octet string")
    _check_signature(signed, content)
    _validate(signed.signer, capath, check_crl, signed.bag, "signer certificate")
    return _plaintext(content), signed.signer_dn


def get_signer_cert(signed_text: str) -> str:
    """PEM of the certificate the signature's SignerInfo names (not validated)."""
    _, der, _ = _signed_parts(signed_text)
    signed = _identify_signer(_parse_signed_data(der))
    return signed.signer.public_bytes(serialization.Encoding.PEM).decode("ascii")


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
    cert = _load_cert_file(certpath)
    try:
        der = (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(text.encode("utf-8"))
            .add_recipient(cert)
            .set_content_encryption_algorithm(algorithm)
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
    return (head + _base64_lines(der, b"\n")).decode("ascii")


def decrypt(encrypted_text: str, certpath: str, keypath: str) -> str:
    """The plaintext of an enveloped-data message, byte for byte as encrypted."""
    if not isinstance(encrypted_text, str):
        raise CryptoException(f"Invalid {type(encrypted_text).__name__} argument to decrypt()")
    data = encrypted_text.encode("utf-8", "surrogateescape")
    try:
        mime_type, params, headers, body = _top_level(data)
    except CryptoException:
        raise CryptoException("message is not S/MIME encrypted (no MIME header)") from None
    if mime_type not in _PKCS7_MIME or _pkcs7_kind(params, data, body) != "enveloped-data":
        raise CryptoException(f"message is not S/MIME encrypted (Content-Type: {mime_type})")
    der = _decode_base64(data[body:], headers)
    cert = _load_cert_file(certpath)
    key = _load_key_file(keypath)
    try:
        plain = pkcs7.pkcs7_decrypt_der(der, cert, key, [])
    except UnsupportedAlgorithm as e:
        raise CryptoException(f"decryption failed: unsupported cipher: {e}") from e
    except (ValueError, TypeError) as e:
        raise CryptoException(f"decryption failed (not encrypted for {_slash_dn(cert.subject)}?): {e}") from e
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CryptoException(f"decrypted message is not valid UTF-8: {e}") from e


def _load_pem_cert(certstring: str) -> x509.Certificate:
    if not isinstance(certstring, str) or not certstring.strip():
        raise CryptoException("no certificate given")
    try:
        return x509.load_pem_x509_certificate(certstring.encode("ascii", "replace"))
    except ValueError as e:
        raise CryptoException(f"not a PEM certificate: {e}") from e


def verify_cert(certstring: str, capath: str, check_crls: bool) -> bool:
    """Whether a PEM certificate chains to a CA in ``capath`` (and is not revoked, with
    ``check_crls``). The reason for a False is logged."""
    try:
        _validate(_load_pem_cert(certstring), capath, check_crls)
    except CryptoException as e:
        log.warning("Certificate verification failed: %s", e)
        return False
    return True


def verify_cert_path(certpath: str, capath: str, check_crls: bool) -> bool:
    """``verify_cert`` for a certificate file (the server certificate check)."""
    try:
        cert = _load_cert_file(certpath)
        _validate(cert, capath, check_crls)
    except CryptoException as e:
        log.warning("Certificate %s failed verification: %s", certpath, e)
        return False
    return True


def verify_cert_date(certpath: str) -> bool:
    """True if the certificate stays valid for at least another day (``-checkend 86400``)."""
    try:
        cert = _load_cert_file(certpath)
    except CryptoException as e:
        log.error("%s", e)
        return False
    return cert.not_valid_after_utc > _now() + EXPIRY_MARGIN


def get_certificate_subject(certstring: str) -> str:
    """The subject of a PEM certificate in the legacy slash form (ssm.md §8)."""
    return _slash_dn(_load_pem_cert(certstring).subject)

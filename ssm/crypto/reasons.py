"""OpenSSL's certificate verify errors as sentences an operator can act on.

OpenSSL says what failed by a code and the certificate at a depth of the chain; the
reason names that certificate within the chain being validated and, where the code
allows, says exactly what is wrong with it (the CRL file and date, the constraint).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from dataclasses import dataclass
from typing import Callable, Optional

import OpenSSL.crypto
from cryptography import x509

from ssm.crypto.names import name_hash, slash_dn

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


def explain(
    error: OpenSSL.crypto.X509StoreContextError, leaf: x509.Certificate, what: str, capath: str
) -> str:
    """OpenSSL's verify error as a sentence naming the certificate it concerns."""
    code, depth, text = error.errors
    try:
        cert = error.certificate.to_cryptography()
    except (ValueError, TypeError):
        cert = leaf
    failure = _Failure(code, depth, text, cert, f"{what} {slash_dn(leaf.subject)}", capath)
    reason = _EXPLANATIONS.get(code)
    if reason is None and code in _ERR_NAME_CONSTRAINTS:
        reason = _name_constraints
    if reason is None:
        return f"{failure.label} failed verification: {text} (OpenSSL verify error {code})"
    return reason(failure)


def crls_for(capath: str, issuer: x509.Name) -> list[tuple[str, x509.CertificateRevocationList]]:
    """The CRLs in capath that OpenSSL reads for a CA named ``issuer``."""
    prefix = name_hash(issuer)
    found: list[tuple[str, x509.CertificateRevocationList]] = []
    for index in itertools.count() if prefix else ():
        path = os.path.join(capath, f"{prefix}.r{index}")
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
    capath: str

    @property
    def label(self) -> str:
        """The certificate the error concerns, named within the chain being validated."""
        if self.depth == 0:
            return self.subject
        return f"{self.subject}: CA certificate {slash_dn(self.cert.subject)}"

    @property
    def issuer(self) -> str:
        return slash_dn(self.cert.issuer)


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _not_trusted(f: _Failure) -> str:
    return f"{f.label} not issued by a trusted CA in {f.capath} (no valid issuer {f.issuer} found)"


def _issuer_not_in_capath(f: _Failure) -> str:
    """The chain reached a CA in capath that is not self-signed: OpenSSL then looks for
    its issuer in capath only, never in the message's bag."""
    return (
        f"{f.label} not issued by a trusted CA in {f.capath} (no valid issuer {f.issuer} "
        f"found there; above a CA from the CA directory, every issuer must be in it too)"
    )


def _self_signed(f: _Failure) -> str:
    if f.depth == 0:
        return f"{f.label} is self-signed and not a trusted CA in {f.capath}"
    return (
        f"{f.subject} not issued by a trusted CA in {f.capath}: its chain ends at "
        f"self-signed {slash_dn(f.cert.subject)}, which is not a trusted CA there"
    )


def _bad_signature(f: _Failure) -> str:
    return (
        f"{f.label} not issued by a trusted CA in {f.capath} "
        f"(its signature does not verify with the key of {f.issuer})"
    )


def _not_yet_valid(f: _Failure) -> str:
    return f"{f.label} not valid before {_when(f.cert.not_valid_before_utc)}"


def _expired(f: _Failure) -> str:
    return f"{f.label} expired on {_when(f.cert.not_valid_after_utc)}"


def _revoked(f: _Failure) -> str:
    serial = f.cert.serial_number
    for path, crl in crls_for(f.capath, f.cert.issuer):
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
    elif not _allows_cert_sign(cert):
        why = "key usage does not allow certificate signing"
    elif bc is None:
        why = "no BasicConstraints CA:TRUE"
    elif not bc.ca:
        why = "BasicConstraints CA:FALSE"
    else:
        why = f.text
    return f"{f.label} is not a valid CA ({why})"


def _allows_cert_sign(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
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
    return f"{f.label}: no CRL for CA {f.issuer} in {f.capath} with CRL checking on"


def _bad_crl(f: _Failure) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    crls = crls_for(f.capath, f.cert.issuer)
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


_EXPLANATIONS: dict[int, Callable[[_Failure], str]] = {
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

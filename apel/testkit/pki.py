"""A throwaway certificate authority for tests, benchmarks and the quick start.

Everything is generated at run time, never shipped: a root CA, an intermediate CA,
host certificates (RSA and EC) issued by either, a broker certificate for
``localhost``/127.0.0.1, and the bad cases the receiver must refuse (expired,
revoked with a CRL, self-signed attacker, an impostor CA with the real CA's name
but another key). The CA directory is in OpenSSL's hashed layout
(``<hash>.0`` certificates, ``<hash>.r0`` CRLs) as ``capath`` expects.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

_OID_BY_SLASH_KEY = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
}


def name_from_slash(dn: str) -> x509.Name:
    """``/C=UK/O=Test/CN=host`` -> x509.Name with the attributes in that order."""
    attributes = []
    for part in dn.strip("/").split("/"):
        key, _, value = part.partition("=")
        attributes.append(x509.NameAttribute(_OID_BY_SLASH_KEY[key], value))
    return x509.Name(attributes)


@dataclass
class Identity:
    """A certificate, its key, and where both are written as PEM files."""

    name: str
    dn: str
    cert: x509.Certificate
    key: PrivateKey
    cert_path: str
    key_path: str


def _new_key(kind: str) -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def subject_hash(cert_path: str) -> str:
    """OpenSSL's subject-name hash, the file name a hashed CA directory needs."""
    out = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", cert_path],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


class TestPKI:
    """Build a CA and certificates under ``base``; identities are created on demand."""

    __test__ = False  # not a pytest test class

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)
        self.capath = os.path.join(self.base, "certificates")
        os.makedirs(self.capath, mode=0o755, exist_ok=True)
        self._revoked: list[x509.Certificate] = []
        self.ca = self._make_ca("ca", "/C=UK/O=eScience/OU=Test/CN=APEL Test CA", None, True)
        self.intermediate = self._make_ca(
            "intermediate", "/C=UK/O=eScience/OU=Test/CN=APEL Test Intermediate CA", self.ca, True
        )
        self.write_crls()

    # -- certificate authorities -------------------------------------------------

    def _make_ca(
        self, name: str, dn: str, issuer: Optional[Identity], install: bool, kind: str = "rsa"
    ) -> Identity:
        key = _new_key(kind)
        subject = name_from_slash(dn)
        issuer_name = issuer.cert.subject if issuer else subject
        signing_key = issuer.key if issuer else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        cert = builder.sign(signing_key, hashes.SHA256())
        identity = self._save(name, dn, cert, key)
        if install:
            self.install_ca(identity)
        return identity

    def install_ca(self, identity: Identity) -> str:
        """Copy a CA certificate into the hashed CA directory; returns its path."""
        digest = subject_hash(identity.cert_path)
        pem = identity.cert.public_bytes(serialization.Encoding.PEM)
        index = 0
        while True:
            path = os.path.join(self.capath, f"{digest}.{index}")
            if not os.path.exists(path):
                break
            with open(path, "rb") as handle:
                if handle.read() == pem:
                    return path
            index += 1
        _write(path, pem)
        return path

    def impostor_ca(self) -> Identity:
        """A CA with the real root's name but another key (not installed)."""
        return self._make_ca("impostor-ca", self.ca.dn, None, install=False)

    # -- end-entity certificates ---------------------------------------------------

    def host(
        self,
        name: str,
        cn: Optional[str] = None,
        kind: str = "rsa",
        issuer: Optional[Identity] = None,
        days: int = 365,
        expired: bool = False,
        self_signed: bool = False,
        dn: Optional[str] = None,
    ) -> Identity:
        """A host certificate (serverAuth + clientAuth, like grid host certs)."""
        cn = cn or f"{name}.example.org"
        dn = dn or f"/C=UK/O=eScience/OU=CLRC/L=RAL/CN={cn}"
        key = _new_key(kind)
        issuer = issuer or self.ca
        if expired:
            not_before = _now() - dt.timedelta(days=30)
            not_after = _now() - dt.timedelta(days=1)
        else:
            not_before = _now() - dt.timedelta(days=1)
            not_after = _now() + dt.timedelta(days=days)
        sans: list[x509.GeneralName] = [x509.DNSName(cn)]
        if cn == "localhost":
            import ipaddress

            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = (
            x509.CertificateBuilder()
            .subject_name(name_from_slash(dn))
            .issuer_name(name_from_slash(dn) if self_signed else issuer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        cert = builder.sign(key if self_signed else issuer.key, hashes.SHA256())
        return self._save(name, dn, cert, key)

    def revoke(self, identity: Identity) -> None:
        """Revoke a certificate and rewrite the CRLs in the CA directory."""
        self._revoked.append(identity.cert)
        self.write_crls()

    def write_crls(self) -> None:
        """A fresh CRL for each installed CA, as ``<hash>.r0``."""
        for ca in (self.ca, self.intermediate):
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(ca.cert.subject)
                .last_update(_now() - dt.timedelta(minutes=5))
                .next_update(_now() + dt.timedelta(days=30))
            )
            for cert in self._revoked:
                if cert.issuer == ca.cert.subject:
                    builder = builder.add_revoked_certificate(
                        x509.RevokedCertificateBuilder()
                        .serial_number(cert.serial_number)
                        .revocation_date(_now() - dt.timedelta(minutes=1))
                        .build()
                    )
            crl = builder.sign(ca.key, hashes.SHA256())
            digest = subject_hash(ca.cert_path)
            _write(
                os.path.join(self.capath, f"{digest}.r0"),
                crl.public_bytes(serialization.Encoding.PEM),
            )

    def remove_crls(self) -> None:
        for entry in os.listdir(self.capath):
            if ".r" in entry:
                os.unlink(os.path.join(self.capath, entry))

    # -- files for a Java broker -----------------------------------------------------

    def java_stores(self, identity: Identity, password: str = "changeit") -> tuple[str, str]:
        """(keystore, truststore) PKCS#12 files for ActiveMQ's sslContext."""
        keystore = os.path.join(self.base, f"{identity.name}.p12")
        truststore = os.path.join(self.base, "truststore.p12")
        _write(
            keystore,
            pkcs12.serialize_key_and_certificates(
                identity.name.encode(), identity.key, identity.cert,
                [self.ca.cert, self.intermediate.cert],
                serialization.BestAvailableEncryption(password.encode()),
            ),
            0o600,
        )
        if os.path.exists(truststore):
            os.unlink(truststore)
        for ca in (self.ca, self.intermediate):
            subprocess.run(
                ["keytool", "-importcert", "-noprompt", "-alias", ca.name, "-file", ca.cert_path,
                 "-keystore", truststore, "-storetype", "PKCS12", "-storepass", password],
                check=True, capture_output=True,
            )
        return keystore, truststore

    # -- storage ---------------------------------------------------------------------

    def _save(self, name: str, dn: str, cert: x509.Certificate, key: PrivateKey) -> Identity:
        cert_path = os.path.join(self.base, f"{name}.pem")
        key_path = os.path.join(self.base, f"{name}.key")
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        return Identity(name, dn, cert, key, cert_path, key_path)

"""Certificate path validation gives ``openssl verify``'s verdict, chain for chain.

Operators' CA directories (IGTF bundles, fetch-crl's CRLs) are made for OpenSSL, and the
existing SSM asked ``openssl verify -CApath``; a receiver that judges chains otherwise
either refuses good senders or, worse, accepts forged ones. So chains are generated at
random (seeded, so a failure can be replayed) with the features that decide a verdict:
version 1 and 3 certificates, BasicConstraints and path lengths, KeyUsage, unknown
critical extensions, name constraints, validity in the past, present and future, a CA's
rollover twins (same name and key, ``hash.0`` and ``hash.1``), CRLs present, missing,
expired, not yet valid, forged or revoking, and intermediates in the CA directory or only
in the message's certificate bag. ``verify_cert`` and ``verify`` must agree with the real
``openssl verify -CApath DIR -purpose any [-crl_check_all] [-untrusted bag.pem]`` on each,
with and without CRL checking.

Replay one case: ``CRYPTO_PATHS_SEED=<seed> pytest tests/test_crypto_paths.py -k 'case_17'``.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
import subprocess
from dataclasses import dataclass, field
from typing import Optional, Union

import OpenSSL.crypto
import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ssm import crypto
from ssm.crypto import CryptoException, names

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

SEED = int(os.environ.get("CRYPTO_PATHS_SEED", "1111"))
CASES = int(os.environ.get("CRYPTO_PATHS_CASES", "220"))
REWRITTEN_CASES = 40
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)
# Far enough from now that no verdict changes while the test runs.
WINDOWS = {
    "present": (NOW - 10 * DAY, NOW + 300 * DAY),
    "past": (NOW - 400 * DAY, NOW - 30 * DAY),
    "future": (NOW + 30 * DAY, NOW + 400 * DAY),
}
UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.99999.1.1")
TEXT = "APEL-individual-job-message: v0.3\nSite: TEST\n%%\n"


# -- plans: what a chain looks like (pure choices, cheap, reproducible) -------------------


@dataclass
class CertPlan:
    """The choices for one certificate."""

    version: int = 3
    basic_constraints: str = "ca"  # ca, absent, not-ca
    bc_critical: bool = True
    path_length: Optional[int] = None
    key_usage: str = "sign"  # sign, absent, no-certsign, no-crlsign (CAs); digital, absent (leaf)
    unknown_critical: bool = False
    name_constraints: Optional[tuple[str, str]] = None  # (permitted|excluded, dirname|dns)
    window: str = "present"
    akid: str = "keyid"  # keyid, none, full (keyid + issuer and serial)
    dn: str = ""
    san: Optional[str] = None

    def describe(self) -> str:
        if self.version == 1:
            parts = ["v1"]
        else:
            parts = [f"BC={self.basic_constraints}" + ("" if self.bc_critical else "(non-critical)")]
            if self.path_length is not None:
                parts.append(f"pathlen={self.path_length}")
            parts.append(f"KU={self.key_usage}")
            if self.unknown_critical:
                parts.append("unknown-critical-ext")
            if self.name_constraints:
                parts.append("NC=" + "/".join(self.name_constraints))
            if self.akid != "keyid":
                parts.append(f"AKID={self.akid}")
            if self.san:
                parts.append(f"SAN={self.san}")
        parts.append(f"{self.window} {self.dn}")
        return " ".join(parts)


@dataclass
class CAPlan:
    """A CA: its certificate, perhaps a rollover twin, where it is put, and its CRL."""

    cert: CertPlan
    placement: str = "capath"  # capath, bag, both, nowhere
    twin_window: Optional[str] = None  # a second certificate, same name and key
    twin_first: bool = False  # the twin is hash.0, the original hash.1
    crl: str = "good"  # good, missing, expired, future, revokes, stale-and-good, forged

    def describe(self) -> str:
        twin = f" twin={self.twin_window}{'(hash.0)' if self.twin_first else ''}" if self.twin_window else ""
        return f"[{self.cert.describe()} in={self.placement}{twin} crl={self.crl}]"


@dataclass
class ChainPlan:
    index: int
    key_kind: str  # ec or rsa
    cas: list[CAPlan]  # root first
    leaf: CertPlan

    def describe(self) -> str:
        chain = " -> ".join(ca.describe() for ca in self.cas)
        return f"case {self.index} (seed {SEED}, {self.key_kind}): {chain} -> leaf[{self.leaf.describe()}]"


def _pick(rng: random.Random, weighted: dict) -> object:
    return rng.choices(list(weighted), weights=list(weighted.values()))[0]


def _plan_ca_cert(rng: random.Random, index: int, level: int, root: bool) -> CertPlan:
    dn = rng.choice([
        f"/C=UK/O=eScience/OU=CA/CN=Test CA {index}-{level}",
        f"/DC=org/DC=grid/CN=Grid CA {index}-{level}",
    ])
    plan = CertPlan(dn=dn, window=_pick(rng, {"present": 0.93, "past": 0.035, "future": 0.035}))
    if rng.random() < (0.18 if root else 0.05):
        plan.version = 1
        return plan
    plan.basic_constraints = _pick(rng, {"ca": 0.92, "absent": 0.04, "not-ca": 0.04})
    plan.bc_critical = rng.random() < 0.85
    if plan.basic_constraints == "ca" and rng.random() < 0.25:
        plan.path_length = rng.choice([0, 1, 2])
    plan.key_usage = _pick(rng, {"sign": 0.76, "absent": 0.15, "no-certsign": 0.04, "no-crlsign": 0.05})
    plan.unknown_critical = rng.random() < 0.03
    if rng.random() < 0.12:
        plan.name_constraints = (rng.choice(["permitted", "excluded"]), rng.choice(["dirname", "dns"]))
    if not root:
        plan.akid = _pick(rng, {"keyid": 0.85, "none": 0.1, "full": 0.05})
    return plan


def _plan_leaf(rng: random.Random, index: int) -> CertPlan:
    host = f"host{index}." + rng.choice(["example.org", "example.net"])
    dn = rng.choice([
        f"/C=UK/O=eScience/OU=CLRC/CN={host}",
        f"/DC=org/DC=example/CN={host}",
        f"/C=UK/O=Elsewhere/CN={host}",
    ])
    plan = CertPlan(dn=dn, window=_pick(rng, {"present": 0.88, "past": 0.06, "future": 0.06}))
    if rng.random() < 0.08:
        plan.version = 1
        return plan
    plan.basic_constraints = _pick(rng, {"absent": 0.4, "not-ca": 0.52, "ca": 0.08})
    plan.key_usage = _pick(rng, {"digital": 0.6, "absent": 0.4})
    plan.unknown_critical = rng.random() < 0.05
    plan.akid = _pick(rng, {"keyid": 0.85, "none": 0.1, "full": 0.05})
    if rng.random() < 0.6:
        plan.san = host
    return plan


def plan_chain(index: int, tag: Optional[int] = None) -> ChainPlan:
    """Case ``index``'s chain; its names carry ``tag`` (default: the index)."""
    rng = random.Random(f"{SEED}-{index}")
    tag = index if tag is None else tag
    depth = rng.choice([1, 2, 2, 3, 3, 4])
    # Usually the upper CAs are in capath and the lower ones come in the bag; not always.
    cut = rng.randint(1, depth)
    cas = []
    for level in range(depth):
        root = level == 0
        ca = CAPlan(_plan_ca_cert(rng, tag, level, root))
        if root:
            ca.placement = _pick(rng, {"capath": 0.92, "bag": 0.04, "nowhere": 0.04})
        else:
            usual, other = ("capath", "bag") if level < cut else ("bag", "capath")
            ca.placement = _pick(rng, {usual: 0.8, "both": 0.1, other: 0.07, "nowhere": 0.03})
        if ca.placement != "nowhere" and rng.random() < 0.14:
            ca.twin_window = rng.choice(["present", "past", "future"])
            if ca.twin_window == ca.cert.window:
                ca.cert.window = "past" if ca.twin_window == "present" else "present"
            ca.twin_first = rng.random() < 0.5
        ca.crl = _pick(rng, {"good": 0.72, "missing": 0.07, "expired": 0.06, "future": 0.03,
                             "revokes": 0.07, "stale-and-good": 0.03, "forged": 0.02})
        cas.append(ca)
    return ChainPlan(index, "rsa" if rng.random() < 0.2 else "ec", cas, _plan_leaf(rng, tag))


# -- building the certificates, CRLs and CA directory ---------------------------------------

_RSA_POOL: list[PrivateKey] = []


def _rsa_keys(count: int, rng: random.Random) -> list[PrivateKey]:
    """Distinct RSA keys from a small pool: RSA key generation is slow."""
    while len(_RSA_POOL) < 8:
        _RSA_POOL.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return rng.sample(_RSA_POOL, count)


def _name(dn: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "L": NameOID.LOCALITY_NAME, "CN": NameOID.COMMON_NAME, "DC": NameOID.DOMAIN_COMPONENT}
    attributes = []
    for part in dn.strip("/").split("/"):
        key, _, value = part.partition("=")
        attributes.append(x509.NameAttribute(oids[key], value))
    return x509.Name(attributes)


def _sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def as_v1(cert: x509.Certificate, signing_key: PrivateKey) -> x509.Certificate:
    """``cert`` (which has no extensions) as version 1: cryptography only writes version 3."""
    return reencoded(cert, signing_key, version="v1")


def reencoded(cert: x509.Certificate, signing_key: PrivateKey, **fields: object) -> x509.Certificate:
    """``cert`` with the given TBSCertificate fields replaced, signed again."""
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    for key, value in fields.items():
        tbs[key] = value
    signature = _sign_bytes(signing_key, tbs.dump(force=True))
    return x509.load_der_x509_certificate(asn1_x509.Certificate({
        "tbs_certificate": tbs,
        "signature_algorithm": parsed["signature_algorithm"],
        "signature_value": signature,
    }).dump())


def _key_usage(kind: str) -> Optional[x509.KeyUsage]:
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                 encipher_only=False, decipher_only=False)
    if kind == "absent":
        return None
    if kind == "digital":
        flags["digital_signature"] = True
    else:
        flags["key_cert_sign"] = kind != "no-certsign"
        flags["crl_sign"] = kind != "no-crlsign"
    return x509.KeyUsage(**flags)


def _name_constraints(kind: tuple[str, str]) -> x509.NameConstraints:
    which, form = kind
    subtree: x509.GeneralName = (
        x509.DirectoryName(_name("/C=UK/O=eScience")) if form == "dirname" else x509.DNSName("example.org")
    )
    if which == "permitted":
        return x509.NameConstraints(permitted_subtrees=[subtree], excluded_subtrees=None)
    return x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=[subtree])


@dataclass
class Issuer:
    name: x509.Name
    key: PrivateKey
    cert: Optional[x509.Certificate] = None  # for AKID issuer+serial


def make_cert(plan: CertPlan, key: PrivateKey, issuer: Optional[Issuer], window: Optional[str] = None,
              serial: Optional[int] = None) -> x509.Certificate:
    """A certificate as ``plan`` says; ``issuer`` None makes it self-signed."""
    subject = _name(plan.dn)
    signer = issuer or Issuer(subject, key)
    not_before, not_after = WINDOWS[window or plan.window]
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(signer.name)
        .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
    )
    if plan.version == 3:
        for extension, critical in _extensions(plan, key, signer):
            builder = builder.add_extension(extension, critical)
    cert = builder.sign(signer.key, hashes.SHA256())
    return as_v1(cert, signer.key) if plan.version == 1 else cert


def _extensions(plan: CertPlan, key: PrivateKey, signer: Issuer) -> list[tuple[x509.ExtensionType, bool]]:
    out: list[tuple[x509.ExtensionType, bool]] = []
    if plan.basic_constraints != "absent":
        ca = plan.basic_constraints == "ca"
        constraints = x509.BasicConstraints(ca=ca, path_length=plan.path_length if ca else None)
        out.append((constraints, plan.bc_critical))
    usage = _key_usage(plan.key_usage)
    if usage is not None:
        out.append((usage, True))
    out.append((x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    if plan.akid != "none":
        akid = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key())  # type: ignore[arg-type]
        if plan.akid == "full" and signer.cert is not None:
            akid = x509.AuthorityKeyIdentifier(
                akid.key_identifier, [x509.DirectoryName(signer.cert.issuer)], signer.cert.serial_number
            )
        out.append((akid, False))
    if plan.san:
        out.append((x509.SubjectAlternativeName([x509.DNSName(plan.san)]), False))
    if plan.name_constraints:
        out.append((_name_constraints(plan.name_constraints), True))
    if plan.unknown_critical:
        out.append((x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True))
    return out


@dataclass
class BuiltCA:
    plan: CAPlan
    key: PrivateKey
    certs: list[x509.Certificate]  # in capath order (hash.0 first)


@dataclass
class Built:
    """A generated case on disk."""

    plan: ChainPlan
    capath: str
    leaf: x509.Certificate
    leaf_path: str
    key_path: str
    bag: list[x509.Certificate] = field(default_factory=list)
    bag_path: Optional[str] = None


def subject_hash(cert: x509.Certificate) -> str:
    return f"{OpenSSL.crypto.X509.from_cryptography(cert).subject_name_hash():08x}"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def install(capath: str, certs: list[x509.Certificate]) -> None:
    """Each certificate as the next free ``<hash>.N``, in the order given."""
    for cert in certs:
        digest = subject_hash(cert)
        index = 0
        while os.path.exists(os.path.join(capath, f"{digest}.{index}")):
            index += 1
        _write(os.path.join(capath, f"{digest}.{index}"), _pem(cert))


def make_crl(ca_name: x509.Name, key: PrivateKey, window: str = "present",
             revoked: tuple[int, ...] = ()) -> x509.CertificateRevocationList:
    last, next_ = {"present": (NOW - DAY, NOW + 7 * DAY), "past": (NOW - 20 * DAY, NOW - 2 * DAY),
                   "future": (NOW + 2 * DAY, NOW + 10 * DAY)}[window]
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(ca_name).last_update(last).next_update(next_)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - DAY).build()
        )
    return builder.sign(key, hashes.SHA256())


def _crls(ca: BuiltCA, children: list[x509.Certificate]) -> list[x509.CertificateRevocationList]:
    name = ca.certs[0].subject
    kind = ca.plan.crl
    if kind == "missing":
        return []
    if kind == "forged":
        return [make_crl(name, ec.generate_private_key(ec.SECP256R1()))]
    if kind == "revokes":
        return [make_crl(name, ca.key, revoked=tuple(c.serial_number for c in children))]
    if kind == "stale-and-good":
        return [make_crl(name, ca.key, "past"), make_crl(name, ca.key)]
    window = {"good": "present", "expired": "past", "future": "future"}[kind]
    return [make_crl(name, ca.key, window)]


def build(plan: ChainPlan, base: str) -> Built:
    capath = os.path.join(base, "certificates")
    os.makedirs(capath)
    rng = random.Random(f"{SEED}-{plan.index}-keys")
    rsa_keys = _rsa_keys(len(plan.cas) + 1, rng) if plan.key_kind == "rsa" else []

    def new_key(i: int) -> PrivateKey:
        return rsa_keys[i] if rsa_keys else ec.generate_private_key(ec.SECP256R1())

    built: list[BuiltCA] = []
    issuer: Optional[Issuer] = None
    for level, ca_plan in enumerate(plan.cas):
        key = new_key(level)
        cert = make_cert(ca_plan.cert, key, issuer)
        certs = [cert]
        if ca_plan.twin_window:
            twin = make_cert(ca_plan.cert, key, issuer, window=ca_plan.twin_window)
            certs = [twin, cert] if ca_plan.twin_first else [cert, twin]
        built.append(BuiltCA(ca_plan, key, certs))
        issuer = Issuer(cert.subject, key, cert)
    leaf_key = new_key(len(plan.cas))
    leaf = make_cert(plan.leaf, leaf_key, issuer)
    bag: list[x509.Certificate] = []
    for level, ca in enumerate(built):
        if ca.plan.placement in ("capath", "both"):
            install(capath, ca.certs)
        if ca.plan.placement in ("bag", "both"):
            bag += ca.certs
        children = built[level + 1].certs if level + 1 < len(built) else [leaf]
        for index, crl in enumerate(_crls(ca, children)):
            _write(os.path.join(capath, f"{subject_hash(ca.certs[0])}.r{index}"),
                   crl.public_bytes(serialization.Encoding.PEM))
    result = Built(
        plan, capath, leaf,
        _write(os.path.join(base, "leaf.pem"), _pem(leaf)),
        _write(os.path.join(base, "leaf.key"), leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        bag[::-1],  # nearest CA first, as senders usually ship them
    )
    if result.bag:
        result.bag_path = _write(os.path.join(base, "bag.pem"), b"".join(_pem(c) for c in result.bag))
    return result


# -- verdicts ------------------------------------------------------------------------------


def openssl_verify(case: Built, crls: bool, with_bag: bool) -> tuple[bool, str]:
    args = ["openssl", "verify", "-CApath", case.capath, "-purpose", "any"]
    if crls:
        args.append("-crl_check_all")
    if with_bag and case.bag_path:
        args += ["-untrusted", case.bag_path]
    out = subprocess.run([*args, case.leaf_path], capture_output=True, text=True, timeout=60)
    return out.returncode == 0, (out.stdout + out.stderr).strip().replace(case.capath, "CAPATH")


def with_bag(signed: str, certs: list[x509.Certificate]) -> str:
    """``signed`` with ``certs`` added to its PKCS#7 certificate bag (which the signature
    does not cover), as a sender shipping its intermediates would have it."""
    head, sep, tail = signed.rpartition('name="smime.p7s"')
    body_start = tail.index("\r\n\r\n") + 4
    end = tail.index("\r\n--", body_start)
    info = cms.ContentInfo.load(base64.b64decode(tail[body_start:end]))
    bag = info["content"]["certificates"]
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        bag.append(cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(der)))
    encoded = base64.encodebytes(info.dump(force=True)).decode("ascii").replace("\n", "\r\n")
    return head + sep + tail[:body_start] + encoded.rstrip("\r\n") + tail[end:]


def our_verify(case: Built, crls: bool) -> tuple[bool, str]:
    signed = with_bag(crypto.sign(TEXT, case.leaf_path, case.key_path), case.bag)
    leaf_dn = crypto.get_certificate_subject(_pem(case.leaf).decode())
    try:
        text, dn = crypto.verify(signed, case.capath, crls)
    except CryptoException as e:
        reason = str(e)
        # Every refusal here says which certificate and what, in words of its own.
        assert reason.startswith(f"signer certificate {leaf_dn}"), reason
        assert "OpenSSL verify error" not in reason, reason
        return False, reason.replace(case.capath, "CAPATH")
    assert (text, dn) == (TEXT, leaf_dn)
    return True, "OK"


def our_verify_cert(case: Built, crls: bool, caplog: pytest.LogCaptureFixture) -> tuple[bool, str]:
    caplog.clear()
    accepted = crypto.verify_cert(_pem(case.leaf).decode(), case.capath, crls)
    return accepted, caplog.text.strip().replace(case.capath, "CAPATH") or "OK"


def disagreements(case: Built, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every (function, CRL mode) whose verdict differs from openssl verify's."""
    found = []
    for crls in (False, True):
        plain = openssl_verify(case, crls, with_bag=False)
        bagged = openssl_verify(case, crls, with_bag=True) if case.bag_path else plain
        for function, ours, theirs in (
            ("verify_cert", our_verify_cert(case, crls, caplog), plain),
            ("verify", our_verify(case, crls), bagged),
        ):
            if ours[0] != theirs[0]:
                found.append(f"{function} crl={crls}: ours {ours} vs openssl {theirs}")
    return found


@pytest.mark.slow  # an openssl verify run per case and CRL mode: about 20 s on 2 cores
@pytest.mark.parametrize("index", range(CASES), ids=lambda i: f"case_{i}")
def test_agrees_with_openssl_verify(index, tmp_path, caplog):
    case = build(plan_chain(index), str(tmp_path))
    problems = disagreements(case, caplog)
    assert not problems, case.plan.describe() + "\n" + "\n".join(problems)


def sync_in_place(source: str, target: str) -> None:
    """Make ``target`` hold ``source``'s files, rewriting same-named files in place (same
    inode, as fetch-crl does) and removing the rest."""
    wanted = set(os.listdir(source))
    for name in wanted:
        with open(os.path.join(source, name), "rb") as handle:
            _write(os.path.join(target, name), handle.read())
    for name in set(os.listdir(target)) - wanted:
        os.unlink(os.path.join(target, name))


def test_agrees_when_one_ca_directory_changes_under_it(tmp_path, caplog):
    """The receiver keeps its CA directory's store between messages while fetch-crl and
    bundle updates change the files under it: one directory, rewritten case after case
    with CAs of the same few names (new keys, dates, CRLs), must get openssl verify's
    verdict on the directory as it is now."""
    shared = tmp_path / "certificates"
    shared.mkdir()
    for index in range(REWRITTEN_CASES):
        case = build(plan_chain(index, tag=index % 2), str(tmp_path / f"case-{index}"))
        sync_in_place(case.capath, str(shared))
        case.capath = str(shared)
        problems = disagreements(case, caplog)
        assert not problems, "\n".join(["in one rewritten directory: " + case.plan.describe(), *problems])


def test_plans_cover_every_feature():
    """The random cases really exercise what the verdict depends on."""
    plans = [plan_chain(i) for i in range(CASES)]
    certs = [ca.cert for p in plans for ca in p.cas] + [p.leaf for p in plans]
    counts = {
        "depth 1": sum(len(p.cas) == 1 for p in plans),
        "depth 4": sum(len(p.cas) == 4 for p in plans),
        "rsa": sum(p.key_kind == "rsa" for p in plans),
        "v1 root": sum(p.cas[0].cert.version == 1 for p in plans),
        "v1 intermediate": sum(ca.cert.version == 1 for p in plans for ca in p.cas[1:]),
        "v1 leaf": sum(p.leaf.version == 1 for p in plans),
        "BC absent": sum(c.version == 3 and c.basic_constraints == "absent" for c in certs),
        "BC CA:FALSE": sum(c.version == 3 and c.basic_constraints == "not-ca" for c in certs),
        "pathlen": sum(c.path_length is not None for c in certs),
        "KU without keyCertSign": sum(c.key_usage == "no-certsign" for c in certs),
        "KU absent": sum(c.version == 3 and c.key_usage == "absent" for c in certs),
        "unknown critical": sum(c.unknown_critical for c in certs),
        "NC permitted": sum(bool(c.name_constraints and c.name_constraints[0] == "permitted") for c in certs),
        "NC excluded": sum(bool(c.name_constraints and c.name_constraints[0] == "excluded") for c in certs),
        "past": sum(c.window == "past" for c in certs),
        "future": sum(c.window == "future" for c in certs),
        "rollover twins": sum(ca.twin_window is not None for p in plans for ca in p.cas),
        "intermediate in bag only": sum(ca.placement == "bag" for p in plans for ca in p.cas[1:]),
        "intermediate in capath": sum(ca.placement == "capath" for p in plans for ca in p.cas[1:]),
    }
    for crl in ("missing", "expired", "future", "revokes", "stale-and-good", "forged"):
        counts[f"CRL {crl}"] = sum(ca.crl == crl for p in plans for ca in p.cas)
    assert CASES >= 200
    thin = {feature: n for feature, n in counts.items() if n < 4}
    assert not thin, f"features too rare in {CASES} cases (seed {SEED}): {thin}"


# -- named regressions: what the hand-written path builder got wrong ----------------------


@dataclass
class Holder:
    """A certificate with its key, written to disk."""

    cert: x509.Certificate
    key: PrivateKey
    path: str
    key_path: str

    @property
    def issuer(self) -> Issuer:
        return Issuer(self.cert.subject, self.key, self.cert)


def holder(base: str, name: str, plan: CertPlan, issuer: Optional[Issuer] = None,
           key: Optional[PrivateKey] = None, window: Optional[str] = None) -> Holder:
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = make_cert(plan, key, issuer, window=window)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Holder(cert, key, _write(os.path.join(base, f"{name}.pem"), _pem(cert)),
                  _write(os.path.join(base, f"{name}.key"), key_pem))


def ca_plan(dn: str = "/C=UK/O=eScience/OU=CA/CN=Regression CA", **choices) -> CertPlan:
    return CertPlan(dn=dn, **choices)


def leaf_plan(dn: str = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=allowed.example.org", **choices) -> CertPlan:
    choices.setdefault("basic_constraints", "not-ca")
    choices.setdefault("key_usage", "digital")
    return CertPlan(dn=dn, **choices)


def openssl_accepts(capath: str, cert_path: str, untrusted: Optional[list[str]] = None,
                    crls: bool = False) -> bool:
    args = ["openssl", "verify", "-CApath", capath, "-purpose", "any"] + (["-crl_check_all"] if crls else [])
    if untrusted:
        bag = os.path.join(os.path.dirname(cert_path), "untrusted.pem")
        _write(bag, b"".join(open(path, "rb").read() for path in untrusted))
        args += ["-untrusted", bag]
    return subprocess.run([*args, cert_path], capture_output=True, timeout=60).returncode == 0


def signed_by(signer: Holder, bag: list[Holder] = ()) -> str:  # type: ignore[assignment]
    return with_bag(crypto.sign(TEXT, signer.path, signer.key_path), [h.cert for h in bag])


@pytest.fixture
def capath(tmp_path):
    path = tmp_path / "certificates"
    path.mkdir()
    return str(path)


def test_v1_end_entity_certificate_cannot_issue_certificates(tmp_path, capath):
    """Signer forgery: the holder of a v1 end-entity certificate from a trusted CA signs a
    certificate with an allowed sender's DN. Only self-signed trust anchors may be v1."""
    base = str(tmp_path)
    root = holder(base, "root", ca_plan())
    install(capath, [root.cert])
    v1_plan = CertPlan(version=1, dn="/C=UK/O=eScience/OU=CLRC/CN=v1 host")
    v1_host = holder(base, "v1-host", v1_plan, root.issuer)
    assert crypto.verify_cert_path(v1_host.path, capath, False)  # a valid end-entity certificate
    forged = holder(base, "forged", leaf_plan(), v1_host.issuer)

    with pytest.raises(CryptoException, match=r"CA certificate /C=UK/O=eScience/OU=CLRC/CN=v1 host "
                                              r"is not a valid CA \(a version 1 certificate"):
        crypto.verify(signed_by(forged, [v1_host]), capath, False)
    assert not crypto.verify_cert_path(forged.path, capath, False)
    assert not openssl_accepts(capath, forged.path, [v1_host.path])
    # Installed in capath it is no more a CA than in the bag.
    install(capath, [v1_host.cert])
    with pytest.raises(CryptoException, match="is not a valid CA"):
        crypto.verify(signed_by(forged), capath, False)
    assert not openssl_accepts(capath, forged.path)


def test_v1_self_signed_root_is_a_trust_anchor(tmp_path, capath):
    base = str(tmp_path)
    root = holder(base, "root", CertPlan(version=1, dn="/C=UK/O=Old/CN=Old v1 Root"))
    install(capath, [root.cert])
    leaf = holder(base, "leaf", leaf_plan(), root.issuer)
    assert crypto.verify(signed_by(leaf), capath, False)[1].endswith("/CN=allowed.example.org")
    assert openssl_accepts(capath, leaf.path)


def test_unknown_critical_extension_is_refused(tmp_path, capath):
    base = str(tmp_path)
    root = holder(base, "root", ca_plan())
    install(capath, [root.cert])
    odd = holder(base, "odd", leaf_plan(unknown_critical=True), root.issuer)
    with pytest.raises(CryptoException, match=r"signer certificate /C=UK/.*CN=allowed.example.org has an "
                                              r"unhandled critical extension \(1.3.6.1.4.1.99999.1.1\)"):
        crypto.verify(signed_by(odd), capath, False)
    assert not crypto.verify_cert_path(odd.path, capath, False)
    assert not openssl_accepts(capath, odd.path)


@pytest.mark.parametrize("constraint", [("permitted", "dirname"), ("excluded", "dirname")])
def test_name_constraints_are_enforced(tmp_path, capath, constraint):
    """The CA may only certify names under /C=UK/O=eScience (or anything but those)."""
    base = str(tmp_path)
    root = holder(base, "root", ca_plan(name_constraints=constraint))
    install(capath, [root.cert])
    inside = holder(base, "inside", leaf_plan("/C=UK/O=eScience/OU=CLRC/CN=inside.example.org"), root.issuer)
    outside = holder(base, "outside", leaf_plan("/C=UK/O=Elsewhere/CN=outside.example.org"), root.issuer)
    good, bad = (inside, outside) if constraint[0] == "permitted" else (outside, inside)
    assert crypto.verify_cert_path(good.path, capath, False)
    assert openssl_accepts(capath, good.path)
    with pytest.raises(CryptoException, match="violates the name constraints of a CA above it "
                                              r"\(name constraints violation: (permitted|excluded) subtree"):
        crypto.verify(signed_by(bad), capath, False)
    assert not openssl_accepts(capath, bad.path)


@pytest.mark.parametrize("expired_first", [True, False], ids=["expired-is-hash.0", "expired-is-hash.1"])
def test_same_key_ca_rollover(tmp_path, capath, expired_first):
    """The CA directory holds the CA's expired certificate and its renewal (same name, same
    key); OpenSSL takes the one that is valid now, whichever file comes first."""
    base = str(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    old = holder(base, "old", ca_plan(), key=key, window="past")
    new = holder(base, "new", ca_plan(), key=key, window="present")
    install(capath, [old.cert, new.cert] if expired_first else [new.cert, old.cert])
    leaf = holder(base, "leaf", leaf_plan(), new.issuer)
    for crls in (False, True):
        if crls:
            _write(os.path.join(capath, subject_hash(new.cert) + ".r0"),
                   make_crl(new.cert.subject, key).public_bytes(serialization.Encoding.PEM))
        assert crypto.verify(signed_by(leaf), capath, crls)[1].endswith("CN=allowed.example.org")
        assert crypto.verify_cert_path(leaf.path, capath, crls)
        assert openssl_accepts(capath, leaf.path, crls=crls)


def test_trusted_intermediate_does_not_reach_back_into_the_bag(tmp_path, capath):
    """Once OpenSSL reaches a certificate in the CA directory it looks for that one's issuer
    only there: an intermediate in capath whose own CA comes only in the bag is refused."""
    base = str(tmp_path)
    root = holder(base, "root", ca_plan("/C=UK/O=eScience/CN=Root"))
    upper = holder(base, "upper", ca_plan("/C=UK/O=eScience/CN=Upper"), root.issuer)
    lower = holder(base, "lower", ca_plan("/C=UK/O=eScience/CN=Lower"), upper.issuer)
    leaf = holder(base, "leaf", leaf_plan(), lower.issuer)
    install(capath, [root.cert, lower.cert])
    with pytest.raises(CryptoException, match="CA certificate /C=UK/O=eScience/CN=Lower not issued by a "
                                              r"trusted CA in .* \(no valid issuer /C=UK/O=eScience/CN=Upper "
                                              "found there"):
        crypto.verify(signed_by(leaf, [upper]), capath, False)
    assert not openssl_accepts(capath, leaf.path, [upper.path])


# -- the CA directory changes under a running receiver ------------------------------------


def test_crl_renewed_in_place_is_seen(tmp_path, capath):
    base = str(tmp_path)
    root = holder(base, "root", ca_plan())
    install(capath, [root.cert])
    leaf = holder(base, "leaf", leaf_plan(), root.issuer)
    crl_path = os.path.join(capath, subject_hash(root.cert) + ".r0")
    _write(crl_path, make_crl(root.cert.subject, root.key, "past").public_bytes(serialization.Encoding.PEM))
    store = crypto.TrustStore(capath, True)
    reason = f"no valid CRL for CA /C=UK/.*CN=Regression CA with CRL checking on: CRL {crl_path} expired on "
    with pytest.raises(CryptoException, match=reason):
        store.validate(leaf.cert, (), "signer certificate")
    _write(crl_path, make_crl(root.cert.subject, root.key).public_bytes(serialization.Encoding.PEM))
    store.validate(leaf.cert, (), "signer certificate")
    # and revoked the same way, in place, is refused at once
    _write(crl_path, make_crl(root.cert.subject, root.key, revoked=(leaf.cert.serial_number,))
           .public_bytes(serialization.Encoding.PEM))
    reason = f"signer certificate /.*allowed.example.org revoked on .*{crl_path}"
    with pytest.raises(CryptoException, match=reason):
        store.validate(leaf.cert, (), "signer certificate")


def test_ca_file_rewritten_in_place_is_seen(tmp_path, capath):
    base = str(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    expired = holder(base, "expired", ca_plan(), key=key, window="past")
    renewed = holder(base, "renewed", ca_plan(), key=key)
    install(capath, [expired.cert])
    leaf = holder(base, "leaf", leaf_plan(), renewed.issuer)
    store = crypto.TrustStore(capath, False)
    with pytest.raises(CryptoException, match="CA certificate /C=UK/.*CN=Regression CA expired on "):
        store.validate(leaf.cert)
    ca_file = os.path.join(capath, subject_hash(expired.cert) + ".0")
    _write(ca_file, _pem(renewed.cert))
    store.validate(leaf.cert)
    # An impostor written over the CA file (another key) is refused at once, too.
    _write(ca_file, _pem(holder(base, "impostor", ca_plan()).cert))
    with pytest.raises(CryptoException, match="not issued by a trusted CA"):
        store.validate(leaf.cert)


# -- OpenSSL's name hash, used to find a CA's CRL files for the reasons ----------------------


def _value(kind: str, text: str) -> object:
    if kind == "ia5":
        return text  # emailAddress and domainComponent are IA5String by definition
    return asn1_x509.DirectoryString(name=f"{kind}_string", value=text)


@pytest.mark.parametrize("rdns", [
    [[("common_name", "utf8", "Plain CA")]],
    [[("country_name", "printable", "UK")], [("organization_name", "printable", "  eScience   Grid ")],
     [("common_name", "utf8", "MiXeD Case\tTabs")]],
    [[("domain_component", "ia5", "org")], [("domain_component", "ia5", "Example")],
     [("common_name", "utf8", "Zürich ünïcode Ω")]],
    [[("common_name", "bmp", "BMP Name"), ("email_address", "ia5", "CA@Example.ORG")]],
    [[("common_name", "teletex", "T61 Name")], [("organizational_unit_name", "universal", "Universal OU")]],
])
def test_name_hash_matches_openssl(rdns):
    name = asn1_x509.Name(name="", value=asn1_x509.RDNSequence([
        asn1_x509.RelativeDistinguishedName(
            [{"type": kind, "value": _value(string, text)} for kind, string, text in rdn]
        )
        for rdn in rdns
    ]))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = reencoded(make_cert(CertPlan(dn="/CN=x"), key, None), key, issuer=name)
    out = subprocess.run(["openssl", "x509", "-noout", "-issuer_hash"], input=_pem(cert),
                         capture_output=True, check=True)
    assert names.name_hash(cert.issuer) == out.stdout.decode().strip()

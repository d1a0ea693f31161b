"""ssm.crypto against the real ``openssl`` CLI, both ways, and against hostile messages.

The receiver's trust decision rests on verify(): every way we know to make it accept
something it should not (tampering, foreign CAs, impostor CAs, revoked or expired
signers, and signer spoofing, the existing SSM's worst defect) is here as a test.
"""

from __future__ import annotations

import base64
import datetime
import os
import quopri
import re
import subprocess

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apel.testkit.pki import TestPKI, subject_hash
from ssm import crypto
from ssm.crypto import CryptoException, mime, signed_data

APEL_MESSAGE = (
    "APEL-individual-job-message: v0.3\n"
    "Site: RAL-LCG2\nSubmitHost: ce01.example.org\nLocalJobId: 12345\n"
    "WallDuration: 3600\nCpuDuration: 3500\nStartTime: 1700000000\nEndTime: 1700003600\n%%\n"
)


def openssl(args: list[str], data: bytes | str) -> subprocess.CompletedProcess:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)


def openssl_sign(identity, text: str, *extra: str) -> str:
    args = ["smime", "-sign", "-inkey", identity.key_path, "-signer", identity.cert_path, *extra]
    out = openssl(args, text)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode("utf-8")


@pytest.fixture(scope="module")
def host(pki):
    return pki.host("crypto-host")


@pytest.fixture(scope="module")
def ec_host(pki):
    return pki.host("crypto-ec", kind="ec", issuer=pki.intermediate)


@pytest.fixture(scope="module")
def server(pki):
    return pki.host("crypto-server")


@pytest.fixture(scope="module")
def signed(host):
    return crypto.sign(APEL_MESSAGE, host.cert_path, host.key_path)


# -- sign ---------------------------------------------------------------------------------


class TestSign:
    def test_round_trip_returns_text_and_dn(self, pki, host, signed):
        assert crypto.verify(signed, pki.capath, True) == (APEL_MESSAGE, host.dn)

    def test_format_is_detached_multipart_with_text_part(self, signed):
        head = signed.replace("\r\n", "\n").split("\n\n", 1)[0]
        assert head.startswith("MIME-Version: 1.0\n")
        assert "multipart/signed" in head and 'micalg="sha-256"' in head
        assert "Content-Type: text/plain\r\n\r\nAPEL-individual-job-message: v0.3\r\n" in signed
        assert 'name="smime.p7s"' in signed

    def test_openssl_verifies_noverify(self, host, signed, tmp_path):
        out = openssl(["smime", "-verify", "-noverify", "-text"], signed)
        assert out.returncode == 0, out.stderr
        assert out.stdout.replace(b"\r\n", b"\n").decode() == APEL_MESSAGE
        signer = tmp_path / "signer.pem"
        out = openssl(["smime", "-verify", "-noverify", "-signer", str(signer)], signed)
        assert signer.read_bytes() == open(host.cert_path, "rb").read()

    def test_openssl_verifies_against_ca(self, pki, signed):
        out = openssl(["smime", "-verify", "-purpose", "any", "-CAfile", pki.ca.cert_path, "-text"], signed)
        assert out.returncode == 0, out.stderr

    def test_ec_key(self, pki, ec_host):
        text = "EC signed ünïcode\n"
        signed = crypto.sign(text, ec_host.cert_path, ec_host.key_path)
        assert crypto.verify(signed, pki.capath, True) == (text, ec_host.dn)
        out = openssl(["smime", "-verify", "-noverify", "-text"], signed)
        assert out.returncode == 0 and out.stdout.replace(b"\r\n", b"\n").decode("utf-8") == text

    def test_mismatched_key(self, host, server):
        with pytest.raises(CryptoException, match="does not match private key"):
            crypto.sign("x", host.cert_path, server.key_path)

    def test_unreadable_key(self, host, tmp_path):
        with pytest.raises(CryptoException, match="cannot read private key"):
            crypto.sign("x", host.cert_path, str(tmp_path / "missing.key"))


# -- verify: what must be accepted ------------------------------------------------------


class TestVerifyAccepts:
    def test_openssl_text_signed(self, pki, host):
        signed = openssl_sign(host, APEL_MESSAGE, "-text")
        assert crypto.verify(signed, pki.capath, True) == (APEL_MESSAGE, host.dn)

    def test_openssl_without_text_wrapper(self, pki, host):
        signed = openssl_sign(host, APEL_MESSAGE)
        assert crypto.verify(signed, pki.capath, True) == (APEL_MESSAGE, host.dn)

    def test_without_text_wrapper_keeps_blank_lines(self, pki, host):
        text = "first paragraph: value\n\nsecond paragraph\n"
        signed = openssl_sign(host, text)
        assert crypto.verify(signed, pki.capath, False)[0] == text

    def test_opaque_nodetach(self, pki, host):
        signed = openssl_sign(host, APEL_MESSAGE, "-nodetach", "-text")
        assert "smime-type=signed-data" in signed
        assert crypto.verify(signed, pki.capath, True) == (APEL_MESSAGE, host.dn)
        assert not crypto.is_encrypted(signed)

    def test_opaque_nodetach_without_text(self, pki, host):
        signed = openssl_sign(host, APEL_MESSAGE, "-nodetach")
        assert crypto.verify(signed, pki.capath, True)[0] == APEL_MESSAGE

    def test_quoted_printable_inner_part(self, pki, host):
        text = '<?xml version="1.0"?>\n<usage lang="ü">' + "x" * 100 + "</usage>\n"
        entity = (
            "Content-Type: text/xml; charset=utf8\nContent-Transfer-Encoding: quoted-printable\n\n"
            + quopri.encodestring(text.encode("utf-8")).decode("ascii")
        )
        signed = openssl_sign(host, entity)
        assert crypto.verify(signed, pki.capath, True) == (text, host.dn)

    def test_base64_inner_part(self, pki, host):
        text = "<usage>ünïcode</usage>\n"
        encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii")
        entity = f"Content-Type: text/xml; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{encoded}"
        signed = openssl_sign(host, entity)
        assert crypto.verify(signed, pki.capath, True) == (text, host.dn)

    def test_ec_signer_from_openssl(self, pki, ec_host):
        signed = openssl_sign(ec_host, APEL_MESSAGE, "-text")
        assert crypto.verify(signed, pki.capath, True) == (APEL_MESSAGE, ec_host.dn)

    def test_rsa_pss_signature(self, pki, host):
        args = ["cms", "-sign", "-inkey", host.key_path, "-signer", host.cert_path, "-text",
                "-keyopt", "rsa_padding_mode:pss"]
        out = openssl(args, APEL_MESSAGE)
        assert out.returncode == 0, out.stderr
        signed = out.stdout.decode()
        assert crypto.verify(signed, pki.capath, True)[0] == APEL_MESSAGE
        assert crypto.verify(signed, pki.capath, True)[1] == host.dn

    def test_sha1_and_sha512_digests(self, pki, host):
        for md in ("sha1", "sha512"):
            signed = openssl_sign(host, APEL_MESSAGE, "-text", "-md", md)
            assert crypto.verify(signed, pki.capath, True)[0] == APEL_MESSAGE

    def test_utf8_body(self, pki, host):
        text = "Site: Zürich-Ω\nVO: ätlas 日本\n"
        assert crypto.verify(openssl_sign(host, text, "-text"), pki.capath, True)[0] == text
        assert crypto.verify(crypto.sign(text, host.cert_path, host.key_path), pki.capath, True)[0] == text

    def test_lf_converted_message(self, pki, host, signed):
        assert crypto.verify(signed.replace("\r\n", "\n"), pki.capath, True)[0] == APEL_MESSAGE
        converted = openssl_sign(host, APEL_MESSAGE, "-text").replace("\r\n", "\n")
        assert crypto.verify(converted, pki.capath, True)[0] == APEL_MESSAGE

    def test_intermediate_from_capath(self, pki, ec_host):
        signed = crypto.sign("x\n", ec_host.cert_path, ec_host.key_path)
        assert crypto.verify(signed, pki.capath, True)[1] == ec_host.dn

    def test_intermediate_from_message_bag(self, tmp_path):
        own = TestPKI(str(tmp_path))
        signer = own.host("leaf", issuer=own.intermediate)
        for entry in os.listdir(own.capath):
            path = os.path.join(own.capath, entry)
            if open(path, "rb").read() == open(own.intermediate.cert_path, "rb").read():
                os.unlink(path)
        without = openssl_sign(signer, "x\n", "-text")
        with pytest.raises(CryptoException, match="not issued by a trusted CA"):
            crypto.verify(without, own.capath, False)
        with_bag = openssl_sign(signer, "x\n", "-text", "-certfile", own.intermediate.cert_path)
        assert crypto.verify(with_bag, own.capath, False) == ("x\n", signer.dn)
        # The intermediate's CRL is still in capath, so CRL checking works too.
        assert crypto.verify(with_bag, own.capath, True)[1] == signer.dn

    def test_leading_blank_lines(self, pki, host, signed):
        assert crypto.verify("\n\r\n" + signed, pki.capath, True) == (APEL_MESSAGE, host.dn)

    def test_get_signer_cert(self, host, signed):
        pem = crypto.get_signer_cert(signed)
        assert pem == open(host.cert_path).read()


# -- verify against a TrustStore its owner holds ----------------------------------------


class TestHeldStore:
    def test_same_verdict_as_the_ca_directory_form(self, pki, host, signed):
        store = crypto.TrustStore(pki.capath, True)
        assert crypto.verify(signed, store) == (APEL_MESSAGE, host.dn)
        assert crypto.verify(signed, store) == crypto.verify(signed, pki.capath, True)

    def test_the_store_given_decides(self, signed, tmp_path):
        """A signer trusted elsewhere is judged by the CAs of the store given, here none."""
        empty = crypto.TrustStore(str(tmp_path), False)
        reason = f"not issued by a trusted CA in {re.escape(str(tmp_path))}"
        with pytest.raises(CryptoException, match=reason):
            crypto.verify(signed, empty)

    def test_revocation_seen_by_the_store_kept_between_messages(self, tmp_path):
        own = TestPKI(str(tmp_path))
        victim = own.host("revoked")
        store = crypto.TrustStore(own.capath, True)
        signed = crypto.sign("x\n", victim.cert_path, victim.key_path)
        assert crypto.verify(signed, store)[1] == victim.dn
        own.revoke(victim)  # rewrites the CRL file in place: the store must notice
        reason = "signer certificate /.*/CN=revoked.example.org revoked on "
        with pytest.raises(CryptoException, match=reason):
            crypto.verify(signed, store)

    def test_store_and_crl_flag_are_not_mixed(self, pki, signed):
        with pytest.raises(TypeError, match="a TrustStore has its own"):
            crypto.verify(signed, crypto.TrustStore(pki.capath, True), False)
        with pytest.raises(TypeError, match="needs check_crl"):
            crypto.verify(signed, pki.capath)


# -- verify: what must be refused -------------------------------------------------------


def _replace_signature(message: str, mutate) -> str:
    """Re-encode the p7s part of a detached message after ``mutate(der) -> der``."""
    head, sep, tail = message.rpartition('name="smime.p7s"')
    body_start = tail.index("\n\n") + 2 if "\n\n" in tail else tail.index("\r\n\r\n") + 4
    end = tail.index("\n--", body_start)
    der = base64.b64decode(tail[body_start:end])
    new = base64.encodebytes(mutate(der)).decode("ascii")
    return head + sep + tail[:body_start] + new + tail[end:]


def _resign_attributes(message: str, identity, change) -> str:
    """``message`` with its signed attributes passed through ``change(list of
    (type, asn1crypto values)) -> list`` and signed again with ``identity``'s key, so only the
    attribute checks can refuse it."""
    key = serialization.load_pem_private_key(open(identity.key_path, "rb").read(), None)

    def mutate(der: bytes) -> bytes:
        info = cms.ContentInfo.load(der)
        signer_info = info["content"]["signer_infos"][0]
        pairs = [(attr["type"].native, [value.copy() for value in attr["values"]])
                 for attr in signer_info["signed_attrs"]]
        signer_info["signed_attrs"] = cms.CMSAttributes(
            [{"type": kind, "values": values} for kind, values in change(pairs)]
        )
        signed_bytes = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        signer_info["signature"] = key.sign(signed_bytes, padding.PKCS1v15(), hashes.SHA256())
        return info.dump(force=True)

    return _replace_signature(message, mutate)


class TestSignedAttributes:
    def test_resigned_unchanged_still_verifies(self, pki, host, signed):
        """The control: the helper makes a good signature, so the refusals below are
        the attribute checks at work."""
        same = _resign_attributes(signed, host, lambda pairs: pairs)
        assert crypto.verify(same, pki.capath, True) == (APEL_MESSAGE, host.dn)

    def test_missing_message_digest(self, pki, host, signed):
        def without_digest(pairs):
            return [(kind, values) for kind, values in pairs if kind != "message_digest"]

        without = _resign_attributes(signed, host, without_digest)
        with pytest.raises(CryptoException, match="lacks a single message digest"):
            crypto.verify(without, pki.capath, True)

    def test_two_message_digests(self, pki, host, signed):
        def doubled(pairs):
            return [(kind, values * 2 if kind == "message_digest" else values) for kind, values in pairs]

        with pytest.raises(CryptoException, match="lacks a single message digest"):
            crypto.verify(_resign_attributes(signed, host, doubled), pki.capath, True)

    def test_content_type_other_than_data(self, pki, host, signed):
        def other(pairs):
            return [(kind, ["signed_data"] if kind == "content_type" else values) for kind, values in pairs]

        with pytest.raises(CryptoException, match="content type attribute does not match"):
            crypto.verify(_resign_attributes(signed, host, other), pki.capath, True)

    def test_digest_of_other_content(self, pki, host, signed):
        def wrong(pairs):
            return [(kind, [bytes(32)] if kind == "message_digest" else values) for kind, values in pairs]

        with pytest.raises(CryptoException, match="message digest mismatch"):
            crypto.verify(_resign_attributes(signed, host, wrong), pki.capath, True)


class TestVerifyRefuses:
    def test_tampered_body(self, pki, signed):
        tampered = signed.replace("WallDuration: 3600", "WallDuration: 9600")
        with pytest.raises(CryptoException, match="message digest mismatch"):
            crypto.verify(tampered, pki.capath, True)

    def test_added_line(self, pki, signed):
        tampered = signed.replace("%%\r\n", "%%\r\nSite: EVIL\r\n")
        with pytest.raises(CryptoException, match="digest mismatch"):
            crypto.verify(tampered, pki.capath, True)

    def test_signature_bit_flip(self, pki, signed):
        def flip(der: bytes) -> bytes:
            return der[:-20] + bytes([der[-20] ^ 0x01]) + der[-19:]

        with pytest.raises(CryptoException, match="bad signature"):
            crypto.verify(_replace_signature(signed, flip), pki.capath, True)

    def test_unknown_self_signed_ca(self, pki):
        attacker = pki.host("attacker-selfsigned", self_signed=True)
        signed = crypto.sign(APEL_MESSAGE, attacker.cert_path, attacker.key_path)
        with pytest.raises(CryptoException, match="self-signed and not a trusted CA"):
            crypto.verify(signed, pki.capath, False)

    def test_impostor_ca_same_name_other_key(self, pki):
        impostor = pki.impostor_ca()
        victim_like = pki.host("impostor-issued", issuer=impostor)
        assert victim_like.cert.issuer == pki.ca.cert.subject
        signed = crypto.sign(APEL_MESSAGE, victim_like.cert_path, victim_like.key_path)
        with pytest.raises(CryptoException, match="not issued by a trusted CA in " + pki.capath):
            crypto.verify(signed, pki.capath, False)
        # Shipping the impostor CA in the bag does not help either.
        bagged = openssl_sign(victim_like, "x", "-text", "-certfile", impostor.cert_path)
        with pytest.raises(CryptoException, match="not issued by a trusted CA"):
            crypto.verify(bagged, pki.capath, False)

    def test_expired_signer(self, pki):
        expired = pki.host("expired-signer", expired=True)
        signed = crypto.sign(APEL_MESSAGE, expired.cert_path, expired.key_path)
        reason = "signer certificate /C=UK/.*/CN=expired-signer.example.org expired on "
        with pytest.raises(CryptoException, match=reason):
            crypto.verify(signed, pki.capath, False)

    def test_revoked_signer(self, tmp_path):
        own = TestPKI(str(tmp_path))
        victim = own.host("revoked")
        signed = crypto.sign("x\n", victim.cert_path, victim.key_path)
        assert crypto.verify(signed, own.capath, True)[1] == victim.dn
        own.revoke(victim)  # rewrites the CRL file in place
        reason = "signer certificate /.*/CN=revoked.example.org revoked on .*CRL "
        with pytest.raises(CryptoException, match=reason):
            crypto.verify(signed, own.capath, True)
        assert crypto.verify(signed, own.capath, False)[1] == victim.dn

    def test_revoked_intermediate(self, tmp_path):
        own = TestPKI(str(tmp_path))
        leaf = own.host("under-revoked", issuer=own.intermediate)
        own.revoke(own.intermediate)
        signed = crypto.sign("x\n", leaf.cert_path, leaf.key_path)
        with pytest.raises(CryptoException, match="CA certificate .*Intermediate.* revoked"):
            crypto.verify(signed, own.capath, True)

    def test_missing_crl_with_checking_on(self, tmp_path):
        own = TestPKI(str(tmp_path))
        signer = own.host("no-crl")
        own.remove_crls()
        signed = crypto.sign("x\n", signer.cert_path, signer.key_path)
        with pytest.raises(CryptoException, match="no CRL for CA /C=UK/O=eScience/OU=Test/CN=APEL Test CA"):
            crypto.verify(signed, own.capath, True)
        assert crypto.verify(signed, own.capath, False)[1] == signer.dn
        assert not crypto.verify_cert_path(signer.cert_path, own.capath, True)
        assert crypto.verify_cert_path(signer.cert_path, own.capath, False)

    def test_expired_crl(self, tmp_path):
        own = TestPKI(str(tmp_path))
        signer = own.host("stale-crl")
        now = datetime.datetime.now(datetime.timezone.utc)
        stale = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(own.ca.cert.subject)
            .last_update(now - datetime.timedelta(days=10))
            .next_update(now - datetime.timedelta(days=1))
            .sign(own.ca.key, hashes.SHA256())
        )
        crl_path = os.path.join(own.capath, subject_hash(own.ca.cert_path) + ".r0")
        with open(crl_path, "wb") as handle:
            handle.write(stale.public_bytes(serialization.Encoding.PEM))
        signed = crypto.sign("x\n", signer.cert_path, signer.key_path)
        with pytest.raises(CryptoException, match="no valid CRL for CA .* expired on"):
            crypto.verify(signed, own.capath, True)

    def test_two_signers_refused(self, pki, host, server):
        two = openssl_sign(host, "x", "-text", "-signer", server.cert_path, "-inkey", server.key_path)
        with pytest.raises(CryptoException, match="2 signers"):
            crypto.verify(two, pki.capath, True)

    def test_spoofing_untrusted_signer_embeds_allowed_cert(self, pki, host):
        """Defect 1: attacker signs with its own key and ships an allowed sender's cert."""
        attacker = pki.host("spoofer", self_signed=True)
        spoofed = openssl_sign(attacker, APEL_MESSAGE, "-text", "-certfile", host.cert_path)
        p7 = openssl(["smime", "-pk7out"], spoofed).stdout
        certs = openssl(["pkcs7", "-print_certs", "-noout"], p7).stdout.decode()
        assert host.dn.split("CN=")[1] in certs  # the allowed cert really is in the bag
        with pytest.raises(CryptoException, match="self-signed and not a trusted CA"):
            crypto.verify(spoofed, pki.capath, True)
        assert crypto.get_signer_cert(spoofed) == open(attacker.cert_path).read()

    def test_spoofing_trusted_signer_gets_its_own_dn(self, pki, host):
        """A valid host embedding another host's cert is authorised as itself, never as the other."""
        other = pki.host("other-trusted")
        spoofed = openssl_sign(other, APEL_MESSAGE, "-text", "-certfile", host.cert_path)
        assert crypto.verify(spoofed, pki.capath, True)[1] == other.dn

    def test_spoofing_signer_info_names_allowed_cert(self, pki, host):
        """The SignerInfo is rewritten to name the allowed cert; the attacker's key made the signature."""
        attacker = pki.host("spoofer-sid", self_signed=True)
        spoofed = openssl_sign(attacker, APEL_MESSAGE, "-text", "-certfile", host.cert_path)
        allowed = asn1_x509.Certificate.load(host.cert.public_bytes(serialization.Encoding.DER))

        def rename(der: bytes) -> bytes:
            info = cms.ContentInfo.load(der)
            signer_info = info["content"]["signer_infos"][0]
            signer_info["sid"] = cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": allowed.issuer, "serial_number": allowed.serial_number}
                ),
            )
            return info.dump(force=True)

        with pytest.raises(CryptoException, match="bad signature"):
            crypto.verify(_replace_signature(spoofed, rename), pki.capath, True)

    def test_signer_cert_missing_from_bag(self, pki, host):
        signed = openssl_sign(host, APEL_MESSAGE, "-text", "-nocerts")
        with pytest.raises(CryptoException, match="not included in the message"):
            crypto.verify(signed, pki.capath, True)

    @pytest.mark.parametrize(
        "text, reason",
        [
            ("", "no MIME header|empty message"),
            ("Bibbly bobbly", "not an S/MIME message"),
            (APEL_MESSAGE, "not an S/MIME message"),
            ("Content-Type: text/plain\n\nhello\n", "not a signed S/MIME message"),
            ("MIME-Version: 1.0\nContent-Type: multipart/signed; boundary=\"b\"\n\n--b\nx\n",
             "truncated|malformed"),
            ("\x00\xff garbage \x01" * 50, "not an S/MIME message"),
        ],
    )
    def test_garbage(self, pki, text, reason):
        with pytest.raises(CryptoException, match=reason):
            crypto.verify(text, pki.capath, True)

    def test_none(self, pki):
        with pytest.raises(CryptoException, match="Invalid None argument"):
            crypto.verify(None, pki.capath, True)  # type: ignore[arg-type]

    @pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8, 0.95])
    def test_truncated(self, pki, signed, fraction):
        with pytest.raises(CryptoException):
            crypto.verify(signed[: int(len(signed) * fraction)], pki.capath, True)

    def test_garbage_signature_part(self, pki, signed):
        with pytest.raises(CryptoException, match="not a valid PKCS#7"):
            crypto.verify(_replace_signature(signed, lambda der: b"\x30\x03abc" + der[:40]), pki.capath, True)

    def test_encrypted_message_must_be_decrypted_first(self, pki, signed, server):
        encrypted = crypto.encrypt(signed, server.cert_path)
        with pytest.raises(CryptoException, match="encrypted"):
            crypto.verify(encrypted, pki.capath, True)

    def test_missing_capath(self, signed, tmp_path):
        with pytest.raises(CryptoException, match="cannot read CA directory"):
            crypto.verify(signed, str(tmp_path / "nowhere"), True)


# -- encrypt / decrypt ------------------------------------------------------------------


def decrypt_args(identity) -> list[str]:
    return ["smime", "-decrypt", "-recip", identity.cert_path, "-inkey", identity.key_path]



class TestEncryption:
    def test_our_encrypt_openssl_decrypt_byte_exact(self, server, signed):
        for cipher in ("aes128", "aes256"):
            encrypted = crypto.encrypt(signed, server.cert_path, cipher)
            assert crypto.is_encrypted(encrypted)
            assert "Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data;" in encrypted
            out = openssl(decrypt_args(server), encrypted)
            assert out.returncode == 0, out.stderr
            assert out.stdout == signed.encode("utf-8")

    def test_lf_text_stays_lf(self, server):
        text = "line one\nline two ü\n"
        encrypted = crypto.encrypt(text, server.cert_path)
        out = openssl(decrypt_args(server), encrypted)
        assert out.stdout == text.encode("utf-8")
        assert crypto.decrypt(encrypted, server.cert_path, server.key_path) == text

    @pytest.mark.parametrize("cipher", ["-aes128", "-aes256"])
    def test_openssl_encrypt_our_decrypt(self, server, signed, cipher):
        encrypted = openssl(["smime", "-encrypt", cipher, server.cert_path], signed)
        assert encrypted.returncode == 0
        ours = crypto.decrypt(encrypted.stdout.decode("ascii"), server.cert_path, server.key_path)
        theirs = openssl(decrypt_args(server), encrypted.stdout).stdout
        assert ours.encode("utf-8") == theirs

    def test_openssl_binary_encrypt_byte_exact(self, server):
        text = "a\nb ü\r\nc"
        encrypted = openssl(["smime", "-encrypt", "-binary", "-aes256", server.cert_path], text)
        assert crypto.decrypt(encrypted.stdout.decode("ascii"), server.cert_path, server.key_path) == text

    def test_full_pipeline_openssl_to_us(self, pki, host, server):
        signed = openssl_sign(host, APEL_MESSAGE, "-text")
        encrypted = openssl(["smime", "-encrypt", "-aes128", server.cert_path], signed).stdout.decode()
        plain = crypto.decrypt(encrypted, server.cert_path, server.key_path)
        assert crypto.verify(plain, pki.capath, True) == (APEL_MESSAGE, host.dn)

    def test_full_pipeline_us_to_openssl(self, pki, host, server):
        encrypted = crypto.encrypt(crypto.sign(APEL_MESSAGE, host.cert_path, host.key_path), server.cert_path)
        signed = openssl(decrypt_args(server), encrypted)
        out = openssl(["smime", "-verify", "-purpose", "any", "-CApath", pki.capath, "-text"], signed.stdout)
        assert out.returncode == 0, out.stderr
        assert out.stdout.replace(b"\r\n", b"\n").decode() == APEL_MESSAGE

    @pytest.mark.parametrize("cipher", ["des3", "aes192", "rc2", ""])
    def test_invalid_cipher(self, server, cipher):
        with pytest.raises(CryptoException, match="Invalid cipher"):
            crypto.encrypt("x", server.cert_path, cipher)

    def test_wrong_recipient(self, host, server):
        encrypted = crypto.encrypt("secret", server.cert_path)
        with pytest.raises(CryptoException, match="decryption failed"):
            crypto.decrypt(encrypted, host.cert_path, host.key_path)

    def test_decrypt_refuses_plain_and_signed(self, server, signed):
        for text in ("", "Bibbly bobbly", signed):
            with pytest.raises(CryptoException, match="not S/MIME encrypted"):
                crypto.decrypt(text, server.cert_path, server.key_path)

    def test_decrypt_refuses_corrupt(self, server):
        encrypted = crypto.encrypt("secret " * 50, server.cert_path)
        head, _, body = encrypted.partition("\n\n")
        with pytest.raises(CryptoException, match="decryption failed"):
            crypto.decrypt(head + "\n\n" + body[: len(body) // 2], server.cert_path, server.key_path)

    def test_is_encrypted_uses_top_level_content_type(self, server, signed):
        assert not crypto.is_encrypted("text mentioning application/pkcs7-mime; smime-type=enveloped-data")
        assert not crypto.is_encrypted(signed)
        assert not crypto.is_encrypted("")
        encrypted = crypto.encrypt("x", server.cert_path)
        assert crypto.is_encrypted(encrypted)
        # Without the smime-type parameter, the ContentInfo OID decides.
        without = encrypted.replace("smime-type=enveloped-data; ", "")
        assert without != encrypted and crypto.is_encrypted(without)
        assert crypto.decrypt(without, server.cert_path, server.key_path) == "x"


# -- certificate checks ------------------------------------------------------------------


class TestCertificates:
    def test_check_cert_key(self, host, ec_host, server, tmp_path):
        assert crypto.check_cert_key(host.cert_path, host.key_path)
        assert crypto.check_cert_key(ec_host.cert_path, ec_host.key_path)
        assert not crypto.check_cert_key(host.cert_path, server.key_path)
        assert not crypto.check_cert_key(ec_host.cert_path, host.key_path)
        assert not crypto.check_cert_key(host.cert_path, str(tmp_path / "missing"))
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(open(host.cert_path, "rb").read() + open(host.key_path, "rb").read())
        assert not crypto.check_cert_key(str(bundle), str(bundle))

    def test_verify_cert(self, pki, host, ec_host):
        assert crypto.verify_cert(open(host.cert_path).read(), pki.capath, True)
        assert crypto.verify_cert(open(ec_host.cert_path).read(), pki.capath, True)
        assert crypto.verify_cert_path(host.cert_path, pki.capath, False)
        assert not crypto.verify_cert("not a certificate", pki.capath, False)
        assert not crypto.verify_cert("", pki.capath, False)

    def test_verify_cert_refuses(self, pki):
        expired = pki.host("expired-cert", expired=True)
        foreign = pki.host("foreign", self_signed=True)
        impostor = pki.host("impostor-cert", issuer=pki.impostor_ca())
        for identity in (expired, foreign, impostor):
            assert not crypto.verify_cert_path(identity.cert_path, pki.capath, False)

    def test_verify_cert_date(self, pki, host):
        assert crypto.verify_cert_date(host.cert_path)
        assert not crypto.verify_cert_date(pki.host("expires-soon", days=0).cert_path)
        assert not crypto.verify_cert_date(pki.host("expired-date", expired=True).cert_path)
        assert crypto.verify_cert_date(pki.host("expires-in-2", days=2).cert_path)

    def test_subject_slash_form_matches_openssl(self, pki, host):
        odd = pki.host(
            "odd-dn", dn="/DC=org/DC=example/C=UK/O=e Science/OU=A City/CN=Test Cert/emailAddress=a@b.org"
        )
        for identity in (host, odd):
            subject = crypto.get_certificate_subject(open(identity.cert_path).read())
            assert subject == identity.dn
            out = subprocess.run(
                ["openssl", "x509", "-noout", "-subject", "-nameopt", "compat", "-in", identity.cert_path],
                capture_output=True, text=True, check=True,
            )
            assert out.stdout.strip().removeprefix("subject=") == subject

    def test_subject_of_garbage(self):
        with pytest.raises(CryptoException):
            crypto.get_certificate_subject("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# -- properties --------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_settings = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_settings
@given(text=_text)
def test_sign_verify_round_trip(pki, host, text):
    signed = crypto.sign(text, host.cert_path, host.key_path)
    # The S/MIME canonical form is CRLF; verify hands text back with LF line endings.
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert crypto.verify(signed, pki.capath, True) == (expected, host.dn)
    assert openssl(["smime", "-verify", "-noverify"], signed).returncode == 0


@_settings
@given(text=_text)
def test_encrypt_decrypt_round_trip(server, text):
    encrypted = crypto.encrypt(text, server.cert_path)
    assert crypto.decrypt(encrypted, server.cert_path, server.key_path) == text


@pytest.mark.parametrize("value, expected", [
    ('multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-256"; boundary="----AB12"',
     ("multipart/signed", {"protocol": "application/x-pkcs7-signature", "micalg": "sha-256",
                           "boundary": "----AB12"})),
    ('Text/Plain; charset=UTF-8 ; format = flowed', ("text/plain", {"charset": "UTF-8", "format": "flowed"})),
    (r'multipart/signed; boundary="a\"b\\c"; x=1', ("multipart/signed", {"boundary": 'a"b\\c', "x": "1"})),
    ('multipart/signed; boundary="unterminated; x=1',
     ("multipart/signed", {"boundary": "unterminated; x=1"})),
    ('multipart/signed; boundary=""', ("multipart/signed", {"boundary": ""})),
])
def test_content_type_parameters_quoted_escaped_and_unterminated(value, expected):
    """The boundary decides where the signed content ends: escapes and odd quoting must parse as
    the MIME rules say, whichever way the parser takes (plain quoted strings skip the walk)."""
    assert mime._parse_content_type(value) == expected


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda b: b"\x31" + bytes([len(b)]) + b),  # a SET of anything
))
def test_signed_attributes_reader_refuses_garbage_cleanly(data):
    """Whatever the bytes, reading the signed attributes either works or says why."""
    try:
        values = signed_data._attribute_values(data)
    except CryptoException as e:
        assert "malformed signed attributes" in str(e)
    else:
        assert all(isinstance(oid, bytes) for oid in values)

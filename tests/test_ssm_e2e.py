"""ssmsend -> ActiveMQ (STOMP+TLS, client certificates) -> ssmreceive, as users run them."""

from __future__ import annotations

import os
import random
import shutil
import signal
import ssl
import threading
import time

import pytest
import stomp
from ssm_support import (
    fill_queue,
    make_body,
    openssl_sign,
    publish,
    run_send,
    start_receiver,
    unique_destination,
    wait_log,
    write_dns,
    write_receiver_cfg,
    write_sender_cfg,
)

from apel.testkit.pki import subject_hash
from ssm import crypto
from ssm.dirqueue import DirectoryOutgoingQueue, DirqOutgoingQueue


@pytest.fixture(scope="module")
def sender_id(pki):
    return pki.host("e2e-sender")


@pytest.fixture(scope="module")
def receiver_id(pki):
    return pki.host("e2e-receiver")


@pytest.fixture
def setup(tmp_path, pki, activemq, sender_id, receiver_id):
    """Configs for one sender and one receiver sharing a fresh destination."""
    dest = unique_destination()
    (tmp_path / "s").mkdir()
    (tmp_path / "r").mkdir()

    class Setup:
        destination = dest
        outgoing = str(tmp_path / "outgoing")
        spool = str(tmp_path / "spool")
        dns = write_dns(str(tmp_path / "r" / "dns"), [sender_id.dn])
        send_log = str(tmp_path / "s" / "ssmsend.log")
        recv_log = str(tmp_path / "r" / "ssmreceive.log")

        @staticmethod
        def sender_cfg(extra=None, name="sender.cfg"):
            return write_sender_cfg(str(tmp_path / "s" / name), sender_id, pki.capath, activemq.ssl_port,
                                    dest, Setup.outgoing, extra)

        @staticmethod
        def receiver_cfg(extra=None, destination=None):
            return write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), receiver_id, pki.capath,
                                      activemq.ssl_port, destination or dest, Setup.spool, extra)

    return Setup


def _ca_file(pki) -> str:
    return pki.ca.cert_path


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_1000_mixed_size_messages_arrive_identical_with_signer(setup, sender_id):
    rng = random.Random(1000)
    large = [900 * 1024, 700 * 1024, 500 * 1024, 300 * 1024, 100 * 1024]
    sizes = [1024] + large + [rng.randint(1024, 20 * 1024) for _ in range(994)]
    bodies = [make_body(i, size) for i, size in enumerate(sizes)]
    assert len(bodies) == 1000 and min(map(len, bodies)) < 1100 and max(map(len, bodies)) > 900 * 1000
    names = fill_queue(setup.outgoing, bodies)
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        # two signing processes: the pool path (the other tests sign in a thread)
        result = run_send(setup.sender_cfg({"messaging": {"sign_workers": "2"}}), timeout=240)
        assert result.returncode == 0, result.stderr
        assert DirqOutgoingQueue(setup.outgoing).count() == 0
        got = receiver.wait_for(1000, timeout=120)
    finally:
        assert receiver.stop() == 0
    assert len(got) == 1000
    assert sorted(item["body"] for item in got) == sorted(bodies)
    assert {item["signer"] for item in got} == {sender_id.dn}
    assert sorted(item["empaid"] for item in got) == sorted(names)  # empa-id = the queue element name
    assert receiver.rejects() == []


@pytest.mark.timeout(180)
def test_with_server_cert_messages_travel_encrypted(setup, pki, activemq, sender_id, receiver_id):
    """A tap between sender and receiver sees only enveloped data; the receiver gets plaintext."""
    bodies = [make_body(i, size) for i, size in enumerate([1024, 5000, 900 * 1024, 2048, 60000])]
    fill_queue(setup.outgoing, bodies)
    wire_dest = setup.destination + ".wire"
    result = run_send(setup.sender_cfg(
        {"certificates": {"server_cert": receiver_id.cert_path}, "messaging": {"destination": wire_dest}}))
    assert result.returncode == 0, result.stderr
    wait_log(setup.send_log, "Messages will be encrypted using " + receiver_id.dn)

    frames = []
    got_all = threading.Event()

    class Tap(stomp.ConnectionListener):
        def on_message(self, frame) -> None:
            frames.append(frame)
            if len(frames) == len(bodies):
                got_all.set()

    conn = stomp.Connection11([("localhost", activemq.ssl_port)], heartbeats=(0, 0))
    conn.set_ssl(for_hosts=[("localhost", activemq.ssl_port)], cert_file=receiver_id.cert_path,
                 key_file=receiver_id.key_path, ca_certs=_ca_file(pki), ssl_version=ssl.PROTOCOL_TLS_CLIENT)
    conn.set_listener("tap", Tap())
    conn.connect(wait=True)
    conn.subscribe(wire_dest, id="tap", ack="auto")
    assert got_all.wait(60)
    conn.disconnect()
    for frame in frames:
        text = frame.body if isinstance(frame.body, str) else frame.body.decode()
        assert crypto.is_encrypted(text)
        assert "APEL-individual-job-message" not in text
        assert "/" in frame.headers["empa-id"]  # the dirq element name
    publish(activemq.ssl_port, sender_id, _ca_file(pki), setup.destination,
            [(f.body if isinstance(f.body, str) else f.body.decode(), {"empa-id": f.headers["empa-id"]})
             for f in frames])
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        got = receiver.wait_for(len(bodies), timeout=60)
    finally:
        assert receiver.stop() == 0
    assert sorted(item["body"] for item in got) == sorted(bodies)
    assert {item["signer"] for item in got} == {sender_id.dn}


@pytest.mark.timeout(180)
def test_hostile_and_broken_messages_are_rejected_with_reasons(setup, pki, activemq, sender_id, tmp_path):
    text = make_body(7, 1500)
    stranger = pki.host("e2e-stranger")
    expired = pki.host("e2e-expired", expired=True)
    revoked = pki.host("e2e-revoked")
    pki.revoke(revoked)
    attacker = pki.host("e2e-attacker", self_signed=True)
    impostor = pki.host("e2e-impostor", issuer=pki.impostor_ca())
    good = openssl_sign(sender_id, text)
    tampered = good.replace("Site: TEST-7", "Site: EVIL-7")
    assert tampered != good
    messages = [
        (openssl_sign(stranger, text), {"empa-id": "unlisted"}),
        (tampered, {"empa-id": "tampered"}),
        (openssl_sign(attacker, text, "-certfile", sender_id.cert_path), {"empa-id": "spoofed"}),
        (openssl_sign(impostor, text, "-certfile", sender_id.cert_path), {"empa-id": "impostor"}),
        (openssl_sign(expired, text), {"empa-id": "expired"}),
        (openssl_sign(revoked, text), {"empa-id": "revoked"}),
        ("Bibbly bobbly", {"empa-id": "garbage"}),
        ("", {"empa-id": "empty"}),
        ("", {"empa-id": "ping"}),
        (good, {}),  # no empa-id: stored as "noid"
    ]
    receiver = start_receiver(setup.receiver_cfg({"certificates": {"check_crls": "true"}}),
                              setup.dns, setup.spool)
    try:
        wait_log(setup.recv_log, "Subscribed to")
        publish(activemq.ssl_port, sender_id, _ca_file(pki), setup.destination, messages)
        rejects = {item["empaid"]: item for item in receiver.wait_for(8, which="reject")}
        incoming = receiver.wait_for(1)
        # the daemon is still alive and still working after all that
        publish(activemq.ssl_port, sender_id, _ca_file(pki), setup.destination,
                [(good, {"empa-id": "after"})])
        incoming = receiver.wait_for(2)
        assert receiver.proc.poll() is None
    finally:
        assert receiver.stop() == 0
    assert sorted(item["empaid"] for item in incoming) == ["after", "noid"]
    assert all(item["body"] == text for item in incoming)
    assert set(rejects) == {"unlisted", "tampered", "spoofed", "impostor", "expired", "revoked", "garbage",
                            "empty"}
    unlisted = rejects["unlisted"]
    assert unlisted["error"] == f"Signer not in valid DNs list: {stranger.dn}"
    assert unlisted["signer"] == stranger.dn and unlisted["body"] == text.encode()  # reloadable plaintext
    for name in ("tampered", "spoofed", "impostor", "expired", "revoked", "garbage"):
        assert rejects[name]["error"].startswith("Failed to verify message: "), rejects[name]
        assert rejects[name]["signer"] == "Not available."
    assert "expired" in rejects["expired"]["error"].lower()
    assert "revoked" in rejects["revoked"]["error"].lower()
    assert rejects["empty"]["error"] == "Empty text passed to _handle_msg."
    assert rejects["spoofed"]["body"] == messages[2][0].encode()  # exactly as it arrived
    assert rejects["garbage"]["body"] == b"Bibbly bobbly"
    # files 0600, directories 0700
    for root, dirs, files in os.walk(setup.spool):
        for name in dirs:
            assert os.stat(os.path.join(root, name)).st_mode & 0o077 == 0
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o077 == 0


def _not_utf8(rng: random.Random) -> bytes:
    """Random bytes of random length that do not decode as UTF-8."""
    while True:
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000)))
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return data


@pytest.mark.timeout(180)
def test_rejected_messages_keep_their_exact_bytes_and_short_reasons(setup, pki, activemq, sender_id):
    """An operator must find in reject/ what was sent, byte for byte, with a readable reason."""
    rng = random.Random(16000)
    signed = openssl_sign(sender_id, make_body(3, 1500)).encode()
    long_type = "MIME-Version: 1.0\nContent-Type: application/" + "z" * 5000 + "\n\nbody"
    bodies = {f"random-{i}": _not_utf8(rng) for i in range(30)}
    bodies.update({
        "latin-1": "APEL-individual-job-message: v0.3\nSite: Zürich\n%%".encode("latin-1"),
        "signed-then-corrupted": signed.replace(b"Site: TEST-3", b"Site: T\xc9ST-3"),
        "nul-cr-and-truncated": b"\x00\r\nMIME-Version: 1.0\r\n\xe2\x82",
        "long-content-type": long_type.encode(),
        "long-type-and-not-utf8": long_type.encode() + b"\xff",
        "signed-with-crlf": signed.replace(b"\n", b"\r\n").replace(b"Site: TEST-3", b"Site: EVIL-3"),
    })
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        wait_log(setup.recv_log, "Subscribed to")
        publish(activemq.ssl_port, sender_id, _ca_file(pki), setup.destination,
                [(body, {"empa-id": name}) for name, body in bodies.items()])
        rejects = {item["empaid"]: item for item in receiver.wait_for(len(bodies), which="reject")}
    finally:
        assert receiver.stop() == 0
    assert receiver.incoming() == []
    assert set(rejects) == set(bodies)
    for name, body in bodies.items():
        assert rejects[name]["body"] == body, name
        assert rejects[name]["signer"] == "Not available."
        assert len(rejects[name]["error"]) < 250, rejects[name]["error"]
    assert rejects["latin-1"]["error"] == "Message is not UTF-8 text: invalid start byte at byte 41"
    assert rejects["signed-with-crlf"]["error"].startswith("Failed to verify message: message digest")
    clipped = rejects["long-content-type"]["error"]
    assert clipped.startswith("Failed to verify message: ") and "z" * 81 not in clipped
    assert "\u2026 (5012 characters)" in clipped


@pytest.mark.timeout(120)
def test_undecryptable_message_has_its_own_reason(setup, pki, activemq, sender_id):
    other = pki.host("e2e-other-recipient")
    envelope = crypto.encrypt(openssl_sign(sender_id, "hello"), other.cert_path)
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        publish(activemq.ssl_port, sender_id, _ca_file(pki), setup.destination,
                [(envelope, {"empa-id": "x"})])
        (item,) = receiver.wait_for(1, which="reject")
    finally:
        assert receiver.stop() == 0
    assert item["error"].startswith("Failed to decrypt message: ")
    assert item["body"] == envelope.encode()


@pytest.mark.timeout(120)
def test_dn_file_reload_on_sighup_keeps_last_good_list(setup, pki, activemq, sender_id):
    newcomer = pki.host("e2e-newcomer")
    text = make_body(1, 1200)
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        wait_log(setup.recv_log, "Subscribed to")
        publish(activemq.ssl_port, newcomer, _ca_file(pki), setup.destination,
                [(openssl_sign(newcomer, text), {"empa-id": "before"})])
        assert receiver.wait_for(1, which="reject")[0]["empaid"] == "before"

        write_dns(setup.dns, [sender_id.dn, newcomer.dn])
        receiver.proc.send_signal(signal.SIGHUP)
        wait_log(setup.recv_log, "Reloaded 2 valid DNs")
        publish(activemq.ssl_port, newcomer, _ca_file(pki), setup.destination,
                [(openssl_sign(newcomer, text), {"empa-id": "after"})])
        assert receiver.wait_for(1)[0]["empaid"] == "after"

        with open(setup.dns, "w", encoding="utf-8") as handle:
            handle.write("# emptied by a failed retrieve_dns\nnot a dn\n")
        receiver.proc.send_signal(signal.SIGHUP)
        wait_log(setup.recv_log, "keeping the previous list of 2 DNs")
        os.unlink(setup.dns)
        receiver.proc.send_signal(signal.SIGHUP)
        wait_log(setup.recv_log, "Cannot read DN file")
        publish(activemq.ssl_port, newcomer, _ca_file(pki), setup.destination,
                [(openssl_sign(newcomer, text), {"empa-id": "kept"})])
        assert {item["empaid"] for item in receiver.wait_for(2)} == {"after", "kept"}
        assert receiver.proc.poll() is None
    finally:
        assert receiver.stop() == 0


@pytest.mark.timeout(120)
def test_message_that_cannot_be_written_is_not_acked_and_comes_back(setup, pki, activemq, sender_id):
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        wait_log(setup.recv_log, "Subscribed to")
        temporary = os.path.join(setup.spool, "incoming", "temporary")
        shutil.rmtree(temporary)
        with open(temporary, "w", encoding="utf-8") as handle:  # dirq cannot make its temp dir now
            handle.write("blocker")
        publish(activemq.ssl_port, sender_id, _ca_file(pki), setup.destination,
                [(openssl_sign(sender_id, "precious"), {"empa-id": "precious"})])
        wait_log(setup.recv_log, "Failed to write 1 messages, not acknowledging")
        time.sleep(1)
        os.unlink(temporary)
        os.mkdir(temporary, 0o700)
        (item,) = receiver.wait_for(1, timeout=60)
    finally:
        assert receiver.stop() == 0
    assert item["empaid"] == "precious" and item["body"] == "precious"


@pytest.mark.timeout(120)
def test_directory_queue_skips_unreadable_and_empty_messages_and_keeps_them(setup, sender_id):
    queue = DirectoryOutgoingQueue(setup.outgoing)
    good = [queue.add(make_body(i, 2000)) for i in range(5)]
    bad_utf8 = queue.add(b"APEL \xff\xfe not utf-8")
    empty = queue.add(b"   \n")
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        result = run_send(setup.sender_cfg({"messaging": {"path_type": "directory"}}))
        got = receiver.wait_for(5)
    finally:
        assert receiver.stop() == 0
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "2 message(s) not sent" in result.stderr
    assert sorted(queue.names()) == sorted([bad_utf8, empty])
    assert sorted(item["empaid"] for item in got) == sorted(good)


@pytest.mark.timeout(120)
def test_utf8_bodies_travel_end_to_end(setup, sender_id):
    bodies = ["Site: Zürich-Ωmega ✓\nUser: /CN=Jürgen Müller\n%%", "日本語のメッセージ\n%%"]
    fill_queue(setup.outgoing, bodies)
    receiver = start_receiver(setup.receiver_cfg(), setup.dns, setup.spool)
    try:
        assert run_send(setup.sender_cfg()).returncode == 0
        got = receiver.wait_for(2)
    finally:
        assert receiver.stop() == 0
    assert sorted(item["body"] for item in got) == sorted(bodies)


@pytest.mark.timeout(60)
def test_empty_queue_exits_0_without_connecting(tmp_path, pki, sender_id):
    cfg = write_sender_cfg(str(tmp_path / "sender.cfg"), sender_id, pki.capath, 1, "/queue/x",
                           str(tmp_path / "outgoing"))
    result = run_send(cfg)
    assert result.returncode == 0, result.stderr
    wait_log(str(tmp_path / "ssmsend.log"), "No messages found to send.")


@pytest.mark.timeout(60)
def test_broker_certificate_from_an_untrusted_ca_is_refused(setup, pki, tmp_path):
    fake_capath = tmp_path / "fake-capath"
    fake_capath.mkdir()
    impostor = pki.impostor_ca()
    shutil.copy(impostor.cert_path, fake_capath / f"{subject_hash(impostor.cert_path)}.0")
    fill_queue(setup.outgoing, ["hello"])
    result = run_send(setup.sender_cfg({"broker": {"broker_capath": str(fake_capath)}}))
    assert result.returncode == 1
    assert "Attempts to start the SSM failed" in result.stderr and result.stderr.count("\n") == 1
    assert ("the broker's certificate failed verification: self-signed certificate in certificate chain "
            f"(the CA that issued it is not in {fake_capath}; see broker_capath)") in result.stderr
    assert DirqOutgoingQueue(setup.outgoing).count() == 1


@pytest.mark.timeout(60)
def test_client_certificate_the_broker_does_not_trust_fails_in_bounded_time(setup, pki, tmp_path):
    rogue = pki.host("e2e-rogue", self_signed=True)
    fill_queue(setup.outgoing, ["hello"])
    cfg = setup.sender_cfg({"certificates": {"certificate": rogue.cert_path, "key": rogue.key_path},
                            "broker": {"connect_timeout": "4"}})
    started = time.monotonic()
    result = run_send(cfg, timeout=40)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "Attempts to start the SSM failed" in result.stderr
    assert DirqOutgoingQueue(setup.outgoing).count() == 1


@pytest.mark.timeout(60)
def test_dn_file_is_reloaded_periodically(setup, pki, sender_id):
    receiver = start_receiver(setup.receiver_cfg({"receiver": {"dn_refresh": "1"}}), setup.dns, setup.spool)
    try:
        wait_log(setup.recv_log, "Subscribed to")
        write_dns(setup.dns, [sender_id.dn, pki.host("e2e-periodic").dn])
        wait_log(setup.recv_log, "Reloaded 2 valid DNs", timeout=20)
    finally:
        assert receiver.stop() == 0

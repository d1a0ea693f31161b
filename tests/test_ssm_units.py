"""SSM building blocks in-process: DN file, queues, the receiver's per-message decision."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time

import pytest
from dirq.queue import Queue
from ssm_support import openssl_sign

import acctbase.durable as durable
from ssm import crypto
from ssm.allowed_dns import AllowedDNs, DNFileError, parse_dns, read_dns
from ssm.dirqueue import (
    INCOMING_SCHEMA,
    DirectoryOutgoingQueue,
    DirqOutgoingQueue,
    QueueIOError,
    open_incoming,
    open_outgoing,
    open_reject,
    read_all,
)
from ssm.receiver import ReceiverOptions, clip_values, handle_message
from ssm.sign_ahead import sign_message

pytestmark = pytest.mark.timeout(60)


def test_dn_file_parsing(caplog):
    text = (
        "# comment\n\n   \n/C=UK/O=eScience/CN=a.example.org\n  /C=UK/L=A City/CN=b  \n"
        "C = UK, CN = wrong\n/C=UK/O=eScience/CN=a.example.org\n"
    )
    with caplog.at_level(logging.WARNING):
        assert parse_dns(text) == ["/C=UK/O=eScience/CN=a.example.org", "/C=UK/L=A City/CN=b"]
    assert "DN in incorrect format: C = UK, CN = wrong" in caplog.text


def test_dn_file_errors_and_keep_last_good(tmp_path, caplog):
    path = tmp_path / "dns"
    with pytest.raises(DNFileError, match="Cannot read DN file"):
        read_dns(str(path))
    path.write_text("# nothing\n")
    with pytest.raises(DNFileError, match=r"No valid DNs found in .*\.  SSM will not start"):
        read_dns(str(path))
    path.write_text("/CN=one\n")
    allowed = AllowedDNs(str(path))
    assert "/CN=one" in allowed and "/CN=two" not in allowed
    path.write_text("")
    with caplog.at_level(logging.ERROR):
        assert allowed.reload() is False
    assert "/CN=one" in allowed and "keeping the previous list of 1 DNs" in caplog.text
    path.write_text("/CN=two\n")
    assert allowed.reload() is True
    assert "/CN=two" in allowed and "/CN=one" not in allowed


def test_directory_queue_order_and_ignores(tmp_path):
    queue = open_outgoing(str(tmp_path / "q"), "directory")
    assert isinstance(queue, DirectoryOutgoingQueue)
    first = queue.add("first")
    second = queue.add(b"second")
    past = time.time() - 100
    os.utime(os.path.join(queue.path, second), (past, past))
    os.mkdir(os.path.join(queue.path, "subdir"))
    (tmp_path / "q" / ".partial").write_text("being written")
    assert queue.names() == [second, first]
    assert queue.lock(first) and queue.get(first) == b"first"
    queue.remove(first)
    assert queue.names() == [second]
    with pytest.raises(QueueIOError, match="Unsupported path_type"):
        open_outgoing(str(tmp_path / "q"), "s3")


def test_dirq_outgoing_lock_semantics(tmp_path):
    queue = DirqOutgoingQueue(str(tmp_path / "q"))
    names = [queue.add(f"m{i}") for i in range(3)]
    assert queue.names() == names  # chronological
    assert queue.lock(names[0]) and not queue.lock(names[0])
    assert queue.names() == names  # locked messages still count
    assert queue.get(names[0]) == b"m0"
    queue.unlock(names[0])
    assert queue.lock(names[0])
    queue.remove(names[0])
    assert queue.count() == 2


@pytest.fixture(params=["syncfs", "fsync each path"])
def sync_mode(request, monkeypatch):
    """Both ways of making a batch durable: one syncfs (Linux >= 5.8), or fsync per path."""
    if request.param == "syncfs" and durable._syncfs is None:
        pytest.skip("syncfs does not report write-back errors on this kernel")
    if request.param != "syncfs":
        monkeypatch.setattr(durable, "_syncfs", None)
    return request.param


def test_incoming_and_reject_queues_are_private_and_loader_readable(tmp_path, sync_mode):
    incoming, reject = open_incoming(str(tmp_path)), open_reject(str(tmp_path))
    name = incoming.add({"body": "text\n%%", "signer": "/CN=x", "empaid": "e1"})
    reject.add_many([{"body": "raw", "signer": "Not available.", "empaid": "e2", "error": "why"}])
    element = os.path.join(incoming.path, name)
    assert sorted(os.listdir(element)) == ["body", "empaid", "signer"]
    for path in (incoming.path, element):
        assert os.stat(path).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(element, "body")).st_mode & 0o777 == 0o600
    with open(os.path.join(element, "body"), encoding="utf-8") as handle:
        assert handle.read() == "text\n%%"  # no trailing newline added
    # what the loader does: a dirq Queue with the same schema, lock + get + remove
    loader = Queue(incoming.path, schema=INCOMING_SCHEMA)
    elem = loader.first()
    assert loader.lock(elem)
    assert loader.get(elem) == {"body": "text\n%%", "signer": "/CN=x", "empaid": "e1"}
    assert reject.read(reject.names()[0])["error"] == "why"


def test_write_failure_is_reported(tmp_path):
    incoming = open_incoming(str(tmp_path))
    os.rmdir(os.path.join(incoming.path, "temporary"))
    with open(os.path.join(incoming.path, "temporary"), "w", encoding="utf-8") as handle:
        handle.write("blocker")
    with pytest.raises(QueueIOError, match="cannot write to queue"):
        incoming.add({"body": "b", "signer": "s", "empaid": "e"})


def test_write_back_error_reported_by_syncfs_fails_the_batch(tmp_path, monkeypatch):
    """The receiver must not acknowledge a batch whose write-back failed (EIO, ENOSPC)."""
    incoming = open_incoming(str(tmp_path))

    def failing_syncfs(_fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(durable, "_syncfs", failing_syncfs)
    with pytest.raises(QueueIOError, match="syncfs: Input/output error"):
        incoming.add_many([{"body": "b", "signer": "s", "empaid": "e"}])


@pytest.fixture(scope="module")
def signer(pki):
    return pki.host("unit-signer")


@pytest.fixture
def options(pki, signer):
    receiver = pki.host("unit-receiver")
    return ReceiverOptions("/queue/x", receiver.cert_path, receiver.key_path, pki.capath, False)


@pytest.fixture
def allowed(tmp_path, signer):
    path = tmp_path / "dns"
    path.write_text(signer.dn + "\n")
    return AllowedDNs(str(path))


def test_handle_message_accepts_and_normalises(signer, options, allowed):
    signed = openssl_sign(signer, "line one\r\nline two\n%%\n\n")
    decision = handle_message({"empa-id": "e1"}, signed.encode(), options, allowed)
    assert decision.target == "incoming"
    assert decision.fields == {"body": "line one\nline two\n%%", "signer": signer.dn, "empaid": "e1"}
    # encrypted to the receiver: decrypted first
    envelope = crypto.encrypt(signed, options.certificate)
    assert handle_message({}, envelope, options, allowed).fields["empaid"] == "noid"
    assert handle_message({}, envelope, options, allowed).target == "incoming"


def test_handle_message_judges_by_the_receivers_store(signer, options, allowed, tmp_path):
    """The receiver's CA store decides, not a directory named elsewhere."""
    signed = openssl_sign(signer, "x\n")
    own = crypto.TrustStore(options.capath, options.check_crls)
    assert handle_message({"empa-id": "s1"}, signed, options, allowed, own).target == "incoming"
    empty = crypto.TrustStore(str(tmp_path), False)
    decision = handle_message({"empa-id": "s2"}, signed, options, allowed, empty)
    assert decision.target == "reject"
    assert f"not issued by a trusted CA in {tmp_path}" in decision.fields["error"]


@pytest.mark.parametrize("headers, body, target, error", [
    ({"empa-id": "ping"}, b"", "drop", None),
    ({"empa-id": "012345"}, b"body", "reject", "Failed to verify message: "),
    ({}, b"", "reject", "Empty text passed to _handle_msg."),
    ({}, None, "reject", "Empty text passed to _handle_msg."),
    ({}, b"\xff\xfe\x00garbage", "reject", "Message is not UTF-8 text"),
    ({}, "MIME-Version: 1.0\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\n\nAAAA",
     "reject", "Failed to decrypt message: "),
])
def test_handle_message_never_raises(headers, body, target, error, options, allowed):
    decision = handle_message(headers, body, options, allowed)
    assert decision.target == target
    if error:
        assert decision.fields["error"].startswith(error)
        assert decision.fields["signer"] == "Not available."
        expected = body.encode() if isinstance(body, str) else (body or b"")
        assert decision.fields["body"] == expected  # the reject keeps what arrived


def test_handle_message_over_the_size_limit_keeps_its_start_and_end(signer, options, allowed):
    options.max_message_size = 4096
    signed = openssl_sign(signer, "x" * 6000).encode()
    decision = handle_message({"empa-id": "big"}, signed, options, allowed)
    assert decision.target == "reject"
    assert decision.fields["error"] == (f"Message is {len(signed)} bytes, over max_message_size 4096: "
                                        "body keeps only its first 2048 and its last 2048 bytes")
    assert decision.fields["body"] == signed[:2048] + signed[-2048:]
    assert handle_message({}, signed[:4096], options, allowed).fields["error"].startswith("Failed to verify")


def test_reasons_cut_long_values_and_say_how_long_they_were():
    assert clip_values("signature part is 'application/x-pkcs7-signature'") == \
        "signature part is 'application/x-pkcs7-signature'"
    long = "q" * 300
    cut = "q" * 80 + "\u2026"
    assert clip_values(f"encoding {long!r} unknown") == f"encoding '{cut}' (300 characters) unknown"
    assert clip_values(f'charset "{long}"') == f'charset "{"q" * 80}\u2026" (300 characters)'
    assert clip_values(f"(Content-Type: x/{long})") == f"(Content-Type: x/{'q' * 78}\u2026 (302 characters))"
    # an apostrophe inside a word does not start a quoted value
    text = "the broker's certificate " + "and more words " * 10 + "isn't quoted"
    assert clip_values(text) == text


def test_handle_message_base64_inner_part(signer, options, allowed, tmp_path):
    """The existing SSM crashed on base64 inner parts (spec §12 item 5)."""
    import base64
    import subprocess

    inner = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             + base64.encodebytes("Zürich record\n%%".encode()).decode().replace("\n", "\r\n"))
    out = subprocess.run(
        ["openssl", "smime", "-sign", "-signer", signer.cert_path, "-inkey", signer.key_path],
        input=inner.encode(), capture_output=True, check=True,
    )
    decision = handle_message({"empa-id": "b64"}, out.stdout, options, allowed)
    assert decision.target == "incoming", decision.fields
    assert decision.fields["body"] == "Zürich record\n%%"


def test_sign_message_checks_every_step(signer, pki):
    body, problem = sign_message("hello", signer.cert_path, signer.key_path, None)
    assert body and "application/x-pkcs7-signature" in body and problem == ""
    body, problem = sign_message("hello", signer.cert_path, pki.host("unit-other").key_path, None)
    assert body is None and "could not be signed" in problem


@pytest.mark.parametrize("name, sections", [
    ("sender.cfg", ["sender", "broker", "certificates", "messaging", "logging"]),
    ("receiver.cfg", ["receiver", "broker", "certificates", "messaging", "logging", "daemon"]),
])
def test_shipped_configs_parse(name, sections):
    from acctbase.config import ConfigFile

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = ConfigFile(os.path.join(here, "conf", name))
    assert all(config.has_section(section) for section in sections)
    assert config.get("broker", "use_ssl") == "true"
    with open(os.path.join(here, "conf", "dns"), encoding="utf-8") as handle:
        assert parse_dns(handle.read()) == []  # only comments and an example


def test_pidfile_is_never_seen_empty_while_it_is_taken_or_rewritten(tmp_path):
    """A reader (the daemon's launcher, a second copy deciding whether the file is stale)
    must always find a PID: an empty file would pass for a stale one."""
    import threading

    from acctbase.pidfile import PidFile

    path = str(tmp_path / "run" / "svc.pid")
    done = threading.Event()
    empty_reads = []

    def reader() -> None:
        while not done.is_set():
            try:  # a file that opens must hold a PID (absent between two takes is fine)
                with open(path, encoding="ascii") as handle:
                    text = handle.read()
            except FileNotFoundError:
                continue
            if not text.strip():
                empty_reads.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(300):
            lock = PidFile(path)
            lock.acquire()
            for _ in range(5):
                lock.rewrite()
            lock.release()
    finally:
        done.set()
        thread.join()
    assert empty_reads == []
    assert not os.path.exists(path)
    assert os.listdir(tmp_path / "run") == []  # no temporary files left


def _try_pidfile(path: str, start, results) -> None:
    from acctbase.exceptions import PidfileError
    from acctbase.pidfile import PidFile

    lock = PidFile(path)
    start.wait()
    try:
        lock.acquire()
    except PidfileError:
        results.put(False)
        return
    results.put(True)
    time.sleep(0.5)  # hold it while the others look
    lock.release()


def test_copies_starting_together_over_a_stale_pidfile_give_exactly_one_winner(tmp_path):
    import multiprocessing
    import subprocess

    context = multiprocessing.get_context("fork")
    path = str(tmp_path / "svc.pid")
    for _ in range(5):
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(path, "w", encoding="ascii") as handle:  # left by a process that is gone
            handle.write(f"{dead.pid}\n")
        start, results = context.Event(), context.Queue()
        copies = [context.Process(target=_try_pidfile, args=(path, start, results)) for _ in range(6)]
        for copy in copies:
            copy.start()
        start.set()
        for copy in copies:
            copy.join(30)
        outcomes = [results.get(timeout=5) for _ in copies]
        assert outcomes.count(True) == 1, outcomes
        assert not os.path.exists(path)


def test_queue_count_leaves_out_an_element_still_being_written(tmp_path):
    """dirq writes an element under temporary/ and renames it into place; its own count
    includes the unfinished one, so a reader that waited for N elements read N-1."""
    queue = open_incoming(str(tmp_path))
    queue.add_many([{"body": "APEL-summary-job-message: v0.2\n", "signer": "/CN=a", "empaid": "x"}])
    (tmp_path / "incoming" / "temporary" / "6b12f89bc8ec77").mkdir(parents=True)
    assert Queue(str(tmp_path / "incoming"), schema=INCOMING_SCHEMA).count() == 2  # dirq's own count
    assert queue.count() == 1
    assert len(read_all(queue)) == 1

"""A rejected message is kept exactly as it was queued, and can be reprocessed as the guide says.

A message that is not UTF-8 (a Latin-1 producer, a truncated multi-byte character, a
stray byte in the header) cannot be parsed; the operator needs the bytes that arrived
to see what the producer did, and must be able to fix them and load the message again.
Messages are queued byte for byte (dirq, binary fields, as any writer may), the loader
runs, and the reject element's files are compared with what was queued.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest
from dirq.queue import Queue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loader_support import JOB_V03, SIGNER, LoaderEnv

from apel.db.backend import load_backend
from apel.services.loader import EXIT_REJECTED, Loader, LoaderSettings
from ssm.dirqueue import open_incoming

RAW_SCHEMA = {"body": "binary", "signer": "binary", "empaid": "binary?"}
GOOD = JOB_V03.encode("utf-8")
NOT_UTF8 = "Parsing unsuccessful: the message is not UTF-8 text: 'utf-8' codec can't decode"

pytestmark = pytest.mark.timeout(180)


def queue_raw(msgpath: Path, body: bytes, signer: bytes = SIGNER.encode(), empaid: bytes = b"id-1") -> str:
    return Queue(str(msgpath / "incoming"), schema=RAW_SCHEMA).add(
        {"body": body, "signer": signer, "empaid": empaid})


def reject_files(msgpath: Path) -> list[dict[str, bytes]]:
    """Every reject element's files, as bytes."""
    found = []
    for element in sorted((msgpath / "reject").glob("[0-9a-f]" * 8 + "/*")):
        found.append({f.name: f.read_bytes() for f in element.iterdir() if f.is_file()})
    return found


@pytest.fixture
def sqlite_env(tmp_path) -> LoaderEnv:
    return LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")})


CASES = {
    "stray byte in the header": GOOD.replace(b"job-message", b"job-\xffmessage", 1),
    "Latin-1 value": GOOD.replace(b"Site: TEST-SITE", b"Site: Caf\xe9-M\xfcller"),
    "truncated multi-byte character at the end": GOOD + b"\nQueue: \xe2\x82",
    "truncated multi-byte character in a value": GOOD.replace(b"Queue: long", b"Queue: lo\xf0\x9f\x98ng"),
    "whole message in Latin-1": JOB_V03.replace("atlas001", "\xe9l\xe8ve").encode("latin-1"),
    "encoded surrogate": GOOD.replace(b"Queue: long", b"Queue: \xed\xa0\x80"),
    "XML in Latin-1": '<?xml version="1.0"?><r>caf\xe9</r>'.encode("latin-1"),
}


@pytest.mark.parametrize("body", CASES.values(), ids=CASES.keys())
def test_a_message_that_is_not_utf8_is_rejected_byte_for_byte(sqlite_env, body):
    queue_raw(sqlite_env.msgpath, body)
    proc = sqlite_env.run_once()
    assert proc.returncode == EXIT_REJECTED, (proc.stderr, sqlite_env.log())
    (rejected,) = reject_files(sqlite_env.msgpath)
    assert rejected["body"] == body
    assert rejected["signer"] == SIGNER.encode() and rejected["empaid"] == b"id-1"
    assert rejected["error"].decode().startswith(NOT_UTF8), rejected["error"]
    assert "Rejected message" in sqlite_env.log()


def test_a_signer_that_is_not_utf8_is_kept_too(sqlite_env):
    signer = b"/C=DE/O=Universit\xe4t/CN=host"
    queue_raw(sqlite_env.msgpath, GOOD, signer=signer)
    assert sqlite_env.run_once().returncode == EXIT_REJECTED
    (rejected,) = reject_files(sqlite_env.msgpath)
    assert rejected["body"] == GOOD and rejected["signer"] == signer
    assert rejected["error"].decode().startswith("unreadable queue element: the signer is not UTF-8 text")


def test_a_text_reject_is_stored_as_the_bytes_queued(sqlite_env):
    body = JOB_V03.replace("Site: TEST-SITE", "Site: Café\r\nUnknownKey: ü").encode()
    queue_raw(sqlite_env.msgpath, body)
    assert sqlite_env.run_once().returncode == EXIT_REJECTED
    (rejected,) = reject_files(sqlite_env.msgpath)
    assert rejected["body"] == body
    assert rejected["error"].decode() == "Parsing unsuccessful: record 1: Unknown field: UnknownKey"


def test_a_message_the_receiver_queued_is_loaded(sqlite_env):
    """The receiver's incoming queue, written with its own schema, is what the loader reads."""
    body = JOB_V03.replace("Site: TEST-SITE", "Site: Café-Müller")
    open_incoming(str(sqlite_env.msgpath)).add({"body": body, "signer": SIGNER, "empaid": "id-1"})
    proc = sqlite_env.run_once()
    assert proc.returncode == 0, (proc.stderr, sqlite_env.log())
    assert sqlite_env.query("SELECT name FROM Sites") == [("Café-Müller",)]
    assert reject_files(sqlite_env.msgpath) == []


def test_reprocessing_a_reject_as_the_operator_guide_says(sqlite_env):
    """operator-guide.md, "Troubleshooting by reject reason": fix the body, move the element back."""
    body = JOB_V03.replace("Site: TEST-SITE", "Site: Caf\xe9").encode("latin-1")
    queue_raw(sqlite_env.msgpath, body)
    assert sqlite_env.run_once().returncode == EXIT_REJECTED
    (element,) = (sqlite_env.msgpath / "reject").glob("[0-9a-f]" * 8 + "/*")
    # iconv -f latin1 -t utf-8 body > body.new && mv body.new body
    (element / "body").write_bytes((element / "body").read_bytes().decode("latin-1").encode("utf-8"))
    # mkdir -p incoming/<bucket> && mv reject/<bucket>/<element> incoming/<bucket>/
    bucket = sqlite_env.msgpath / "incoming" / element.parent.name
    bucket.mkdir(exist_ok=True)
    os.rename(element, bucket / element.name)
    proc = sqlite_env.run_once()
    assert proc.returncode == 0, (proc.stderr, sqlite_env.log())
    assert sqlite_env.query("SELECT name FROM Sites") == [("Café",)]
    assert reject_files(sqlite_env.msgpath) == []
    assert list((sqlite_env.msgpath / "incoming").glob("[0-9a-f]" * 8 + "/*")) == []


# -- any bytes ------------------------------------------------------------------------------------

_invalid = st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80",
                            b"\x80", b"\xe9", b"\xf5\x80\x80\x80"])


@st.composite
def corrupted(draw) -> bytes:
    """A good message with invalid UTF-8 put in anywhere, or arbitrary bytes that are not UTF-8."""
    if draw(st.booleans()):
        data = draw(st.binary(min_size=1, max_size=300))
        return data + draw(_invalid) if _is_utf8(data) else data
    at = draw(st.integers(0, len(GOOD)))
    return GOOD[:at] + draw(_invalid) + GOOD[at:]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_any_invalid_utf8_lands_in_reject_unchanged(body):
    with tempfile.TemporaryDirectory() as base:
        msgpath = Path(base) / "spool"
        backend = load_backend("sqlite")({"backend": "sqlite", "name": f"{base}/apel.sqlite3"})
        loader = Loader(LoaderSettings(str(msgpath)), backend)
        try:
            queue_raw(msgpath, body)
            assert loader.run_once(threading.Event()) == EXIT_REJECTED
        finally:
            loader.close()
        (rejected,) = reject_files(msgpath)
        assert rejected["body"] == body
        assert rejected["error"].decode().startswith(NOT_UTF8)

"""Oversized messages: split at record boundaries, or set aside without blocking the queue."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ssm_support import (
    fill_queue,
    run_send,
    start_receiver,
    unique_destination,
    wait_log,
    write_dns,
    write_receiver_cfg,
    write_sender_cfg,
)

from ssm.dirqueue import DirqOutgoingQueue
from ssm.split import CannotSplit, iter_parts, split_message

HEADER = "APEL-individual-job-message: v0.3"


def _records(message: str) -> list[str]:
    header, _, body = message.strip().partition("\n")
    assert header == HEADER
    return [record.strip() for record in body.split("%%") if record.strip()]


def _job(index: int) -> str:
    return f"Site: SPLIT-SITE\nLocalJobId: job-{index:06d}\nWallDuration: {index}\nCpuDuration: 1"


def test_split_repeats_the_header_and_keeps_every_record_in_order():
    message = HEADER + "\n" + "".join(f"{_job(i)}\n%%\n" for i in range(10))
    parts = split_message(message, 3)
    assert parts is not None and len(parts) == 3
    assert [len(_records(part)) for part in parts] == [4, 3, 3]
    assert sum((_records(part) for part in parts), []) == [_job(i) for i in range(10)]
    assert all(part.endswith("%%\n") for part in parts)


def test_what_cannot_be_split():
    assert split_message("<?xml version='1.0'?><urf:UsageRecords/>", 2) is None
    assert split_message(HEADER + "\n" + _job(1) + "\n%%\n", 2) is None  # one record
    assert split_message("no header line at all", 2) is None
    assert len(split_message(HEADER + "\n" + "".join(f"{_job(i)}\n%%\n" for i in range(3)), 50)) == 3


record_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="%"), min_size=1
).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(st.lists(record_text, min_size=2, max_size=40), st.integers(min_value=2, max_value=50))
def test_split_then_join_gives_the_same_records(records, parts):
    message = HEADER + "\n" + "".join(f"{record}\n%%\n" for record in records)
    pieces = split_message(message, parts)
    assert pieces is not None
    assert sum((_records(piece) for piece in pieces), []) == records


def _chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into chunks of the given sizes (cycled), as reads of a file would return it."""
    chunks, start, index = [], 0, 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        chunks.append(data[start:start + size])
        start, index = start + size, index + 1
    return chunks


@settings(max_examples=80, deadline=None)
@given(st.lists(record_text, min_size=2, max_size=40), st.integers(min_value=1, max_value=400),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=5))
def test_streamed_parts_are_what_split_message_writes(records, part_size, chunk_sizes):
    """Read in chunks of any size (a character or a %% cut in two), the same records in the same form."""
    message = "\n  " + HEADER + "\n" + "".join(f"{record}\n%%\n" for record in records) + "\n"
    parts = list(iter_parts(_chunked(message.encode(), chunk_sizes), part_size, 10_000))
    assert sum((_records(part) for part in parts), []) == records
    for part in parts:  # the form split_message gives a part
        assert part == HEADER + "\n" + "".join(f"{record}\n%%\n" for record in _records(part))
        assert len(part.encode()) <= len(HEADER) + 1 + part_size or len(_records(part)) == 1


def test_the_first_part_comes_before_the_message_is_read_whole():
    message = (HEADER + "\n" + "".join(f"{_job(i)}\n%%\n" for i in range(20000))).encode()
    chunks = _chunked(message, [64 * 1024])
    read = []

    def reading():
        for chunk in chunks:
            read.append(len(chunk))
            yield chunk

    parts = iter_parts(reading(), 100 * 1024, 1024 * 1024)
    first = next(parts)
    assert len(first) < 110 * 1024
    assert sum(read) < len(message) // 4  # about 1 MB held, not the whole 4 MB
    rest = list(parts)
    assert sum(read) == len(message)
    assert sum((_records(part) for part in [first, *rest]), []) == [_job(i) for i in range(20000)]


JOB_A = HEADER.encode() + b"\nSite: a\n%%\n"


@pytest.mark.parametrize("message, why", [
    (b"<?xml version='1.0'?><urf:UsageRecords/>" * 10, "it is XML"),
    (b"no header line at all, " * 10, "it has no header line"),
    (b"no colon in this header\nSite: x\n%%\nSite: y\n%%\n", "its first line is not an APEL header"),
    (HEADER.encode() + b"\n" + b"x" * 500, "it holds a single record"),
    (JOB_A + b"y" * 3000 + b"\n%%\n", "a record is over 1000 bytes"),
    (JOB_A + b"y" * 900 + "é".encode() * 60 + b"\n%%\n", "a record is over 1000 bytes"),
    (JOB_A + b"Site: \xc3", "it is not valid UTF-8 (unexpected end of data at byte 51)"),
    (JOB_A + b"Site: \xff\n%%", "it is not valid UTF-8 (invalid start byte at byte 51)"),
])
def test_what_cannot_be_streamed_into_parts(message, why):
    with pytest.raises(CannotSplit) as caught:
        list(iter_parts(_chunked(message, [7]), 50, 1000))
    assert str(caught.value) == why


@pytest.fixture
def hop(request, tmp_path, pki, activemq):
    """ssmsend (max_message_size 60000; encrypting when the test asks) -> ActiveMQ -> ssmreceive."""
    sender, receiver = pki.host("split-sender"), pki.host("split-receiver")
    destination = unique_destination()
    outgoing, spool = str(tmp_path / "outgoing"), str(tmp_path / "spool")
    (tmp_path / "s").mkdir()
    (tmp_path / "r").mkdir()
    extra = {"messaging": {"max_message_size": "60000"}}
    if getattr(request, "param", "plain") == "encrypted":
        extra["certificates"] = {"server_cert": receiver.cert_path}
    send_cfg = write_sender_cfg(str(tmp_path / "s" / "sender.cfg"), sender, pki.capath, activemq.ssl_port,
                                destination, outgoing, extra)
    recv_cfg = write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), receiver, pki.capath,
                                  activemq.ssl_port, destination, spool)
    dns = write_dns(str(tmp_path / "r" / "dns"), [sender.dn])
    process = start_receiver(recv_cfg, dns, spool)
    wait_log(str(tmp_path / "r" / "ssmreceive.log"), "Subscribed to")
    yield outgoing, send_cfg, process, str(tmp_path / "s" / "ssmsend.log")
    process.stop()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("hop", ["plain", "encrypted"], indirect=True)
def test_an_oversized_message_travels_as_several_that_fit(hop):
    outgoing, send_cfg, receiver, send_log = hop
    records = [_job(i) + "\nQueue: " + "q" * 40 for i in range(2500)]  # about 250 KB
    fill_queue(outgoing, [HEADER + "\n" + "".join(f"{record}\n%%\n" for record in records)])

    result = run_send(send_cfg)

    assert result.returncode == 0, result.stderr
    assert DirqOutgoingQueue(outgoing).count() == 0
    with open(send_log, encoding="utf-8") as handle:
        assert "split at record boundaries" in handle.read()
    deadline = time.monotonic() + 60
    received: list[str] = []
    while len(received) < len(records) and time.monotonic() < deadline:
        time.sleep(0.2)
        received = [record for item in receiver.incoming() for record in _records(item["body"])]
    assert sorted(received) == sorted(records)
    assert len(received) == len(records)


@pytest.mark.timeout(180)
def test_an_xml_message_that_cannot_be_split_stays_queued_and_the_rest_is_sent(hop):
    outgoing, send_cfg, receiver, _log = hop
    big_xml = "<?xml version='1.0'?><urf:UsageRecords>" + "<x/>" * 30000 + "</urf:UsageRecords>"
    small = HEADER + "\n" + _job(1) + "\n%%"
    fill_queue(outgoing, [big_xml, small])

    result = run_send(send_cfg)

    assert result.returncode == 1
    assert "cannot be split at record boundaries" in result.stderr
    assert DirqOutgoingQueue(outgoing).count() == 1  # the XML message, kept for the operator
    assert [item["body"] for item in receiver.wait_for(1, timeout=60)] == [small]


@pytest.mark.timeout(180)
def test_a_record_too_big_to_fit_leaves_the_message_whole_and_no_parts(hop):
    outgoing, send_cfg, receiver, _log = hop
    records = [_job(i) for i in range(2000)] + ["Site: HUGE\nBlob: " + "b" * 70000] + [_job(1)]
    message = HEADER + "\n" + "".join(f"{record}\n%%\n" for record in records)  # parts cut, then the blob
    (name,) = fill_queue(outgoing, [message])

    result = run_send(send_cfg)

    assert result.returncode == 1
    assert "cannot be split at record boundaries to fit: a record is over 60000 bytes" in result.stderr
    queue = DirqOutgoingQueue(outgoing)
    assert queue.names() == [name] and queue.lock(name) and queue.get(name) == message.encode()
    assert receiver.incoming() == []

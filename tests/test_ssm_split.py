"""Oversized messages: split at record boundaries, or set aside without blocking the queue."""

from __future__ import annotations

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

from ssm.queues import DirqOutgoingQueue
from ssm.split import split_message

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


@pytest.fixture
def hop(tmp_path, pki, activemq):
    sender, receiver = pki.host("split-sender"), pki.host("split-receiver")
    destination = unique_destination()
    outgoing, spool = str(tmp_path / "outgoing"), str(tmp_path / "spool")
    (tmp_path / "s").mkdir()
    (tmp_path / "r").mkdir()
    send_cfg = write_sender_cfg(str(tmp_path / "s" / "sender.cfg"), sender, pki.capath, activemq.ssl_port,
                                destination, outgoing, {"messaging": {"max_message_size": "60000"}})
    recv_cfg = write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), receiver, pki.capath,
                                  activemq.ssl_port, destination, spool)
    dns = write_dns(str(tmp_path / "r" / "dns"), [sender.dn])
    process = start_receiver(recv_cfg, dns, spool)
    wait_log(str(tmp_path / "r" / "ssmreceive.log"), "Subscribed to")
    yield outgoing, send_cfg, process, str(tmp_path / "s" / "ssmsend.log")
    process.stop()


@pytest.mark.timeout(180)
def test_an_oversized_message_travels_as_several_that_fit(hop):
    outgoing, send_cfg, receiver, send_log = hop
    records = [_job(i) + "\nQueue: " + "q" * 40 for i in range(2500)]  # about 250 KB
    fill_queue(outgoing, [HEADER + "\n" + "".join(f"{record}\n%%\n" for record in records)])

    result = run_send(send_cfg)

    assert result.returncode == 0, result.stderr
    assert DirqOutgoingQueue(outgoing).count() == 0
    with open(send_log, encoding="utf-8") as handle:
        assert "split at record boundaries" in handle.read()
    arrived = receiver.wait_for(5, timeout=60)
    received = [record for item in sorted(arrived, key=lambda item: item["empaid"])
                for record in _records(item["body"])]
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

"""StompLink.batch() against the real ActiveMQ over TLS: frames written inside the
block leave together when it ends, and every one of them takes effect."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ssm.brokers import Broker
from ssm.stomp_link import StompLink, TLSSettings

pytestmark = pytest.mark.timeout(60)


def _wait(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_batched_sends_and_acks_all_take_effect(activemq, pki):
    host = pki.host("batch-client")
    tls = TLSSettings(host.cert_path, host.key_path, pki.capath)
    broker = Broker("localhost", activemq.ssl_port)
    destination = f"/queue/batch.{uuid.uuid4().hex}"
    receipts: list[str] = []
    sender = StompLink(broker, tls, on_receipt=receipts.append)
    sender.connect()
    try:
        with sender.batch():
            for index in range(30):
                sender.send(destination, f"message {index}", {"receipt": f"r{index}", "persistent": "true"})
            time.sleep(0.5)
            assert receipts == []  # nothing has left yet
        assert _wait(lambda: len(receipts) == 30)
        assert sorted(receipts) == sorted(f"r{index}" for index in range(30))
    finally:
        sender.close()

    arrived: list[tuple[StompLink, dict, bytes]] = []
    lock = threading.Lock()

    def on_message(link: StompLink, headers: dict, body: bytes) -> None:
        with lock:
            arrived.append((link, headers, body))

    consumer = StompLink(broker, tls, on_message=on_message)
    consumer.connect()
    consumer.subscribe(destination, prefetch=50)
    assert _wait(lambda: len(arrived) == 30)
    with consumer.batch():
        for link, headers, _body in arrived:
            link.ack(headers["message-id"], headers["subscription"])
    consumer.close()  # DISCONNECT's receipt: the broker has processed the acks before it

    again: list[bytes] = []
    checker = StompLink(broker, tls, on_message=lambda _link, _headers, body: again.append(body))
    checker.connect()
    checker.subscribe(destination)
    time.sleep(1.5)
    checker.close()
    assert again == []  # every batched ack was applied: nothing is delivered again
    bodies = sorted(bytes(body).decode() for _link, _headers, body in arrived)
    assert bodies == sorted(f"message {index}" for index in range(30))

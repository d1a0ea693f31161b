"""Messages that take longer than a heart-beat to arrive, or are bigger than the receiver stores whole.

Every delivered message must end in ``incoming`` or ``reject``, once. A 50 MB
message used to end in neither: while its frame was arriving the connection was
taken for dead (on our side, which counted only whole frames as signs of life, and
on the broker's, which got no heart-beats from us while we read), and the message
came back on the next connection, again and again. Here a throttling proxy makes
frames arrive slower than the heart-beat window, and a broker with a 64 MB frame
limit delivers a 60 MB message; one over ``max_message_size`` goes to ``reject``
with its size, the limit and what of it was kept.
"""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from ssm_support import (
    publish,
    start_receiver,
    unique_destination,
    wait_log,
    write_dns,
    write_receiver_cfg,
)

from apel.testkit.services import ActiveMQ

MB = 1024 * 1024


class ThrottledProxy:
    """A TCP relay to ``port`` passing the broker's bytes at ``rate`` bytes/s: a slow link (TLS inside)."""

    def __init__(self, port: int, rate: int) -> None:
        self.target, self.rate = port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, broker]
            threading.Thread(target=self._pipe, args=(client, broker, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(broker, client, self.rate), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, rate: int) -> None:
        try:
            while data := source.recv(32 * 1024):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def slow_link(activemq):
    proxy = ThrottledProxy(activemq.ssl_port, rate=MB)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def big_frame_broker(tmp_path_factory, pki):
    broker = ActiveMQ(str(tmp_path_factory.mktemp("big-frame-activemq")), pki, max_frame_size=64 * MB).start()
    yield broker
    broker.stop()


def _noise(size: int, seed: int) -> bytes:
    """Unsigned, printable bytes (not an S/MIME message)."""
    return random.Random(seed).randbytes(size // 2).hex().encode()


def _receive(tmp_path, pki, port: int, publish_port: int, bodies: dict[str, bytes], receiver_extra: dict,
             persistent: bool = True) -> tuple[dict, str]:
    """Publish ``bodies`` and let ssmreceive (through ``port``) store them: (rejects by empaid, its log)."""
    sender, receiver_id = pki.host("limits-sender"), pki.host("limits-receiver")
    destination, spool = unique_destination(), str(tmp_path / "spool")
    (tmp_path / "r").mkdir()
    cfg = write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), receiver_id, pki.capath, port,
                             destination, spool, receiver_extra)
    receiver = start_receiver(cfg, write_dns(str(tmp_path / "r" / "dns"), [sender.dn]), spool)
    log = tmp_path / "r" / "ssmreceive.log"
    try:
        wait_log(str(log), "Subscribed to")
        publish(publish_port, sender, pki.ca.cert_path, destination,
                [(body, {"empa-id": name}) for name, body in bodies.items()], persistent=persistent)
        receiver.wait_for(len(bodies), timeout=90, which="reject")
        time.sleep(1)  # a copy stored twice would show now
        assert receiver.proc.poll() is None
    finally:
        assert receiver.stop() == 0
    assert receiver.incoming() == []
    # Read once the receiver has stopped: what it wrote is complete by then.
    rejects = receiver.rejects()
    assert sorted(item["empaid"] for item in rejects) == sorted(bodies)  # each exactly once
    return {item["empaid"]: item for item in rejects}, log.read_text(encoding="utf-8")


@pytest.mark.timeout(180)
def test_frames_slower_than_the_heartbeat_window_keep_the_connection(tmp_path, pki, activemq, slow_link):
    """At 1 MB/s, 3 and 6 MB frames take 3 and 6 s; the heart-beat window is 1.5 s."""
    bodies = {"under": _noise(3 * MB, 1), "over": _noise(6 * MB, 2)}
    rejects, log = _receive(tmp_path, pki, slow_link.port, activemq.ssl_port, bodies,
                            {"broker": {"heartbeat": "1000"}, "receiver": {"max_message_size": str(4 * MB)}})
    assert "heartbeat timeout" not in log and " lost" not in log  # a frame arriving is a live connection
    assert rejects["under"]["body"] == bodies["under"]
    assert rejects["under"]["error"].startswith("Failed to verify message: not an S/MIME message")
    assert rejects["over"]["error"] == (
        f"Message is {6 * MB} bytes, over max_message_size {4 * MB}: body keeps only its first "
        f"{MB} and its last {64 * 1024} bytes")
    assert rejects["over"]["body"] == bodies["over"][:MB] + bodies["over"][-64 * 1024:]


@pytest.mark.timeout(300)
def test_a_60_mb_message_is_stored_once_whole_or_cut_to_the_limit(tmp_path, pki, big_frame_broker):
    bodies = {"under": _noise(25 * MB, 3), "over": _noise(60 * MB, 4)}
    port = big_frame_broker.ssl_port
    limit = {"receiver": {"max_message_size": str(30 * MB)}}
    # Not persistent: the broker's 512 MB heap cannot journal a 60 MB message.
    rejects, _log = _receive(tmp_path, pki, port, port, bodies, limit, persistent=False)
    assert rejects["under"]["body"] == bodies["under"]
    assert rejects["over"]["error"] == (
        f"Message is {60 * MB} bytes, over max_message_size {30 * MB}: body keeps only its first "
        f"{MB} and its last {64 * 1024} bytes")
    assert rejects["over"]["body"] == bodies["over"][:MB] + bodies["over"][-64 * 1024:]

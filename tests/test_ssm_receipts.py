"""The sender's receipt handling against a misbehaving broker (spec §12 item 3).

A tiny STOMP server on loopback (plain TCP) that answers CONNECT but either never
sends a RECEIPT or sends RECEIPTs naming other messages. The real ActiveMQ cannot
be made to do that.
"""

from __future__ import annotations

import socket
import threading

import pytest
from ssm_support import fill_queue, run_send, write_sender_cfg

from ssm.dirqueue import DirqOutgoingQueue

pytestmark = pytest.mark.timeout(60)


class FakeBroker:
    def __init__(self, mode: str) -> None:
        self.mode = mode  # "silent" or "wrong-ids"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.sends = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\x00" in buffer:
                    frame, buffer = buffer.split(b"\x00", 1)
                    command = frame.lstrip(b"\r\n").split(b"\n", 1)[0]
                    head = frame.split(b"\n\n", 1)[0].split(b"\n")[1:]
                    headers = dict(line.split(b":", 1) for line in head if b":" in line)
                    if command in (b"CONNECT", b"STOMP"):
                        conn.sendall(b"CONNECTED\nversion:1.1\nheart-beat:0,0\n\n\x00")
                    elif command == b"SEND":
                        self.sends += 1
                        if self.mode == "wrong-ids":
                            conn.sendall(b"RECEIPT\nreceipt-id:not-" + headers[b"receipt"] + b"\n\n\x00")
                    elif command == b"DISCONNECT" and b"receipt" in headers:
                        conn.sendall(b"RECEIPT\nreceipt-id:" + headers[b"receipt"] + b"\n\n\x00")

    def close(self) -> None:
        self.stopping = True
        self.sock.close()


@pytest.mark.parametrize("mode", ["silent", "wrong-ids"])
def test_missing_or_foreign_receipts_time_out_and_nothing_is_removed(tmp_path, pki, mode):
    broker = FakeBroker(mode)
    host = pki.host(f"receipts-{mode}")
    try:
        extra = {
            "broker": {"use_ssl": "false", "reconnect_attempts": "1", "heartbeat": "0"},
            "messaging": {"receipt_timeout": "2", "send_window": "3"},
        }
        cfg = write_sender_cfg(str(tmp_path / "sender.cfg"), host, pki.capath, broker.port, "/queue/x",
                               str(tmp_path / "outgoing"), extra)
        names = fill_queue(str(tmp_path / "outgoing"), [f"message {i}\n%%" for i in range(5)])
        result = run_send(cfg, timeout=40)  # it gives up instead of waiting for ever
    finally:
        broker.close()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "No receipt from" in result.stderr and "within 2 s" in result.stderr
    assert "5 unsent messages stay queued" in result.stderr
    assert broker.sends == 6  # a window of 3, then the same 3 again after one reconnect
    queue = DirqOutgoingQueue(str(tmp_path / "outgoing"))
    assert queue.names() == names
    for name in names:  # nothing left locked: the next run can take them all
        assert queue.lock(name)

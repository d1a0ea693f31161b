"""Helpers for the SSM tests: configs in tmp dirs, running the real console scripts.

The programs are run as users run them (``.venv/bin/ssmsend -c cfg``), so the tests
cover argument parsing, config reading, logging and exit codes too.
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Optional

from acctbase.pidfile import read_pid
from ssm.dirqueue import DirqOutgoingQueue, open_incoming, open_reject, read_all

BIN = os.path.dirname(sys.executable)
SSMSEND = os.path.join(BIN, "ssmsend")
SSMRECEIVE = os.path.join(BIN, "ssmreceive")


def unique_destination() -> str:
    return f"/queue/test.{uuid.uuid4().hex}"


def write_sender_cfg(
    path: str,
    identity,
    capath: str,
    port: int,
    destination: str,
    queue_path: str,
    extra: Optional[dict[str, dict[str, str]]] = None,
    host: str = "localhost",
) -> str:
    sections = {
        "sender": {"protocol": "STOMP"},
        "broker": {"host": host, "port": str(port), "use_ssl": "true"},
        "certificates": {"certificate": identity.cert_path, "key": identity.key_path, "capath": capath},
        "messaging": {"destination": destination, "path": queue_path, "path_type": "dirq"},
        "logging": {"logfile": os.path.join(os.path.dirname(path), "ssmsend.log"),
                    "level": "INFO", "console": "false"},
    }
    return _write_cfg(path, sections, extra)


def write_receiver_cfg(
    path: str,
    identity,
    capath: str,
    port: int,
    destination: str,
    base: str,
    extra: Optional[dict[str, dict[str, str]]] = None,
    host: str = "localhost",
) -> str:
    sections = {
        "receiver": {"protocol": "STOMP"},
        "broker": {"host": host, "port": str(port), "use_ssl": "true"},
        "certificates": {"certificate": identity.cert_path, "key": identity.key_path, "capath": capath,
                         "check_crls": "false"},
        "messaging": {"destination": destination, "path": base},
        "logging": {"logfile": os.path.join(os.path.dirname(path), "ssmreceive.log"),
                    "level": "INFO", "console": "false"},
        "daemon": {"pidfile": os.path.join(os.path.dirname(path), "ssmreceive.pid")},
    }
    return _write_cfg(path, sections, extra)


def _write_cfg(path: str, sections: dict, extra: Optional[dict]) -> str:
    for section, values in (extra or {}).items():
        sections.setdefault(section, {})
        for key, value in values.items():
            if value is None:
                sections[section].pop(key, None)
            else:
                sections[section][key] = value
    with open(path, "w", encoding="utf-8") as handle:
        for section, values in sections.items():
            handle.write(f"[{section}]\n")
            for key, value in values.items():
                handle.write(f"{key}: {value}\n")
            handle.write("\n")
    return path


def write_dns(path: str, dns: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# allowed senders\n" + "\n".join(dns) + "\n")
    return path


def run_send(cfg: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SSMSEND, "-c", cfg], capture_output=True, text=True, timeout=timeout,
                          check=False)


@dataclass
class ReceiverProcess:
    proc: subprocess.Popen
    cfg: str
    base: str

    def incoming(self) -> list[dict]:
        return read_all(open_incoming(self.base))

    def rejects(self) -> list[dict]:
        return read_all(open_reject(self.base))

    def wait_for(self, count: int, timeout: float = 60, which: str = "incoming") -> list[dict]:
        queue = open_incoming(self.base) if which == "incoming" else open_reject(self.base)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if queue.count() >= count:
                return read_all(queue)
            assert self.proc.poll() is None, f"ssmreceive exited with {self.proc.returncode}: {self.output()}"
            time.sleep(0.2)
        raise AssertionError(f"only {queue.count()} of {count} messages in {which} after {timeout} s")

    def output(self) -> str:
        if self.proc.poll() is None:
            return ""
        out, err = self.proc.communicate(timeout=5)
        return (out or "") + (err or "")

    def count(self) -> int:
        return open_incoming(self.base).count()

    def pidfile(self) -> str:
        parser = configparser.RawConfigParser()
        parser.read(self.cfg, encoding="utf-8")
        return parser.get("daemon", "pidfile")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the pidfile names this process (or it has ended).

        The receiver catches SIGTERM before it takes the pidfile, so from then on a
        stop is clean; a stale pidfile left by a killed predecessor does not count.
        """
        deadline = time.monotonic() + timeout
        while read_pid(self.pidfile()) != self.proc.pid and self.proc.poll() is None:
            assert time.monotonic() < deadline, f"ssmreceive did not take its pidfile within {timeout} s"
            time.sleep(0.02)

    def stop(self, timeout: float = 30) -> int:
        self.wait_ready()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def start_receiver(cfg: str, dns: str, base: str) -> ReceiverProcess:
    proc = subprocess.Popen(
        [SSMRECEIVE, "-c", cfg, "-d", dns, "--foreground"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return ReceiverProcess(proc, cfg, base)


def wait_log(path: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                if text in handle.read():
                    return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged in {path} within {timeout} s")


def fill_queue(path: str, bodies: list[str]) -> list[str]:
    queue = DirqOutgoingQueue(path)
    return [queue.add(body) for body in bodies]


def make_body(index: int, size: int) -> str:
    """A text message of about ``size`` bytes, unique, without trailing whitespace."""
    head = f"APEL-individual-job-message: v0.3\nSite: TEST-{index}\n"
    line = f"Record {index:06d} " + "x" * 60 + "\n"
    reps = max(0, (size - len(head)) // len(line))
    return (head + line * reps + "%%").rstrip()


def publish(port: int, identity, ca_file: str, destination: str, messages: list[tuple[str | bytes, dict]],
            persistent: bool = True) -> None:
    """Send raw bodies with headers straight to the broker (as a foreign or hostile sender would)."""
    import ssl
    import threading

    import stomp

    done = threading.Event()
    receipts: set[str] = set()

    class Listener(stomp.ConnectionListener):
        def on_connected(self, frame) -> None:
            done.set()

        def on_receipt(self, frame) -> None:
            receipts.add(frame.headers["receipt-id"])

    conn = stomp.Connection11([("localhost", port)], heartbeats=(0, 0), timeout=10)
    conn.set_ssl(for_hosts=[("localhost", port)], cert_file=identity.cert_path, key_file=identity.key_path,
                 ca_certs=ca_file, ssl_version=ssl.PROTOCOL_TLS_CLIENT)
    conn.set_listener("l", Listener())
    conn.connect(wait=False)
    assert done.wait(15), "test publisher could not connect"
    try:
        for index, (body, headers) in enumerate(messages):
            conn.send(destination=destination, body=body, headers=dict(
                headers, receipt=f"r{index}", persistent=str(persistent).lower()))
        deadline = time.monotonic() + 30
        while len(receipts) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receipts) == len(messages)
    finally:
        conn.disconnect()


def openssl_sign(signer, text: str, *extra: str) -> str:
    """``openssl smime -sign -text`` as a third-party sender would (optionally -certfile ...)."""
    out = subprocess.run(
        ["openssl", "smime", "-sign", "-signer", signer.cert_path, "-inkey", signer.key_path, "-text",
         *extra],
        input=text.encode("utf-8"), capture_output=True, check=True,
    )
    return out.stdout.decode("utf-8")

"""One STOMP connection to one broker, with the safety the existing SSM lacked.

* TLS with the host certificate as client certificate, and the broker's
  certificate checked against the CA directory (``capath``) *and* its host name
  (the existing SSM checked neither); turning that off takes an explicit option.
* A bounded connect: stomp.py 9 hangs in ``connect(wait=True)`` when the broker
  drops a TLS 1.3 connection after the handshake (an untrusted client
  certificate), so we connect without waiting and give up after ``timeout``.
* STOMP heart-beats, so a dead connection is noticed in seconds (the
  existing SSM pinged every ten minutes).
* Callbacks never raise into stomp.py's receiver thread (an exception there used to
  lose messages or hang SSM).
* ``batch()``: the frames a thread sends inside it (a window of messages, the acks
  of a stored batch) go to the socket in one write, instead of one hand-over to
  stomp.py's I/O thread per frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, Optional

import stomp
import stomp.protocol
import stomp.transport
from stomp.exception import NotConnectedException, StompException
from stomp.utils import convert_frame, pack

from ssm.brokers import Broker

log = logging.getLogger(__name__)

CA_FILE_RE = re.compile(r"^[0-9a-f]{8}\.\d+$")
DEFAULT_HEARTBEATS = (5000, 5000)
UNAUTHORISED = "No user for client certificate: "
READ_SLICE = 0.05  # seconds of continuous reading before pending writes get their turn
PROBE_WAIT = 2.0  # seconds to wait for a broker's alert after a TLS handshake that looked fine
# OpenSSL verify codes meaning "issued by a CA we do not have": self-signed, unknown issuer.
UNKNOWN_ISSUER_CODES = {2, 18, 19, 20, 21}


class LinkError(Exception):
    """A connection could not be made or was lost; the message is one line."""


class TLSSettings:
    """Client certificate and broker verification for TLS connections."""

    def __init__(
        self,
        certificate: str,
        key: str,
        capath: Optional[str],
        verify_broker: bool = True,
    ) -> None:
        self.certificate = certificate
        self.key = key
        self.capath = capath
        self.verify_broker = verify_broker

    def ca_bundle(self) -> Optional[str]:
        """A private temporary PEM file holding every CA certificate of ``capath``.

        stomp.py only takes a CA *file*; the hashed directory's ``<hash>.N`` files are
        concatenated (CRL files ``<hash>.rN`` are skipped). The caller deletes it.
        """
        if not self.verify_broker or not self.capath:
            return None
        pems = []
        try:
            for name in sorted(os.listdir(self.capath)):
                if CA_FILE_RE.match(name):
                    with open(os.path.join(self.capath, name), encoding="ascii", errors="replace") as handle:
                        pems.append(handle.read().strip() + "\n")
        except OSError as exc:
            raise LinkError(f"Cannot read CA directory {self.capath}: {exc.strerror}") from None
        if not pems:
            raise LinkError(f"No CA certificates (<hash>.0 files) in {self.capath} to check the broker with")
        fd, path = tempfile.mkstemp(prefix="ssm-ca-", suffix=".pem")
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("".join(pems))
        return path


class _EOFAwareTransport(stomp.transport.Transport):
    """stomp.py 9's transport, noticing when a TLS connection is closed by the broker.

    For TLS sockets stomp.py runs non-blocking and treats an empty read as "no data
    yet", so a broker that closes the connection (restart, crash) is only noticed
    at the next failed write or heart-beat timeout, while the I/O thread spins. A
    non-blocking TLS socket signals "no data yet" with SSLWantReadError; an empty
    read really is the end of the stream, so the I/O loop is stopped, which reports
    the disconnection at once.
    """

    # A long frame (a 50 MB message) takes longer to arrive than a heart-beat period.
    # stomp.py counted only complete frames as signs of life, and its I/O thread read
    # for as long as bytes kept coming, writing nothing meanwhile: so we dropped the
    # connection as dead mid-frame, or the broker did, missing our heart-beats. Either
    # way the message came back on the next connection, and the same happened again.
    _reading_since: Optional[float] = None

    def receive(self):
        if self._reading_since is not None and time.monotonic() - self._reading_since > READ_SLICE:
            # Not read yet: stomp.py's read loop stops as if the socket were drained, and
            # its I/O loop writes what is waiting (heart-beats, acks) before reading on.
            self._reading_since = None
            raise ssl.SSLWantReadError("pausing a long read to write")
        try:
            data = super().receive()
        except ssl.SSLWantReadError:
            self._reading_since = None
            raise
        if data:
            if self._reading_since is None:
                self._reading_since = time.monotonic()
            self._alive()
        elif data == b"" and not self.blocking and self.running:  # type: ignore[has-type]  # None: nothing yet
            log.debug("Broker closed the TLS connection")
            self.running = False
        return data

    def _alive(self) -> None:
        """Count any bytes from the broker as a heart-beat, as the STOMP spec allows."""
        heartbeats = self.get_listener("protocol-listener")
        if heartbeats is not None:
            heartbeats.on_heartbeat()

    # For a TLS connection stomp.py hands every frame to its I/O thread through a
    # queue: a wake-up, a select and a write per frame. Corked, a thread's frames are
    # collected (the listeners still see each, as in ``transmit``) and handed over
    # as one write. Other threads (heart-beats, DISCONNECT) are never held back.
    _corks = threading.local()

    def transmit(self, frame):
        held = getattr(self._corks, "frames", None)
        if held is None or held[0] is not self:
            return super().transmit(frame)
        for _name, listener in sorted(self.listeners.items()):
            on_send = getattr(listener, "on_send", None)
            if on_send is not None:
                on_send(frame)
        held[1].append(pack(convert_frame(frame)))
        return None

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        outer = getattr(self._corks, "frames", None)
        frames: list[bytes] = []
        self._corks.frames = (self, frames)
        try:
            yield
        finally:
            self._corks.frames = outer
        if not frames:
            return
        data = b"".join(frames)
        if self.blocking:
            self.send(data)
        elif self.send_queue is not None:
            self.send_queue.put(data)
        else:
            raise NotConnectedException()


class _Listener(stomp.ConnectionListener):
    def __init__(self, link: StompLink) -> None:
        self.link = link

    def on_connected(self, frame) -> None:
        self.link._connected.set()

    def on_disconnected(self) -> None:
        self.link._on_lost("disconnected")

    def on_heartbeat_timeout(self) -> None:
        self.link._on_lost("heart-beat timeout")

    def on_error(self, frame) -> None:
        message = frame.headers.get("message", "") if frame is not None else ""
        try:
            if UNAUTHORISED in message:
                log.error("The following certificate is not authorised: %s",
                          message.split(UNAUTHORISED, 1)[1])
            else:
                log.error("Broker %s sent an error: %s %s", self.link.broker, message,
                          (frame.body or "")[:500] if frame is not None else "")
        except Exception:  # never raise into stomp.py's thread
            log.exception("Unreadable ERROR frame from %s", self.link.broker)
        self.link._error = message or "broker error"

    def on_receipt(self, frame) -> None:
        callback = self.link.on_receipt
        if callback is None:
            return
        try:
            callback(frame.headers.get("receipt-id", ""))
        except Exception:
            log.exception("Receipt handler failed")

    def on_message(self, frame) -> None:
        callback = self.link.on_message
        if callback is None:
            return
        try:
            callback(self.link, frame.headers, frame.body)
        except Exception:
            log.exception("Message handler failed; the message is not acknowledged")


@dataclass(eq=False)
class StompLink:
    """A STOMP 1.1 connection to ``broker``; ``connect`` returns once CONNECTED."""

    broker: Broker
    tls: Optional[TLSSettings]
    heartbeats: tuple[int, int] = DEFAULT_HEARTBEATS
    on_message: Optional[Callable[[StompLink, dict, object], None]] = None
    on_receipt: Optional[Callable[[str], None]] = None
    on_lost: Optional[Callable[[StompLink, str], None]] = None
    lost_reason: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._closing = False
        self._error = ""
        self._conn: Optional[stomp.Connection11] = None

    def __str__(self) -> str:
        return str(self.broker)

    @property
    def alive(self) -> bool:
        return self._connected.is_set() and not self._lost.is_set()

    def _on_lost(self, reason: str) -> None:
        if self._lost.is_set():
            return
        self.lost_reason = self._error or reason
        self._lost.set()
        if self._closing or not self._connected.is_set():
            return
        log.warning("Connection to %s lost: %s", self.broker, self.lost_reason)
        if self.on_lost is not None:
            try:
                self.on_lost(self, self.lost_reason)
            except Exception:
                log.exception("Connection-lost handler failed")

    def wait_lost(self, timeout: Optional[float]) -> bool:
        return self._lost.wait(timeout)

    def connect(self, timeout: float = 10.0) -> None:
        """Open the connection; LinkError if CONNECTED does not come within ``timeout``."""
        host_port = (self.broker.host, self.broker.port)
        conn = stomp.Connection11(
            [host_port], heartbeats=self.heartbeats, timeout=timeout,
            reconnect_attempts_max=1, auto_decode=False, try_loopback_connect=False,
            prefer_localhost=False,
        )
        conn.transport.__class__ = _EOFAwareTransport
        bundle = None
        try:
            if self.tls is not None:
                bundle = self.tls.ca_bundle()
                conn.set_ssl(
                    for_hosts=[host_port],
                    cert_file=self.tls.certificate,
                    key_file=self.tls.key,
                    ca_certs=bundle,
                    verify=self.tls.verify_broker,
                    ssl_version=ssl.PROTOCOL_TLS_CLIENT if self.tls.verify_broker else ssl.PROTOCOL_TLS,
                )
            conn.set_listener("ssm", _Listener(self))
            self._conn = conn
            try:
                conn.connect(wait=False)
            except (StompException, OSError, ssl.SSLError) as exc:
                reason = self._tls_problem(bundle, timeout) or _describe(exc)
                raise LinkError(f"Cannot connect to {self.broker}: {reason}") from None
            if not self._connected.wait(timeout) or self._lost.is_set():
                reason = self._error or self._tls_problem(bundle, timeout) or \
                    "timed out while waiting for the broker's CONNECTED frame"
                self.close()
                raise LinkError(f"Cannot connect to {self.broker}: {reason}")
        finally:
            if bundle:
                os.unlink(bundle)
        log.info("Connected to broker %s (TLS %s)", self.broker, "on" if self.tls else "off")

    def _tls_problem(self, bundle: Optional[str], timeout: float) -> Optional[str]:
        """Why the TLS connection failed, if it did, found with one more handshake.

        stomp.py only logs the TLS error and raises an empty exception, which left
        "connection refused or closed" as the only explanation of a broker
        certificate that does not verify, or of ours that the broker refuses.
        """
        if self.tls is None:
            return None
        try:
            context = self._tls_context(bundle)
            with socket.create_connection((self.broker.host, self.broker.port), timeout=timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=self.broker.host) as conn:
                conn.settimeout(min(timeout, PROBE_WAIT))
                conn.recv(1)  # a broker refusing our certificate says so after the TLS 1.3 handshake
        except ssl.SSLCertVerificationError as exc:
            return self._verify_failure(exc)
        except ssl.SSLError as exc:
            reason = (exc.reason or str(exc)).lower().replace("_", " ")
            if "alert" in reason:  # sent by the broker
                return f"the broker refused the TLS connection ({reason}; does it trust our CA?)"
            return f"TLS error: {reason}"
        except OSError as exc:  # a timeout here means the handshake worked: no TLS problem
            return None if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return None

    def _tls_context(self, bundle: Optional[str]) -> ssl.SSLContext:
        assert self.tls is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(self.tls.certificate, self.tls.key)
        if bundle:
            context.load_verify_locations(bundle)
        if not self.tls.verify_broker:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _verify_failure(self, exc: ssl.SSLCertVerificationError) -> str:
        why = exc.verify_message or exc.reason or str(exc)
        if exc.verify_code in UNKNOWN_ISSUER_CODES:
            assert self.tls is not None
            why += f" (the CA that issued it is not in {self.tls.capath}; see broker_capath)"
        return f"the broker's certificate failed verification: {why}"

    def send(self, destination: str, body: str, headers: dict[str, str]) -> None:
        if self._conn is None or not self.alive:
            raise LinkError(f"Not connected to {self.broker}: {self.lost_reason or 'closed'}")
        try:
            self._conn.send(destination=destination, body=body.encode("utf-8"), headers=headers)
        except (StompException, OSError) as exc:
            raise self._send_failed(exc) from None

    def _send_failed(self, exc: BaseException) -> LinkError:
        self._on_lost(f"send failed: {_describe(exc)}")
        return LinkError(f"Lost connection to {self.broker} while sending: {exc}")

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the frames of this thread's ``send``/``ack`` calls inside as one write.

        A failure to hand them over is raised as LinkError when the block ends; if
        the block itself raises, its frames are not sent (callers treat them as
        unsent: messages stay in flight, acks are redelivered messages).
        """
        conn = self._conn
        if conn is None:  # not connected: send/ack inside raise LinkError themselves
            yield
            return
        try:
            with conn.transport.corked():
                yield
        except (StompException, OSError) as exc:
            raise self._send_failed(exc) from None

    def subscribe(self, destination: str, sub_id: str = "1", prefetch: int = 0) -> None:
        headers = {}
        if prefetch:
            headers["activemq.prefetchSize"] = str(prefetch)
        assert self._conn is not None
        self._conn.subscribe(destination=destination, id=sub_id, ack="client-individual", headers=headers)
        log.info("Subscribed to %s on %s", destination, self.broker)

    def ack(self, message_id: str, subscription: str) -> None:
        if self._conn is None or not self.alive:
            raise LinkError(f"Not connected to {self.broker}")
        try:
            self._conn.ack(message_id, subscription)
        except (StompException, OSError) as exc:
            self._on_lost(f"ack failed: {_describe(exc)}")
            raise LinkError(f"Lost connection to {self.broker} while acknowledging: {exc}") from None

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect (waiting briefly for the DISCONNECT receipt) and stop stomp.py's threads."""
        self._closing = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.is_connected():
                done = threading.Event()
                conn.set_listener("ssm-disconnect", _DisconnectWaiter(done))
                # The protocol-level DISCONNECT only: its RECEIPT means the broker has
                # processed every frame sent before it (acks in particular), and only
                # then is the transport stopped.
                stomp.protocol.Protocol11.disconnect(conn, receipt="ssm-disconnect")
                done.wait(timeout)
        except Exception as exc:  # a dying connection may fail in many ways; we are leaving anyway
            log.debug("Disconnect from %s: %s", self.broker, exc)
        try:
            conn.transport.stop()
        except Exception as exc:
            log.debug("Stopping transport of %s: %s", self.broker, exc)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, StompException) and not text:
        return "connection refused or closed (broker down, or our certificate not accepted)"
    return text or type(exc).__name__


class _DisconnectWaiter(stomp.ConnectionListener):
    def __init__(self, done: threading.Event) -> None:
        self.done = done

    def on_disconnected(self) -> None:
        self.done.set()

    def on_receipt(self, frame) -> None:
        if frame.headers.get("receipt-id") == "ssm-disconnect":
            self.done.set()

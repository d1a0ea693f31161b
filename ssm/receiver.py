"""``ssmreceive``: take messages off the broker(s) and store them durably.

Compared with the existing SSM:

* ``ack: client-individual``, and a message is acknowledged only after it has been
  written and fsync'd to ``incoming`` or ``reject``; a write failure means no ack,
  the connection is reset and the broker delivers the message again;
* the signer is the certificate the SignerInfo names (``ssm.crypto.verify``), an
  enveloped message is decrypted first (by its top-level MIME type) with its own
  reject reason, and the handler never raises: anything unexpected becomes a
  reject with the reason, never a lost message or a dead thread;
* STOMP heart-beats detect a dead connection in seconds; reconnection backs off
  from 1 s doubling to 60 s over the broker list, forever, in the same process;
* optionally one subscription per broker of the list, so no broker's queue is left
  unread (``subscribe_all``);
* the DN list is reloaded every ``dn_refresh`` seconds and on SIGHUP, keeping the
  last good list if the file becomes empty or unreadable.

Messages are processed in small batches so that one round of fsyncs covers
several messages; a batch is acknowledged message by message once written.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from ssm.allowed_dns import AllowedDNs
from ssm.brokers import Broker
from ssm.dirqueue import DurableQueue, QueueIOError
from ssm.stomp_link import LinkError, StompLink, TLSSettings

if TYPE_CHECKING:
    from ssm.crypto import TrustStore

log = logging.getLogger(__name__)

NOT_AVAILABLE = "Not available."
MAX_BACKOFF = 60.0
# ActiveMQ's own limit on a STOMP body (MAX_DATA_LENGTH): by default whatever it delivers
# is stored whole.
DEFAULT_MAX_MESSAGE_SIZE = 100 * 1024 * 1024
# What an oversized message keeps: its start, and its end, where a multipart/signed
# message has its signature and so the signer's certificate.
OVERSIZE_HEAD = 1024 * 1024
OVERSIZE_TAIL = 64 * 1024


@dataclass
class ReceiverOptions:
    destination: str
    certificate: str
    key: str
    capath: str
    check_crls: bool
    heartbeats: tuple[int, int] = (5000, 5000)
    connect_timeout: float = 10.0
    subscribe_all: bool = False
    dn_refresh: float = 600.0
    batch_size: int = 50
    prefetch: int = 50
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE


@dataclass
class Decision:
    """Where a message goes: ``incoming``, ``reject`` or ``drop`` (ping), with its fields.

    A reject's ``body`` is bytes: the message exactly as it arrived, except where the
    reason says the stored body is the decrypted or verified text instead.
    """

    target: str
    fields: dict[str, str | bytes] = field(default_factory=dict)


def normalise(text: str) -> str:
    """CRLF to LF and trailing whitespace removed, as the existing SSM stores bodies."""
    return text.replace("\r\n", "\n").rstrip()


# A quoted value ('...' or "...", as repr writes it) or any other word (a run of
# characters other than spaces and the parentheses reasons put around values).
_VALUE = re.compile(r"""(?<!\w)'(?:[^'\\]|\\.)*'(?!\w)|(?<!\w)"(?:[^"\\]|\\.)*"(?!\w)|[^\s()]+""")
VALUE_CLIP = 80


def clip_values(text: str, limit: int = VALUE_CLIP) -> str:
    """``text`` with every quoted value or word longer than ``limit`` cut, saying its length.

    Reasons quote parts of the message (a Content-Type, an encoding name): a hostile
    sender must not be able to write kilobytes into the reason and the log.
    """

    def cut(match: re.Match) -> str:
        value = match.group(0)
        quote = value[0] if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0] else ""
        inner = value[1:-1] if quote else value
        if len(inner) <= limit:
            return value
        return f"{quote}{inner[:limit]}\u2026{quote} ({len(inner)} characters)"

    return _VALUE.sub(cut, text)


def handle_message(
    headers: dict, body: object, options: ReceiverOptions, allowed: AllowedDNs,
    trust: Optional[TrustStore] = None,
) -> Decision:
    """Decide what to store for one MESSAGE frame. Never raises.

    ``trust`` is the receiver's CA store, kept between messages; without it, one is
    made over ``options.capath`` for this message alone.
    """
    empaid = str(headers.get("empa-id") or "noid")
    raw = b""
    try:
        if empaid == "ping":
            log.info("Received ping message.")
            return Decision("drop")
        raw = _as_bytes(body)
        if len(raw) > options.max_message_size:
            return _oversized(raw, empaid, options.max_message_size)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _reject(raw, NOT_AVAILABLE, empaid,
                           f"Message is not UTF-8 text: {exc.reason} at byte {exc.start}")
        if not text.strip():
            return _reject(raw, NOT_AVAILABLE, empaid, "Empty text passed to _handle_msg.")
        return _check(text, raw, empaid, options, allowed, trust)
    except Exception as exc:  # a bug or a library surprise must not lose the message
        log.exception("Unexpected error handling message %s", empaid)
        return _reject(raw, NOT_AVAILABLE, empaid,
                       f"Internal error while handling message: {clip_values(repr(exc))}")


def _as_bytes(body: object) -> bytes:
    """The frame body as received (stomp.py gives bytes; str only from in-process callers)."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return bytes(body)  # type: ignore[call-overload]  # a buffer in practice


def _oversized(raw: bytes, empaid: str, limit: int) -> Decision:
    """A reject holding only the start and the end of a message over ``limit`` bytes.

    The reject queue must not take what the receiver refuses to take whole; what
    is kept still shows what the message was and, for a signed one, who sent it.
    """
    head = min(OVERSIZE_HEAD, limit // 2)
    tail = min(OVERSIZE_TAIL, limit - head)
    kept = raw[:head] + raw[len(raw) - tail:]
    return _reject(kept, NOT_AVAILABLE, empaid,
                   f"Message is {len(raw)} bytes, over max_message_size {limit}: body keeps only "
                   f"its first {head} and its last {tail} bytes")


def _check(
    text: str, raw: bytes, empaid: str, options: ReceiverOptions, allowed: AllowedDNs,
    trust: Optional[TrustStore],
) -> Decision:
    """Decrypt if enveloped, verify, check the signer: the decision for a UTF-8 message."""
    from ssm import crypto

    signed, stored = text, raw
    if crypto.is_encrypted(text):
        try:
            signed = crypto.decrypt(text, options.certificate, options.key)
        except crypto.CryptoException as exc:
            return _reject(raw, NOT_AVAILABLE, empaid, f"Failed to decrypt message: {clip_values(str(exc))}")
        # The decrypted, still signed text: it can be re-checked and reloaded later.
        stored = signed.encode("utf-8")
    try:
        if trust is None:
            trust = crypto.TrustStore(options.capath, options.check_crls)
        plaintext, signer = crypto.verify(signed, trust)
    except crypto.CryptoException as exc:
        return _reject(stored, NOT_AVAILABLE, empaid, f"Failed to verify message: {clip_values(str(exc))}")
    plaintext = normalise(plaintext)
    if signer not in allowed:
        log.warning("Signer not in valid DNs list: %s", signer)
        return _reject(plaintext.encode("utf-8"), signer, empaid, f"Signer not in valid DNs list: {signer}")
    return Decision("incoming", {"body": plaintext, "signer": signer, "empaid": empaid})


def _reject(body: bytes, signer: str, empaid: str, error: str) -> Decision:
    return Decision("reject", {"body": body, "signer": signer, "empaid": empaid, "error": error})


class _Slot:
    """One subscription to keep alive: over the whole broker list, or one broker."""

    def __init__(self, brokers: list[Broker]) -> None:
        self.brokers = brokers
        self.link: Optional[StompLink] = None
        self.next_attempt = 0.0
        self.backoff = 1.0
        self.connected_at = 0.0
        self.reset = threading.Event()

    def __str__(self) -> str:
        return ", ".join(str(b) for b in self.brokers)


class Receiver:
    """The receiving service; ``run(stop)`` returns 0 after a clean stop."""

    def __init__(
        self,
        brokers: list[Broker],
        tls: Optional[TLSSettings],
        options: ReceiverOptions,
        allowed: AllowedDNs,
        incoming: DurableQueue,
        reject: DurableQueue,
    ) -> None:
        self.tls = tls
        self.options = options
        self.allowed = allowed
        self._stores = {"incoming": incoming, "reject": reject}  # by Decision.target
        from ssm.crypto import TrustStore

        self.trust = TrustStore(options.capath, options.check_crls)
        if options.subscribe_all:
            self.slots = [_Slot([broker]) for broker in brokers]
        else:
            self.slots = [_Slot(list(brokers))]
        self._work: queue.Queue = queue.Queue()
        self._decided: queue.Queue = queue.Queue(maxsize=8)
        self._reload = threading.Event()
        self._worker_stop = threading.Event()
        self.stored = 0

    def request_reload(self) -> None:
        """Ask for a DN file reload (safe to call from a signal handler)."""
        self._reload.set()

    # -- stomp.py thread ------------------------------------------------------------------

    def _on_message(self, link: StompLink, headers: dict, body: object) -> None:
        self._work.put((link, headers, body))

    # -- worker thread --------------------------------------------------------------------

    def _decider(self) -> None:
        """Decrypt/verify batches of received messages (CPU), hand them to the storer."""
        while not self._worker_stop.is_set():
            try:
                first = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.options.batch_size:
                try:
                    batch.append(self._work.get_nowait())
                except queue.Empty:
                    break
            decided = [
                (link, headers, handle_message(headers, body, self.options, self.allowed, self.trust))
                for link, headers, body in batch
                if link.alive  # else unacked: the broker delivers it again on the next connection
            ]
            if decided:
                self._decided.put(decided)

    def _storer(self, decider: threading.Thread) -> None:
        """Write decided messages durably (I/O), then acknowledge them.

        Runs beside the decider so that fsyncs overlap with verification; whatever
        has been decided when a stop is requested is still written and acked.
        """
        while True:
            try:
                todo = self._decided.get(timeout=0.2)
            except queue.Empty:
                if not decider.is_alive():
                    return
                continue
            while len(todo) < 4 * self.options.batch_size:
                try:
                    todo.extend(self._decided.get_nowait())
                except queue.Empty:
                    break
            try:
                self._store(todo)
            except Exception:  # keep storing; unacked messages come back
                log.exception("Unexpected error storing a batch; its messages are not acknowledged")
                for link, _headers, _decision in todo:
                    self._reset_link(link, "storing failed")

    def _store(self, todo: list[tuple[StompLink, dict, Decision]]) -> None:
        written: list[tuple[StompLink, dict]] = []
        for target, store in self._stores.items():
            group = [(link, headers, d) for link, headers, d in todo if d.target == target]
            if not group:
                continue
            try:
                names = store.add_many([d.fields for _link, _headers, d in group])
            except QueueIOError as exc:
                log.error("Failed to write %d messages, not acknowledging them (they will be "
                          "delivered again): %s", len(group), exc)
                for link, _headers, _d in group:
                    self._reset_link(link, "write failed")
                continue
            for (link, headers, d), name in zip(group, names):
                if target == "incoming":
                    log.info("Message saved to incoming queue as %s", name)
                else:
                    log.warning("Message %s saved to reject queue as %s: %s",
                                d.fields.get("empaid"), name, d.fields.get("error"))
                written.append((link, headers))
            self.stored += len(group)
        written.extend((link, headers) for link, headers, d in todo if d.target == "drop")
        for link in {id(link): link for link, _headers in written}.values():
            try:
                with link.batch():  # one write for the batch's acks
                    for headers in (headers for to, headers in written if to is link):
                        self._ack(link, headers)
            except LinkError as exc:
                log.warning("Could not acknowledge messages on %s: %s", link.broker, exc)
        for slot in self.slots:
            if any(slot.link is link for link, _h in written):
                slot.backoff = 1.0

    @staticmethod
    def _ack(link: StompLink, headers: dict) -> None:
        try:
            link.ack(headers["message-id"], headers["subscription"])
        except (LinkError, KeyError) as exc:
            # Written but not acked: the broker sends it again, and it is stored again
            # as an identical copy with the same empaid, which the loader tolerates.
            log.warning("Could not acknowledge message %s: %s", headers.get("empa-id"), exc)

    def _reset_link(self, link: StompLink, why: str) -> None:
        for slot in self.slots:
            if slot.link is link and not slot.reset.is_set():
                log.warning("Resetting the connection to %s (%s) so unacknowledged messages come back",
                            link.broker, why)
                slot.reset.set()

    # -- main thread: connections, DN refresh ---------------------------------------------------

    def _connect_slot(self, slot: _Slot) -> None:
        for broker in slot.brokers:
            link = StompLink(broker, self.tls, self.options.heartbeats, on_message=self._on_message)
            try:
                link.connect(self.options.connect_timeout)
                link.subscribe(self.options.destination, prefetch=self.options.prefetch)
            except LinkError as exc:
                log.warning("%s", exc)
                link.close()
                continue
            except Exception as exc:
                log.warning("Cannot subscribe on %s: %s", broker, exc)
                link.close()
                continue
            slot.link = link
            slot.connected_at = time.monotonic()
            return
        slot.next_attempt = time.monotonic() + slot.backoff
        log.error("Could not connect to %s; retrying in %g s", slot, slot.backoff)
        slot.backoff = min(MAX_BACKOFF, slot.backoff * 2)

    def _tend(self, slot: _Slot, stop: threading.Event) -> None:
        link = slot.link
        if link is not None and (not link.alive or slot.reset.is_set()):
            if not slot.reset.is_set() and time.monotonic() - slot.connected_at > MAX_BACKOFF:
                slot.backoff = 1.0  # it worked for a good while: start the back-off afresh
            link.close()
            slot.link = None
            slot.reset.clear()
            slot.next_attempt = time.monotonic() + slot.backoff
            log.info("Reconnecting to %s in %g s", slot, slot.backoff)
            slot.backoff = min(MAX_BACKOFF, slot.backoff * 2)
        if slot.link is None and time.monotonic() >= slot.next_attempt and not stop.is_set():
            self._connect_slot(slot)

    def run(self, stop: threading.Event) -> int:
        log.info("Receiving from %s on %s", self.options.destination,
                 ", ".join(str(s) for s in self.slots))
        decider = threading.Thread(target=self._decider, name="ssm-verify", daemon=True)
        decider.start()
        storer = threading.Thread(target=self._storer, args=(decider,), name="ssm-store", daemon=True)
        storer.start()
        next_refresh = time.monotonic() + self.options.dn_refresh
        try:
            while not stop.is_set():
                for slot in self.slots:
                    self._tend(slot, stop)
                if self._reload.is_set() or time.monotonic() >= next_refresh:
                    self._reload.clear()
                    log.info("Refreshing valid DNs.")
                    self.allowed.reload()
                    next_refresh = time.monotonic() + self.options.dn_refresh
                stop.wait(0.2)
        finally:
            log.info("Received the shutdown signal; finishing the current batch")
            self._worker_stop.set()
            decider.join(timeout=60)
            storer.join(timeout=60)
            for slot in self.slots:
                if slot.link is not None:
                    slot.link.close()
                    slot.link = None
            log.info("SSM has shut down; %d messages stored.", self.stored)
        return 0

"""``ssmsend``: sign (and encrypt) every queued message and hand it to a broker.

Compared with the existing SSM (spec §4, §12):

* several messages are in flight at once (``send_window``) and each RECEIPT is
  matched to its own message by ``receipt-id``; a message is removed from the
  queue only on its receipt, so nothing is lost whatever happens;
* a missing receipt times out (``receipt_timeout``) instead of hanging forever;
  on a timeout or a lost connection the run reconnects with back-off a few times
  (``reconnect_attempts``), then gives up, leaving every unsent message queued and
  unlocked;
* messages are signed ahead of the send window in a separate thread (or a pool of
  processes, ``sign_workers``), so signing and the network overlap;
* every crypto step is checked: an empty, unreadable (not UTF-8), unsignable or
  oversized APEL text message is split at record boundaries into messages that fit
  (the header repeated), and one that cannot be split to fit is reported and left in
  place; nothing is ever sent empty or unsigned.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Optional

from ssm.brokers import Broker
from ssm.cli import FatalError
from ssm.queues import OutgoingQueue
from ssm.split import split_message
from ssm.stomp_link import LinkError, StompLink, TLSSettings

log = logging.getLogger(__name__)

SMIME_MARKERS = ("application/x-pkcs7-signature", "application/pkcs7-signature",
                 "application/x-pkcs7-mime", "application/pkcs7-mime")


@dataclass
class SenderOptions:
    destination: str
    certificate: str
    key: str
    server_cert: Optional[str] = None
    window: int = 20
    receipt_timeout: float = 30.0
    max_message_size: int = 10 * 1024 * 1024
    reconnect_attempts: int = 2
    connect_timeout: float = 10.0
    heartbeats: tuple[int, int] = (5000, 5000)
    persistent: bool = True
    sign_workers: int = 1  # >1: a pool of signing processes (0: one per CPU for big queues)


# Below this many messages, starting worker processes costs more than it saves.
POOL_THRESHOLD = 100


def sign_message(
    text: str, certificate: str, key: str, server_cert: Optional[str]
) -> tuple[Optional[str], str]:
    """(S/MIME body, "") or (None, why): every crypto step checked, never an empty body.

    Top-level so that a worker process can run it.
    """
    from ssm import crypto

    try:
        body = crypto.sign(text, certificate, key)
        if not body or not any(marker in body for marker in SMIME_MARKERS):
            return None, "signing produced no S/MIME document"
        if server_cert:
            body = crypto.encrypt(body, server_cert)
            if not body or not any(marker in body for marker in SMIME_MARKERS):
                return None, "encryption produced no S/MIME document"
    except crypto.CryptoException as exc:
        return None, f"could not be signed or encrypted: {exc}"
    return body, ""


class _Prepared:
    __slots__ = ("name", "body", "sent_at")

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body
        self.sent_at = 0.0


class Sender:
    """One run over an outgoing queue; ``run`` returns the number of messages sent."""

    def __init__(
        self,
        queue: OutgoingQueue,
        brokers: list[Broker],
        tls: Optional[TLSSettings],
        options: SenderOptions,
    ) -> None:
        self.queue = queue
        self.brokers = brokers
        self.tls = tls
        self.options = options
        # One lock, two conditions: the send loop waits on _cv (receipts, signed messages,
        # a lost link), the signing thread on _room. Each side wakes the other only when
        # it can act, which halves the thread switches per message.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._ready: collections.deque[_Prepared] = collections.deque()
        self._receipts: collections.deque[str] = collections.deque()
        self._prepared_all = False
        self._stop_preparing = False
        self._problems: list[str] = []
        self._locked_elsewhere = 0
        self._split_extra = 0  # messages added to the queue by splitting, beyond the originals
        self._link: Optional[StompLink] = None
        self._wake_after = 1  # receipts that wake the send loop (it refills half a window at once)
        self.sent = 0

    # -- preparation (a separate thread) -------------------------------------------------

    def _read(self, name: str) -> Optional[str]:
        """Lock and read one message; None (set aside or skipped) when it cannot be sent."""
        if not self.queue.lock(name):
            log.warning("Message was locked. %s will not be sent.", name)
            self._locked_elsewhere += 1
            return None
        try:
            raw = self.queue.get(name)
        except OSError as exc:
            return self._set_aside(name, f"cannot be read: {exc}")  # type: ignore[func-returns-value]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._set_aside(name, f"is not valid UTF-8 text ({exc.reason} at byte {exc.start})")  # type: ignore[func-returns-value]
        if not text.strip():
            return self._set_aside(name, "is empty")  # type: ignore[func-returns-value]
        return text

    def _finish(self, name: str, text: str, body: Optional[str], problem: str) -> list[_Prepared]:
        if body is None:
            self._set_aside(name, problem)
            return []
        size = len(body.encode("utf-8"))
        limit = self.options.max_message_size
        if limit and size > limit:
            return self._split(name, text, size)
        return [_Prepared(name, body)]

    def _split(self, name: str, text: str, size: int) -> list[_Prepared]:
        """Replace an oversized APEL text message by smaller ones holding the same records.

        The parts are queued (and the original removed) before any is sent, so the
        queue always holds every record; a crash in between only duplicates records,
        which the server replaces by key.
        """
        limit = self.options.max_message_size
        opts = self.options
        parts = -(-size * 5 // (limit * 4))  # aim each part at 80% of the limit
        for _attempt in range(4):
            texts = split_message(text, parts)
            if texts is None:
                break
            signed = [sign_message(part, opts.certificate, opts.key, opts.server_cert) for part in texts]
            failed = next((problem for body, problem in signed if body is None), None)
            if failed:
                self._set_aside(name, failed)
                return []
            # no body is None here: a None body comes with the problem handled above
            if all(len(body.encode("utf-8")) <= limit for body, _ in signed):  # type: ignore[union-attr]
                return self._requeue(name, texts, [body for body, _ in signed], size)  # type: ignore[misc]
            if len(texts) < parts:  # one record per message and still too big
                break
            parts *= 2
        self._set_aside(name, f"is {size} bytes once signed, over max_message_size {limit}, "
                              "and cannot be split at record boundaries to fit")
        return []

    def _requeue(self, name: str, texts: list[str], bodies: list[str], size: int) -> list[_Prepared]:
        try:
            names = [self.queue.add(part) for part in texts]
            for part_name in names:
                self.queue.lock(part_name)
            self.queue.remove(name)
        except OSError as exc:
            self._set_aside(name, f"is too large and its parts cannot be queued: {exc}")
            return []
        with self._cv:
            self._split_extra += len(names) - 1
        log.info("Message %s (%d bytes signed, over max_message_size %d) split at record boundaries "
                 "into %d messages: %s", name, size, self.options.max_message_size, len(names),
                 ", ".join(names))
        return [_Prepared(part_name, body) for part_name, body in zip(names, bodies)]

    def _set_aside(self, name: str, problem: str) -> None:
        line = f"Message {name} {problem}; it stays in the queue"
        log.error("%s", line)
        with self._cv:
            self._problems.append(line)
        self._unlock(name)
        return None

    def _unlock(self, name: str) -> None:
        try:
            self.queue.unlock(name)
        except OSError as exc:
            log.warning("Cannot unlock %s: %s", name, exc)

    def _prepare_all(self, names: list[str], pool: Optional[Executor]) -> None:
        """Read and sign messages ahead of the send window, in queue order."""
        ahead = self._ahead()
        pending: collections.deque[tuple[str, str, Future]] = collections.deque()
        opts = self.options

        def collect(block: bool) -> None:
            while pending and (block or pending[0][2].done()):
                name, text, future = pending.popleft()
                try:
                    body, problem = future.result()
                except Exception as exc:  # a dead worker process, a pickling problem...
                    body, problem = None, f"could not be signed: {exc!r}"
                self._publish(self._finish(name, text, body, problem))

        try:
            for name in names:
                with self._cv:
                    if len(self._ready) >= ahead:  # full: sleep until half of it has been sent
                        while len(self._ready) > ahead // 2 and not self._stop_preparing:
                            self._room.wait(0.5)
                    if self._stop_preparing:
                        break
                try:
                    text = self._read(name)
                    if text is None:
                        continue
                    if pool is None:
                        self._publish(self._finish(name, text, *sign_message(
                            text, opts.certificate, opts.key, opts.server_cert)))
                    else:
                        pending.append((name, text, pool.submit(
                            sign_message, text, opts.certificate, opts.key, opts.server_cert)))
                        collect(block=len(pending) > 4 * getattr(pool, "_max_workers", 2))
                except Exception as exc:  # never let one message kill the run silently
                    log.exception("Unexpected error preparing %s", name)
                    self._set_aside(name, f"failed unexpectedly: {exc}")
            collect(block=True)
        finally:
            for name, _text, future in pending:  # only left after a stop request
                future.cancel()
                self._unlock(name)
            with self._cv:
                self._prepared_all = True
                self._cv.notify_all()

    def _ahead(self) -> int:
        """How many signed messages to keep ready beyond those in flight."""
        return max(2 * self.options.window, 4)

    def _publish(self, items: list[_Prepared]) -> None:
        with self._cv:
            # The send loop only waits with messages ready when its window is full.
            starved = not self._ready
            for item in items:
                if self._stop_preparing:
                    self._unlock(item.name)
                    continue
                self._ready.append(item)
            if starved:
                self._cv.notify_all()

    # -- broker -------------------------------------------------------------------------

    def _on_receipt(self, receipt_id: str) -> None:
        with self._cv:
            self._receipts.append(receipt_id)
            if len(self._receipts) >= self._wake_after:
                self._cv.notify_all()

    def _on_lost(self, _link: StompLink, _reason: str) -> None:
        with self._cv:
            self._cv.notify_all()

    def _connect(self) -> StompLink:
        errors = []
        for broker in self.brokers:
            link = StompLink(broker, self.tls, self.options.heartbeats,
                             on_receipt=self._on_receipt, on_lost=self._on_lost)
            try:
                link.connect(self.options.connect_timeout)
            except LinkError as exc:
                log.warning("%s", exc)
                errors.append(str(exc))
                continue
            log.info("Sending to %s on %s", self.options.destination, broker)
            return link
        raise LinkError("no broker could be reached (" + "; ".join(errors) + ")")

    # -- the run --------------------------------------------------------------------------

    def run(self) -> int:
        """Send everything queued; FatalError (one line) unless every message was sent."""
        try:
            self.queue.purge()  # release locks left by a crashed run more than 600 s ago
        except OSError as exc:
            log.warning("Cannot purge %s: %s", self.queue.path, exc)
        names = self.queue.names()
        if not names:
            log.info("No messages found to send.")
            return 0
        log.info("Found %d messages.", len(names))
        pool = self._start_pool(len(names))
        try:
            self._link = self._connect()
        except LinkError as exc:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            raise FatalError(f"Attempts to start the SSM failed: {exc}") from None
        preparer = threading.Thread(target=self._prepare_all, args=(names, pool), name="ssm-sign",
                                    daemon=True)
        preparer.start()
        in_flight: collections.OrderedDict[str, _Prepared] = collections.OrderedDict()
        failure = None
        try:
            failure = self._send_loop(in_flight)
        finally:
            with self._cv:
                self._stop_preparing = True
                self._room.notify_all()
            preparer.join()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            leftover = list(in_flight) + [item.name for item in self._ready]
            for name in leftover:
                self._unlock(name)
            self._ready.clear()
            if self._link is not None:
                self._link.close()
            log.info("Tidying message directory.")
            try:
                self.queue.purge()
            except OSError as exc:
                log.warning("Cannot purge %s: %s", self.queue.path, exc)
        log.info("Sent %d messages.", self.sent)
        if failure:
            unsent = len(names) + self._split_extra - self.sent
            raise FatalError(f"{failure}; {self.sent} sent, {unsent} unsent messages stay queued")
        if self._problems:
            first = self._problems[0]
            more = f" (and {len(self._problems) - 1} more)" if len(self._problems) > 1 else ""
            raise FatalError(f"{len(self._problems)} message(s) not sent: {first}{more}")
        if self._locked_elsewhere:
            log.warning("%d locked messages were skipped (another run holds them, or a stale lock "
                        "that the next purge releases)", self._locked_elsewhere)
        return self.sent

    def _start_pool(self, count: int) -> Optional[Executor]:
        """Worker processes for signing (started before any thread exists, so fork is safe)."""
        workers = self.options.sign_workers or (os.cpu_count() or 1)
        if self.options.sign_workers == 0 and count < POOL_THRESHOLD:
            workers = 1
        if workers <= 1:
            return None
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        for future in [pool.submit(os.getpid) for _ in range(workers)]:
            future.result()
        log.debug("Signing in %d worker processes", workers)
        return pool

    def _send_loop(self, in_flight: collections.OrderedDict[str, _Prepared]) -> Optional[str]:
        """Keep the window full and collect receipts; the failure line, or None when done."""
        options = self.options
        headers_base = {"persistent": "true"} if options.persistent else {}
        low_water = self._ahead() // 2
        reconnects = 0
        while True:
            link = self._link
            assert link is not None
            to_send: list[_Prepared] = []
            done_names: list[str] = []
            with self._cv:
                while True:
                    while self._receipts:
                        done_names.append(self._receipts.popleft())
                    room = options.window - len(in_flight) - len(to_send)
                    while room > 0 and self._ready:
                        to_send.append(self._ready.popleft())
                        room -= 1
                    if len(self._ready) <= low_water:
                        self._room.notify_all()
                    finished = self._prepared_all and not self._ready and not in_flight and not to_send
                    if done_names or to_send or finished or not link.alive:
                        break
                    oldest = next(iter(in_flight.values()), None)
                    if oldest is not None and time.monotonic() - oldest.sent_at > options.receipt_timeout:
                        break
                    self._wake_after = max(1, len(in_flight) - options.window // 2)
                    self._cv.wait(0.5)
                    self._wake_after = 1
            for receipt_id in done_names:
                item = in_flight.pop(receipt_id, None)
                if item is None:
                    log.debug("Receipt %s matches no message in flight", receipt_id)
                    continue
                try:
                    self.queue.remove(item.name)
                except OSError as exc:
                    log.error("Sent %s but cannot remove it from the queue: %s", item.name, exc)
                    self._problems.append(f"Message {item.name} was sent but not removed: {exc}")
                    continue
                self.sent += 1
                log.debug("Sent %s", item.name)
            if finished and not in_flight:
                return None
            problem = None
            unsent = collections.deque(to_send)
            try:
                with link.batch():
                    while unsent:
                        item = unsent[0]
                        item.sent_at = time.monotonic()
                        in_flight[item.name] = item  # counted as in flight: resent after a reconnect
                        unsent.popleft()
                        link.send(options.destination, item.body,
                                  dict(headers_base, **{"receipt": item.name, "empa-id": item.name}))
            except LinkError as exc:
                problem = str(exc)
                with self._cv:  # not sent at all: back to the front of the line, still locked
                    self._ready.extendleft(reversed(unsent))
            if problem is None and not link.alive:
                problem = f"Lost connection to {link.broker}: {link.lost_reason}"
            oldest = next(iter(in_flight.values()), None)
            if problem is None and oldest is not None and \
                    time.monotonic() - oldest.sent_at > options.receipt_timeout:
                problem = (f"No receipt from {link.broker} for {oldest.name} within "
                           f"{options.receipt_timeout:g} s")
            if problem is None:
                continue
            log.error("%s", problem)
            link.close()
            self._link = None
            first_problem = problem
            while self._link is None:
                if reconnects >= options.reconnect_attempts:
                    return problem
                reconnects += 1
                delay = min(60.0, 2.0 ** (reconnects - 1))
                log.info("Reconnecting in %g s (attempt %d of %d); %d messages will be sent again",
                         delay, reconnects, options.reconnect_attempts, len(in_flight))
                time.sleep(delay)
                try:
                    self._link = self._connect()
                except LinkError as exc:
                    log.error("Reconnect failed: %s", exc)
                    problem = f"{first_problem}; reconnecting failed: {exc}"
            with self._cv:
                # Messages that were in flight go first again, in their original order.
                for item in reversed(list(in_flight.values())):
                    self._ready.appendleft(item)
                in_flight.clear()
                self._receipts.clear()

"""``ssmsend``: sign (and encrypt) every queued message and hand it to a broker.

Compared with the existing SSM:

* several messages are in flight at once (``send_window``) and each RECEIPT is
  matched to its own message by ``receipt-id``; a message is removed from the
  queue only on its receipt, so nothing is lost whatever happens;
* a missing receipt times out (``receipt_timeout``) instead of hanging forever;
  on a timeout or a lost connection the run reconnects with back-off a few times
  (``reconnect_attempts``), then gives up, leaving every unsent message queued and
  unlocked;
* messages are read, split and signed ahead of the send window in a separate
  thread (``ssm.sign_ahead``), so signing and the network overlap; nothing is ever
  sent empty or unsigned.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Optional

from ssm.brokers import Broker
from ssm.dirqueue import OutgoingQueue
from ssm.exceptions import SendError
from ssm.sign_ahead import Prepared, SenderOptions, SignAhead
from ssm.stomp_link import LinkError, StompLink, TLSSettings

log = logging.getLogger(__name__)

# Below this many messages, starting worker processes costs more than it saves.
POOL_THRESHOLD = 100
# Signed bodies in flight (at most send_window of them): at most this many characters
# (always at least one message), so the parts of a split message of hundreds of MB are
# not all held at once.
FLIGHT_BYTES = 32 * 1024 * 1024


class Sender(SignAhead):
    """One run over an outgoing queue; ``run`` returns the number of messages sent."""

    def __init__(
        self,
        queue: OutgoingQueue,
        brokers: list[Broker],
        tls: Optional[TLSSettings],
        options: SenderOptions,
    ) -> None:
        super().__init__(queue, options)
        self.brokers = brokers
        self.tls = tls
        self._receipts: collections.deque[str] = collections.deque()
        self._link: Optional[StompLink] = None
        self._wake_after = 1  # receipts that wake the send loop (it refills half a window at once)
        self.sent = 0

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
        """Send everything queued; SendError (one line) unless every message was sent."""
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
            raise SendError(f"Attempts to start the SSM failed: {exc}") from None
        preparer = threading.Thread(target=self._prepare_all, args=(names, pool), name="ssm-sign",
                                    daemon=True)
        preparer.start()
        in_flight: collections.OrderedDict[str, Prepared] = collections.OrderedDict()
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
            raise SendError(f"{failure}; {self.sent} sent, {unsent} unsent messages stay queued")
        if self._problems:
            first = self._problems[0]
            more = f" (and {len(self._problems) - 1} more)" if len(self._problems) > 1 else ""
            raise SendError(f"{len(self._problems)} message(s) not sent: {first}{more}")
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

    def _send_loop(self, in_flight: collections.OrderedDict[str, Prepared]) -> Optional[str]:
        """Keep the window full and collect receipts; the failure line, or None when done."""
        reconnects = 0
        while True:
            link = self._link
            assert link is not None
            to_send, done_names, finished = self._take_work(link, in_flight)
            self._settle(done_names, in_flight)
            if finished and not in_flight:
                return None
            problem = self._transmit(link, to_send, in_flight)
            if problem is None:
                problem = self._link_problem(link, in_flight)
            if problem is None:
                continue
            log.error("%s", problem)
            link.close()
            self._link = None
            problem, reconnects = self._reconnect(problem, reconnects, len(in_flight))
            if self._link is None:
                return problem
            with self._cv:
                # Messages that were in flight go first again, in their original order.
                for item in reversed(list(in_flight.values())):
                    self._ready.appendleft(item)
                in_flight.clear()
                self._receipts.clear()

    def _take_work(
        self, link: StompLink, in_flight: collections.OrderedDict[str, Prepared]
    ) -> tuple[list[Prepared], list[str], bool]:
        """Wait until there is something to do: (messages to send, receipts, all done).

        Also returns when the link is lost or the oldest message waits too long.
        """
        options = self.options
        low_water = self._ahead() // 2
        to_send: list[Prepared] = []
        done_names: list[str] = []
        with self._cv:
            while True:
                while self._receipts:
                    done_names.append(self._receipts.popleft())
                room = options.window - len(in_flight) - len(to_send)
                flight = sum(len(item.body) for item in itertools.chain(in_flight.values(), to_send))
                while room > 0 and self._ready and (
                        flight == 0 or flight + len(self._ready[0].body) <= FLIGHT_BYTES):
                    flight += len(self._ready[0].body)
                    to_send.append(self._ready.popleft())
                    room -= 1
                if len(self._ready) <= low_water:
                    self._room.notify_all()
                finished = self._prepared_all and not self._ready and not in_flight and not to_send
                if done_names or to_send or finished or not link.alive or self._overdue(in_flight):
                    return to_send, done_names, finished
                self._wake_after = max(1, len(in_flight) - options.window // 2)
                self._cv.wait(0.5)
                self._wake_after = 1

    def _overdue(self, in_flight: collections.OrderedDict[str, Prepared]) -> Optional[Prepared]:
        """The oldest message in flight if its receipt is later than ``receipt_timeout``."""
        oldest = next(iter(in_flight.values()), None)
        if oldest is not None and time.monotonic() - oldest.sent_at > self.options.receipt_timeout:
            return oldest
        return None

    def _settle(self, done_names: list[str], in_flight: collections.OrderedDict[str, Prepared]) -> None:
        """Remove the messages whose receipts came from the queue."""
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

    def _transmit(
        self, link: StompLink, to_send: list[Prepared], in_flight: collections.OrderedDict[str, Prepared]
    ) -> Optional[str]:
        """Send ``to_send`` in one batch; the failure line if the link refused them."""
        options = self.options
        headers_base = {"persistent": "true"} if options.persistent else {}
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
            with self._cv:  # not sent at all: back to the front of the line, still locked
                self._ready.extendleft(reversed(unsent))
            return str(exc)
        return None

    def _link_problem(
        self, link: StompLink, in_flight: collections.OrderedDict[str, Prepared]
    ) -> Optional[str]:
        """Why the link cannot be trusted any more (lost, or a receipt overdue); None if it can."""
        if not link.alive:
            return f"Lost connection to {link.broker}: {link.lost_reason}"
        oldest = self._overdue(in_flight)
        if oldest is not None:
            return (f"No receipt from {link.broker} for {oldest.name} within "
                    f"{self.options.receipt_timeout:g} s")
        return None

    def _reconnect(self, problem: str, reconnects: int, resend: int) -> tuple[str, int]:
        """Connect again with back-off, within ``reconnect_attempts`` for the whole run.

        Returns the failure line (with why reconnecting failed) and the attempts used so
        far; ``self._link`` is None when every attempt failed.
        """
        options = self.options
        first_problem = problem
        while self._link is None:
            if reconnects >= options.reconnect_attempts:
                return problem, reconnects
            reconnects += 1
            delay = min(60.0, 2.0 ** (reconnects - 1))
            log.info("Reconnecting in %g s (attempt %d of %d); %d messages will be sent again",
                     delay, reconnects, options.reconnect_attempts, resend)
            time.sleep(delay)
            try:
                self._link = self._connect()
            except LinkError as exc:
                log.error("Reconnect failed: %s", exc)
                problem = f"{first_problem}; reconnecting failed: {exc}"
        return problem, reconnects

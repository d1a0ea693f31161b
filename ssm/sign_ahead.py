"""Reading, splitting and signing queued messages ahead of the send window.

``ssmsend`` signs in a thread of its own (or a pool of processes), so signing and
the network overlap; this is that half of a send run. An empty, unreadable (not
UTF-8), unsignable or oversized message is split at record boundaries into messages
that fit (the header repeated), or reported and left in place; nothing is ever sent
empty or unsigned.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import BinaryIO, Optional

from ssm.dirqueue import OutgoingQueue
from ssm.split import CannotSplit, iter_parts, split_message

log = logging.getLogger("ssm.sender")  # the operators' log lines name the sender


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


# A message over max_message_size is read in pieces of this size while it is split.
READ_CHUNK = 1024 * 1024
# Signed bodies held besides the message counts (twice send_window signed ahead): at most
# this many characters signed ahead (always at least one message), so the parts of a
# split message of hundreds of MB are not all held signed at once.
AHEAD_BYTES = 32 * 1024 * 1024
# Signed and encrypted, a text message is about 1.4 times as long (base64 in 64-character
# lines around the signed text): split parts are cut smaller by that much to fit.
ENCRYPTED_GROWTH = 1.45


def sign_message(
    text: str, certificate: str, key: str, server_cert: Optional[str]
) -> tuple[Optional[str], str]:
    """(S/MIME body, "") or (None, why); the crypto functions raise rather than return
    an empty or unsigned document.

    Top-level so that a worker process can run it.
    """
    from ssm import crypto

    try:
        body = crypto.sign(text, certificate, key)
        if server_cert:
            body = crypto.encrypt(body, server_cert)
    except crypto.CryptoException as exc:
        return None, f"could not be signed or encrypted: {exc}"
    return body, ""


class Prepared:
    """A signed message ready to go, and when it went (for the receipt timeout)."""

    __slots__ = ("name", "body", "sent_at")

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body
        self.sent_at = 0.0


class SignAhead:
    """The preparation half of a send run: queued messages read, split and signed into
    ``_ready`` by ``_prepare_all`` in a thread of its own, as the send loop makes room.
    """

    def __init__(self, queue: OutgoingQueue, options: SenderOptions) -> None:
        self.queue = queue
        self.options = options
        # One lock, two conditions: the send loop waits on _cv (receipts, signed messages,
        # a lost link), the signing thread on _room. Each side wakes the other only when
        # it can act, which halves the thread switches per message.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._ready: collections.deque[Prepared] = collections.deque()
        self._prepared_all = False
        self._stop_preparing = False
        self._problems: list[str] = []
        self._locked_elsewhere = 0
        self._split_extra = 0  # messages added to the queue by splitting, beyond the originals
        self._own_parts: set[str] = set()  # parts cut and locked by this run, not yet prepared

    def _read(self, name: str) -> str | list[str] | None:
        """Lock and read one message: its text, or the names of the parts that replaced it
        (when it was too big to read whole), or None when it cannot be sent."""
        if name in self._own_parts:
            self._own_parts.discard(name)  # a part this run cut and locked
        elif not self.queue.lock(name):
            log.warning("Message was locked. %s will not be sent.", name)
            self._locked_elsewhere += 1
            return None
        try:
            with self.queue.reader(name) as handle:
                size = os.fstat(handle.fileno()).st_size
                limit = self.options.max_message_size
                if limit and size > limit:  # bigger still once signed: split it as it is read
                    return self._split_stream(name, handle, size)
                raw = handle.read()
        except OSError as exc:
            self._set_aside(name, f"cannot be read: {exc}")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._set_aside(name, f"is not valid UTF-8 text ({exc.reason} at byte {exc.start})")
            return None
        if not text.strip():
            self._set_aside(name, "is empty")
            return None
        return text

    def _finish(self, name: str, text: str, body: Optional[str], problem: str) -> list[Prepared]:
        if body is None:
            self._set_aside(name, problem)
            return []
        size = len(body.encode("utf-8"))
        limit = self.options.max_message_size
        if limit and size > limit:
            return self._split(name, text, size)
        return [Prepared(name, body)]

    def _split(self, name: str, text: str, size: int) -> list[Prepared]:
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
            if failed is not None:
                self._set_aside(name, failed)
                return []
            bodies = [body for body, _ in signed if body is not None]
            if all(len(body.encode("utf-8")) <= limit for body in bodies):
                return self._requeue(name, texts, bodies, size)
            if len(texts) < parts:  # one record per message and still too big
                break
            parts *= 2
        self._set_aside(name, f"is {size} bytes once signed, over max_message_size {limit}, "
                              "and cannot be split at record boundaries to fit")
        return []

    def _split_stream(self, name: str, handle: BinaryIO, size: int) -> list[str]:
        """Replace a message over max_message_size by parts that should fit, reading it in pieces.

        Each part is queued (and locked for this run) as soon as it is cut, and the
        original removed once all are, so the message is never in memory whole and
        the queue always holds every record (a crash in between only duplicates
        records, which the server replaces by key). The parts are then prepared like
        any message: one still too big once signed is split again, in memory, by
        ``_split``.
        """
        limit = self.options.max_message_size
        growth = ENCRYPTED_GROWTH if self.options.server_cert else 1.0
        parts = math.ceil(size * growth * 5 / (limit * 4))  # aim each part at 80% of the limit
        names: list[str] = []
        try:
            chunks = iter(lambda: handle.read(READ_CHUNK), b"")
            for part in iter_parts(chunks, math.ceil(size / parts), limit):
                names.append(self.queue.add(part))
                self.queue.lock(names[-1])
            self.queue.remove(name)
        except (CannotSplit, OSError) as exc:
            self._drop(names)
            if isinstance(exc, OSError):
                self._set_aside(name, f"is {size} bytes, over max_message_size {limit}, and could not be "
                                      f"split into queued parts: {exc}")
            else:
                self._set_aside(name, f"is {size} bytes, over max_message_size {limit}, and cannot be split "
                                      f"at record boundaries to fit: {exc}")
            return []
        with self._cv:
            self._split_extra += len(names) - 1
        self._own_parts.update(names)
        log.info("Message %s (%d bytes, over max_message_size %d) split at record boundaries into %d "
                 "messages: %s", name, size, limit, len(names), ", ".join(names))
        return names

    def _drop(self, names: list[str]) -> None:
        """Remove parts queued before splitting failed: the original stays, whole."""
        for part_name in names:
            try:
                self.queue.remove(part_name)
            except OSError as exc:
                log.warning("Cannot remove part %s of a message that could not be split: %s", part_name, exc)

    def _requeue(self, name: str, texts: list[str], bodies: list[str], size: int) -> list[Prepared]:
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
        return [Prepared(part_name, body) for part_name, body in zip(names, bodies)]

    def _set_aside(self, name: str, problem: str) -> None:
        line = f"Message {name} {problem}; it stays in the queue"
        log.error("%s", line)
        with self._cv:
            self._problems.append(line)
        self._unlock(name)

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

        todo = collections.deque(names)
        try:
            while todo:
                name = todo.popleft()
                if not self._wait_for_room(ahead):
                    break
                try:
                    text = self._read(name)
                    if text is None:
                        continue
                    if isinstance(text, list):  # the parts replacing it come next
                        todo.extendleft(reversed(text))
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
            for name in self._own_parts:  # parts cut but not prepared before a stop request
                self._unlock(name)
            self._own_parts.clear()
            with self._cv:
                self._prepared_all = True
                self._cv.notify_all()

    def _wait_for_room(self, ahead: int) -> bool:
        """When ``ahead`` messages or AHEAD_BYTES are signed and waiting, sleep until half of
        them are sent; False when the run is stopping."""
        with self._cv:
            count, size = self._ready_size()
            if count >= ahead or size >= AHEAD_BYTES:
                while not self._stop_preparing:
                    count, size = self._ready_size()
                    if count <= ahead // 2 and size <= AHEAD_BYTES // 2:
                        break
                    self._room.wait(0.5)
            return not self._stop_preparing

    def _ready_size(self) -> tuple[int, int]:
        """How many signed messages wait to be sent, and their characters (with ``_cv`` held)."""
        return len(self._ready), sum(len(item.body) for item in self._ready)

    def _ahead(self) -> int:
        """How many signed messages to keep ready beyond those in flight."""
        return max(2 * self.options.window, 4)

    def _publish(self, items: list[Prepared]) -> None:
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

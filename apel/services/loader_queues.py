"""The loader's directory queues: schemas, durable writes and lock recovery.

The queues are python-dirq ``Queue`` directories shared with the SSM receiver
(their layout is ``ssm.dirqueue``'s). dirq itself never fsyncs and recognises a
stale lock only by its age, so this module adds what the loader needs on top:

- ``add_durably``: a reject/accept copy is on disk before the incoming element is
  removed, so a power cut cannot lose a message between the two queues;
- ``LockKeeper``: keeps the lock of the element being loaded fresh, so a slow
  database never makes a live lock look abandoned to another loader's purge;
- ``LoaderRegistry``: every running loader holds a shared ``flock`` on one file
  under ``msgpath``. A loader that can take it exclusively is the only one alive,
  so every element lock in ``incoming`` belongs to a dead loader (``kill -9``) and
  can be released at once instead of after the age threshold.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from typing import Optional

from dirq.queue import Queue

from acctbase.durable import sync_new
from ssm.dirqueue import INCOMING_SCHEMA as RECEIVER_INCOMING_SCHEMA
from ssm.dirqueue import QUEUE_UMASK, as_bytes
from ssm.dirqueue import REJECT_SCHEMA as RECEIVER_REJECT_SCHEMA

log = logging.getLogger(__name__)

# The receiver's queues read and rejected as bytes: a message that is not UTF-8 must
# reach the reject queue byte for byte, for the operator to inspect and reprocess. The
# reason the loader gives is its own text.
INCOMING_SCHEMA = as_bytes(RECEIVER_INCOMING_SCHEMA)
REJECT_SCHEMA = {**as_bytes(RECEIVER_REJECT_SCHEMA), "error": "string"}
ACCEPT_SCHEMA = {"body": "string", "signer": "string", "empaid": "string?"}
REGISTRY_FILE = ".apeldbloader.lock"


def open_queue(path: str, schema: dict) -> Queue:
    """A dirq ``Queue`` at ``path`` (created if missing) with private file modes."""
    return Queue(path, umask=QUEUE_UMASK, schema=schema)


def add_durably(queue: Queue, data: dict) -> str:
    """Add ``data`` to ``queue`` and fsync it (files, element and parent directories).

    dirq writes into a temporary directory and renames it into place; the fsyncs
    make both the contents and the rename survive a crash before we remove the
    source element from ``incoming``.
    """
    name = queue.add(data)
    element = os.path.join(queue.path, name)
    sync_new([os.path.join(element, field) for field in os.listdir(element)], queue.path)
    return name


def read_element_bytes(queue: Queue, name: str) -> dict[str, bytes]:
    """The fields of a locked element as the bytes on disk (a missing field is left out).

    Used when ``Queue.get`` fails (a mandatory file is missing) so the element can
    still be moved to ``reject`` with what it holds.
    """
    data: dict[str, bytes] = {}
    element = os.path.join(queue.path, name)
    for field in ("body", "signer", "empaid"):
        try:
            with open(os.path.join(element, field), "rb") as handle:
                data[field] = handle.read()
        except OSError:
            continue
    return data


def not_utf8(fields: dict[str, bytes]) -> Optional[tuple[str, UnicodeDecodeError]]:
    """The first field that is not UTF-8 text, with the decoder's reason; None if all are."""
    for field, value in fields.items():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return field, exc
    return None


class LockKeeper:
    """Refreshes the mtime of the elements we hold locked, from a background thread.

    dirq's ``purge(maxlock=...)`` treats a lock as abandoned when the element
    directory's mtime is older than ``maxlock``; touching it every ``maxlock / 4``
    seconds keeps a long database write from being mistaken for a dead loader.
    """

    def __init__(self, queue: Queue, maxlock: float) -> None:
        self._queue = queue
        self._period = max(maxlock / 4.0, 0.5)
        self._held: set[str] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)
        self._thread.start()

    def hold(self, name: str) -> None:
        """Keep ``name`` fresh from now on."""
        with self._guard:
            self._held.add(name)

    def release(self, name: str) -> None:
        with self._guard:
            self._held.discard(name)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            with self._guard:
                names = list(self._held)
            for name in names:
                try:
                    os.utime(os.path.join(self._queue.path, name))
                except OSError:
                    pass  # removed meanwhile: nothing to keep

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LoaderRegistry:
    """A shared ``flock`` on ``<msgpath>/.apeldbloader.lock`` held by every live loader."""

    def __init__(self, msgpath: str) -> None:
        self.path = os.path.join(msgpath, REGISTRY_FILE)
        old = os.umask(QUEUE_UMASK)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        finally:
            os.umask(old)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def recover_if_alone(self, queue: Queue) -> int:
        """If no other loader is alive, unlock every locked element; return how many.

        Call only while this loader holds no element lock. The shared lock is dropped
        for the exclusive attempt (flock conversion is not atomic anyway); a loader
        starting meanwhile simply waits for our shared lock to come back.
        """
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            return 0
        try:
            return unlock_all(queue)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def unlock_all(queue: Queue) -> int:
    """Release every element lock in ``queue`` (the caller knows their owners are dead)."""
    released = 0
    name = queue.first()
    while name:
        lock_dir = os.path.join(queue.path, name, "locked")
        if os.path.isdir(lock_dir) and queue.unlock(name, permissive=True):
            released += 1
        name = queue.next()
    return released


def purge_quietly(queue: Queue, maxlock: float) -> None:
    """``Queue.purge`` that logs instead of raising: housekeeping must not stop loading."""
    try:
        queue.purge(maxtemp=300, maxlock=max(int(maxlock), 1))
    except OSError as exc:
        log.warning("Could not purge queue %s: %s", queue.path, exc)


def monotonic_ms(start: float) -> float:
    """Milliseconds elapsed since ``start`` (a ``time.perf_counter()`` value)."""
    return (time.perf_counter() - start) * 1000.0

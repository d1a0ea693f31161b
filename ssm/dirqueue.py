"""The directory queues SSM reads from and writes to.

Outgoing (sender): a python-dirq ``QueueSimple`` or, for third-party producers, a
plain directory, behind one small interface so the sender never knows which. The
message id is the element name (``5ba24c88/5ba24c8f0f129d``) or the file name.

Incoming and reject (receiver): dirq ``Queue`` elements with the schemas the
existing SSM, the loader and operators' tools read. Unlike the existing SSM, a
message is written durably before ``add`` returns (``acctbase.durable``) because
the caller acknowledges it to the broker right after, and files are created 0600 /
directories 0700.
"""

from __future__ import annotations

import abc
import logging
import os
import uuid
from typing import BinaryIO

from dirq.queue import Queue
from dirq.QueueSimple import QueueSimple

from acctbase import durable

log = logging.getLogger(__name__)

# Every queue file and directory, here and in the loader's queues, is private to the
# service account.
QUEUE_UMASK = 0o077

# The layout of the queues the receiver writes and the loader reads, defined once.
# Writers set body, signer and empaid; ``error`` is there when an operator moved a
# rejected element back for another try. A rejected body is kept as the bytes that
# arrived (binary): it may not be UTF-8, and an operator must be able to inspect it and
# load it again exactly as it was sent.
INCOMING_SCHEMA = {"body": "string", "signer": "string", "empaid": "string?", "error": "string?"}
REJECT_SCHEMA = {"body": "binary", "signer": "string?", "empaid": "string?", "error": "string"}


def as_bytes(schema: dict[str, str]) -> dict[str, str]:
    """``schema`` with its text fields read and written as the bytes on disk.

    UTF-8 text is the same file under either type, so a reader that must see exactly
    what arrived (the loader: dirq's text reading drops a truncated multi-byte
    character at the end of a file) opens the same queue this way.
    """
    return {name: kind.replace("string", "binary") for name, kind in schema.items()}


class QueueIOError(Exception):
    """A queue could not be opened, read or written; the message says which path."""


class OutgoingQueue(abc.ABC):
    """What the sender needs from a queue of messages waiting to be sent."""

    path: str

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Ids of all messages, oldest first, including locked ones."""

    @abc.abstractmethod
    def lock(self, name: str) -> bool:
        """Take ``name`` for this run; False when another run holds it or it is gone."""

    @abc.abstractmethod
    def unlock(self, name: str) -> None:
        """Release ``name`` without sending it."""

    @abc.abstractmethod
    def get(self, name: str) -> bytes:
        """The raw bytes of a locked message."""

    @abc.abstractmethod
    def reader(self, name: str) -> BinaryIO:
        """A locked message's file, to read a message too big to hold whole in pieces."""

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Delete a locked message (after the broker confirmed it)."""

    @abc.abstractmethod
    def purge(self, maxlock: int = 600, maxtemp: int = 300) -> None:
        """Drop empty directories and stale temporary files, release stale locks."""

    @abc.abstractmethod
    def add(self, data: str | bytes) -> str:
        """Queue a message (for producers and tests); returns its id."""

    def count(self) -> int:
        return len(self.names())


class DirqOutgoingQueue(OutgoingQueue):
    """python-dirq ``QueueSimple``: the format APEL clients write."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        try:
            self._queue = QueueSimple(self.path, umask=QUEUE_UMASK)
        except OSError as exc:
            raise QueueIOError(f"cannot open outgoing queue {self.path}: {exc}") from None

    def names(self) -> list[str]:
        # QueueSimple iterates bucket by bucket in name (time) order, elements sorted.
        return list(self._queue)

    def lock(self, name: str) -> bool:
        return bool(self._queue.lock(name, permissive=True))

    def unlock(self, name: str) -> None:
        self._queue.unlock(name, permissive=True)

    def get(self, name: str) -> bytes:
        data = self._queue.get(name)
        return data if isinstance(data, bytes) else data.encode("utf-8")

    def reader(self, name: str) -> BinaryIO:
        return open(self._queue.get_path(name), "rb")  # noqa: SIM115 - the caller closes it

    def remove(self, name: str) -> None:
        self._queue.remove(name)

    def purge(self, maxlock: int = 600, maxtemp: int = 300) -> None:
        self._queue.purge(maxtemp=maxtemp, maxlock=maxlock)

    def add(self, data: str | bytes) -> str:
        return self._queue.add(data)

    def count(self) -> int:
        return self._queue.count()


class DirectoryOutgoingQueue(OutgoingQueue):
    """A plain directory of files (``path_type: directory``), oldest mtime first.

    Lock always succeeds and purge does nothing, as in the existing SSM; files whose
    name starts with ``.`` are in-progress writes of a producer and are ignored.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            try:
                os.makedirs(self.path, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise QueueIOError(f"cannot create outgoing directory {self.path}: {exc.strerror}") from None

    def names(self) -> list[str]:
        entries = []
        try:
            with os.scandir(self.path) as scan:
                for entry in scan:
                    if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                        continue
                    try:
                        entries.append((entry.stat().st_mtime, entry.name))
                    except FileNotFoundError:
                        continue
        except OSError as exc:
            raise QueueIOError(f"cannot list outgoing directory {self.path}: {exc.strerror}") from None
        return [name for _mtime, name in sorted(entries)]

    def lock(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.path, name))

    def unlock(self, name: str) -> None:
        return None

    def get(self, name: str) -> bytes:
        with open(os.path.join(self.path, name), "rb") as handle:
            return handle.read()

    def reader(self, name: str) -> BinaryIO:
        return open(os.path.join(self.path, name), "rb")  # noqa: SIM115 - the caller closes it

    def remove(self, name: str) -> None:
        os.unlink(os.path.join(self.path, name))

    def purge(self, maxlock: int = 600, maxtemp: int = 300) -> None:
        return None

    def add(self, data: str | bytes) -> str:
        name = str(uuid.uuid4())
        raw = data.encode("utf-8") if isinstance(data, str) else data
        durable.write_atomic(os.path.join(self.path, name), raw, 0o600)  # a ".name" temporary: ignored
        return name


def open_outgoing(path: str, path_type: str = "dirq") -> OutgoingQueue:
    """The outgoing queue of ``path_type`` (``dirq`` or ``directory``) at ``path``."""
    if path_type == "dirq":
        return DirqOutgoingQueue(path)
    if path_type == "directory":
        return DirectoryOutgoingQueue(path)
    raise QueueIOError(f"Unsupported path_type {path_type!r} (use dirq or directory)")


class DurableQueue:
    """A dirq ``Queue`` with a schema whose ``add`` returns only once the element is on disk.

    ``add_many`` writes several elements and then syncs them together, which lets
    the receiver acknowledge a burst of messages for little more than the cost of
    one. On Linux 5.8 and later that is one ``syncfs`` of the queue's filesystem
    (why: ``docs/design.md``, "Base layer and queues"); elsewhere the files and the
    directories naming them are fsynced, several at a time.
    """

    def __init__(self, path: str, schema: dict[str, str]) -> None:
        self.path = os.path.abspath(path)
        old = os.umask(QUEUE_UMASK)
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            self._queue = Queue(self.path, umask=QUEUE_UMASK, schema=schema)
        except OSError as exc:
            raise QueueIOError(f"cannot open queue {self.path}: {exc}") from None
        finally:
            os.umask(old)
        self.fields = list(schema)
        self._binary = {name for name, kind in schema.items() if kind.startswith("binary")}

    def add(self, data: dict[str, str | bytes]) -> str:
        return self.add_many([data])[0]

    def add_many(self, items: list[dict[str, str | bytes]]) -> list[str]:
        """Write ``items``, fsync every file and directory involved, return the names.

        Raises QueueIOError (nothing is reported written) on any failure; elements
        written before the failure stay, and are duplicates the loader tolerates.
        """
        fd = None
        try:
            fd = durable.open_for_syncfs(self.path)
            names = [self._queue.add(self._encoded(data)) for data in items]
            if fd is not None:
                durable.syncfs(fd)
            else:
                durable.sync_new(self._element_files(items, names), self.path)
        except Exception as exc:  # dirq raises OSError, IOError and QueueError
            raise QueueIOError(f"cannot write to queue {self.path}: {exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)
        return names

    def _encoded(self, data: dict[str, str | bytes]) -> dict[str, str | bytes]:
        """Text given for a binary field, as its UTF-8 bytes (dirq writes binary fields raw)."""
        return {key: value.encode("utf-8") if key in self._binary and isinstance(value, str) else value
                for key, value in data.items()}

    def _element_files(self, items: list[dict[str, str | bytes]], names: list[str]) -> list[str]:
        """The files dirq wrote: one per field of each element."""
        return [os.path.join(self.path, name, field) for data, name in zip(items, names) for field in data]

    def names(self) -> list[str]:
        return list(self._queue)

    def read(self, name: str) -> dict[str, str | bytes]:
        """An element's fields (for tests and tools), without locking it; binary ones as bytes."""
        element = os.path.join(self.path, name)
        result: dict[str, str | bytes] = {}
        for field in self.fields:
            path = os.path.join(element, field)
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    data = handle.read()
                result[field] = data if field in self._binary else data.decode("utf-8")
        return result

    def count(self) -> int:
        """Complete elements only (dirq's own count includes those still being written)."""
        return len(self.names())


def open_incoming(base: str) -> DurableQueue:
    return DurableQueue(os.path.join(base, "incoming"), INCOMING_SCHEMA)


def open_reject(base: str) -> DurableQueue:
    return DurableQueue(os.path.join(base, "reject"), REJECT_SCHEMA)


def read_all(queue: DurableQueue) -> list[dict[str, str | bytes]]:
    """Every element of ``queue`` with its name under ``"name"`` (tests and tools)."""
    items = []
    for name in queue.names():
        item = dict(queue.read(name))
        item["name"] = name
        items.append(item)
    return items

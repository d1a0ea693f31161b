"""The loader service: messages from the ``incoming`` dirq queue into a backend.

For each element of ``<msgpath>/incoming``: lock it (skip it if
another loader holds it), read it, parse the whole message, write all its records
in one transaction, then remove it. What can go wrong, and what happens:

- the message is invalid (``InvalidMessage``) or the database refuses its data
  (``StorageError``): the message goes to ``reject`` with ``error = "Parsing
  unsuccessful: <reason>"``, nothing of it is written; the reject copy holds the
  bytes that were queued, also when they are not UTF-8 (then that is the reason);
- the database is unreachable, lost, deadlocked (``DatabaseUnavailable``): the
  message is unlocked and stays in ``incoming``; the loader backs off (1 s
  doubling up to ``backoff_max``) and retries. A good message is never rejected
  because of the database (the existing loader rejected them during an outage);
- anything else (a bug): the message is rejected with the exception text and the
  loop goes on (one message must not stop the loader). If the database turns out to
  be unreachable right after, the message is kept instead, since the failure may not
  have been its fault.

Crash safety: the commit happens before the element is removed, and the reject or
accept copy is fsynced before it is removed too. After ``kill -9`` the element is
still in ``incoming`` (its lock is released at the next start, see
``queues.LoaderRegistry``) and loading it again is harmless because every write
replaces by primary key.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Union

from apel.db.backend import Backend, DatabaseUnavailable, StorageError
from apel.records.model import InvalidMessage, ParsedMessage
from apel.records.quote import quote
from apel.services.loader_queues import (
    ACCEPT_SCHEMA,
    INCOMING_SCHEMA,
    REJECT_SCHEMA,
    LoaderRegistry,
    LockKeeper,
    add_durably,
    monotonic_ms,
    not_utf8,
    open_queue,
    purge_quietly,
    read_element_bytes,
)

log = logging.getLogger("apel.loader")

REJECT_PREFIX = "Parsing unsuccessful: "
# Characters of an exception's text (database, queue, bug) that a reject reason keeps.
DETAIL_LIMIT = 300
# Exit codes of a ``--once`` run (documented in conf/loader.cfg and the README).
EXIT_OK = 0  # every queued message was loaded
EXIT_UNAVAILABLE = 1  # the database stayed unreachable: messages are left in incoming
EXIT_REJECTED = 2  # the queue was emptied, but at least one message went to reject
# Housekeeping (purge, stale-lock recovery) runs at least this often when idle.
HOUSEKEEPING_PERIOD = 60.0


@dataclass
class LoaderSettings:
    """``[loader]`` options of loader.cfg, already validated."""

    msgpath: str
    interval: float = 5.0
    save_messages: bool = False
    lock_timeout: float = 60.0  # a lock older than this belongs to a dead loader
    backoff_max: float = 60.0
    backoff_initial: float = 1.0
    workers: int = 1  # loader processes (apel.services.loader_pool)


class Outcome(enum.Enum):
    LOADED = "loaded"
    REJECTED = "rejected"
    SKIPPED = "skipped"  # locked by another loader, or gone


@dataclass
class PassResult:
    """What one pass over ``incoming`` did."""

    loaded: int = 0
    rejected: int = 0
    skipped: int = 0
    records: int = 0

    @property
    def handled(self) -> int:
        return self.loaded + self.rejected

    def add(self, outcome: Outcome, records: int = 0) -> None:
        """Count one message's outcome."""
        if outcome is Outcome.LOADED:
            self.loaded += 1
            self.records += records
        elif outcome is Outcome.REJECTED:
            self.rejected += 1
        else:
            self.skipped += 1

    def merge(self, other: PassResult) -> None:
        """Add another result's counts to this one."""
        self.loaded += other.loaded
        self.rejected += other.rejected
        self.skipped += other.skipped
        self.records += other.records


class _KeepMessages(Exception):
    """Stop the pass: the database (or a queue directory) cannot be used right now."""

    def __init__(self, why: str, name: Optional[str] = None, what: str = "database unavailable") -> None:
        super().__init__(why)
        self.why = why
        self.name = name
        self.what = what


@dataclass
class _Prepared:
    """A locked element, read and parsed: either a message to load or a reject reason."""

    name: str
    element: dict
    started: float
    message: Optional[ParsedMessage] = None
    reason: Optional[str] = None


def _default_parser() -> Callable[[str], ParsedMessage]:
    from apel.records import parse_message

    return parse_message


class Loader:
    """One loader process's view of the queues and its database connection."""

    def __init__(
        self,
        settings: LoaderSettings,
        backend: Backend,
        parse: Optional[Callable[[str], ParsedMessage]] = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self._parse = parse or _default_parser()
        self._connected = False
        self._last_housekeeping = 0.0
        self.reopen_logs_requested = threading.Event()
        # Why a ``--once`` run gave up (one line for the operator), else None.
        self.failure: Optional[str] = None
        # Every pass's results added up (reported by a pool worker to its parent).
        self.totals = PassResult()
        self._last_outage = ""
        base = settings.msgpath.rstrip("/")
        self.incoming = open_queue(f"{base}/incoming", INCOMING_SCHEMA)
        self.reject = open_queue(f"{base}/reject", REJECT_SCHEMA)
        self.accept = open_queue(f"{base}/accept", ACCEPT_SCHEMA) if settings.save_messages else None
        self._registry = LoaderRegistry(base)
        self._keeper = LockKeeper(self.incoming, settings.lock_timeout)

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Release the connection, the registry lock and the lock keeper."""
        self._keeper.close()
        self._registry.close()
        self._disconnect()

    def run_forever(self, stop: threading.Event) -> int:
        """The daemon: pass after pass, ``interval`` seconds apart, until ``stop``."""
        log.info("Loader started on %s (pid file held, %s)", self.settings.msgpath, self.backend.name)
        self._housekeeping(force=True)
        while not stop.is_set():
            self._maybe_reopen_logs()
            result = self._drain(stop, give_up=False)
            if result is not None:
                self._housekeeping(force=result.handled > 0 or result.skipped > 0)
            stop.wait(self.settings.interval)
        log.info("Loader stopped")
        return EXIT_OK

    def run_once(self, stop: threading.Event) -> int:
        """``--once``: one pass over what is queued; the exit code says how it went."""
        self._housekeeping(force=True)
        result = self._drain(stop, give_up=True)
        if result is None:
            if stop.is_set():
                return EXIT_OK
            self.failure = f"{self._last_outage}; giving up, messages stay in incoming"
            log.error("%s", self.failure)
            return EXIT_UNAVAILABLE
        self._housekeeping(force=result.handled > 0)
        return EXIT_REJECTED if result.rejected else EXIT_OK

    def request_log_reopen(self) -> None:
        """SIGHUP: reopen log files at the next safe point (after logrotate)."""
        self.reopen_logs_requested.set()

    # -- passes and back-off ------------------------------------------------------

    def _drain(self, stop: threading.Event, give_up: bool) -> Optional[PassResult]:
        """One complete pass, retrying with back-off while the database is away.

        Returns None when stopped, or (``give_up``) when the database is still
        unavailable after a wait of ``backoff_max``.
        """
        delay = self.settings.backoff_initial
        outage_started: Optional[float] = None
        while not stop.is_set():
            try:
                self._ensure_connected()
                if outage_started is not None:
                    log.info("database available again after %.0f s", time.monotonic() - outage_started)
                    outage_started = None
                result = self.one_pass(stop)
            except _KeepMessages as exc:
                if outage_started is None:
                    outage_started = time.monotonic()
                self._last_outage = f"{exc.what}: {exc.why}"
                if give_up and delay > self.settings.backoff_max:
                    return None
                wait = min(delay, self.settings.backoff_max)
                kept = f"message {exc.name} kept" if exc.name else "messages stay in incoming"
                log.warning("%s: %s; %s, retrying in %g s", exc.what, exc.why, kept, wait)
                stop.wait(wait)
                delay = wait * 2 if wait < self.settings.backoff_max else self.settings.backoff_max * 2
                continue
            return result
        return None

    def one_pass(self, stop: threading.Event) -> PassResult:
        """Visit every element of ``incoming`` once (stopping early on ``stop``).

        Messages are handled one after the other: reading ahead on a thread loses more
        to the GIL hand-over after each database round trip than the overlap gains
        ("Loader" in docs/design.md).
        """
        result = PassResult()
        started = time.perf_counter()
        name = self.incoming.first()
        while name and not stop.is_set():
            outcome, records = self.process(name)
            # Counted at once in both: a pass cut short by a database retry (e.g. a
            # deadlock with another worker) still counts what it loaded.
            for counts in (result, self.totals):
                counts.add(outcome, records)
            name = self.incoming.next()
        if result.handled:
            seconds = max(time.perf_counter() - started, 1e-9)
            log.info(
                "Pass done in %.3f s: %d messages loaded (%d records, %.0f records/s), %d rejected, "
                "%d skipped",
                seconds, result.loaded, result.records, result.records / seconds, result.rejected,
                result.skipped,
            )
        return result

    # -- one message --------------------------------------------------------------

    def process(self, name: str) -> tuple[Outcome, int]:
        """Lock, read, parse, load and remove one element; return (outcome, records)."""
        prepared = self.prepare(name)
        if prepared is None:
            return Outcome.SKIPPED, 0
        return self.complete(prepared)

    def prepare(self, name: str) -> Optional[_Prepared]:
        """Lock, read and parse one element; None if another loader has it (or it is gone).

        Touches no database and writes no queue.
        """
        try:
            if not self.incoming.lock(name):
                return None
        except OSError as exc:
            log.warning("Cannot lock %s: %s", name, exc)
            return None
        self._keeper.hold(name)
        started = time.perf_counter()
        try:
            raw = self.incoming.get(name)
        except Exception as exc:  # a mandatory field is missing: the element is unusable
            raw = read_element_bytes(self.incoming, name)
            return _Prepared(name, raw, started, reason=f"unreadable queue element: {_detail(exc)}")
        bad = not_utf8(raw)
        if bad is not None:
            return _Prepared(name, raw, started, reason=_not_utf8_reason(*bad))
        element = {field: value.decode("utf-8") for field, value in raw.items()}
        del raw  # a large message is held once, as text
        try:
            message = self._parse(element["body"])
        except InvalidMessage as exc:
            return _Prepared(name, element, started, reason=f"{REJECT_PREFIX}{exc}")
        except Exception as exc:
            log.exception("Unexpected error parsing %s", name)
            reason = f"{REJECT_PREFIX}unexpected {type(exc).__name__}: {_detail(exc)}"
            return _Prepared(name, element, started, reason=reason)
        return _Prepared(name, element, started, message=message)

    def complete(self, prepared: _Prepared) -> tuple[Outcome, int]:
        """Load (or reject) a prepared element and remove it from ``incoming``."""
        try:
            return self._complete(prepared)
        finally:
            self._keeper.release(prepared.name)

    def _complete(self, prepared: _Prepared) -> tuple[Outcome, int]:
        name, element, message = prepared.name, prepared.element, prepared.message
        if message is None:
            return self._reject(name, element, prepared.reason or REJECT_PREFIX.strip()), 0
        signer = element.get("signer", "")
        try:
            count = self.backend.load_message(message, signer)
        except DatabaseUnavailable as exc:
            self._keep(name)
            self._disconnect()
            raise _KeepMessages(str(exc), name) from None
        except StorageError as exc:
            return self._reject(name, element, f"{REJECT_PREFIX}{_detail(exc)}"), 0
        except (ConnectionError, TimeoutError) as exc:  # a socket failure is never the message's fault
            self._keep(name)
            self._disconnect()
            raise _KeepMessages(f"{type(exc).__name__}: {exc}", name) from None
        except Exception as exc:
            log.exception("Unexpected error loading %s", name)
            # The connection's state is unknown now: start afresh. If the database is
            # unreachable, the error may not have been the message's fault: keep it.
            self._disconnect()
            try:
                self._ensure_connected()
            except _KeepMessages as down:
                self._keep(name)
                raise _KeepMessages(down.why, name) from None
            return self._reject(
                name, element, f"{REJECT_PREFIX}unexpected {type(exc).__name__}: {_detail(exc)}"), 0
        try:
            if self.accept is not None:
                add_durably(self.accept, _without_error(element))
            self._remove_loaded(name)
        except OSError as exc:  # committed: keep it, loading it again is harmless
            self._keep(name)
            raise _KeepMessages(str(exc), name, what="cannot update the queues") from None
        records = len(message.records)
        attributes = len(message.group_attributes)
        log.info(
            "Loaded %d %s records%s from %s (empaid %s, %s, %d rows written) in %.1f ms",
            records, message.record_type, f" and {attributes} group attributes" if attributes else "",
            signer, element.get("empaid", "-"), name, count, monotonic_ms(prepared.started),
        )
        return Outcome.LOADED, records

    def _remove_loaded(self, name: str) -> None:
        """Remove a committed element. dirq first moves it out of the queue, then deletes
        the moved copy; another loader's purge may delete that copy first, which is fine."""
        try:
            self.incoming.remove(name)
        except OSError:
            if os.path.exists(os.path.join(self.incoming.path, name)):
                raise

    def _reject(self, name: str, element: dict, reason: str) -> Outcome:
        data = {"body": _as_bytes(element.get("body", b"")), "error": reason}
        for field in ("signer", "empaid"):
            if element.get(field) is not None:
                data[field] = _as_bytes(element[field])
        try:
            add_durably(self.reject, data)
            self.incoming.remove(name)
        except OSError as exc:
            self._keep(name)
            raise _KeepMessages(str(exc), name, what="cannot write to the reject queue") from None
        log.warning(
            "Rejected message %s from %s (empaid %s): %s",
            name, _shown(element.get("signer", "-")), _shown(element.get("empaid", "-")), reason,
        )
        return Outcome.REJECTED

    def _keep(self, name: str) -> None:
        try:
            self.incoming.unlock(name, permissive=True)
        except OSError as exc:
            log.warning("Cannot unlock %s (purge will): %s", name, exc)

    # -- database connection ------------------------------------------------------

    def _ensure_connected(self) -> None:
        if self._connected:
            return
        try:
            self.backend.connect()
        except DatabaseUnavailable as exc:
            raise _KeepMessages(str(exc)) from None
        except (ConnectionError, TimeoutError) as exc:
            raise _KeepMessages(f"{type(exc).__name__}: {exc}") from None
        self._connected = True

    def _disconnect(self) -> None:
        self._connected = False
        try:
            self.backend.close()
        except Exception as exc:  # closing a broken connection may fail; it is gone either way
            log.debug("Closing the database connection: %s", exc)

    # -- housekeeping -------------------------------------------------------------

    def _housekeeping(self, force: bool) -> None:
        """Purge the queues and release locks left by dead loaders."""
        now = time.monotonic()
        if not force and now - self._last_housekeeping < HOUSEKEEPING_PERIOD:
            return
        self._last_housekeeping = now
        try:
            released = self._registry.recover_if_alone(self.incoming)
        except OSError as exc:
            log.warning("Cannot check for stale locks: %s", exc)
            released = 0
        if released:
            log.warning("Released %d locks left by a loader that is no longer running", released)
        for dirq_queue in (self.incoming, self.reject, self.accept):
            if dirq_queue is not None:
                purge_quietly(dirq_queue, self.settings.lock_timeout)

    def _maybe_reopen_logs(self) -> None:
        if not self.reopen_logs_requested.is_set():
            return
        self.reopen_logs_requested.clear()
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()  # FileHandler reopens its file at the next record
                finally:
                    handler.release()
        log.info("Log files reopened")


def _not_utf8_reason(field: str, error: UnicodeDecodeError) -> str:
    """Why an element with bytes that are not UTF-8 is rejected (its bytes are kept)."""
    if field == "body":
        return f"{REJECT_PREFIX}the message is not UTF-8 text: {error}"
    return f"unreadable queue element: the {field} is not UTF-8 text: {error}"


def _as_bytes(value: Union[str, bytes]) -> bytes:
    """A field for the reject queue: text as UTF-8 (the bytes it was read from), bytes unchanged."""
    return value.encode("utf-8") if isinstance(value, str) else value


def _shown(value: Union[str, bytes]) -> str:
    """A field for a log line (not UTF-8: with replacement characters)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _detail(exc: BaseException) -> str:
    """An exception's text for a reject reason, cut short: a driver's or a bug's message may
    quote a whole value of the message, and a reason must stay readable."""
    return quote(str(exc), bare=True, limit=DETAIL_LIMIT)


def _without_error(element: dict) -> dict:
    return {key: value for key, value in element.items() if key != "error" and value is not None}

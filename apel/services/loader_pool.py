"""Several loader processes on one queue, run by one ``apeldbloader``.

Why processes: a loader spends about half its time in Python (parsing, building the
rows) and half waiting for the database to store them. One process cannot overlap the
two (the GIL hand-over after every database round trip costs more than it gains), but
two processes can: while one parses, the other's rows are being written, and the
database works on two connections at once. Each worker is a complete loader with its
own database connection, element locks and lock keeper, exactly as if an operator had
started several ``apeldbloader`` on the queue (which dirq's element locks allow); they share
the parent's pidfile and log files.

The parent only supervises:

- SIGTERM/SIGINT set ``stop``; the workers (which inherit the handlers) finish the
  message in hand and exit, and the parent waits for them;
- SIGHUP reopens the log files in every worker;
- daemon mode: a worker that dies (a bug, ``kill -9``) is started again after a pause
  that doubles from 1 s to 60 s; the messages it had locked return to the queue when
  their lock times out (``lock_timeout``), so nothing is lost. A parent that dies takes
  its workers with it (SIGTERM from the kernel), so none runs on without a pidfile;
- ``--once``: the workers' results are combined (1 if any could not reach the database,
  else 2 if any message was rejected, else 0) and one line gives the overall rate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from apel.services.loader import EXIT_OK, EXIT_REJECTED, EXIT_UNAVAILABLE, Loader, PassResult

log = logging.getLogger("apel.loader")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
RESTART_MAX = 60.0
# A worker that ran this long before dying starts again after 1 s, not after the last pause.
STABLE_AFTER = 600.0


@dataclass
class WorkerReport:
    """What one ``--once`` worker sends back to the parent."""

    status: int
    failure: Optional[str]
    totals: PassResult = field(default_factory=PassResult)


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this worker when the parent dies (e.g. ``kill -9``
    outside systemd), so no loader is left running without its pidfile."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM still reaches us
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(
    make_loader: Callable[[], Loader], once: bool, stop: threading.Event,
    reload_hook: dict, report: multiprocessing.connection.Connection, parent: int,
) -> None:
    """The body of one worker process (forked: it inherits the parent's signal handlers,
    whose ``stop`` event is now this process's own copy)."""
    failure: Optional[str]
    status, failure, totals = EXIT_UNAVAILABLE, "the worker failed to start", PassResult()
    try:
        _stop_with_parent(parent)
        reload_hook.clear()  # the parent's pool is not this process's to signal
        loader = make_loader()
        reload_hook["loader"] = loader
        try:
            status = loader.run_once(stop) if once else loader.run_forever(stop)
            failure, totals = loader.failure, loader.totals
        finally:
            loader.close()
    except Exception as exc:  # one line in the log, the parent decides what happens next
        log.exception("Loader worker %d failed", os.getpid())
        failure = f"loader worker failed: {type(exc).__name__}: {exc}"
    finally:
        try:
            report.send(WorkerReport(status, failure, totals))
        except OSError:
            pass
        logging.shutdown()
        os._exit(status if failure is None else EXIT_UNAVAILABLE)


@dataclass(eq=False)
class LoaderPool:
    """Start ``workers`` loader processes and supervise them until ``stop``."""

    workers: int
    make_loader: Callable[[], Loader]
    once: bool
    stop: threading.Event
    reload_hook: dict
    failure: Optional[str] = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._context = multiprocessing.get_context("fork")
        self._running: dict[int, tuple[multiprocessing.process.BaseProcess,
                                       multiprocessing.connection.Connection]] = {}

    def _start_one(self) -> None:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker,
            args=(self.make_loader, self.once, self.stop, self.reload_hook, send, os.getpid()),
            name="apeldbloader-worker", daemon=False,
        )
        process.start()
        send.close()
        self._running[process.pid] = (process, receive)  # type: ignore[index]  # set by start()

    def reopen_logs(self) -> None:
        """SIGHUP in the parent: pass it on to every worker."""
        for pid in list(self._running):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Run the workers; the exit status of ``apeldbloader``."""
        started = time.perf_counter()
        for _ in range(self.workers):
            self._start_one()
        log.info("Started %d loader workers (pids %s)", self.workers, ", ".join(map(str, self._running)))
        return self._collect_once(started) if self.once else self._supervise()

    def _collect_once(self, started: float) -> int:
        reports: list[WorkerReport] = []
        for process, receive in self._running.values():
            reports.append(self._wait(process, receive))
        self._running.clear()
        seconds = max(time.perf_counter() - started, 1e-9)
        totals = PassResult()
        for report in reports:
            totals.merge(report.totals)
        log.info(
            "All %d workers done in %.3f s: %d messages loaded (%d records, %.0f records/s), %d rejected",
            self.workers, seconds, totals.loaded, totals.records, totals.records / seconds, totals.rejected,
        )
        failures = [report.failure for report in reports if report.failure]
        if failures:
            self.failure = failures[0]
            return EXIT_UNAVAILABLE
        if any(report.status == EXIT_UNAVAILABLE for report in reports):
            return EXIT_UNAVAILABLE
        return EXIT_REJECTED if any(report.status == EXIT_REJECTED for report in reports) else EXIT_OK

    def _wait(
        self, process: multiprocessing.process.BaseProcess, receive: multiprocessing.connection.Connection
    ) -> WorkerReport:
        report: Optional[WorkerReport] = None
        signalled = False
        while report is None:
            if receive.poll(0.2):
                try:
                    report = receive.recv()
                except EOFError:  # died without a word (kill -9)
                    break
            elif not process.is_alive() and not receive.poll(0):
                break
            if self.stop.is_set() and not signalled:
                signalled = True
                self._signal(process, signal.SIGTERM)
        process.join()
        receive.close()
        if report is None:
            return WorkerReport(EXIT_UNAVAILABLE, f"loader worker {process.pid} died ({_how(process)})")
        return report

    def _supervise(self) -> int:
        pause: dict[int, float] = {}  # restart pause for the next worker death
        next_pause = 1.0
        started_at = {pid: time.monotonic() for pid in self._running}
        while not self.stop.wait(0.5):
            for pid, (process, receive) in list(self._running.items()):
                if process.is_alive():
                    continue
                process.join()
                receive.close()
                del self._running[pid]
                lived = time.monotonic() - started_at.pop(pid, time.monotonic())
                if lived >= STABLE_AFTER:
                    next_pause = 1.0
                log.error("Loader worker %d stopped (%s); starting another in %g s",
                          pid, _how(process), next_pause)
                pause[pid] = time.monotonic() + next_pause
                next_pause = min(RESTART_MAX, next_pause * 2)
            for pid, when in list(pause.items()):
                if time.monotonic() >= when and not self.stop.is_set():
                    del pause[pid]
                    self._start_one()
                    newest = next(reversed(self._running))
                    started_at[newest] = time.monotonic()
        for process, _ in self._running.values():
            self._signal(process, signal.SIGTERM)
        for process, receive in self._running.values():
            process.join()
            receive.close()
        self._running.clear()
        log.info("Loader stopped")
        return EXIT_OK

    @staticmethod
    def _signal(process: multiprocessing.process.BaseProcess, signum: int) -> None:
        if process.pid is None:
            return
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            pass


def _how(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"

"""Running a long-lived service in the foreground (systemd) or as a classic daemon.

The pidfile is taken *before* detaching, so a second copy fails in the terminal
with a clear line instead of exiting 0 and dying silently in the background (the
python-daemon gotcha). The launching process exits only once the pidfile names the
detached daemon, so whoever reads it right after (an init script, systemd's
Type=forking, a test) never sees the launcher's short-lived PID. SIGTERM and SIGINT
set the ``stop`` event the service polls, so it finishes the message in hand and
exits 0; SIGHUP calls ``on_reload``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Optional

import daemon

from acctbase import signals
from acctbase.exceptions import DaemonStartError
from acctbase.logs import log_handler_streams
from acctbase.pidfile import PidFile, read_pid

log = logging.getLogger(__name__)


def run_service(
    service: Callable[[threading.Event], int],
    pidfile: str,
    foreground: bool,
    on_reload: Optional[Callable[[], None]] = None,
) -> int:
    """Hold ``pidfile`` while ``service(stop)`` runs; return its exit status.

    A stop signal that arrived before (the program's ``main`` catches them from its
    first line) makes this return 0 without starting the service, the pidfile removed.
    """
    stop = signals.catch_signals()  # a no-op for programs that already did
    lock = PidFile(pidfile)
    lock.acquire()
    try:
        if foreground:
            return _serve(service, stop, on_reload)
        launcher = os.getpid()
        child = os.fork()
        if child:
            return _wait_for_daemon(lock.path, launcher, child)
        os.setsid()
        if os.fork():
            os._exit(0)  # the session leader goes; the daemon can never reacquire a terminal
        context = daemon.DaemonContext(
            detach_process=False,
            working_directory="/",
            umask=0o077,
            files_preserve=log_handler_streams(),
            signal_map=signals.handlers(),
        )
        with context:
            lock.rewrite()
            return _serve(service, stop, on_reload)
    finally:
        lock.release()


def _serve(
    service: Callable[[threading.Event], int],
    stop: threading.Event,
    on_reload: Optional[Callable[[], None]],
) -> int:
    if stop.is_set():
        log.info("Received %s while starting: exiting", signals.stop_signal_name())
        return 0
    signals.on_reload(on_reload)
    try:
        status = service(stop)
    finally:
        signals.on_reload(None)
    if stop.is_set():
        log.info("Stopped on %s", signals.stop_signal_name())
    return status


def _wait_for_daemon(pidfile: str, launcher: int, child: int, timeout: float = 30.0) -> int:
    """Exit status for the launcher: 0 once the pidfile names the daemon, 1 if it died first."""
    os.waitpid(child, 0)  # the intermediate process exits at once
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(pidfile)
        if pid and pid != launcher:
            return 0
        if pid is None:  # removed: the daemon stopped before it could start
            break
        time.sleep(0.01)
    raise DaemonStartError(f"the daemon did not start; see its log (pidfile {pidfile})")

"""Running a long-lived service in the foreground (systemd) or as a classic daemon.

The pidfile is taken *before* detaching, so a second copy fails in the terminal
with a clear line instead of exiting 0 and dying silently in the background (the
python-daemon gotcha). SIGTERM and SIGINT set the ``stop`` event the service polls,
so it finishes the message in hand and exits 0; SIGHUP calls ``on_reload``.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable, Optional

import daemon

from ssm.logs import log_handler_streams
from ssm.pidfile import PidFile

log = logging.getLogger(__name__)


def run_service(
    service: Callable[[threading.Event], int],
    pidfile: str,
    foreground: bool,
    on_reload: Optional[Callable[[], None]] = None,
) -> int:
    """Hold ``pidfile`` while ``service(stop)`` runs; return its exit status."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("Received %s: stopping after the current message", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: object) -> None:
        if on_reload is not None:
            on_reload()

    handlers = {signal.SIGTERM: request_stop, signal.SIGINT: request_stop}
    if on_reload is not None:
        handlers[signal.SIGHUP] = request_reload

    lock = PidFile(pidfile)
    lock.acquire()
    try:
        if foreground:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            return service(stop)
        context = daemon.DaemonContext(
            working_directory="/",
            umask=0o077,
            files_preserve=log_handler_streams(),
            signal_map=handlers,
        )
        with context:
            lock.rewrite()
            return service(stop)
    finally:
        lock.release()

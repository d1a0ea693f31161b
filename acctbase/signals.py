"""Stop and reload requests, caught from the first line of a service's ``main``.

A SIGTERM that arrives before a handler is installed kills the process on the spot:
no clean-up, the pidfile left behind, and exit status -15 for systemd (or for a test
that stops the service right after starting it). ``ssmreceive`` and ``apeldbloader``
therefore call :func:`catch_signals` before they import anything heavy or read their
configuration. A stop requested while they are still starting is kept in the event,
and :func:`acctbase.daemon.run_service` then exits 0, releasing the pidfile, instead of
starting the service. A SIGHUP (reload) during start-up is kept too and handed to the
service's reload hook once there is one.

The handlers only record the request: they must not log, because the signal can
interrupt a log write in progress, and a second write to the same stream from the
handler fails ("reentrant call").

Only this module and the standard library are imported here, so the handlers are in
place a few milliseconds after the interpreter starts.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_stop = threading.Event()
_received: list[int] = []
_reload: list[Optional[Callable[[], None]]] = [None]
_reload_pending = threading.Event()


def catch_signals() -> threading.Event:
    """From now on SIGTERM and SIGINT set the returned event, and SIGHUP asks for a reload."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _request_stop)
    signal.signal(signal.SIGHUP, _request_reload)
    return _stop


def stop_event() -> threading.Event:
    """The event the stop signals set (also when they arrived before the service started)."""
    return _stop


def stop_signal_name() -> Optional[str]:
    """``SIGTERM`` or ``SIGINT``: the first stop signal received, if any."""
    return signal.Signals(_received[0]).name if _received else None


def on_reload(hook: Optional[Callable[[], None]]) -> None:
    """Call ``hook`` on every SIGHUP from now on, and once now if one came while starting."""
    _reload[0] = hook
    if hook is not None and _reload_pending.is_set():
        _reload_pending.clear()
        hook()


def _request_stop(signum: int, _frame: object) -> None:
    _received.append(signum)
    _stop.set()


def _request_reload(_signum: int, _frame: object) -> None:
    hook = _reload[0]
    if hook is None:
        _reload_pending.set()
    else:
        hook()


def handlers() -> dict[int, Callable[[int, object], None]]:
    """The handlers by signal number, for python-daemon's ``signal_map``."""
    return {signal.SIGTERM: _request_stop, signal.SIGINT: _request_stop, signal.SIGHUP: _request_reload}

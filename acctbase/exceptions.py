"""Failures the library reports to the operator, one class per thing to fix.

Library code raises these, never the command line's ``FatalError``: the helpers are
used by services and tests as well as by ``bin/``. Every subclass of ``ReportedError``
carries a one-line message; ``acctbase.cli.run`` prints it and exits 1.
"""

from __future__ import annotations


class ReportedError(Exception):
    """A failure whose message is written for the operator, one line, no traceback."""


class PidfileError(ReportedError):
    """The pidfile cannot be taken: another copy runs, or its directory is not writable."""


class DaemonStartError(ReportedError):
    """The detached daemon exited before it recorded its PID; its log says why."""

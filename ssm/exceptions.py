"""What the messenger reports to the operator, one class per thing to fix.

Each message is one line; ``acctbase.cli.run`` prints it and exits 1.
"""

from __future__ import annotations

from acctbase.exceptions import ReportedError


class BrokerDiscoveryError(ReportedError):
    """No broker to use: the BDII cannot be queried or lists none of the wanted type."""


class CertificateError(ReportedError):
    """The host certificate cannot be used: unreadable, expired, or not matching its key."""


class SendError(ReportedError):
    """Messages stay queued: the broker could not be reached, or refused some of them."""

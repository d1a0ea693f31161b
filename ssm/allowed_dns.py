"""The allowed-signer DN file (default ``/etc/apel/dns``).

One slash-form DN per line; blank and ``#`` lines are skipped, other lines that do
not start with ``/`` are warned about and ignored. The receiver keeps the last good
list when a reload finds the file empty or unreadable (the existing SSM died), so
a half-written file from ``retrieve_dns`` cannot stop the service.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


class DNFileError(Exception):
    """The DN file is unreadable or holds no valid DN; the message is one line."""


def dn_lines(text: str) -> list[str]:
    """The entries of a DN file, stripped, in file order: blank and ``#`` lines dropped.

    Every DN file (the allowed list, and apelauth's extra and banned lists) is read
    through this, so the receiver and apelauth never disagree about what a line is.
    """
    return [line for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def parse_dns(text: str, path: str = "<dns>", warn: bool = True) -> list[str]:
    """The valid DNs of a DN file's text, in file order (duplicates kept once).

    An entry that is not a slash-form DN is skipped, with a warning unless ``warn``
    is false (apelauth counting the current file has no use for them).
    """
    dns: list[str] = []
    seen = set()
    for line in dn_lines(text):
        if not line.startswith("/"):
            if warn:
                log.warning("DN in incorrect format: %s", line)
            continue
        if line not in seen:
            seen.add(line)
            dns.append(line)
    return dns


def read_dns(path: str) -> list[str]:
    """Read and parse ``path``; DNFileError if it is unreadable or has no valid DN."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DNFileError(f"Cannot read DN file {path}: {reason}") from None
    dns = parse_dns(text, path)
    if not dns:
        raise DNFileError(f"No valid DNs found in {path}.  SSM will not start")
    return dns


class AllowedDNs:
    """The current allow-list, reloadable from its file at any time, thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._dns: frozenset[str] = frozenset(read_dns(self.path))
        self._lock = threading.Lock()
        log.info("Loaded %d valid DNs from %s", len(self._dns), self.path)

    def __contains__(self, dn: object) -> bool:
        return dn in self._dns

    def __len__(self) -> int:
        return len(self._dns)

    def reload(self) -> bool:
        """Re-read the file; on failure keep the previous list, log an error, return False."""
        with self._lock:
            try:
                dns = read_dns(self.path)
            except DNFileError as exc:
                log.error("%s; keeping the previous list of %d DNs", exc, len(self._dns))
                return False
            self._dns = frozenset(dns)
            log.info("Reloaded %d valid DNs from %s", len(self._dns), self.path)
            return True

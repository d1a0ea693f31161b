"""The allowed-DN list: which DNs are valid, how the sources merge, and safe replacement.

The file is read by the SSM receiver (``ssm.allowed_dns``): one DN per line in the OpenSSL
slash form; the receiver skips blank and ``#`` lines and compares DNs exactly. A bad
file has two failure modes, and each has a guard here:

* too few DNs: every site whose DN is missing has its accounting refused. So an empty
  list, or one that shrank by more than ``max_shrink`` of the current file, is not
  written unless forced;
* a damaged file: the receiver may read it at any moment, so the new list is written
  to a temporary file in the same directory, synced, and renamed over the old one.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from acctbase.durable import TemporaryFileError
from acctbase.durable import write_atomic as write_durably
from apel.auth.exceptions import DNFileError, UnsafeListError
from ssm.allowed_dns import dn_lines, parse_dns

log = logging.getLogger(__name__)

DEFAULT_MAX_SHRINK = 0.5
FILE_MODE = 0o644  # the receiver runs as another user and must read it


def dn_problem(dn: str) -> Optional[str]:
    """Why ``dn`` is not a valid DN for the list, or None when it is.

    The rules of retrieve_dns's verify_dn: it starts with ``/``,
    it has at least two components, and no component ends with ``", "``. Added here:
    no control characters (an embedded newline would smuggle a second line into the
    file) and no empty component (``//`` or a trailing ``/`` is never a real DN).
    """
    if not dn.startswith("/"):
        return "does not start with '/'"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in dn):
        return "contains a control character"
    parts = dn.split("/")
    if len(parts) <= 2:
        return "has fewer than two components"
    if any(part == "" for part in parts[1:]):
        return "has an empty component"
    if any(part.endswith(", ") for part in parts):
        return "has a component ending with ', '"
    return None


def read_list_file(path: Optional[str], what: str) -> list[str]:
    """The DN lines of an operator's file (``extra-dns``, ``banned-dns``), stripped.

    Blank and ``#`` lines are dropped. A file that does not exist is treated as empty
    with a warning, as retrieve_dns did, since many installations never created them.
    A file that exists but cannot be read stops the run: silently ignoring a banned
    list would let banned hosts back in.
    """
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            return dn_lines(handle.read())
    except FileNotFoundError:
        log.warning("%s file %s does not exist; using no %s DNs", what, path, what)
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise DNFileError(f"cannot read the {what} file {path}: {_reason(exc)}") from None


def count_current(path: str) -> Optional[int]:
    """How many distinct DNs the receiver finds in the current file; None if there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DNFileError(f"cannot read the current DN file {path}: {_reason(exc)}") from None
    return len(parse_dns(text, path, warn=False))


@dataclass
class DNList:
    """The merged list and how it was made, for the run's log line: ``counts`` has the DNs
    kept from each source (``GOCDB``, ``extra-dns``) and those dropped as ``banned``,
    ``invalid`` or ``duplicate``."""

    dns: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def build_list(gocdb_dns: list[str], extra_dns: list[str], banned_dns: list[str]) -> DNList:
    """GOCDB DNs then extra DNs, minus banned ones and invalid ones, without duplicates.

    Order is kept (first occurrence wins). Duplicates are dropped, unlike retrieve_dns:
    the receiver compares against a set, and a list of distinct DNs makes the shrink
    guard count hosts rather than GOCDB entries. Each invalid DN is warned about by name.
    """
    banned = set(banned_dns)
    result = DNList()
    seen: set[str] = set()
    for source, dns in (("GOCDB", gocdb_dns), ("extra-dns", extra_dns)):
        for raw in dns:
            dn = raw.strip()
            outcome = _outcome(dn, source, banned, seen)
            result.counts[outcome] += 1
            if outcome == source:
                seen.add(dn)
                result.dns.append(dn)
    return result


def _outcome(dn: str, source: str, banned: set[str], seen: set[str]) -> str:
    """``source`` if ``dn`` is kept, else why not (warned about if the DN is invalid)."""
    if dn in banned:
        log.info("Banned DN from %s removed: %s", source, dn)
        return "banned"
    problem = dn_problem(dn)
    if problem is not None:
        log.warning("Invalid DN from %s skipped (%s): %r", source, problem, dn)
        return "invalid"
    return "duplicate" if dn in seen else source


def check_safe(new_count: int, current_count: Optional[int], max_shrink: float) -> None:
    """Refuse (UnsafeListError) an empty list, or one that lost more than ``max_shrink``.

    ``current_count`` is the number of DNs in the file now (None: no file, so only the
    empty check applies). ``max_shrink`` is a fraction: 0.5 refuses losing over half.
    """
    if new_count == 0:
        raise UnsafeListError("refusing to write an empty DN list (use --force to override)")
    if current_count:
        lost = (current_count - new_count) / current_count
        if lost > max_shrink:
            raise UnsafeListError(
                f"refusing to shrink the DN list from {current_count} to {new_count} DNs "
                f"({lost:.0%} fewer, max_shrink = {max_shrink:g}); use --force to override"
            )


def write_atomic(path: str, dns: list[str]) -> None:
    """Replace ``path`` with one DN per line, so that a reader sees the old or the new file."""
    content = "".join(f"{dn}\n" for dn in dns).encode("utf-8")
    try:
        write_durably(path, content, FILE_MODE)
    except TemporaryFileError as exc:
        raise DNFileError(f"cannot create a temporary file in {exc.filename}: {_reason(exc)}") from None
    except OSError as exc:
        raise DNFileError(f"cannot write the DN file {path}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)

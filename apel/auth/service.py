"""One ``apelauth`` run: fetch, merge, guard, write, or keep the current file and say why.

Decision table (retrieve_dns's, except that it never writes a list without the GOCDB
DNs unasked, and a missing DN file is not a crash):

* fetch complete, list passes the guards: the file is replaced;
* fetch complete, list empty or shrunk by more than ``max_shrink``: the file is kept
  and the run fails, unless ``--force``;
* fetch failed and the file is younger than ``expire_hours``: the file is kept and
  the run fails, even with ``--force`` (the current list is still trusted);
* fetch failed otherwise (file older, ``expire_hours = 0``, or no file at all): the
  file is kept and the run fails. retrieve_dns went on here and wrote a list without
  the missing GOCDB DNs; only ``--force`` does that now, with the pages that did
  arrive plus ``extra-dns``.

Every run that does not replace the file raises an ``AuthError`` with one line.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

from apel.auth.dnlist import DEFAULT_MAX_SHRINK, build_list, check_safe, count_current, read_list_file
from apel.auth.dnlist import write_atomic as write_dn_file
from apel.auth.exceptions import DNFileError, FetchError, UnsafeListError
from apel.auth.gocdb import (
    DEFAULT_DEADLINE,
    DEFAULT_GOCDB_URL,
    DEFAULT_MAX_PAGE_BYTES,
    DEFAULT_MAX_PAGES,
    DEFAULT_TIMEOUT,
    fetch_within,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthSettings:
    """The ``[auth]`` options of auth.cfg, already checked and with paths expanded."""

    allowed_dns: str
    gocdb_url: str = DEFAULT_GOCDB_URL
    extra_dns: Optional[str] = None
    banned_dns: Optional[str] = None
    proxy: Optional[str] = None
    expire_hours: float = 0.0
    max_shrink: float = DEFAULT_MAX_SHRINK
    timeout: float = DEFAULT_TIMEOUT
    max_pages: int = DEFAULT_MAX_PAGES
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    deadline: float = DEFAULT_DEADLINE


@dataclass(frozen=True)
class RunReport:
    """What a successful run wrote, for callers and tests."""

    path: str
    written: int
    previous: Optional[int]
    pages: int
    fetch_complete: bool
    forced: bool


def refresh_dn_file(settings: AuthSettings, force: bool = False, now: Optional[float] = None) -> RunReport:
    """Rebuild ``settings.allowed_dns`` from GOCDB; AuthError (file untouched) when it must not be."""
    path = settings.allowed_dns
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise DNFileError(f"the directory of allowed-dns {path} does not exist")
    # Operator files first: a broken banned-dns file must stop the run before anything else.
    extra = read_list_file(settings.extra_dns, "extra-dns")
    banned = read_list_file(settings.banned_dns, "banned-dns")

    fetch_complete = True
    try:
        fetched = fetch_within(
            settings.deadline,
            settings.gocdb_url,
            proxy=settings.proxy,
            timeout=settings.timeout,
            max_pages=settings.max_pages,
            max_page_bytes=settings.max_page_bytes,
        )
    except FetchError as exc:
        _after_failed_fetch(settings, exc, force, time.time() if now is None else now)
        fetch_complete = False
        gocdb_dns, pages = exc.partial, exc.pages
    else:
        gocdb_dns, pages = fetched.dns, fetched.pages
        log.info(
            "Fetched %d DNs from GOCDB over %d page(s)%s: %d endpoints, %d of them without HOSTDN",
            len(gocdb_dns), pages, " through the proxy" if fetched.via_proxy else "",
            fetched.endpoints, fetched.endpoints_without_dn,
        )

    merged = build_list(gocdb_dns, extra, banned)
    log.info(
        "DN list: %d from GOCDB, +%d from extra-dns, -%d banned, %d invalid skipped, %d duplicates dropped",
        *(merged.counts[key] for key in ("GOCDB", "extra-dns", "banned", "invalid", "duplicate")),
    )

    try:
        previous = count_current(path)
    except DNFileError as exc:
        if not force:
            raise DNFileError(f"{exc}; cannot check the new list against it (use --force)") from None
        log.warning("--force: %s; replacing it unchecked", exc)
        previous = None
    try:
        check_safe(len(merged.dns), previous, settings.max_shrink)
    except UnsafeListError as exc:
        if not force:
            raise UnsafeListError(f"{exc}; keeping {path}") from None
        log.warning("--force given, writing anyway: %s", exc)

    write_dn_file(path, merged.dns)
    log.info(
        "Wrote %d DNs to %s (previously %s)",
        len(merged.dns), path, "no file" if previous is None else f"{previous} DNs",
    )
    return RunReport(
        path=path, written=len(merged.dns), previous=previous, pages=pages,
        fetch_complete=fetch_complete, forced=force,
    )


def _after_failed_fetch(settings: AuthSettings, exc: FetchError, force: bool, now: float) -> None:
    """Raise the run's one-line failure, unless ``force`` may use what arrived (see module doc)."""
    path = settings.allowed_dns
    try:
        age_hours: Optional[float] = max(0.0, (now - os.stat(path).st_mtime) / 3600)
    except FileNotFoundError:
        age_hours = None
    except OSError as err:
        raise DNFileError(f"{exc}; and cannot examine {path}: {err.strerror}") from None
    if age_hours is None:
        if not force:
            raise FetchError(f"{exc}; {path} does not exist and no DN list was written") from None
    elif settings.expire_hours > 0 and age_hours < settings.expire_hours:
        raise FetchError(
            f"{exc}; keeping {path} (updated {age_hours:.1f} h ago, within expire_hours = "
            f"{settings.expire_hours:g})"
        ) from None
    elif not force:
        if settings.expire_hours > 0:
            kept = (
                f"keeping {path} although it is {age_hours:.1f} h old, "
                f"past expire_hours = {settings.expire_hours:g}"
            )
        else:
            kept = f"keeping {path}"
        raise FetchError(f"{exc}; {kept}; --force writes the DNs read so far plus extra-dns") from None
    log.error("GOCDB fetch failed: %s", exc)
    log.warning(
        "--force after a failed fetch: using the %d DNs of %d complete page(s) plus extra-dns",
        len(exc.partial), exc.pages,
    )

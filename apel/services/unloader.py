"""The unloader service: rows of one database view → messages in ``<dir_location>/outgoing``.

One run per invocation (cron):

1. check the settings against the view before touching anything
   (:mod:`apel.services.unloader_settings`);
2. select the rows (:mod:`apel.services.unloader_sql`: parameterised SQL, view and
   column names only from the fixed allow-list of views), streaming them
   ``records_per_message`` at a time;
3. render each batch with :mod:`apel.records` (APEL text, or CAR/StAR XML with
   ``send_ur``) and add it to the dirq ``QueueSimple`` (files 0600, directories 0700);
4. fsync what was written, and only then (``latest`` mode, ordinary views) advance
   ``LastUpdated['sent']``.

Crash safety: if the run dies before step 4, ``LastUpdated`` keeps its old value
and the next run sends the same rows again. Duplicates are harmless: the receiving
server replaces records by primary key. The watermark stored in step 4 is the
database's clock when the selection started (not when the run ended, as the
existing unloader did), so rows loaded while the messages were being written are
sent by the next run instead of being skipped. UpdateTime has one-second
resolution: a loader transaction that commits after the selection started but
stamped its rows in that same second (or earlier) is not seen by either run.
Re-running ``interval = all`` or a ``gap`` for the period repairs that.

Differences from the existing unloader: filters are applied
to the column the view really has (``Infrastructure`` in the normalised views) or
refused at start; ``gap`` works in dict mode and also for summaries and sync
records (by month); a null MachineName no longer breaks CAR output; an unknown
``interval`` is a configuration error rather than a silent no-op.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from dirq.QueueSimple import QueueSimple

from acctbase.durable import sync_new
from apel.db.backend import Backend
from apel.db.dialect import dialect_of
from apel.records import FIELDS, STORAGE, Record, render_car, render_message, render_star
from apel.records.fields import DATETIME, FLOAT, INT
from apel.services.unloader_settings import (
    ALL,
    GAP,
    INTERVALS,
    LATEST,
    VIEWS,
    InvalidSettings,
    UnloaderSettings,
    View,
    check_settings,
    records_per_message,
)
from apel.services.unloader_sql import SQL_TIME, Selection, build_selection
from ssm.dirqueue import QUEUE_UMASK

log = logging.getLogger("apel.unloader")

SENT = "sent"  # the LastUpdated type of the "latest" watermark


def _converter(kind: str) -> Optional[Callable[[Any], Any]]:
    """Database values → the record model's types (float for 3-decimal columns, int for
    SUM() results that come back as Decimal, datetime for SQLite text)."""
    if kind == FLOAT:
        return float
    if kind == INT:
        return lambda value: value if value.__class__ is int else int(value)
    if kind == DATETIME:
        return lambda value: dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return None


def _row_reader(view: View) -> Callable[[Sequence[Any]], Record]:
    kinds = {f.name: f.kind for f in FIELDS[view.record_type]}
    columns = view.columns
    converters = [(index, conv) for index, name in enumerate(columns)
                  if (conv := _converter(kinds.get(name, INT)))]  # extra columns: months

    def read(row: Sequence[Any]) -> Record:
        values = list(row)
        for index, convert in converters:
            value = values[index]
            if value is not None:
                values[index] = convert(value)
        return dict(zip(columns, values))

    return read


def _month_of(view: View) -> Callable[[Record], str]:
    if len(view.month_from) == 1:
        name = view.month_from[0]
        return lambda record: f"{record[name]:%Y-%m}"
    year, month = view.month_from
    return lambda record: f"{record[year]:04d}-{record[month]:02d}"


def stream(backend: Backend, sql: str, params: Sequence[Any], batch: int) -> Iterator[list[tuple]]:
    """Rows in lists of at most ``batch``, through the backend's streaming read (a
    server-side cursor on MySQL), so a large view never sits in memory at once."""
    yield from backend.iter_query(sql, params, batch)


@dataclass
class UnloadResult:
    """What one run sent (or, with dry_run, would send)."""

    view: str
    records: int = 0
    messages: int = 0
    names: list[str] = field(default_factory=list)  # queue element names written
    per_site_month: Counter = field(default_factory=Counter)  # (site, "YYYY-MM") -> records
    watermark: Optional[dt.datetime] = None  # the LastUpdated['sent'] stored, if any


class Unloader:
    """One run of the unloader over one view (``settings.table_name``)."""

    def __init__(self, settings: UnloaderSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.dialect = dialect_of(backend)
        self.view = check_settings(settings)
        if not self.view.filtered and (settings.include_vos or settings.exclude_vos):
            log.warning("include_vos and exclude_vos do not apply to %s: all its rows are eligible",
                        self.view.name)

    # -- database helpers ---------------------------------------------------------------

    def database_now(self) -> dt.datetime:
        """The database's current UTC time (the clock that wrote UpdateTime)."""
        rows = self.backend.query("SELECT CURRENT_TIMESTAMP")
        return _naive_utc(rows[0][0])

    def last_sent(self) -> Optional[dt.datetime]:
        """LastUpdated['sent'], or None if nothing was ever sent in latest mode."""
        rows = self.backend.query(
            f"SELECT UpdateTime FROM LastUpdated WHERE Type = {self.dialect.placeholder}", [SENT])  # noqa: S608
        return _naive_utc(rows[0][0]) if rows else None

    def set_last_sent(self, when: dt.datetime) -> None:
        mark = self.dialect.placeholder
        with self.backend.transaction() as tx:
            tx.execute(f"DELETE FROM LastUpdated WHERE Type = {mark}", [SENT])  # noqa: S608
            tx.execute(f"INSERT INTO LastUpdated (Type, UpdateTime) VALUES ({mark}, {mark})",  # noqa: S608
                       [SENT, when.strftime(SQL_TIME)])

    def _group_attributes(self, selection: Selection) -> list[Record]:
        """StAR: the group attributes of every selected storage record, read before the
        record stream starts (a MySQL server-side cursor allows no second query meanwhile)."""
        sql = ("SELECT StarRecordID, AttributeType, AttributeValue FROM GroupAttributes "  # noqa: S608
               f"WHERE StarRecordID IN (SELECT RecordId FROM ({selection.sql}) AS selected)")
        return [{"StarRecordID": r[0], "AttributeType": r[1], "AttributeValue": r[2]}
                for r in self.backend.query(sql, selection.params)]

    # -- the run ------------------------------------------------------------------------

    def run(self, dry_run: bool = False) -> UnloadResult:
        """Select, render and queue every message; then advance LastUpdated if due.

        With ``dry_run`` nothing is written (no queue directory, no LastUpdated): the
        result only counts what would have been sent.
        """
        settings, view = self.settings, self.view
        started = time.monotonic()
        now = self.database_now()
        tracks_latest = settings.interval == LATEST and not view.super_summary
        last = self.last_sent() if tracks_latest else None
        selection = build_selection(view, settings, self.dialect, last, now)
        log.info("Unloading %s (interval %s%s)", view.name, settings.interval,
                 f": {selection.describe}" if selection.describe else "")
        log.debug("Selection: %s %s", selection.sql, selection.params)

        result = UnloadResult(view.name)
        render = self._renderer(selection)
        queue = None if dry_run else _open_queue(settings.outgoing)
        read = _row_reader(view)
        month_of = _month_of(view)
        site = view.site_column
        written: list[str] = []
        for rows in stream(self.backend, selection.sql, selection.params, settings.records_per_message):
            records = [read(row) for row in rows]
            result.records += len(records)
            result.messages += 1
            if dry_run:
                result.per_site_month.update((record[site], month_of(record)) for record in records)
                continue
            assert queue is not None
            name = queue.add(render(records))
            written.append(name)
        if written:
            assert queue is not None
            # durable before LastUpdated says they were sent
            sync_new([os.path.join(queue.path, name) for name in written], queue.path)
        result.names = written
        if dry_run:
            log.info("Dry run: %d records in %d messages from %s would go to %s", result.records,
                     result.messages, view.name, settings.outgoing)
            return result
        log.info("%d records in %d messages from %s to %s in %.2f s", result.records, result.messages,
                 view.name, settings.outgoing, time.monotonic() - started)
        if tracks_latest:
            result.watermark = now
            self.set_last_sent(result.watermark)
            log.info("LastUpdated[%s] set to %s", SENT, f"{result.watermark:%Y-%m-%d %H:%M:%S}")
        return result

    def _renderer(self, selection: Selection) -> Callable[[list[Record]], str]:
        settings, kind = self.settings, self.view.record_type
        if kind == STORAGE:
            by_key: dict[str, list[Record]] = {}
            for attribute in self._group_attributes(selection):
                by_key.setdefault(_key(attribute["StarRecordID"]), []).append(attribute)

            def star(records: list[Record]) -> str:
                attributes = [dict(a, StarRecordID=r["RecordId"]) for r in records
                              for a in by_key.get(_key(r["RecordId"]), ())]
                return render_star(records, attributes)

            return star
        if settings.send_ur:
            def car(records: list[Record]) -> str:
                if settings.withhold_dns:
                    for record in records:
                        record["GlobalUserName"] = "withheld"
                return render_car(records)

            return car
        return lambda records: render_message(
            kind, records, dict_benchmark=settings.dict_benchmark_type,
            include_infrastructure_description=settings.include_infrastructure_description,
            withhold_dns=settings.withhold_dns, decimal_cpu_count=settings.decimal_cpu_count)


def _key(name: Any) -> str:
    """How the schema compares names: case-insensitively, ignoring trailing spaces."""
    return str(name).rstrip(" ").lower()


def _naive_utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=0)


def _open_queue(path: str) -> QueueSimple:
    """The outgoing dirq QueueSimple, created private to the service account."""
    return QueueSimple(path, umask=QUEUE_UMASK)


def dry_run_report(result: UnloadResult, settings: UnloaderSettings) -> str:
    """The --dry-run table: records per site and month, then the totals."""
    lines = [f"Dry run: {result.view}, interval {settings.interval}: {result.records} records in "
             f"{result.messages} messages would be written to {settings.outgoing}"]
    if result.per_site_month:
        width = max(len("Site"), *(len(str(site)) for site, _ in result.per_site_month))
        lines.append(f"{'Site':<{width}}  Month    Records")
        for (site, month), count in sorted(result.per_site_month.items()):
            lines.append(f"{site!s:<{width}}  {month}  {count:>7}")
    return "\n".join(lines) + "\n"


__all__ = [
    "ALL", "GAP", "INTERVALS", "LATEST", "VIEWS", "InvalidSettings", "UnloadResult", "Unloader",
    "UnloaderSettings", "View", "build_selection", "check_settings", "dry_run_report", "records_per_message",
]

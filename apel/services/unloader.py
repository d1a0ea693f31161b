"""The unloader service: rows of one database view → messages in ``<dir_location>/outgoing``.

One run per invocation (cron), ``database.md`` §9 and ``messages.md`` §7:

1. check the settings against the view before touching anything (unknown view,
   impossible option combinations and filters the view cannot apply are refused
   with one clear line, so cron mails the operator instead of sending garbage);
2. select the rows (parameterised SQL; view and column names only from the fixed
   allow-list :data:`VIEWS`), streaming them ``records_per_message`` at a time;
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

Differences from the existing unloader (``server.md`` §11 f): filters are applied
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

from apel.db.backend import Backend
from apel.db.dialect import Dialect, dialect_of
from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    FIELDS,
    JOB,
    NORMALISED_SUMMARY,
    STORAGE,
    SUMMARY,
    SYNC,
    Record,
    render_car,
    render_message,
    render_star,
)
from apel.records.fields import DATETIME, FLOAT, INT
from ssm.queues import fsync_path

log = logging.getLogger("apel.unloader")

LATEST, GAP, ALL = "latest", "gap", "all"
INTERVALS = (LATEST, GAP, ALL)
SENT = "sent"  # the LastUpdated type of the "latest" watermark
DEFAULT_RECORDS_PER_MESSAGE = 1000
MIN_RECORDS_PER_MESSAGE, MAX_RECORDS_PER_MESSAGE = 1, 5000
QUEUE_UMASK = 0o077
GRID = "grid"
_SQL_TIME = "%Y-%m-%d %H:%M:%S"

# How rows of a view are picked in gap mode.
GAP_BY_END_TIME = "EndTime"  # EndTime > gap_start 00:00 AND EndTime <= gap_end + 1 day 00:00
GAP_BY_MONTH = "month"  # (Year, Month) from gap_start's month to gap_end's month


class InvalidSettings(Exception):
    """The unloader settings cannot work with this view; the message is one line to act on."""


@dataclass(frozen=True)
class View:
    """What the unloader may do with one view: the allow-list its SQL is built from."""

    name: str
    record_type: str
    # VO and local_jobs filters apply to job, summary and sync views only (database.md §9.2).
    filtered: bool = False
    vo_column: Optional[str] = None  # None: the view cannot filter by VO
    infrastructure_column: Optional[str] = None  # None: the view cannot tell grid from local
    gap: Optional[str] = None  # GAP_BY_END_TIME, GAP_BY_MONTH or None (no gap mode)
    super_summary: bool = False  # latest mode = the two-month EarliestEndTime window
    site_column: str = "Site"
    # Where --dry-run takes a row's month from: a datetime column, or (year, month) columns.
    month_from: tuple[str, ...] = ("Year", "Month")

    @property
    def columns(self) -> tuple[str, ...]:
        """The record's fields (message order), then any column only --dry-run needs."""
        names = [f.name for f in FIELDS[self.record_type]]
        names += [c for c in self.month_from if c not in names]
        return tuple(names)


VIEWS: dict[str, View] = {view.name: view for view in (
    View("VJobRecords", JOB, True, "VO", "InfrastructureType", GAP_BY_END_TIME, month_from=("EndTime",)),
    View("VSummaries", SUMMARY, True, "VO", "InfrastructureType", GAP_BY_MONTH),
    View("VSuperSummaries", SUMMARY, True, "VO", "InfrastructureType", GAP_BY_MONTH, super_summary=True),
    View("VNormalisedSummaries", NORMALISED_SUMMARY, True, "VO", "Infrastructure", GAP_BY_MONTH),
    View("VNormalisedSuperSummaries", NORMALISED_SUMMARY, True, "VO", "Infrastructure", GAP_BY_MONTH,
         super_summary=True),
    View("VSyncRecords", SYNC, True, None, None, GAP_BY_MONTH),
    View("VCloudRecords", CLOUD, site_column="SiteName", month_from=("MeasurementYear", "MeasurementMonth")),
    View("VCloudSummaries", CLOUD_SUMMARY, gap=GAP_BY_MONTH, site_column="SiteName"),
    View("VStarRecords", STORAGE, month_from=("EndTime",)),
)}
DICT_MODE_TYPES = frozenset((JOB, SUMMARY, NORMALISED_SUMMARY))
_TYPE_NAMES = {JOB: "JobRecords", SUMMARY: "SummaryRecords", NORMALISED_SUMMARY: "NormalisedSummaryRecords",
               SYNC: "SyncRecords", CLOUD: "CloudRecords", CLOUD_SUMMARY: "CloudSummaryRecords",
               STORAGE: "StorageRecords"}


@dataclass
class UnloaderSettings:
    """``[unloader]`` of unloader.cfg, already typed (see conf/unloader.cfg)."""

    dir_location: str
    table_name: str
    interval: str = LATEST
    gap_start: Optional[dt.date] = None
    gap_end: Optional[dt.date] = None
    records_per_message: int = DEFAULT_RECORDS_PER_MESSAGE
    withhold_dns: bool = False
    include_vos: list[str] = field(default_factory=list)
    exclude_vos: list[str] = field(default_factory=list)
    local_jobs: bool = False
    dict_benchmark_type: bool = False
    include_infrastructure_description: bool = False
    send_ur: bool = False
    decimal_cpu_count: bool = False

    @property
    def outgoing(self) -> str:
        return os.path.join(self.dir_location, "outgoing")


def records_per_message(raw: Optional[str]) -> int:
    """The configured value clamped to [1, 5000]; missing or not an integer → 1000.

    The existing unloader's rule (database.md §9.4), kept so that old configs behave
    the same; anything changed is logged, because it is probably not what was meant.
    """
    if raw is None or raw.strip() == "":
        return DEFAULT_RECORDS_PER_MESSAGE
    try:
        value = int(raw.strip())
    except ValueError:
        log.warning("records_per_message %r is not an integer: using %d", raw, DEFAULT_RECORDS_PER_MESSAGE)
        return DEFAULT_RECORDS_PER_MESSAGE
    clamped = min(max(value, MIN_RECORDS_PER_MESSAGE), MAX_RECORDS_PER_MESSAGE)
    if clamped != value:
        log.warning("records_per_message %d is outside %d..%d: using %d", value, MIN_RECORDS_PER_MESSAGE,
                    MAX_RECORDS_PER_MESSAGE, clamped)
    return clamped


def check_settings(settings: UnloaderSettings) -> View:
    """The view to unload, once every option is known to work with it.

    Raises InvalidSettings, before anything is read or written, for: an unknown view;
    storage without XML; XML for anything but jobs and storage; dict mode or withheld
    DNs where the message format has no room for them; VO/local-jobs filters on a view
    without the column; gap mode on a view without a time range, or with bad dates.
    """
    view = VIEWS.get(settings.table_name)
    if view is None:
        raise InvalidSettings(f"Invalid table name: {settings.table_name!r} (one of {', '.join(VIEWS)})")
    kind = view.record_type
    if settings.dict_benchmark_type and kind not in DICT_MODE_TYPES:
        raise InvalidSettings(f"dict_benchmark_type is only for job and summary views, not {view.name}")
    if kind == STORAGE:
        if not settings.send_ur:
            raise InvalidSettings("Cannot unload StorageRecords in APEL format (set send_ur = true for StAR)")
        if settings.withhold_dns:
            raise InvalidSettings("Cannot withhold DNs for StorageRecord")
    elif settings.send_ur and kind != JOB:
        raise InvalidSettings(f"send_ur (CAR/StAR XML) is only for VJobRecords and VStarRecords, "
                              f"not {view.name}")
    else:
        try:  # the renderer is the authority on what each format can express
            render_message(kind, [], dict_benchmark=settings.dict_benchmark_type,
                           withhold_dns=settings.withhold_dns)
        except ValueError as exc:
            raise InvalidSettings(str(exc)) from None
    if view.filtered:
        if (settings.include_vos or settings.exclude_vos) and view.vo_column is None:
            raise InvalidSettings(f"{view.name} has no VO column: remove include_vos/exclude_vos")
        if not settings.local_jobs and view.infrastructure_column is None:
            raise InvalidSettings(f"{view.name} cannot tell grid from local jobs: set local_jobs = true")
    if settings.interval not in INTERVALS:
        raise InvalidSettings(f"interval {settings.interval!r} is not one of {', '.join(INTERVALS)}")
    if settings.interval == GAP:
        if view.gap is None:
            raise InvalidSettings(f"Can only gap publish for job records, summaries and sync records, "
                                  f"not {view.name}")
        if settings.gap_start is None or settings.gap_end is None:
            raise InvalidSettings("interval = gap needs gap_start and gap_end (YYYY-MM-DD)")
        if settings.gap_start > settings.gap_end:
            raise InvalidSettings(f"gap_start {settings.gap_start} is after gap_end {settings.gap_end}")
    return view


def first_of_previous_month(now: dt.datetime) -> dt.datetime:
    """00:00 on the first day of the month before ``now``'s: the super summaries' window."""
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return dt.datetime(year, month, 1)


@dataclass
class Selection:
    """One parameterised SELECT over a view, plus what the log line says about it."""

    sql: str
    params: list[Any]
    describe: str


def build_selection(view: View, settings: UnloaderSettings, dialect: Dialect,
                    last_sent: Optional[dt.datetime], now: dt.datetime) -> Selection:
    """The SELECT for this run in the backend's ``dialect``: values only as parameters,
    names only from ``view``.

    ``last_sent`` is LastUpdated['sent'] (None: never sent), ``now`` the database's
    current UTC time; both naive UTC.
    """
    placeholder = dialect.placeholder
    quote = _quoter(dialect)
    conditions: list[str] = []
    params: list[Any] = []
    notes: list[str] = []

    def marks(count: int) -> str:
        return ", ".join([placeholder] * count)

    if view.filtered:
        if settings.include_vos:  # include wins over exclude
            conditions.append(f"{quote(view.vo_column)} IN ({marks(len(settings.include_vos))})")
            params += settings.include_vos
        elif settings.exclude_vos:
            conditions.append(f"{quote(view.vo_column)} NOT IN ({marks(len(settings.exclude_vos))})")
            params += settings.exclude_vos
        if not settings.local_jobs:
            conditions.append(f"{quote(view.infrastructure_column)} = {placeholder}")
            params.append(GRID)
    if settings.interval == LATEST:
        if view.super_summary:
            since = first_of_previous_month(now)
            conditions.append(f"EarliestEndTime >= {placeholder}")
            params.append(since.strftime(_SQL_TIME))
            notes.append(f"EarliestEndTime since {since:%Y-%m-%d}")
        elif last_sent is not None:
            conditions.append(f"UpdateTime > {placeholder}")
            params.append(last_sent.strftime(_SQL_TIME))
            notes.append(f"updated after {last_sent:%Y-%m-%d %H:%M:%S}")
        else:
            notes.append("never sent before: everything")
    elif settings.interval == GAP:
        assert settings.gap_start is not None and settings.gap_end is not None
        if view.gap == GAP_BY_END_TIME:
            conditions.append(f"EndTime > {placeholder} AND EndTime <= {placeholder}")
            params += [f"{settings.gap_start:%Y-%m-%d} 00:00:00",
                       f"{settings.gap_end + dt.timedelta(days=1):%Y-%m-%d} 00:00:00"]
        else:
            conditions.append(f"Year * 12 + Month BETWEEN {placeholder} AND {placeholder}")
            params += [settings.gap_start.year * 12 + settings.gap_start.month,
                       settings.gap_end.year * 12 + settings.gap_end.month]
        notes.append(f"gap {settings.gap_start}..{settings.gap_end}")
    columns = ", ".join(quote(name) for name in view.columns)
    # Names come from VIEWS (a fixed allow-list), never from the configuration.
    sql = f"SELECT {columns} FROM {view.name}"  # noqa: S608
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return Selection(sql, params, "; ".join(notes))


def _quoter(dialect: Dialect) -> Callable[[Optional[str]], str]:
    """Column names quoted as the dialect quotes them (VStarRecords has a column named Group)."""
    def quote(name: Optional[str]) -> str:
        assert name is not None
        return dialect.quote(name)

    return quote


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
                       [SENT, when.strftime(_SQL_TIME)])

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
            _fsync_elements(queue.path, written)
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


def _fsync_elements(queue_path: str, names: list[str]) -> None:
    """Make the written messages durable before LastUpdated says they were sent."""
    directories = {queue_path}
    for name in names:
        path = os.path.join(queue_path, name)
        fsync_path(path)
        directories.add(os.path.dirname(path))
    for directory in sorted(directories, reverse=True):  # element directories, then the queue
        fsync_path(directory)


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

"""The summariser service: HybridSuperSummaries from jobs and summaries, CloudSummaries
from cloud records, incremental by default.

**What is computed** is the old summariser's result, with every column defined:

- ``cpu``: JobRecords grouped by the HSS key, then every Summaries row normalised,
  then every NormalisedSummaries row copied; each *replaces* the HSS row with its key,
  so on a collision normalised summaries win over summaries, which win over jobs;
- ``cloud``: per VM the last received record of each month, Wall/Cpu/Network as deltas
  from the VM's previous record, Memory/Disk summed, grouped per site, month and
  attributes; then, if configured, the clean-up of stale cloud summaries.

**Nothing is ever deleted from HSS** (compatibility): a row whose key no longer
occurs (e.g. every job of a group republished with another ServiceLevel) stays as it
was, in full and incremental runs alike. Likewise CloudSummaries, apart from the
optional stale clean-up.

**Incremental runs.** The loader records, in each message's own transaction, the HSS
keys its job/summary rows feed, including the key of a job row it replaces
(``PendingSummaryKeys``), and the site-months of its cloud records plus those of the
stored records of the same VMs (``PendingCloudMonths``); see ``apel.db.pending``. A
``cloud`` run recomputes exactly those site-months. A ``cpu`` run works through the
pending entries a few site-months per transaction (all entries of a site-month in one,
so a key's entries are never split), each transaction applying every source in
precedence order:

- a key with a *recompute entry* is recomputed from all its current source rows, which
  writes exactly what a full run writes for it (HSS is replace-only);
- a key with only *delta entries* (backends whose dialect has ``job_deltas``, such as
  MySQL: jobs added by a message that replaced nothing) gets them added to its HSS row
  with one upsert (``INSERT ... SELECT ... GROUP BY ... ON DUPLICATE KEY UPDATE`` on
  MySQL: sums and counts added, earliest/latest and the binary-smallest
  spellings kept, the normalised durations recomputed from the new sums), without
  reading any of the key's other jobs: the cost is proportional to what was loaded, not
  to the size of the touched groups. This is exact because the HSS row of such a key
  equals the aggregate of its jobs before the load, unless a summary or normalised
  summary feeds the row (they win) or the row is *stale* (its jobs all moved away, and
  HSS is never deleted from); those keys are recomputed instead. ``StaleSummaryKeys``
  lists the HSS keys without any source row, kept by every recomputation (incremental:
  the recomputed keys; full: every HSS row of each site-month, looked at row by row only
  where the site-month's row counts leave room for a stale one).

Each transaction first takes the ``SummariserGate`` row exclusively (where the dialect
has a gate, as MySQL's does; loaders take it in share mode) and reads its entries
inside, so it sees a fixed set of committed loads: every job a recomputation reads has
its entry among those read, and no job is both recomputed and added again later. It
deletes exactly the entries it read; entries committed later stay for the next run, and
a failed run leaves everything to be redone. Every key a full run would change is
pending, so an incremental run leaves the tables as a full run would. ``--full`` (and
the first run on a database, recognised by the missing ``LastUpdated`` row
``summariser-<type>``) recomputes every site-month, each in one gated transaction that
also clears the site-month's pending entries.

With the stale clean-up enabled, a cloud run also recomputes every site-month inside
the clean-up window: the clean-up deletes what the run did not refresh there, so the
window must be refreshed completely, as a full run does.

**Transactions.** The old summariser ran its three steps as three table-wide commits,
so for a while HSS held job rows that a summary was about to replace. Here each unit
of work (one site-month in a full run, the pending entries of a few site-months in an
incremental run) is one transaction applying jobs, then summaries, then normalised summaries:
readers never see a half-applied precedence, locks are held briefly (loaders of job and
summary messages wait for them at the gate), and a run that dies leaves every finished
unit in place. Rows loaded, changed or deleted other than through a backend's
``load_message`` (hand-made SQL, a restored dump) leave no bookkeeping: run ``--full``,
which also rebuilds ``StaleSummaryKeys`` (its site-months include those that only HSS
rows have left).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from apel.db.backend import Backend, Transaction
from apel.db.dialect import dialect_of
from apel.services import summary_sql as sql

log = logging.getLogger("apel.summariser")

CPU = "cpu"
CLOUD = "cloud"
TYPES = (CPU, CLOUD)
MARKER = "summariser-{}"  # LastUpdated.Type written after every successful run
# Pending entries read and applied per transaction in an incremental run, in whole
# site-months (bounds memory and transaction size, hence how long loaders wait at the
# gate; a site-month with more entries is one transaction, as in a full run).
KEYS_PER_TRANSACTION = 5000
# Site-months per transaction in a full run.
SITE_MONTHS_PER_TRANSACTION = 1
# Site-months whose pending entries one statement reads, at most (incremental run).
SITE_MONTHS_PER_READ = 500
_DELETE_CHUNK = 1000


@dataclass
class SummariserSettings:
    """``[summariser]`` of summariser.cfg and ``[db] type`` of db.cfg, validated."""

    kind: str = CPU
    full: bool = False
    # Set: delete stale cloud summaries older than this window. None: no clean-up.
    stale_window_days: Optional[int] = None
    progress_interval: float = 30.0  # seconds between progress lines in long runs


@dataclass
class RunReport:
    """What one run did, for the log and the tests."""

    kind: str
    mode: str  # "full" or "incremental"
    site_months: int = 0
    keys: int = 0  # HSS keys recomputed or added to (incremental runs)
    delta_keys: int = 0  # of which added to from job deltas, without recomputing
    rows: int = 0  # rows affected, as the database counts them
    stale_deleted: int = 0
    pending_cleared: int = 0
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)


def month_before(when: dt.datetime, days: int) -> tuple[int, int]:
    """(year, month) of the month containing ``when`` − ``days`` days."""
    earlier = when - dt.timedelta(days=days)
    return earlier.year, earlier.month


def _batches(site_months: Sequence[tuple], entries: int) -> Iterable[Sequence[tuple]]:
    """(SiteID, Year, Month, pending entries) in consecutive groups of about ``entries``
    entries (and at most SITE_MONTHS_PER_READ site-months, each a condition of the
    statement that reads them); a site-month with more entries is a group of its own."""
    batch: list[tuple] = []
    held = 0
    for site_month in site_months:
        if batch and (held + site_month[3] > entries or len(batch) == SITE_MONTHS_PER_READ):
            yield batch
            batch, held = [], 0
        batch.append(site_month)
        held += site_month[3]
    if batch:
        yield batch


def _chunks(items: Sequence[Any], size: int = _DELETE_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Summariser:
    """One summariser run over one connected backend."""

    def __init__(
        self, backend: Backend, settings: SummariserSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if settings.kind not in TYPES:
            raise ValueError(f"unknown summariser type {settings.kind!r} (known: {', '.join(TYPES)})")
        self.backend = backend
        self.settings = settings
        self._clock = clock
        self.dialect = dialect_of(backend)
        self._mark = self.dialect.placeholder

    # -- entry point ----------------------------------------------------------------------

    def run(self) -> RunReport:
        """Summarise; every failure propagates (StorageError/DatabaseUnavailable) after
        the current transaction was rolled back."""
        started = self._clock()
        kind = self.settings.kind
        baseline = self._has_marker()
        mode = "full" if self.settings.full or not baseline else "incremental"
        report = RunReport(kind=kind, mode=mode)
        if mode == "full" and not self.settings.full:
            report.notes.append("no earlier run recorded in this database")
        log.info("Summarising %s records (%s%s)", kind, mode,
                 f", {report.notes[0]}" if report.notes else "")
        if kind == CPU:
            self._run_cpu(report, started)
        else:
            self._run_cloud(report, started)
        report.elapsed = self._clock() - started
        log.info(
            "Summarised %s (%s): %d site-months, %d keys (%d from job deltas), %d rows affected,"
            " %d stale deleted, %d pending entries cleared, %.3f s",
            kind, mode, report.site_months, report.keys, report.delta_keys, report.rows,
            report.stale_deleted, report.pending_cleared, report.elapsed,
        )
        return report

    # -- cpu --------------------------------------------------------------------------------

    def _run_cpu(self, report: RunReport, started: float) -> None:
        statements = sql.cpu_statements(self.dialect)
        gated = self.dialect.gate_exclusive is not None
        if gated and not self.backend.query("SELECT id FROM SummariserGate"):
            # the gate's one row (a schema loaded by hand may lack it): without it the
            # locks below would be gap locks, which do not exclude each other
            self.backend.query(self.dialect.insert_ignore("SummariserGate", ("id",), "VALUES (1)"))
        if report.mode == "full":
            self._run_cpu_full(report, started, statements)
        else:
            self._run_cpu_incremental(report, started, statements)
        self._finish(report, None, [])

    def _run_cpu_full(self, report: RunReport, started: float, statements: sql.CpuStatements) -> None:
        site_months = sorted(set(self.backend.query(statements.site_months)))
        steps = (statements.jobs_site_month, statements.summaries_site_month,
                 statements.normalised_site_month)

        def work(tx: Transaction, batch: Sequence[tuple]) -> int:
            self._gate(tx)
            rows = 0
            for site_month in batch:
                params = list(site_month)
                ((before,),) = tx.query(statements.hss_count_site_month, params)
                changed = tx.execute(steps[0], params)
                ((after,),) = tx.query(statements.hss_count_site_month, params)
                summarised = sum(tx.execute(step, params) for step in steps[1:])
                rows += changed + summarised
                tx.execute(statements.unmark_stale_site_month, params)
                # Stale rows are HSS rows of the site-month without a source. Checking
                # each row costs an index lookup per row; where the site-month has no
                # summaries and every HSS row is one of the job groups just written,
                # there is none to look for.
                if summarised or after > self._job_groups(after - before, changed):
                    tx.execute(statements.mark_stale_site_month, params)
                # every entry of the site-month is covered: under the gate, no load
                # commits between the recomputation and this delete
                report.pending_cleared += tx.execute(statements.delete_pending_site_month, params)
            return rows

        self._in_batches(report, started, site_months, SITE_MONTHS_PER_TRANSACTION, work, "site-months")
        report.site_months = len(site_months)

    def _run_cpu_incremental(self, report: RunReport, started: float, statements: sql.CpuStatements) -> None:
        """The site-months with pending entries now, a few per transaction (bounded
        memory and transactions, at least one site-month each); entries of other
        site-months committed meanwhile are the next run's. Each transaction takes every
        entry of its site-months, read inside it behind the gate: no load commits while
        it works, so every job a recomputation reads has its entries among them, and a
        key's entries are never split between transactions."""
        pending_site_months = sorted(tuple(int(v) for v in row)
                                     for row in self.backend.query(statements.pending_site_months))
        if not pending_site_months:
            log.info("Nothing loaded since the last run")
        site_months: set[tuple] = set()
        last_note = self._clock()
        for batch in _batches(pending_site_months, KEYS_PER_TRANSACTION):
            with self.backend.transaction() as tx:
                recomputed, added = self._cpu_increment(tx, statements, batch, report)
            report.keys += sum(int(row[3]) for row in recomputed)
            report.delta_keys += sum(int(row[3]) for row in added)
            report.keys += sum(int(row[3]) for row in added)
            site_months.update(tuple(int(v) for v in row[:3]) for row in (*recomputed, *added))
            now = self._clock()
            if now - last_note >= self.settings.progress_interval:
                last_note = now
                log.info("cpu incremental: %d pending entries, %d keys, %d rows affected, %.1f s elapsed",
                         report.pending_cleared, report.keys, report.rows, now - started)
        report.site_months = len(site_months)

    def _cpu_increment(
        self, tx: Transaction, statements: sql.CpuStatements, batch: Sequence[tuple], report: RunReport
    ) -> tuple[list[tuple], list[tuple]]:
        """One transaction of an incremental run over the pending entries of ``batch``'s
        site-months; returns the (site-month, keys) rows recomputed and added to."""
        self._gate(tx)
        for statement in (*statements.create_work, *statements.clear_work):
            tx.execute(statement)
        tx.execute(statements.fill_pending_from(len(batch)),
                   [value for site_month in batch for value in site_month[:3]])
        # the keys to recompute: recompute entries, and deltas that may not be added
        tx.execute(statements.work_from_entries)
        if statements.work_from_deltas is not None:
            tx.execute(statements.work_from_deltas)
        recomputed = tx.query(statements.work_site_months)
        if recomputed:
            recompute = (statements.jobs_keys, statements.summaries_keys, statements.normalised_keys)
            report.rows += sum(tx.execute(step) for step in recompute)
            tx.execute(statements.unmark_stale_work)
            tx.execute(statements.mark_stale_work)
        added: list[tuple] = []
        if statements.apply_deltas is not None and statements.delta_site_months is not None:
            # nothing recomputed: every delta entry is added (no check against the work
            # table per entry)
            everything = not recomputed
            # the *_all statements exist whenever the per-site-month ones do
            added = tx.query(statements.delta_site_months_all if everything  # type: ignore[arg-type]
                             else statements.delta_site_months)
            if added:
                report.rows += tx.execute(statements.apply_all_deltas if everything  # type: ignore[arg-type]
                                          else statements.apply_deltas)
        # exactly the entries read above: recomputed or added
        report.pending_cleared += tx.execute(statements.delete_pending_of_chunk)
        return recomputed, added

    def _job_groups(self, inserted: int, changed: int) -> int:
        """At most the number of job groups a site-month's REPLACE wrote, from the rows it
        inserted and the changed-row count. An engine that counts a replaced row twice
        (MySQL) counts it once if it was identical (then this falls short, which only
        costs a check); others count each written row once."""
        if not self.dialect.replace_counts_twice:
            return changed
        return inserted + (changed - inserted) // 2

    def _gate(self, tx: Transaction) -> None:
        """Wait for the loads in progress and keep new ones out until this transaction
        ends (``apel.db.pending``), where the engine does not serialise writers anyway."""
        if self.dialect.gate_exclusive is not None:
            tx.execute(self.dialect.gate_exclusive)

    # -- cloud ------------------------------------------------------------------------------

    def _run_cloud(self, report: RunReport, started: float) -> None:
        statements = sql.cloud_statements(self.dialect)
        # The database's clock, as UpdateTime is set by it (the stale clean-up compares them).
        (db_start,) = self.backend.query("SELECT CURRENT_TIMESTAMP AS UpdateTime")[0]
        if isinstance(db_start, str):
            db_start = dt.datetime.fromisoformat(db_start)
        pending = self.backend.query("SELECT id, SiteID, Year, Month FROM PendingCloudMonths ORDER BY id")
        window = self.settings.stale_window_days
        threshold = month_before(db_start, window) if window is not None else None
        if report.mode == "full":
            site_months = set(self.backend.query(statements.site_months))
        else:
            site_months = {tuple(row[1:]) for row in pending}
            if threshold is not None:
                year, month = threshold
                site_months |= set(self.backend.query(statements.site_months_from, [year, year, month]))
        ordered = sorted(tuple(int(v) for v in sm) for sm in site_months)
        report.site_months = len(ordered)

        def work(tx: Transaction, batch: Sequence[tuple]) -> int:
            return sum(tx.execute(statements.summarise_site_month, list(sm)) for sm in batch)

        if ordered:
            self._in_batches(report, started, ordered, SITE_MONTHS_PER_TRANSACTION, work, "site-months")
        elif report.mode == "incremental":
            log.info("Nothing loaded since the last run")

        def clean_up(tx: Transaction) -> None:
            if threshold is None:
                return
            year, month = threshold
            report.stale_deleted = tx.execute(statements.delete_stale, [year, year, month, db_start])
            log.info("Deleted %d stale cloud summaries from %04d-%02d on (not refreshed since %s)",
                     report.stale_deleted, year, month, db_start)

        self._finish(report, "PendingCloudMonths", [row[0] for row in pending], clean_up)

    # -- shared -----------------------------------------------------------------------------

    def _in_batches(
        self, report: RunReport, started: float, items: Sequence[Any], size: int,
        work: Callable[[Transaction, Sequence[Any]], int], unit: str,
    ) -> None:
        """Run ``work`` over ``items`` in transactions of ``size``; log progress now and then."""
        last_note = self._clock()
        for start in range(0, len(items), size):
            batch = items[start:start + size]
            with self.backend.transaction() as tx:
                report.rows += work(tx, batch)
            now = self._clock()
            if now - last_note >= self.settings.progress_interval:
                last_note = now
                log.info("%s %s: %d/%d %s, %d rows affected, %.1f s elapsed", report.kind, report.mode,
                         min(start + size, len(items)), len(items), unit, report.rows, now - started)

    def _finish(
        self, report: RunReport, pending_table: Optional[str], pending_ids: Sequence[int],
        extra: Optional[Callable[[Transaction], None]] = None,
    ) -> None:
        """Last transaction: the clean-up, the bookkeeping read at the start, the marker."""
        with self.backend.transaction() as tx:
            if extra is not None:
                extra(tx)
            if pending_table is not None:
                self._delete_ids(tx, pending_table, pending_ids)
                report.pending_cleared += len(pending_ids)
            m = self._mark
            marker = MARKER.format(report.kind)
            tx.execute(f"DELETE FROM LastUpdated WHERE Type = {m}", [marker])  # noqa: S608
            tx.execute(f"INSERT INTO LastUpdated (Type) VALUES ({m})", [marker])  # noqa: S608

    def _delete_ids(self, tx: Transaction, table: str, ids: Iterable[int]) -> None:
        """Delete exactly these bookkeeping rows (never "up to an id": a loader's row with
        a lower id may commit after this run read the table)."""
        for chunk in _chunks(sorted(ids)):
            marks = ", ".join([self._mark] * len(chunk))
            tx.execute(f"DELETE FROM {table} WHERE id IN ({marks})", chunk)  # noqa: S608

    def _has_marker(self) -> bool:
        rows = self.backend.query(
            f"SELECT COUNT(*) FROM LastUpdated WHERE Type = {self._mark}",  # noqa: S608
            [MARKER.format(self.settings.kind)],
        )
        return bool(rows and rows[0][0])

"""The summariser's SQL: job, summary and cloud summarisation statements.

Why SQL and not Python: a central server summarises tens of millions of rows, and the
grouping belongs next to the data (MySQL's covering ``SummaryIdx`` answers the job step
without touching the table rows). The statements are written once; every place where
engines differ is filled in by the backend's :class:`~apel.db.dialect.Dialect`, and the
rules are the same on every engine:

- *grouping text case-insensitively, ignoring trailing spaces*, as the keys compare:
  :meth:`Dialect.group` and :meth:`Dialect.same`;
- *which spelling a merged group shows*: the binary-smallest (code point order, so
  ``HEPSPEC`` before ``hepspec``, ``Si2K`` before ``si2k``), identical on every engine
  and independent of row order (the old "first spelling" was whatever row MySQL met
  first). InfrastructureDescription and CloudType, not grouped, take the same rule;
- *normalisation*, ``round(sum × ServiceLevel / d)`` with d = 250 for si2k (any letter
  case) else 1, rounded half away from zero on the exact decimal value
  (:meth:`Dialect.normalised`).

Adding job deltas to HSS rows (:class:`CpuStatements`) is built only for a dialect that
declares ``job_deltas`` (its backend writes delta entries); there the delta entries are
grouped like the jobs, and the added row keeps the same spelling and normalisation rules.

Placeholders are the backend's own; every value is a parameter. Table and column names
are fixed text of this module, never input.
"""

# Every statement here is built from this module's fixed table and column names and the
# backend's placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from apel.db import tables
from apel.db.dialect import Dialect, Merge, MergeColumn
from apel.db.pending import DELTA_COLUMNS

# The HSS key (in the bookkeeping tables' column order) and the text columns among it.
HSS_KEY = tables.HSS_KEY
_KEY_TEXT = tables.STALE_SUMMARY_KEYS.text_columns()
# The columns the summariser writes (UpdateTime is the database's).
HSS_COLUMNS = tuple(name for name in tables.HSS.names if name != "UpdateTime")
CLOUD_SUMMARY_COLUMNS = tuple(name for name in tables.CLOUD_SUMMARY.table.names if name != "UpdateTime")
# The temporary tables of an incremental run (one connection's own): the HSS keys it
# recomputes, and the chunk of PendingSummaryKeys entries it works on.
WORK_KEYS = "SummariserWorkKeys"
WORK_PENDING = "SummariserWorkPending"
SUMMARISER_PUBLISHER = "summariser"


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(names)


# -- job summarisation --------------------------------------------------------------------


def _job_select(d: Dialect) -> str:
    """JobRecords → HSS rows, for rows ``j`` selected by the caller."""
    return (
        f"SELECT j.SiteID, j.EndMonth, j.EndYear, j.GlobalUserNameID, j.VOID, j.VOGroupID,"
        f" j.VORoleID, j.SubmitHostID, {d.spelling('j.InfrastructureType')},"
        f" {d.spelling('j.InfrastructureDescription')}, {d.spelling('j.ServiceLevelType')},"
        f" j.ServiceLevel, j.NodeCount, j.Processors, MIN(j.EndTime), MAX(j.EndTime),"
        f" SUM(j.WallDuration), SUM(j.CpuDuration),"
        f" {d.normalised('SUM(j.WallDuration)', 'j.ServiceLevel', 'j.ServiceLevelType')},"
        f" {d.normalised('SUM(j.CpuDuration)', 'j.ServiceLevel', 'j.ServiceLevelType')},"
        f" COUNT(*)"
    )


def _job_group(d: Dialect) -> str:
    return (
        f" GROUP BY j.SiteID, j.EndYear, j.EndMonth, j.VOID, j.GlobalUserNameID, j.VOGroupID,"
        f" j.VORoleID, j.SubmitHostID, {d.group('j.InfrastructureType')},"
        f" {d.group('j.ServiceLevelType')}, j.ServiceLevel, j.NodeCount, j.Processors"
    )


def _summary_select(d: Dialect) -> str:
    """Summaries → HSS, row by row."""
    return (
        "SELECT s.SiteID, s.Month, s.Year, s.GlobalUserNameID, s.VOID, s.VOGroupID, s.VORoleID,"
        " s.SubmitHostID, s.InfrastructureType, s.InfrastructureDescription, s.ServiceLevelType,"
        " s.ServiceLevel, s.NodeCount, s.Processors, s.EarliestEndTime, s.LatestEndTime,"
        " s.WallDuration, s.CpuDuration,"
        f" {d.normalised('s.WallDuration', 's.ServiceLevel', 's.ServiceLevelType')},"
        f" {d.normalised('s.CpuDuration', 's.ServiceLevel', 's.ServiceLevelType')},"
        " s.NumberOfJobs"
    )


_NORMALISED_SELECT = (
    # NormalisedSummaries → HSS, copied 1:1; ServiceLevel takes the HSS default 0
    "SELECT n.SiteID, n.Month, n.Year, n.GlobalUserNameID, n.VOID, n.VOGroupID, n.VORoleID,"
    " n.SubmitHostID, n.Infrastructure, n.InfrastructureDescription, n.ServiceLevelType, 0,"
    " n.NodeCount, n.Processors, n.EarliestEndTime, n.LatestEndTime, n.WallDuration,"
    " n.CpuDuration, n.NormalisedWallDuration, n.NormalisedCpuDuration, n.NumberOfJobs"
)


# The primary keys, in their index order (also the work table's key).
HSS_PRIMARY_KEY = tables.HSS.key
CLOUD_SUMMARY_KEY = tables.CLOUD_SUMMARY.table.key
# The work tables' columns: an HSS key, and a PendingSummaryKeys entry.
WORK_KEY_COLUMNS = tables.STALE_SUMMARY_KEYS.columns
WORK_PENDING_COLUMNS = tables.PENDING_SUMMARY_KEYS.columns
# How a delta entry's aggregate merges into the HSS row of its key.
_LEVEL = ("ServiceLevel", "ServiceLevelType")
_DELTA_MERGES = (
    MergeColumn("Infrastructure", Merge.SMALLEST),
    MergeColumn("InfrastructureDescription", Merge.SMALLEST),
    MergeColumn("ServiceLevelType", Merge.SMALLEST),
    MergeColumn("EarliestEndTime", Merge.LEAST),
    MergeColumn("LatestEndTime", Merge.GREATEST),
    MergeColumn("WallDuration", Merge.ADD),
    MergeColumn("CpuDuration", Merge.ADD),
    MergeColumn("NormalisedWallDuration", Merge.NORMALISED, ("WallDuration", *_LEVEL)),
    MergeColumn("NormalisedCpuDuration", Merge.NORMALISED, ("CpuDuration", *_LEVEL)),
    MergeColumn("NumberOfJobs", Merge.ADD),
)


def _into_hss(d: Dialect, rows: str) -> str:
    """Rows replacing the HSS rows of their keys (HSS is replace-only)."""
    return d.replace("HybridSuperSummaries", HSS_COLUMNS, HSS_PRIMARY_KEY, rows)


@dataclass(frozen=True)
class CpuStatements:
    """The three HSS steps, per site-month and per set of keys, the job deltas, and the
    bookkeeping that goes with them (PendingSummaryKeys, StaleSummaryKeys).

    An incremental transaction copies every pending entry of some site-months into
    :data:`WORK_PENDING` (a key's entries are never split between transactions),
    collects the keys to recompute into :data:`WORK_KEYS` (recompute entries; with job
    deltas also delta entries whose key has a summary source or a stale HSS row),
    recomputes them, adds the remaining delta entries, and deletes the entries it
    copied. Statements without parameters work on the two work tables.
    """

    jobs_site_month: str
    summaries_site_month: str
    normalised_site_month: str
    hss_count_site_month: str
    unmark_stale_site_month: str
    mark_stale_site_month: str
    delete_pending_site_month: str
    jobs_keys: str
    summaries_keys: str
    normalised_keys: str
    create_work: tuple[str, ...]
    clear_work: tuple[str, ...]
    pending_site_months: str
    fill_pending: str  # see fill_pending_from
    work_from_entries: str
    work_from_deltas: Optional[str]  # None: the dialect has no delta path
    work_site_months: str
    unmark_stale_work: str
    mark_stale_work: str
    delta_site_months: Optional[str]
    apply_deltas: Optional[str]
    # the same, for a transaction that recomputes nothing (every delta entry is added)
    delta_site_months_all: Optional[str]
    apply_all_deltas: Optional[str]
    delete_pending_of_chunk: str
    site_months: str
    mark: str

    def fill_pending_from(self, site_months: int) -> str:
        """Copy every pending entry of ``site_months`` site-months, given as parameters
        (SiteID, Year, Month each), into the work table."""
        one = f"(SiteID = {self.mark} AND Year = {self.mark} AND Month = {self.mark})"
        return self.fill_pending + " OR ".join([one] * site_months)


@dataclass(frozen=True)
class _Keys:
    """Conditions on HSS keys in dialect ``d``, shared by the statements below."""

    d: Dialect

    def on(self, alias: str, source: str = "", k: str = "k") -> str:
        """Row ``alias`` has the HSS key of row ``k``: ``alias`` is a row of the source
        table ``source`` (JobRecords, Summaries, NormalisedSummaries), or by default of a
        table that names the key's columns as HSS does."""
        terms = []
        for key, column in zip(HSS_KEY, tables.HSS_SOURCE_KEYS.get(source, HSS_KEY)):
            if column is None:  # the source's rows feed the key with this column 0
                terms.append(f"{k}.{key} = 0")
            elif key in _KEY_TEXT:
                terms.append(self.d.same(f"{alias}.{column}", f"{k}.{key}"))
            else:
                terms.append(f"{alias}.{column} = {k}.{key}")
        return " AND ".join(terms)

    @staticmethod
    def of(alias: str) -> str:
        return ", ".join(f"{alias}.{column}" for column in HSS_KEY)

    # The sources of the HSS row with the key of row ``k``, each one index lookup.
    def has_jobs(self, k: str) -> str:
        return (f"EXISTS (SELECT 1 FROM JobRecords j{self.d.index_hint('SummaryIdx')} WHERE "
                + self.on("j", "JobRecords", k=k) + ")")

    def has_summary(self, k: str) -> str:
        return (f"EXISTS (SELECT 1 FROM Summaries s WHERE "
                f"{self.on('s', 'Summaries', k=k)})")

    def has_normalised(self, k: str) -> str:  # a normalised summary feeds the key with ServiceLevel 0
        return (f"({k}.ServiceLevel = 0 AND EXISTS (SELECT 1 FROM NormalisedSummaries n WHERE "
                f"{self.on('n', 'NormalisedSummaries', k=k)}))")

    def no_source(self, k: str) -> str:
        return f"NOT {self.has_jobs(k)} AND NOT {self.has_summary(k)} AND NOT {self.has_normalised(k)}"


def _site_month_statements(d: Dialect) -> dict[str, str]:
    """A full run's statements, each for one site-month given as (SiteID, Year, Month)."""
    m = d.placeholder
    keys = _Keys(d)
    where_job = (
        f" FROM JobRecords j{d.index_hint('SummaryIdx')}"
        f" WHERE j.SiteID = {m} AND j.EndYear = {m} AND j.EndMonth = {m}"
    )
    where_summary = f" FROM Summaries s WHERE s.SiteID = {m} AND s.Year = {m} AND s.Month = {m}"
    where_normalised = (
        f" FROM NormalisedSummaries n WHERE n.SiteID = {m} AND n.Year = {m} AND n.Month = {m}"
    )
    site_month = f" WHERE h.SiteID = {m} AND h.Year = {m} AND h.Month = {m}"
    return {
        "jobs_site_month": _into_hss(d, _job_select(d) + where_job + _job_group(d)),
        "summaries_site_month": _into_hss(d, _summary_select(d) + where_summary),
        "normalised_site_month": _into_hss(d, _NORMALISED_SELECT + where_normalised),
        "hss_count_site_month": f"SELECT COUNT(*) FROM HybridSuperSummaries h{site_month}",
        "unmark_stale_site_month": (
            f"DELETE FROM StaleSummaryKeys WHERE SiteID = {m} AND Year = {m} AND Month = {m}"
        ),
        "mark_stale_site_month": (
            f"INSERT INTO StaleSummaryKeys ({_columns(HSS_KEY)}) SELECT {keys.of('h')}"
            f" FROM HybridSuperSummaries h{site_month} AND {keys.no_source('h')}"
        ),
        "delete_pending_site_month": (
            f"DELETE FROM PendingSummaryKeys WHERE SiteID = {m} AND Year = {m} AND Month = {m}"
        ),
    }


def _work_statements(d: Dialect) -> dict[str, object]:
    """An incremental run's statements on the work tables (recomputation and bookkeeping)."""
    keys = _Keys(d)
    # The work tables are small and drive the joins, so each key is one index lookup.
    join = d.join_in_order
    key_columns = _columns(HSS_KEY)
    pending_columns = _columns(("id",) + HSS_KEY + DELTA_COLUMNS)
    # a recompute entry means: recompute. Without job deltas every entry is recomputed
    # (a delta entry met there is still right to recompute).
    recompute_only = " WHERE NumberOfJobs IS NULL" if d.job_deltas else ""
    return {
        "jobs_keys": _into_hss(d, _job_select(d) + f" FROM {WORK_KEYS} k {join} JobRecords"
                               f" j{d.index_hint('SummaryIdx')} ON "
                               + keys.on("j", "JobRecords") + _job_group(d)),
        "summaries_keys": _into_hss(d, _summary_select(d) + f" FROM {WORK_KEYS} k {join} Summaries"
                                    f" s{d.index_hint('PRIMARY')} ON "
                                    + keys.on("s", "Summaries")),
        "normalised_keys": _into_hss(d, _NORMALISED_SELECT + f" FROM {WORK_KEYS} k {join} NormalisedSummaries"
                                     f" n{d.index_hint('PRIMARY')} ON "
                                     + keys.on("n", "NormalisedSummaries")),
        "create_work": (*d.create_temporary_table(WORK_KEYS, WORK_KEY_COLUMNS, HSS_PRIMARY_KEY),
                        *d.create_temporary_table(WORK_PENDING, WORK_PENDING_COLUMNS, ("id",))),
        "clear_work": (f"DELETE FROM {WORK_KEYS}", f"DELETE FROM {WORK_PENDING}"),
        "pending_site_months": (
            "SELECT SiteID, Year, Month, COUNT(*) FROM PendingSummaryKeys GROUP BY SiteID, Month, Year"
        ),
        "fill_pending": (
            f"INSERT INTO {WORK_PENDING} ({pending_columns}) SELECT {pending_columns}"
            f" FROM PendingSummaryKeys{d.index_hint('PRIMARY')} WHERE "
        ),
        "work_from_entries": d.insert_ignore(
            WORK_KEYS, HSS_KEY, f"SELECT {key_columns} FROM {WORK_PENDING}" + recompute_only),
        "work_site_months": (
            f"SELECT SiteID, Year, Month, COUNT(*) FROM {WORK_KEYS} GROUP BY SiteID, Year, Month"
        ),
        "unmark_stale_work": d.delete_joined("StaleSummaryKeys", "t", WORK_KEYS + " k",
                                             keys.on("t")),
        "mark_stale_work": (
            f"INSERT INTO StaleSummaryKeys ({key_columns}) SELECT {keys.of('h')} FROM {WORK_KEYS} k"
            f" {join} HybridSuperSummaries h ON {keys.on('h')}"
            f" WHERE {keys.no_source('h')}"
        ),
        "delete_pending_of_chunk": d.delete_joined(
            "PendingSummaryKeys", "p", WORK_PENDING + " w",
            "p.SiteID = w.SiteID AND p.Month = w.Month AND p.Year = w.Year AND p.id = w.id",
        ),
    }


def _delta_statements(d: Dialect) -> dict[str, Optional[str]]:
    """Where the dialect has job deltas: which delta entries must be recomputed instead,
    and the statements adding the others to their HSS rows (None without deltas)."""
    names = ("work_from_deltas", "delta_site_months", "apply_deltas", "delta_site_months_all",
             "apply_all_deltas")
    if not d.job_deltas:
        return dict.fromkeys(names)
    keys = _Keys(d)
    # A delta may only be added where the HSS row is the sum of the key's jobs before
    # the load: not where a summary or normalised summary feeds the row (they win), nor
    # where the row is stale (no source, kept from jobs that moved away).
    work_from_deltas = d.insert_ignore(
        WORK_KEYS, HSS_KEY,
        f"SELECT {keys.of('p')} FROM {WORK_PENDING} p"
        f" WHERE p.NumberOfJobs IS NOT NULL AND ({keys.has_summary('p')} OR {keys.has_normalised('p')}"
        f" OR EXISTS (SELECT 1 FROM StaleSummaryKeys t WHERE"
        f" {keys.on('t', k='p')}))",
    )
    all_deltas = f" FROM {WORK_PENDING} p WHERE p.NumberOfJobs IS NOT NULL"
    deltas = (
        f"{all_deltas} AND NOT EXISTS (SELECT 1 FROM {WORK_KEYS} k WHERE"
        f" {keys.on('p')})"
    )
    delta_group = (
        " GROUP BY p.SiteID, p.Year, p.Month, p.VOID, p.GlobalUserNameID, p.VOGroupID, p.VORoleID,"
        " p.SubmitHostID, p.Infrastructure, p.ServiceLevelType, p.ServiceLevel, p.NodeCount, p.Processors"
    )
    delta_site_months, delta_site_months_all = (
        "SELECT SiteID, Year, Month, COUNT(*) FROM"
        f" (SELECT p.SiteID, p.Year, p.Month{which}{delta_group}) AS added GROUP BY SiteID, Year, Month"
        for which in (deltas, all_deltas)
    )
    # The added row follows the recomputation's rules (the same spelling and exact
    # normalisation; tests/test_summariser_incremental.py checks it).
    apply_deltas, apply_all_deltas = (
        d.upsert(
            "HybridSuperSummaries", HSS_COLUMNS, HSS_PRIMARY_KEY,
            "SELECT p.SiteID, p.Month, p.Year, p.GlobalUserNameID, p.VOID, p.VOGroupID, p.VORoleID,"
            f" p.SubmitHostID, {d.spelling('p.Infrastructure')}, {d.spelling('p.InfrastructureDescription')},"
            f" {d.spelling('p.ServiceLevelType')}, p.ServiceLevel, p.NodeCount, p.Processors,"
            " MIN(p.EarliestEndTime), MAX(p.LatestEndTime), SUM(p.WallDuration), SUM(p.CpuDuration),"
            f" {d.normalised('SUM(p.WallDuration)', 'p.ServiceLevel', 'p.ServiceLevelType')},"
            f" {d.normalised('SUM(p.CpuDuration)', 'p.ServiceLevel', 'p.ServiceLevelType')},"
            f" SUM(p.NumberOfJobs){which}{delta_group}",
            _DELTA_MERGES,
        )
        for which in (deltas, all_deltas)
    )
    return {"work_from_deltas": work_from_deltas, "delta_site_months": delta_site_months,
            "apply_deltas": apply_deltas, "delta_site_months_all": delta_site_months_all,
            "apply_all_deltas": apply_all_deltas}


def cpu_statements(d: Dialect) -> CpuStatements:
    """Every statement of a ``cpu`` run in dialect ``d``."""
    site_months = (
        "SELECT SiteID, EndYear, EndMonth FROM JobRecords GROUP BY SiteID, EndYear, EndMonth"
        " UNION SELECT SiteID, Year, Month FROM Summaries"
        " UNION SELECT SiteID, Year, Month FROM NormalisedSummaries"
        # site-months whose HSS rows all lost their sources: their stale keys are recorded
        " UNION SELECT SiteID, Year, Month FROM HybridSuperSummaries GROUP BY SiteID, Month, Year"
    )
    return CpuStatements(
        **_site_month_statements(d), **_work_statements(d), **_delta_statements(d),  # type: ignore[arg-type]
        site_months=site_months, mark=d.placeholder,
    )


# -- cloud summarisation ------------------------------------------------------------------


@dataclass(frozen=True)
class CloudStatements:
    summarise_site_month: str
    site_months: str
    site_months_from: str
    delete_stale: str


def cloud_statements(d: Dialect) -> CloudStatements:
    """SummariseVMs per site-month and the stale-summary clean-up.

    For each record ``c`` the previous record ``p`` of the same VM is the one with the
    greatest MeasurementTime strictly earlier, month-0 records excluded; Wall, Cpu and
    Network become c − p (a missing p counts as 0, a null c stays null), Memory and Disk
    are summed as they are. The previous record may lie in any earlier month or site.
    """
    m = d.placeholder

    def delta(column: str) -> str:
        return f"SUM({d.signed('c.' + column)} - {d.signed(f'COALESCE(p.{column}, 0)')})"

    select = (
        "SELECT c.SiteID, c.CloudComputeServiceID, c.MeasurementMonth, c.MeasurementYear,"
        " c.GlobalUserNameID, c.VOID, c.VOGroupID, c.VORoleID,"
        f" {d.spelling('c.Status')}, {d.spelling('c.CloudType')}, {d.spelling('c.ImageId')},"
        " MIN(c.StartTime), MAX(c.StartTime),"
        f" {delta('WallDuration')}, {delta('CpuDuration')}, c.CpuCount,"
        f" {delta('NetworkInbound')}, {delta('NetworkOutbound')}, SUM(c.Memory), SUM(c.Disk),"
        f" {d.spelling('c.BenchmarkType')}, c.Benchmark, COUNT(*), '{SUMMARISER_PUBLISHER}'"
    )
    previous = (
        " FROM CloudRecords c LEFT JOIN CloudRecords p ON "
        + d.same("p.VMUUID", "c.VMUUID")
        + " AND p.MeasurementTime = (SELECT MAX(q.MeasurementTime) FROM CloudRecords q WHERE "
        + d.same("q.VMUUID", "c.VMUUID")
        + " AND q.MeasurementTime < c.MeasurementTime AND q.MeasurementMonth <> 0)"
    )
    where = f" WHERE c.SiteID = {m} AND c.MeasurementYear = {m} AND c.MeasurementMonth = {m}"
    group = (
        " GROUP BY c.SiteID, c.CloudComputeServiceID, c.MeasurementYear, c.MeasurementMonth,"
        " c.GlobalUserNameID, c.VOID, c.VOGroupID, c.VORoleID,"
        f" {d.group('c.Status')}, {d.group('c.ImageId')}, c.CpuCount,"
        f" {d.group('c.BenchmarkType')}, c.Benchmark"
    )
    return CloudStatements(
        summarise_site_month=d.replace(
            "CloudSummaries", CLOUD_SUMMARY_COLUMNS, CLOUD_SUMMARY_KEY, select + previous + where + group),
        site_months=(
            "SELECT SiteID, MeasurementYear, MeasurementMonth FROM CloudRecords"
            " GROUP BY SiteID, MeasurementYear, MeasurementMonth"
        ),
        site_months_from=(
            "SELECT SiteID, MeasurementYear, MeasurementMonth FROM CloudRecords"
            f" WHERE MeasurementYear > {m} OR (MeasurementYear = {m} AND MeasurementMonth >= {m})"
            " GROUP BY SiteID, MeasurementYear, MeasurementMonth"
        ),
        # (Year, Month) compared as a pair: Jan 2026 is after Dec 2025 (the old server
        # compared them separately, which missed months across a year boundary)
        delete_stale=(
            f"DELETE FROM CloudSummaries WHERE (Year > {m} OR (Year = {m} AND Month >= {m}))"
            f" AND UpdateTime < {m}"
        ),
    )

"""The summariser's SQL, per dialect: job, summary and cloud summarisation statements.

Why SQL and not Python: a central server summarises tens of millions of rows, and the
grouping belongs next to the data (MySQL's covering ``SummaryIdx`` answers the job step
without touching the table rows). The statements are written once; the few places where
MySQL and SQLite differ are filled in from :class:`Dialect`:

- *grouping text case-insensitively, ignoring trailing spaces* (``database.md`` §2.2):
  MySQL's utf8mb4_general_ci columns do it by themselves; SQLite groups by
  ``rtrim(x, ' ') COLLATE NOCASE``;
- *which spelling a merged group shows*: the binary-smallest (code point order, so
  ``HEPSPEC`` before ``hepspec``, ``Si2K`` before ``si2k``), identical on both engines
  and independent of row order (the old "first spelling" was whatever row MySQL met
  first). InfrastructureDescription and CloudType, not grouped, take the same rule;
- *normalisation*, ``round(sum × ServiceLevel / d)`` with d = 250 for si2k (any letter
  case) else 1, rounded half away from zero on the exact decimal value: MySQL's DECIMAL
  arithmetic and ROUND are exact; SQLite stores ServiceLevel as a binary REAL, so there
  the value is taken in thousandths as an integer and the division is done in integers
  (see :func:`_sqlite_normalised`). 201 × 10.5 = 2110.5 gives 2111 on both.

Adding job deltas to HSS rows (:class:`CpuStatements`) is MySQL only, as only the MySQL
backend writes delta entries; there the delta entries are grouped by the same collation
as the jobs, and the added row keeps the same spelling and normalisation rules.

Placeholders are the backend's own (``%s`` or ``?``); every value is a parameter.
Table and column names are fixed text of this module, never input.
"""

# Every statement here is built from this module's fixed table and column names and the
# backend's placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from apel.db.pending import DELTA_COLUMNS

# HSS key columns in table order (the primary key of HybridSuperSummaries).
HSS_KEY = (
    "SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID", "SubmitHostID",
    "Infrastructure", "ServiceLevelType", "ServiceLevel", "NodeCount", "Processors",
)
HSS_COLUMNS = HSS_KEY[:9] + (
    "InfrastructureDescription",) + HSS_KEY[9:] + (
    "EarliestEndTime", "LatestEndTime", "WallDuration", "CpuDuration",
    "NormalisedWallDuration", "NormalisedCpuDuration", "NumberOfJobs",
)
CLOUD_SUMMARY_COLUMNS = (
    "SiteID", "CloudComputeServiceID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID",
    "VORoleID", "Status", "CloudType", "ImageId", "EarliestStartTime", "LatestStartTime",
    "WallDuration", "CpuDuration", "CpuCount", "NetworkInbound", "NetworkOutbound", "Memory",
    "Disk", "BenchmarkType", "Benchmark", "NumberOfVMs", "PublisherDNID",
)
# The temporary tables of an incremental run (one connection's own): the HSS keys it
# recomputes, and the chunk of PendingSummaryKeys entries it works on.
WORK_KEYS = "SummariserWorkKeys"
WORK_PENDING = "SummariserWorkPending"
SUMMARISER_PUBLISHER = "summariser"


@dataclass(frozen=True)
class Dialect:
    """How one SQL engine spells the few things the statements need."""

    name: str
    mark: str  # parameter placeholder

    def group(self, column: str) -> str:
        """A text column as a case- and trailing-space-insensitive grouping term."""
        if self.name == "sqlite":
            return f"rtrim({column}, ' ') COLLATE NOCASE"
        return column

    def same(self, left: str, right: str) -> str:
        """Two text values compared as the schema's keys compare them."""
        if self.name == "sqlite":
            return f"rtrim({left}, ' ') = rtrim({right}, ' ') COLLATE NOCASE"
        return f"{left} = {right}"

    def spelling(self, column: str) -> str:
        """The binary-smallest spelling of a text column in a group (deterministic)."""
        if self.name == "sqlite":
            return f"MIN({column} COLLATE BINARY)"
        return f"CONVERT(MIN(CAST({column} AS BINARY)) USING utf8mb4)"

    def is_si2k(self, column: str) -> str:
        return self.same(column, "'si2k'")

    def normalised(self, total: str, level: str, level_type: str) -> str:
        """round(total × level / d), d = 250 for si2k else 1, half away from zero, exact."""
        if self.name == "sqlite":
            return _sqlite_normalised(total, level, level_type, self)
        return f"ROUND({total} * {level} / (CASE WHEN {self.is_si2k(level_type)} THEN 250 ELSE 1 END))"

    def index(self, name: str) -> str:
        """An index hint after a table name. MySQL's statistics lag behind bulk loads (a
        fresh table looks empty), and then it reads a site's jobs through the primary key
        instead of the summary index; the hints keep every plan an index range."""
        return f" FORCE INDEX ({name})" if self.name == "mysql" else ""

    def signed(self, expression: str) -> str:
        """An unsigned column as a signed value (deltas may be negative)."""
        if self.name == "sqlite":
            return expression
        return f"CAST({expression} AS SIGNED)"

    @property
    def insert_ignore(self) -> str:
        return "INSERT OR IGNORE" if self.name == "sqlite" else "INSERT IGNORE"


def _sqlite_normalised(total: str, level: str, level_type: str, dialect: Dialect) -> str:
    """Exact ``round(total × level / d)`` in 64-bit integers, for SQLite.

    ``level`` is a REAL holding a 3-decimal value, so ``S = round(level × 1000)`` is its
    exact value in thousandths, and the result is total × S / D with D = 1000 × d.
    Writing total = q·D + r gives q·S + round(r·S / D): r·S stays far below 2^63 (r < D
    ≤ 250 000, |S| < 10^10), and q·S overflows only where the result itself would not
    fit the BIGINT column. round(x / D) for x ≥ 0 is (2x + D) div 2D; a negative level
    is handled by symmetry, so halves go away from zero as MySQL's ROUND does.
    """
    scaled = f"CAST(ROUND(ABS({level}) * 1000) AS INTEGER)"
    divisor = f"(CASE WHEN {dialect.is_si2k(level_type)} THEN 250000 ELSE 1000 END)"
    magnitude = (
        f"(({total}) / {divisor}) * {scaled}"
        f" + ((({total}) % {divisor}) * {scaled} * 2 + {divisor}) / (2 * {divisor})"
    )
    return f"(CASE WHEN {level} < 0 THEN -({magnitude}) ELSE {magnitude} END)"


MYSQL = Dialect("mysql", "%s")
SQLITE = Dialect("sqlite", "?")


def dialect_for(backend_name: str, placeholder: str) -> Dialect:
    """The dialect of a backend: SQLite's for ``sqlite``, MySQL's for everything else."""
    if backend_name == "sqlite":
        return SQLITE
    return MYSQL if placeholder == "%s" else Dialect("mysql", placeholder)


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(names)


# -- job summarisation --------------------------------------------------------------------


def _job_select(d: Dialect) -> str:
    """JobRecords → HSS rows (``database.md`` §7.1), for rows ``j`` selected by the caller."""
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
    """Summaries → HSS, row by row (§7.2)."""
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
    # §7.3: copied 1:1; ServiceLevel takes the HSS default 0
    "SELECT n.SiteID, n.Month, n.Year, n.GlobalUserNameID, n.VOID, n.VOGroupID, n.VORoleID,"
    " n.SubmitHostID, n.Infrastructure, n.InfrastructureDescription, n.ServiceLevelType, 0,"
    " n.NodeCount, n.Processors, n.EarliestEndTime, n.LatestEndTime, n.WallDuration,"
    " n.CpuDuration, n.NormalisedWallDuration, n.NormalisedCpuDuration, n.NumberOfJobs"
)


def _into_hss() -> str:
    return f"REPLACE INTO HybridSuperSummaries ({_columns(HSS_COLUMNS)}) "


@dataclass(frozen=True)
class CpuStatements:
    """The three HSS steps, per site-month and per set of keys, the job deltas, and the
    bookkeeping that goes with them (PendingSummaryKeys, StaleSummaryKeys).

    An incremental transaction copies every pending entry of some site-months into
    :data:`WORK_PENDING` (a key's entries are never split between transactions),
    collects the keys to recompute into :data:`WORK_KEYS` (recompute entries; on MySQL
    also delta entries whose key has a summary source or a stale HSS row), recomputes
    them, adds the remaining delta entries (MySQL), and deletes the entries it copied.
    Statements without parameters work on the two work tables.
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
    work_from_deltas: Optional[str]  # None: the dialect has no delta path (SQLite)
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


def cpu_statements(d: Dialect) -> CpuStatements:
    """Every statement of a ``cpu`` run in dialect ``d``."""
    m = d.mark
    mysql = d.name == "mysql"
    where_job = (
        f" FROM JobRecords j{d.index('SummaryIdx')}"
        f" WHERE j.SiteID = {m} AND j.EndYear = {m} AND j.EndMonth = {m}"
    )
    where_summary = f" FROM Summaries s WHERE s.SiteID = {m} AND s.Year = {m} AND s.Month = {m}"
    where_normalised = (
        f" FROM NormalisedSummaries n WHERE n.SiteID = {m} AND n.Year = {m} AND n.Month = {m}"
    )

    def on(alias: str, infrastructure: str, year: str, month: str, level: bool = True, k: str = "k") -> str:
        """Row ``alias`` (a source, or a table of HSS keys) has the HSS key of row ``k``."""
        terms = [
            f"{alias}.SiteID = {k}.SiteID", f"{alias}.{year} = {k}.Year", f"{alias}.{month} = {k}.Month",
            f"{alias}.VOID = {k}.VOID", f"{alias}.GlobalUserNameID = {k}.GlobalUserNameID",
            f"{alias}.VOGroupID = {k}.VOGroupID", f"{alias}.VORoleID = {k}.VORoleID",
            f"{alias}.SubmitHostID = {k}.SubmitHostID",
            d.same(f"{alias}.{infrastructure}", f"{k}.Infrastructure"),
            d.same(f"{alias}.ServiceLevelType", f"{k}.ServiceLevelType"),
            f"{alias}.ServiceLevel = {k}.ServiceLevel" if level else f"{k}.ServiceLevel = 0",
            f"{alias}.NodeCount = {k}.NodeCount", f"{alias}.Processors = {k}.Processors",
        ]
        return " AND ".join(terms)

    def keys_of(alias: str) -> str:
        return ", ".join(f"{alias}.{column}" for column in HSS_KEY)

    # The sources of the HSS row with the key of row ``k``, each one index lookup.
    def has_jobs(k: str) -> str:
        return (f"EXISTS (SELECT 1 FROM JobRecords j{d.index('SummaryIdx')} WHERE "
                + on("j", "InfrastructureType", "EndYear", "EndMonth", k=k) + ")")

    def has_summary(k: str) -> str:
        return (f"EXISTS (SELECT 1 FROM Summaries s WHERE "
                f"{on('s', 'InfrastructureType', 'Year', 'Month', k=k)})")

    def has_normalised(k: str) -> str:  # a normalised summary feeds the key with ServiceLevel 0
        return (f"({k}.ServiceLevel = 0 AND EXISTS (SELECT 1 FROM NormalisedSummaries n WHERE "
                f"{on('n', 'Infrastructure', 'Year', 'Month', level=False, k=k)}))")

    def no_source(k: str) -> str:
        return f"NOT {has_jobs(k)} AND NOT {has_summary(k)} AND NOT {has_normalised(k)}"

    # The work tables are small and drive the joins, so each key is one index lookup:
    # MySQL's STRAIGHT_JOIN and SQLite's CROSS JOIN keep the tables in this order.
    join = "STRAIGHT_JOIN" if mysql else "CROSS JOIN"
    jobs_keys = (
        _into_hss() + _job_select(d) + f" FROM {WORK_KEYS} k {join} JobRecords j{d.index('SummaryIdx')} ON "
        + on("j", "InfrastructureType", "EndYear", "EndMonth") + _job_group(d)
    )
    summaries_keys = (
        _into_hss() + _summary_select(d) + f" FROM {WORK_KEYS} k {join} Summaries s{d.index('PRIMARY')} ON "
        + on("s", "InfrastructureType", "Year", "Month")
    )
    normalised_keys = (
        _into_hss() + _NORMALISED_SELECT
        + f" FROM {WORK_KEYS} k {join} NormalisedSummaries n{d.index('PRIMARY')} ON "
        + on("n", "Infrastructure", "Year", "Month", level=False)
    )
    pending_columns = _columns(("id",) + HSS_KEY + DELTA_COLUMNS)
    if mysql:
        create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {WORK_KEYS} (SiteID INT NOT NULL,"
            " Month INT NOT NULL, Year INT NOT NULL, GlobalUserNameID INT NOT NULL,"
            " VOID INT NOT NULL, VOGroupID INT NOT NULL, VORoleID INT NOT NULL,"
            " SubmitHostID INT NOT NULL, Infrastructure VARCHAR(20) NOT NULL,"
            " ServiceLevelType VARCHAR(50) NOT NULL, ServiceLevel DECIMAL(10,3) NOT NULL,"
            " NodeCount INT UNSIGNED NOT NULL, Processors INT UNSIGNED NOT NULL,"
            " PRIMARY KEY (SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID,"
            " SubmitHostID, Infrastructure, ServiceLevelType, ServiceLevel, NodeCount, Processors)"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {WORK_PENDING} (id BIGINT UNSIGNED NOT NULL,"
            " SiteID INT NOT NULL, Month INT NOT NULL, Year INT NOT NULL,"
            " GlobalUserNameID INT NOT NULL, VOID INT NOT NULL, VOGroupID INT NOT NULL,"
            " VORoleID INT NOT NULL, SubmitHostID INT NOT NULL, Infrastructure VARCHAR(20) NOT NULL,"
            " ServiceLevelType VARCHAR(50) NOT NULL, ServiceLevel DECIMAL(10,3) NOT NULL,"
            " NodeCount INT UNSIGNED NOT NULL, Processors INT UNSIGNED NOT NULL,"
            " InfrastructureDescription VARCHAR(100) NULL, EarliestEndTime DATETIME NULL,"
            " LatestEndTime DATETIME NULL, WallDuration BIGINT UNSIGNED NULL,"
            " CpuDuration BIGINT UNSIGNED NULL, NumberOfJobs BIGINT UNSIGNED NULL, PRIMARY KEY (id)"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
        )
        delete_joined = "DELETE {target} FROM {driver} {join} {table} {target} ON {on}"
    else:
        create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {WORK_KEYS} (SiteID INTEGER NOT NULL,"
            " Month INTEGER NOT NULL, Year INTEGER NOT NULL, GlobalUserNameID INTEGER NOT NULL,"
            " VOID INTEGER NOT NULL, VOGroupID INTEGER NOT NULL, VORoleID INTEGER NOT NULL,"
            " SubmitHostID INTEGER NOT NULL, Infrastructure TEXT NOT NULL COLLATE NOCASE,"
            " ServiceLevelType TEXT NOT NULL COLLATE NOCASE, ServiceLevel REAL NOT NULL,"
            " NodeCount INTEGER NOT NULL, Processors INTEGER NOT NULL)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS temp.{WORK_KEYS}_PK ON {WORK_KEYS} (SiteID, Month,"
            " Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,"
            " rtrim(Infrastructure, ' ') COLLATE NOCASE, rtrim(ServiceLevelType, ' ') COLLATE NOCASE,"
            " ServiceLevel, NodeCount, Processors)",
            f"CREATE TEMP TABLE IF NOT EXISTS {WORK_PENDING} (id INTEGER PRIMARY KEY,"
            " SiteID INTEGER NOT NULL, Month INTEGER NOT NULL, Year INTEGER NOT NULL,"
            " GlobalUserNameID INTEGER NOT NULL, VOID INTEGER NOT NULL, VOGroupID INTEGER NOT NULL,"
            " VORoleID INTEGER NOT NULL, SubmitHostID INTEGER NOT NULL,"
            " Infrastructure TEXT NOT NULL COLLATE NOCASE, ServiceLevelType TEXT NOT NULL COLLATE NOCASE,"
            " ServiceLevel REAL NOT NULL, NodeCount INTEGER NOT NULL, Processors INTEGER NOT NULL,"
            " InfrastructureDescription TEXT NULL COLLATE NOCASE, EarliestEndTime DATETIME NULL,"
            " LatestEndTime DATETIME NULL, WallDuration INTEGER NULL, CpuDuration INTEGER NULL,"
            " NumberOfJobs INTEGER NULL)",
        )
        # SQLite deletes from one table: the rows are chosen by rowid through the join
        delete_joined = (
            "DELETE FROM {table} WHERE rowid IN (SELECT {target}.rowid FROM {driver} {join} {table} {target}"
            " ON {on})"
        )

    def delete_of(driver: str, table: str, target: str, condition: str) -> str:
        return delete_joined.format(target=target, driver=driver, join=join, table=table, on=condition)

    key_columns = _columns(HSS_KEY)
    # a recompute entry means: recompute. SQLite writes no deltas; if it met one, recomputing
    # its key would still be right.
    recompute_only = " WHERE NumberOfJobs IS NULL" if mysql else ""
    work_from_deltas = apply_deltas = delta_site_months = apply_all_deltas = delta_site_months_all = None
    if mysql:
        # A delta may only be added where the HSS row is the sum of the key's jobs before
        # the load: not where a summary or normalised summary feeds the row (they win), nor
        # where the row is stale (no source, kept from jobs that moved away).
        work_from_deltas = (
            f"INSERT IGNORE INTO {WORK_KEYS} ({key_columns}) SELECT {keys_of('p')} FROM {WORK_PENDING} p"
            f" WHERE p.NumberOfJobs IS NOT NULL AND ({has_summary('p')} OR {has_normalised('p')}"
            f" OR EXISTS (SELECT 1 FROM StaleSummaryKeys t WHERE"
            f" {on('t', 'Infrastructure', 'Year', 'Month', k='p')}))"
        )
        all_deltas = f" FROM {WORK_PENDING} p WHERE p.NumberOfJobs IS NOT NULL"
        deltas = (
            f"{all_deltas} AND NOT EXISTS (SELECT 1 FROM {WORK_KEYS} k WHERE"
            f" {on('p', 'Infrastructure', 'Year', 'Month')})"
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

        def smallest(column: str) -> str:  # the binary-smallest spelling of the two
            return (f"{column} = IF(CAST(VALUES({column}) AS BINARY) < CAST({column} AS BINARY),"
                    f" VALUES({column}), {column})")

        # ON DUPLICATE KEY UPDATE assigns left to right, each assignment seeing the ones
        # before: the normalised durations are computed from the new sums, with the same
        # exact ROUND as a recomputation (tests/test_summariser_incremental.py checks it).
        apply_deltas, apply_all_deltas = (
            f"INSERT INTO HybridSuperSummaries ({_columns(HSS_COLUMNS)})"
            " SELECT p.SiteID, p.Month, p.Year, p.GlobalUserNameID, p.VOID, p.VOGroupID, p.VORoleID,"
            f" p.SubmitHostID, {d.spelling('p.Infrastructure')}, {d.spelling('p.InfrastructureDescription')},"
            f" {d.spelling('p.ServiceLevelType')}, p.ServiceLevel, p.NodeCount, p.Processors,"
            " MIN(p.EarliestEndTime), MAX(p.LatestEndTime), SUM(p.WallDuration), SUM(p.CpuDuration),"
            f" {d.normalised('SUM(p.WallDuration)', 'p.ServiceLevel', 'p.ServiceLevelType')},"
            f" {d.normalised('SUM(p.CpuDuration)', 'p.ServiceLevel', 'p.ServiceLevelType')},"
            f" SUM(p.NumberOfJobs){which}{delta_group}"
            f" ON DUPLICATE KEY UPDATE {smallest('Infrastructure')}, {smallest('InfrastructureDescription')},"
            f" {smallest('ServiceLevelType')},"
            " EarliestEndTime = LEAST(EarliestEndTime, VALUES(EarliestEndTime)),"
            " LatestEndTime = GREATEST(LatestEndTime, VALUES(LatestEndTime)),"
            " WallDuration = WallDuration + VALUES(WallDuration),"
            " CpuDuration = CpuDuration + VALUES(CpuDuration),"
            f" NormalisedWallDuration = {d.normalised('WallDuration', 'ServiceLevel', 'ServiceLevelType')},"
            f" NormalisedCpuDuration = {d.normalised('CpuDuration', 'ServiceLevel', 'ServiceLevelType')},"
            " NumberOfJobs = NumberOfJobs + VALUES(NumberOfJobs)"
            for which in (deltas, all_deltas)
        )
    site_month = f" WHERE h.SiteID = {m} AND h.Year = {m} AND h.Month = {m}"
    site_months = (
        "SELECT SiteID, EndYear, EndMonth FROM JobRecords GROUP BY SiteID, EndYear, EndMonth"
        " UNION SELECT SiteID, Year, Month FROM Summaries"
        " UNION SELECT SiteID, Year, Month FROM NormalisedSummaries"
        # site-months whose HSS rows all lost their sources: their stale keys are recorded
        " UNION SELECT SiteID, Year, Month FROM HybridSuperSummaries GROUP BY SiteID, Month, Year"
    )
    return CpuStatements(
        jobs_site_month=_into_hss() + _job_select(d) + where_job + _job_group(d),
        summaries_site_month=_into_hss() + _summary_select(d) + where_summary,
        normalised_site_month=_into_hss() + _NORMALISED_SELECT + where_normalised,
        hss_count_site_month=f"SELECT COUNT(*) FROM HybridSuperSummaries h{site_month}",
        unmark_stale_site_month=(
            f"DELETE FROM StaleSummaryKeys WHERE SiteID = {m} AND Year = {m} AND Month = {m}"
        ),
        mark_stale_site_month=(
            f"INSERT INTO StaleSummaryKeys ({key_columns}) SELECT {keys_of('h')} FROM HybridSuperSummaries h"
            f"{site_month} AND {no_source('h')}"
        ),
        delete_pending_site_month=(
            f"DELETE FROM PendingSummaryKeys WHERE SiteID = {m} AND Year = {m} AND Month = {m}"
        ),
        jobs_keys=jobs_keys,
        summaries_keys=summaries_keys,
        normalised_keys=normalised_keys,
        create_work=create,
        clear_work=(f"DELETE FROM {WORK_KEYS}", f"DELETE FROM {WORK_PENDING}"),
        pending_site_months=(
            "SELECT SiteID, Year, Month, COUNT(*) FROM PendingSummaryKeys GROUP BY SiteID, Month, Year"
        ),
        fill_pending=(
            f"INSERT INTO {WORK_PENDING} ({pending_columns}) SELECT {pending_columns}"
            f" FROM PendingSummaryKeys{d.index('PRIMARY')} WHERE "
        ),
        work_from_entries=(
            f"{d.insert_ignore} INTO {WORK_KEYS} ({key_columns}) SELECT {key_columns} FROM {WORK_PENDING}"
            + recompute_only
        ),
        work_from_deltas=work_from_deltas,
        work_site_months=(
            f"SELECT SiteID, Year, Month, COUNT(*) FROM {WORK_KEYS} GROUP BY SiteID, Year, Month"
        ),
        unmark_stale_work=delete_of(WORK_KEYS + " k", "StaleSummaryKeys", "t",
                                    on("t", "Infrastructure", "Year", "Month")),
        mark_stale_work=(
            f"INSERT INTO StaleSummaryKeys ({key_columns}) SELECT {keys_of('h')} FROM {WORK_KEYS} k"
            f" {join} HybridSuperSummaries h ON {on('h', 'Infrastructure', 'Year', 'Month')}"
            f" WHERE {no_source('h')}"
        ),
        delta_site_months=delta_site_months,
        apply_deltas=apply_deltas,
        delta_site_months_all=delta_site_months_all,
        apply_all_deltas=apply_all_deltas,
        delete_pending_of_chunk=delete_of(
            WORK_PENDING + " w", "PendingSummaryKeys", "p",
            "p.SiteID = w.SiteID AND p.Month = w.Month AND p.Year = w.Year AND p.id = w.id",
        ),
        site_months=site_months,
        mark=m,
    )


# -- cloud summarisation ------------------------------------------------------------------


@dataclass(frozen=True)
class CloudStatements:
    summarise_site_month: str
    site_months: str
    site_months_from: str
    delete_stale: str


def cloud_statements(d: Dialect) -> CloudStatements:
    """SummariseVMs per site-month (§8.2) and the stale-summary clean-up (§8.3).

    For each record ``c`` the previous record ``p`` of the same VM is the one with the
    greatest MeasurementTime strictly earlier, month-0 records excluded; Wall, Cpu and
    Network become c − p (a missing p counts as 0, a null c stays null), Memory and Disk
    are summed as they are. The previous record may lie in any earlier month or site.
    """
    m = d.mark

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
        summarise_site_month=(
            f"REPLACE INTO CloudSummaries ({_columns(CLOUD_SUMMARY_COLUMNS)}) "
            + select + previous + where + group
        ),
        site_months=(
            "SELECT SiteID, MeasurementYear, MeasurementMonth FROM CloudRecords"
            " GROUP BY SiteID, MeasurementYear, MeasurementMonth"
        ),
        site_months_from=(
            "SELECT SiteID, MeasurementYear, MeasurementMonth FROM CloudRecords"
            f" WHERE MeasurementYear > {m} OR (MeasurementYear = {m} AND MeasurementMonth >= {m})"
            " GROUP BY SiteID, MeasurementYear, MeasurementMonth"
        ),
        # (Year, Month) compared as a pair: Jan 2026 is after Dec 2025 (server.md §11 g)
        delete_stale=(
            f"DELETE FROM CloudSummaries WHERE (Year > {m} OR (Year = {m} AND Month >= {m}))"
            f" AND UpdateTime < {m}"
        ),
    )

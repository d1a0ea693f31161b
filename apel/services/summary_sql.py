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

Placeholders are the backend's own (``%s`` or ``?``); every value is a parameter.
Table and column names are fixed text of this module, never input.
"""

# Every statement here is built from this module's fixed table and column names and the
# backend's placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass

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
# The temporary table of HSS keys an incremental run recomputes (one connection's own).
WORK_KEYS = "SummariserWorkKeys"
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
    """The three HSS steps, per site-month and per set of keys, plus their bookkeeping."""

    jobs_site_month: str
    summaries_site_month: str
    normalised_site_month: str
    jobs_keys: str
    summaries_keys: str
    normalised_keys: str
    create_work: tuple[str, ...]
    clear_work: str
    fill_work: str
    work_site_months: str
    site_months: str
    mark: str

    def fill_work_from(self, ids: int) -> str:
        """Copy the keys of ``ids`` PendingSummaryKeys rows (given as parameters) into
        the work table; keys equal under the schema's collation become one row."""
        marks = ", ".join([self.mark] * ids)
        return (
            f"{self.fill_work.split(' VALUES ')[0]} SELECT {_columns(HSS_KEY)}"
            f" FROM PendingSummaryKeys WHERE id IN ({marks})"
        )


def cpu_statements(d: Dialect) -> CpuStatements:
    """Every statement of a ``cpu`` run in dialect ``d``."""
    m = d.mark
    where_job = (
        f" FROM JobRecords j{d.index('SummaryIdx')}"
        f" WHERE j.SiteID = {m} AND j.EndYear = {m} AND j.EndMonth = {m}"
    )
    where_summary = f" FROM Summaries s WHERE s.SiteID = {m} AND s.Year = {m} AND s.Month = {m}"
    where_normalised = (
        f" FROM NormalisedSummaries n WHERE n.SiteID = {m} AND n.Year = {m} AND n.Month = {m}"
    )

    def on(alias: str, infrastructure: str, year: str, month: str, level: bool = True) -> str:
        terms = [
            f"{alias}.SiteID = k.SiteID", f"{alias}.{year} = k.Year", f"{alias}.{month} = k.Month",
            f"{alias}.VOID = k.VOID", f"{alias}.GlobalUserNameID = k.GlobalUserNameID",
            f"{alias}.VOGroupID = k.VOGroupID", f"{alias}.VORoleID = k.VORoleID",
            f"{alias}.SubmitHostID = k.SubmitHostID",
            d.same(f"{alias}.{infrastructure}", "k.Infrastructure"),
            d.same(f"{alias}.ServiceLevelType", "k.ServiceLevelType"),
            f"{alias}.ServiceLevel = k.ServiceLevel" if level else "k.ServiceLevel = 0",
            f"{alias}.NodeCount = k.NodeCount", f"{alias}.Processors = k.Processors",
        ]
        return " AND ".join(terms)

    # The work table is small and drives the join, so each key is one index lookup:
    # MySQL's STRAIGHT_JOIN and SQLite's CROSS JOIN keep the tables in this order.
    join = "STRAIGHT_JOIN" if d.name == "mysql" else "CROSS JOIN"
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
    key_marks = ", ".join([m] * len(HSS_KEY))
    if d.name == "sqlite":
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
        )
    else:
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
        )
    site_months = (
        "SELECT SiteID, EndYear, EndMonth FROM JobRecords GROUP BY SiteID, EndYear, EndMonth"
        " UNION SELECT SiteID, Year, Month FROM Summaries"
        " UNION SELECT SiteID, Year, Month FROM NormalisedSummaries"
    )
    return CpuStatements(
        jobs_site_month=_into_hss() + _job_select(d) + where_job + _job_group(d),
        summaries_site_month=_into_hss() + _summary_select(d) + where_summary,
        normalised_site_month=_into_hss() + _NORMALISED_SELECT + where_normalised,
        jobs_keys=jobs_keys,
        summaries_keys=summaries_keys,
        normalised_keys=normalised_keys,
        create_work=create,
        clear_work=f"DELETE FROM {WORK_KEYS}",
        fill_work=f"{d.insert_ignore} INTO {WORK_KEYS} ({_columns(HSS_KEY)}) VALUES ({key_marks})",
        work_site_months=(
            f"SELECT SiteID, Year, Month, COUNT(*) FROM {WORK_KEYS} GROUP BY SiteID, Year, Month"
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

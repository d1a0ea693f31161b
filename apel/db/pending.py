"""What a load changed, for the incremental summariser: written in the load's transaction.

``apelsummariser`` recomputes only what changed since its last run. The backends call
:func:`before_write` and :func:`after_write` around each table write of
``load_message``, inside the message's transaction, so a message and its bookkeeping
commit (or roll back) together; there is no window in which the summariser could see
records without their bookkeeping, whatever runs concurrently.

- Job, summary and normalised-summary rows add their *HSS key* (the key of the
  HybridSuperSummaries row they feed) to ``PendingSummaryKeys``. A job that replaces
  an older one with the same primary key may change group (another ServiceLevel, VO,
  ...), so the key of the row being replaced is added as well: the old group must be
  recomputed without it. Summary keys equal their primary keys, so they cannot move.
- Cloud records add (SiteID, Year, Month) to ``PendingCloudMonths``, for the new rows
  and for *every stored record of the same VMs*: a VM's record feeds the delta of its
  next record, which may be in a later month or, after a replace, at another site.

Both tables only ever get plain inserts (auto-increment ids, no unique key), so
concurrent loaders never wait on each other here. The summariser deletes exactly the
ids it has processed, so rows committed while it runs stay for the next run.
"""

# Every statement here is built from this module's fixed table and column names and the
# backend's placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apel.db.backend import Transaction
from apel.records import model

# HSS key columns of PendingSummaryKeys, in this order.
KEY_COLUMNS = (
    "SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID", "SubmitHostID",
    "Infrastructure", "ServiceLevelType", "ServiceLevel", "NodeCount", "Processors",
)
# The columns of each source table that make up the HSS key, in KEY_COLUMNS order
# (None: a constant 0, the ServiceLevel of a normalised summary's HSS row).
_SOURCE_KEYS: dict[str, tuple[Any, ...]] = {
    model.JOB: ("SiteID", "EndMonth", "EndYear", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID",
                "SubmitHostID", "InfrastructureType", "ServiceLevelType", "ServiceLevel", "NodeCount",
                "Processors"),
    model.SUMMARY: ("SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID",
                    "SubmitHostID", "InfrastructureType", "ServiceLevelType", "ServiceLevel",
                    "NodeCount", "Processors"),
    model.NORMALISED_SUMMARY: ("SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID",
                               "VORoleID", "SubmitHostID", "Infrastructure", "ServiceLevelType", None,
                               "NodeCount", "Processors"),
}
_CLOUD_KEY = ("SiteID", "MeasurementYear", "MeasurementMonth")
_CHUNK = 500
# Up to this many distinct keys per message are sent as parameters (see after_write).
_FEW_KEYS = 100


def _insert_keys(mark: str) -> str:
    marks = ", ".join([mark] * len(KEY_COLUMNS))
    return f"INSERT INTO PendingSummaryKeys ({', '.join(KEY_COLUMNS)}) VALUES ({marks})"


def before_write(
    tx: Transaction, dialect: str, mark: str, record_type: str, columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Record what the rows about to be replaced fed (their ids already substituted)."""
    if record_type == model.JOB:
        _old_job_keys(tx, dialect, mark, columns, rows)
    elif record_type == model.CLOUD:
        _old_cloud_months(tx, dialect, mark, columns, rows)


def after_write(
    tx: Transaction, mark: str, record_type: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
) -> None:
    """Record the HSS keys (or cloud site-months) of the rows just written."""
    if record_type in _SOURCE_KEYS:
        positions = [None if c is None else columns.index(c) for c in _SOURCE_KEYS[record_type]]
        keys = {tuple(0 if p is None else row[p] for p in positions) for row in rows}
        if record_type == model.JOB and mark != "?" and len(keys) > _FEW_KEYS:
            # Jobs with many distinct keys, on a server: read the keys back from the rows
            # just written (one statement per site, the job ids as parameters) instead of
            # sending 13 parameters per key; PyMySQL's client-side escaping of those would
            # double the load time of such a message.
            _old_job_keys(tx, "mysql", mark, columns, rows)
        elif keys:
            tx.executemany(_insert_keys(mark), sorted(keys, key=repr))
    elif record_type == model.CLOUD:
        positions = [columns.index(c) for c in _CLOUD_KEY]
        months = {tuple(row[p] for p in positions) for row in rows}
        if months:
            tx.executemany(
                f"INSERT INTO PendingCloudMonths (SiteID, Year, Month) VALUES ({mark}, {mark}, {mark})",
                sorted(months),
            )


def _old_job_keys(  # also reads the new rows back, see after_write
    tx: Transaction, dialect: str, mark: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    site, job_id, end = (columns.index(c) for c in ("SiteID", "LocalJobId", "EndTime"))
    select = (
        f"INSERT INTO PendingSummaryKeys ({', '.join(KEY_COLUMNS)})"
        f" SELECT {', '.join(_SOURCE_KEYS[model.JOB])} FROM JobRecords"
    )
    if dialect == "sqlite":
        # in-process: one indexed probe per record is cheap, and matches the PK exactly
        tx.executemany(
            select + " WHERE SiteID = ? AND rtrim(LocalJobId, ' ') = rtrim(?, ' ') COLLATE NOCASE"
            " AND EndTime = ?",
            [(row[site], row[job_id], row[end]) for row in rows],
        )
        return
    # one statement per site and chunk: a range of PK (SiteID, LocalJobId) lookups. Rows
    # with the same LocalJobId but another EndTime also match; recomputing their key too
    # is harmless.
    by_site: dict[Any, set] = {}
    for row in rows:
        by_site.setdefault(row[site], set()).add(row[job_id])
    for site_id, ids in by_site.items():
        ordered = sorted(ids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start:start + _CHUNK]
            marks = ", ".join([mark] * len(chunk))
            tx.execute(select + f" WHERE SiteID = {mark} AND LocalJobId IN ({marks})", [site_id, *chunk])


def _old_cloud_months(
    tx: Transaction, dialect: str, mark: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    vm = columns.index("VMUUID")
    select = (
        "INSERT INTO PendingCloudMonths (SiteID, Year, Month)"
        " SELECT DISTINCT SiteID, MeasurementYear, MeasurementMonth FROM CloudRecords"
    )
    vms = sorted({row[vm] for row in rows})
    if dialect == "sqlite":
        where = " WHERE rtrim(VMUUID, ' ') = rtrim(?, ' ') COLLATE NOCASE"
        tx.executemany(select + where, [(v,) for v in vms])
        return
    for start in range(0, len(vms), _CHUNK):
        chunk = vms[start:start + _CHUNK]
        tx.execute(select + f" WHERE VMUUID IN ({', '.join([mark] * len(chunk))})", chunk)

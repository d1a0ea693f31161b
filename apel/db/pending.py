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

The MySQL backend works column-wise instead (:func:`summary_keys`,
:func:`replaced_job_keys`): one locking read of the stored jobs a message is about to
replace, then every key in one bulk insert. A message of 1,000 jobs usually feeds far
fewer HSS rows, so keys are written once per message, not once per record; the key of a
replaced job is written only when it is not among the message's own keys (a reload of
the same jobs adds nothing beyond the message's keys).

**Two kinds of entry.** A *recompute entry* (delta columns NULL) says "recompute this
key from all its sources". A *delta entry* (MySQL backend only, :func:`job_deltas`)
says "these jobs were added at this key and nothing was replaced": it carries what they
add to the key's HSS row (min/max EndTime, Wall and Cpu sums, count, smallest
InfrastructureDescription), so the summariser can add it to the row without reading
the key's other jobs, and an incremental run costs in proportion to what was loaded,
not to the size of the touched groups. The MySQL backend writes delta entries for a
job message whose write replaced no stored row (nor an earlier row of the message);
everything else (replacing job messages, summaries, normalised summaries, and every
load through the SQLite backend, which keeps the generic hooks below) writes recompute
entries. The summariser still recomputes a key with a delta entry when the delta may
not be added: a summary feeds the row, or the row is stale (``StaleSummaryKeys``).

**The gate** (``Dialect.gate_shared`` and ``gate_exclusive``; MySQL's). A delta is exact
only if each job is counted once: either by a recomputation or by adding its delta,
never both. So every summariser transaction must see a fixed set of committed loads.
``SummariserGate`` holds one row: a ``load_message`` transaction that writes HSS sources
first reads it in share mode (``LOCK IN SHARE MODE``; loaders do not wait on each
other), every summariser transaction exclusively (``FOR UPDATE``), which waits for the
loads in progress and holds new ones back until it commits. An engine that serialises
writers anyway (SQLite) has no gate.

Both tables only ever get plain inserts (auto-increment ids, no other unique key), so
concurrent loaders never wait on each other here. The summariser deletes what it has
covered: each of its transactions the entries it read (all those of its site-months), a
full run's the entries of the site-month it recomputed; entries committed later stay
for the next run.
"""

# Every statement here is built from this module's fixed table and column names and the
# backend's placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import repeat
from typing import Any, Optional

from apel.db import tables
from apel.db.backend import Transaction
from apel.db.dialect import Dialect, Kind
from apel.records import model

# HSS key columns of PendingSummaryKeys, in this order, and the text columns among them.
KEY_COLUMNS = tables.HSS_KEY
KEY_TEXT_COLUMNS = tables.STALE_SUMMARY_KEYS.text_columns()
# The delta columns of PendingSummaryKeys, in this order: NULL in a recompute entry, set
# in a delta entry (what the added jobs of one key contribute to its HSS row).
DELTA_COLUMNS = tables.PENDING_SUMMARY_KEYS.names[1 + len(KEY_COLUMNS):]
DELTA_TEXT_COLUMNS = frozenset(
    c.name for c in tables.PENDING_SUMMARY_KEYS.columns if c.kind is Kind.TEXT and c.name != "id")
# BIGINT UNSIGNED, the type of the sums in PendingSummaryKeys and HSS.
_SUM_MAX = 2**64 - 1
# The columns of each source table that make up the HSS key, in KEY_COLUMNS order
# (None: a constant 0, the ServiceLevel of a normalised summary's HSS row).
_SOURCE_KEYS: dict[str, tuple[Optional[str], ...]] = {
    record_type: tables.HSS_SOURCE_KEYS[tables.RECORD_TABLES[record_type].table.name]
    for record_type in (model.JOB, model.SUMMARY, model.NORMALISED_SUMMARY)
}
# A job's key columns in JobRecords (all are columns there), and the text ones among them.
_JOB_KEY = tuple(str(column) for column in _SOURCE_KEYS[model.JOB])
_JOB_KEY_TEXT = frozenset(_JOB_KEY) & tables.JOB.table.text_columns()
# The record types that feed HSS rows (and PendingSummaryKeys).
HSS_SOURCES = frozenset(_SOURCE_KEYS)
_CLOUD_KEY = ("SiteID", "MeasurementYear", "MeasurementMonth")
_CHUNK = 500
# Job ids per locking read of replaced_job_keys (each one a parameter). The read returns
# one text of at most this many keys, ~700 characters each at worst (long text columns in
# hexadecimal): the MySQL backend's session allows GROUP_CONCAT 4 MB.
IDS_PER_READ = 1000


def _insert_keys(mark: str) -> str:
    marks = ", ".join([mark] * len(KEY_COLUMNS))
    return f"INSERT INTO PendingSummaryKeys ({', '.join(KEY_COLUMNS)}) VALUES ({marks})"


def before_write(
    tx: Transaction, dialect: Dialect, record_type: str, columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Record what the rows about to be replaced fed (their ids already substituted)."""
    if record_type == model.JOB:
        _old_job_keys(tx, dialect, columns, rows)
    elif record_type == model.CLOUD:
        _old_cloud_months(tx, dialect, columns, rows)


def after_write(
    tx: Transaction, dialect: Dialect, record_type: str, columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Record the HSS keys (or cloud site-months) of the rows just written."""
    mark = dialect.placeholder
    if record_type in _SOURCE_KEYS:
        keys = summary_keys(record_type, columns, list(zip(*rows)) if rows else [[] for _ in columns])
        if keys:
            tx.executemany(_insert_keys(mark), keys)
    elif record_type == model.CLOUD:
        positions = [columns.index(c) for c in _CLOUD_KEY]
        months = {tuple(row[p] for p in positions) for row in rows}
        if months:
            tx.executemany(
                f"INSERT INTO PendingCloudMonths (SiteID, Year, Month) VALUES ({mark}, {mark}, {mark})",
                sorted(months),
            )


def summary_keys(
    record_type: str, columns: Sequence[str], data: Sequence[Sequence[Any]]
) -> list[tuple]:
    """The distinct HSS keys (in KEY_COLUMNS order, first occurrence first) of rows given
    column by column (``data[i]`` holds the values of ``columns[i]``, ids substituted);
    none for a record type that feeds no HSS row."""
    sources = _SOURCE_KEYS.get(record_type)
    if sources is None or not data or not data[0]:
        return []
    count = len(data[0])
    key_columns = [repeat(0, count) if c is None else data[columns.index(c)] for c in sources]
    return list(dict.fromkeys(zip(*key_columns)))


def job_deltas(columns: Sequence[str], data: Sequence[Sequence[Any]]) -> Optional[list[list[Any]]]:
    """Delta entries for job rows that replaced nothing, column by column like ``data``
    (``data[i]`` holds the values of ``columns[i]``, ids substituted; the result's columns
    are KEY_COLUMNS + DELTA_COLUMNS): one entry per distinct key (byte for byte, first
    occurrence first), holding what those jobs add to the key's HSS row. The summariser
    merges entries whose keys are equal under the collation.

    The values are what the database stores, so the aggregates equal a recomputation's:
    min/max EndTime (naive UTC datetimes), sums of WallDuration and CpuDuration, the job
    count, and the binary-smallest InfrastructureDescription (Python orders ``str`` by
    code point, as the database orders the UTF-8 bytes). None if a sum does not fit
    BIGINT UNSIGNED: such jobs are recorded as recompute entries instead, so the load
    never fails on its bookkeeping. Most jobs of a message have a key of their own; they
    become entries as they are, column by column, without a pass per row.
    """
    if not data or not data[0]:
        return []
    key_columns = [data[columns.index(c)] for c in _JOB_KEY]
    description, end, wall, cpu = (data[columns.index(c)] for c in (
        "InfrastructureDescription", "EndTime", "WallDuration", "CpuDuration"))
    count = len(data[0])
    keys = list(zip(*key_columns))
    positions: dict[tuple, Any] = dict(zip(keys, range(count)))  # the last position of each key
    if len(positions) == count:  # every key once (a single job's values fit the columns)
        return [*key_columns, description, end, end, wall, cpu, [1] * count]  # type: ignore[list-item]
    for at, key in enumerate(keys):  # a key met more than once: the list of its positions
        found = positions[key]
        if isinstance(found, list):
            found.append(at)
        elif found != at:  # the first of several
            positions[key] = [at]
    entries = []
    for key, found in positions.items():
        if isinstance(found, int):
            entries.append((*key, description[found], end[found], end[found], wall[found], cpu[found], 1))
            continue
        walls, cpus = sum(wall[at] for at in found), sum(cpu[at] for at in found)
        if walls > _SUM_MAX or cpus > _SUM_MAX:
            return None
        ends = [end[at] for at in found]
        entries.append((*key, min(description[at] for at in found), min(ends), max(ends), walls, cpus,
                        len(found)))
    return [list(values) for values in zip(*entries)]


def replaced_job_keys(
    tx: Transaction, mark: str, columns: Sequence[str], data: Sequence[Sequence[Any]],
    new_keys: Sequence[tuple],
) -> list[tuple]:
    """The keys of stored jobs the rows may replace that are not among ``new_keys``.

    MySQL/MariaDB, before the rows are written. One locking read per 1,000 job ids (a
    range of primary-key lookups per site): it sees rows other loaders committed after
    this transaction's snapshot and keeps them from changing until this one commits, so
    a concurrent load of the same jobs cannot slip in between. The server returns the
    distinct stored keys as one text (see :data:`_KEY_TEXT`): a reload of 1,000 jobs
    costs one value to read, not 13,000. Stored rows with the same LocalJobId but
    another EndTime also match, and their keys are recorded too, which is harmless; so
    is a key that equals a new one under the collation but not byte for byte.
    """
    site_at, job_at = columns.index("SiteID"), columns.index("LocalJobId")
    by_site: dict[Any, dict[str, None]] = {}
    for site, job_id in zip(data[site_at], data[job_at]):
        by_site.setdefault(site, {})[job_id] = None
    select = f"SELECT GROUP_CONCAT(DISTINCT {_KEY_TEXT} SEPARATOR ' ') FROM JobRecords WHERE "
    terms: list[str] = []
    params: list[Any] = []
    stored: set[str] = set()

    def read() -> None:
        ((found,),) = tx.query(select + " OR ".join(terms) + " FOR UPDATE", params)
        if found:
            stored.update((found.decode("ascii") if isinstance(found, bytes) else found).split(" "))
        terms.clear()
        params.clear()

    for site, job_ids in by_site.items():
        ids = list(job_ids)
        for start in range(0, len(ids), IDS_PER_READ):
            chunk = ids[start:start + IDS_PER_READ]
            if params and len(params) + len(chunk) > IDS_PER_READ:
                read()
            terms.append(f"(SiteID = {mark} AND LocalJobId IN ({', '.join([mark] * len(chunk))}))")
            params.append(site)
            params.extend(chunk)
    if terms:
        read()
    if not stored:
        return []
    stored.difference_update(_key_texts(new_keys))
    return [_key_from_text(text) for text in sorted(stored)]


# A job's HSS key as one text, unambiguously: numbers as MySQL prints them (ServiceLevel
# with its 3 decimals), the two text columns in hexadecimal (so no separator can occur).
_KEY_TEXT = "CONCAT_WS(',', {})".format(", ".join(
    f"HEX({column})" if column in _JOB_KEY_TEXT else column for column in _JOB_KEY
))
# positions of the text columns and the decimal column (ServiceLevel) in a key
_KEY_TEXT_AT = frozenset(i for i, column in enumerate(_JOB_KEY) if column in _JOB_KEY_TEXT)
_KEY_DECIMAL_AT = _JOB_KEY.index("ServiceLevel")


def _key_texts(keys: Sequence[tuple]) -> set[str]:
    """:data:`_KEY_TEXT` of keys built in Python, column by column (few distinct values)."""
    texts = []
    for position, values in enumerate(zip(*keys)):
        encode = _hex if position in _KEY_TEXT_AT else str
        text_of = {value: encode(value) for value in set(values)}
        texts.append(map(text_of.__getitem__, values))
    return set(map(",".join, zip(*texts)))


def _hex(value: str) -> str:
    return value.encode("utf-8").hex().upper()


def _key_from_text(text: str) -> tuple:
    parts = text.split(",")
    return tuple(
        bytes.fromhex(part).decode("utf-8") if position in _KEY_TEXT_AT
        else Decimal(part) if position == _KEY_DECIMAL_AT else int(part)
        for position, part in enumerate(parts)
    )


def _old_job_keys(
    tx: Transaction, dialect: Dialect, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    site, job_id, end = (columns.index(c) for c in ("SiteID", "LocalJobId", "EndTime"))
    mark = dialect.placeholder
    select = (
        f"INSERT INTO PendingSummaryKeys ({', '.join(KEY_COLUMNS)})"
        f" SELECT {', '.join(_JOB_KEY)} FROM JobRecords"
    )
    if dialect.embedded:
        # in-process: one indexed probe per record is cheap, and matches the PK exactly.
        # A stored row whose key equals (byte for byte) the key of the row replacing it
        # needs no entry of its own: after_write records that key.
        keys = _JOB_KEY
        positions = [columns.index(c) for c in keys]
        same = " AND ".join(
            dialect.identical(c, mark) if c in _JOB_KEY_TEXT else f"{c} = {mark}"
            for c in keys
        )
        tx.executemany(
            select + f" WHERE SiteID = {mark} AND {dialect.same('LocalJobId', mark)}"
            f" AND EndTime = {mark} AND NOT ({same})",
            [(row[site], row[job_id], row[end], *(row[p] for p in positions)) for row in rows],
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
            tx.execute(select + f" WHERE SiteID = {mark} AND {dialect.matches_any('LocalJobId', len(chunk))}",
                       [site_id, *chunk])


def _old_cloud_months(
    tx: Transaction, dialect: Dialect, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    vm = columns.index("VMUUID")
    select = (
        "INSERT INTO PendingCloudMonths (SiteID, Year, Month)"
        " SELECT DISTINCT SiteID, MeasurementYear, MeasurementMonth FROM CloudRecords"
    )
    vms = sorted({row[vm] for row in rows})
    if dialect.embedded:
        tx.executemany(select + f" WHERE {dialect.same('VMUUID', dialect.placeholder)}", [(v,) for v in vms])
        return
    for start in range(0, len(vms), _CHUNK):
        chunk = vms[start:start + _CHUNK]
        tx.execute(select + f" WHERE {dialect.matches_any('VMUUID', len(chunk))}", chunk)

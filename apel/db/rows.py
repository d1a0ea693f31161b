"""Record dicts -> table rows: one place for every storage rule both backends share.

The old server computed derived columns inside stored procedures the tests could not
see, and let MySQL clamp or truncate values depending on its SQL mode. Here every rule
is plain Python, applied before the database is touched:

- EndYear/EndMonth from the UTC EndTime; Processors/NodeCount null -> 0;
- ServiceLevel (and the cloud CpuCount/Benchmark) rounded to 3 decimals, half away
  from zero, on the decimal text of the value (``Decimal``), null -> 0 where the
  column is part of a key;
- the cloud MeasurementTime/Month/Year of ``database.md`` §8.1;
- datetimes become naive UTC (the database stores UTC);
- every value is checked against its column (text length, integer range, decimal
  range, datetime range), so a bad value is refused with a reason naming the record
  and field, identically on MySQL and SQLite, and nothing is ever clamped.

A :class:`Layout` says which columns a record type fills, which of them hold a name to
be replaced by a lookup-table id (``lookups``) and where the publisher DN goes. The
backends only resolve names to ids and write the rows.
"""

from __future__ import annotations

import abc
import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import repeat
from math import isfinite
from operator import add, attrgetter, methodcaller, sub
from typing import Any, Callable, Optional

from apel.db.backend import StorageError
from apel.records import model
from apel.records.quote import quote

UTC = _dt.timezone.utc

# Every lookup table: id <-> name. GroupNames, not Groups (a reserved word in MySQL 8).
LOOKUP_TABLES = (
    "Sites", "DNs", "SubmitHosts", "MachineNames", "Queues", "VOs", "VORoles", "VOGroups",
    "CloudComputeServices", "StorageSystems", "StorageShares", "StorageMedia", "StorageClasses",
    "UserIdentities", "GroupNames", "SubGroups", "Roles",
)
NAME_LENGTH = 255

# The views the unloader reads (its allowed table_name values).
VIEWS = (
    "VJobRecords", "VSummaries", "VSuperSummaries", "VNormalisedSummaries",
    "VNormalisedSuperSummaries", "VSyncRecords", "VCloudRecords", "VAnonCloudRecords",
    "VCloudSummaries", "VStarRecords",
)

# Columns holding datetimes or 3-decimal values, by name, in any table or view: the
# SQLite backend uses these to return the same Python types as MySQL.
DATETIME_COLUMNS = frozenset({
    "UpdateTime", "StartTime", "EndTime", "EarliestEndTime", "LatestEndTime", "RecordCreateTime",
    "MeasurementTime", "EarliestStartTime", "LatestStartTime", "CreateTime", "AppliedTime",
})
DECIMAL_COLUMNS = frozenset({"ServiceLevel", "CpuCount", "Benchmark"})

INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1
# BIGINT UNSIGNED on MySQL goes to 2^64-1, but SQLite integers stop at 2^63-1; one limit
# keeps both backends accepting the same values.
BIG_MAX = 2**63 - 1
DECIMAL_MAX = Decimal("9999999.999")  # DECIMAL(10,3)
_MILLI = Decimal("0.001")
_DT_MIN = _dt.datetime(1000, 1, 1)  # MySQL DATETIME range
_DT_MAX = _dt.datetime(9999, 12, 31, 23, 59, 59)

class _Refused(ValueError):
    """A value its column cannot hold; becomes a StorageError naming record and field."""


# -- converters: message value -> database value --------------------------------------
#
# Each converter checks and converts a whole column of a message at once: the common
# case (all values of the expected type and in range) runs in a few C-level passes
# (``set(map(type, ...))``, ``min``/``max``), so a 1,000-record message costs
# milliseconds; anything unusual falls back to the per-value ``one`` that names the
# problem.

_NoneType = type(None)


class _Converter(abc.ABC):
    @abc.abstractmethod
    def one(self, value: Any) -> Any:
        """Convert one value, or raise ValueError naming the problem."""

    def many(self, values: list[Any]) -> list[Any]:
        return [self.one(value) for value in values]


class _Text(_Converter):
    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def one(self, value: Any) -> str:
        if value is None:
            return "None"
        if not isinstance(value, str):
            raise _Refused(f"expected text, got {type(value).__name__} {quote(value)}")
        if len(value) > self.max_length:
            raise _Refused(f"{len(value)} characters, the column holds at most {self.max_length}")
        return value

    def many(self, values: list[Any]) -> list[Any]:
        if set(map(type, values)) == {str} and max(map(len, values)) <= self.max_length:
            return values
        return [self.one(value) for value in values]


class _Integer(_Converter):
    def __init__(self, low: int, high: int, null: Optional[int] = None, nullable: bool = True) -> None:
        self.low, self.high, self.null, self.nullable = low, high, null, nullable

    def one(self, value: Any) -> Optional[int]:
        if value is None:
            if self.null is not None:
                return self.null
            if self.nullable:
                return None
            raise _Refused("is missing, and the database requires a value")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Refused(f"expected an integer, got {type(value).__name__} {quote(value)}")
        if value < self.low:
            if self.low == 0:
                raise _Refused(f"{quote(value)} is negative; the column is unsigned")
            raise _Refused(f"{quote(value)} is below the column's minimum {self.low}")
        if value > self.high:
            raise _Refused(f"{quote(value)} exceeds the column's maximum {self.high}")
        return value

    def many(self, values: list[Any]) -> list[Any]:
        types = set(map(type, values))
        if types == {int}:
            if min(values) >= self.low and max(values) <= self.high:
                return values
        elif types == {int, _NoneType} and (self.nullable or self.null is not None):
            present = [value for value in values if value is not None]
            if min(present) >= self.low and max(present) <= self.high:
                if self.null is None:
                    return values
                null = self.null
                return [null if value is None else value for value in values]
        return [self.one(value) for value in values]


def round_decimal3(value: Any) -> Decimal:
    """``value`` rounded to 3 decimals, half away from zero, on its decimal text.

    ``repr`` of a float is the shortest text that reads back as the same float, i.e.
    the number as it was written in the message, so 2.0005 rounds to 2.001 (binary
    floating point would give 2.000).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise _Refused(f"expected a number, got {type(value).__name__} {quote(value)}")
    try:
        exact = value if isinstance(value, Decimal) else Decimal(repr(value))
        rounded = exact.quantize(_MILLI, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise _Refused(f"{quote(value)} is not a finite number") from None
    if not rounded.is_finite():
        raise _Refused(f"{quote(value)} is not a finite number")
    return rounded


_ROUND3 = methodcaller("quantize", _MILLI, ROUND_HALF_UP)


class _Decimal3(_Converter):
    def __init__(self, null: Optional[Decimal], unsigned: bool = False) -> None:
        self.null, self.unsigned = null, unsigned

    def one(self, value: Any) -> Optional[Decimal]:
        if value is None:
            if self.null is None:
                raise _Refused("is missing, and the database requires a value")
            return self.null
        rounded = round_decimal3(value)
        if abs(rounded) > DECIMAL_MAX:
            raise _Refused(f"{quote(value)} is outside the column's range ±{DECIMAL_MAX}")
        if self.unsigned and rounded < 0:
            raise _Refused(f"{quote(value)} is negative; the column is unsigned")
        return rounded

    def many(self, values: list[Any]) -> list[Any]:
        distinct = set(values)
        types = set(map(type, distinct))
        if bool in types:  # True == 1 would share 1's conversion below
            return [self.one(value) for value in values]
        if types == {float} and all(map(isfinite, distinct)):
            # the usual case, in a few C-level passes: each distinct value once, through
            # its decimal text (repr), as round_decimal3 does
            rounded = list(map(_ROUND3, map(Decimal, map(repr, distinct))))
            if max(rounded) <= DECIMAL_MAX and min(rounded) >= (0 if self.unsigned else -DECIMAL_MAX):
                converted = dict(zip(distinct, rounded))
                return list(map(converted.__getitem__, values))
        converted = {value: self.one(value) for value in distinct}
        return list(map(converted.__getitem__, values))


def to_naive_utc(value: _dt.datetime) -> _dt.datetime:
    """A naive datetime in UTC, as the DATETIME columns store it (naive input is UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


class _Datetime(_Converter):
    def __init__(self, nullable: bool) -> None:
        self.nullable = nullable

    def one(self, value: Any) -> Optional[_dt.datetime]:
        if value is None:
            if self.nullable:
                return None
            raise _Refused("is missing, and the database requires a value")
        if not isinstance(value, _dt.datetime):
            raise _Refused(f"expected a datetime, got {type(value).__name__} {quote(value)}")
        naive = to_naive_utc(value)
        if naive < _DT_MIN or naive > _DT_MAX:
            raise _Refused(f"{value.isoformat()} is outside the storable range (years 1000 to 9999)")
        return naive.replace(microsecond=0)

    def many(self, values: list[Any]) -> list[Any]:
        types = set(map(type, values))
        present = values
        if types == {_dt.datetime, _NoneType} and self.nullable:
            present = [value for value in values if value is not None]
        elif types != {_dt.datetime}:
            return [self.one(value) for value in values]
        # timezone(timedelta(0)) == timezone.utc, so this accepts any fixed UTC zone
        if set(map(_TZINFO, present)) == {UTC}:
            # naive = epoch + (value - UTC epoch): two C-level operations per value, several
            # times cheaper than value.replace(tzinfo=None) with its keyword argument
            naive = list(map(add, repeat(_EPOCH), map(sub, present, repeat(_UTC_EPOCH))))
            if min(naive) >= _DT_MIN and max(naive) <= _DT_MAX and not any(map(_MICROSECOND, naive)):
                if present is values:
                    return naive
                found = iter(naive)
                return [None if value is None else next(found) for value in values]
        return [self.one(value) for value in values]


_TZINFO = attrgetter("tzinfo")
_MICROSECOND = attrgetter("microsecond")
_EPOCH = _dt.datetime(1970, 1, 1)
_UTC_EPOCH = _EPOCH.replace(tzinfo=UTC)


def _text(max_length: int) -> _Converter:
    return _Text(max_length)


def _name() -> _Converter:
    return _Text(NAME_LENGTH)


# Column kinds, named for the MySQL column types they stand for.
_UINT_NULL0 = _Integer(0, UINT_MAX, null=0)             # INT UNSIGNED, null -> 0
_UINT = _Integer(0, UINT_MAX, nullable=False)           # INT UNSIGNED NOT NULL
_INT = _Integer(-INT_MAX - 1, INT_MAX, nullable=False)  # INT NOT NULL
_BIG = _Integer(0, BIG_MAX, nullable=False)             # BIGINT UNSIGNED NOT NULL
_BIG_NULL = _Integer(0, BIG_MAX)                        # BIGINT UNSIGNED NULL
_SBIG_NULL = _Integer(-BIG_MAX - 1, BIG_MAX)            # BIGINT NULL
_SBIG = _Integer(-BIG_MAX - 1, BIG_MAX, nullable=False)  # BIGINT NOT NULL
_DT = _Datetime(nullable=False)
_DT_NULL = _Datetime(nullable=True)
_ZERO = Decimal("0.000")


def _decimal3(null: Optional[Decimal], unsigned: bool = False) -> _Converter:
    return _Decimal3(null, unsigned)


# -- layouts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One database column filled from one record field."""

    column: str
    field: str
    convert: _Converter
    lookup: Optional[str] = None  # the lookup table when the column holds its id


@dataclass(frozen=True)
class Layout:
    """How the records of one type become rows of one table.

    A row lists the values of :attr:`columns` in order. At :attr:`lookup_positions` it
    holds the *name* (``str``); the backend replaces it by the lookup table's id. The
    publisher DN, when the table stores one, is the last column (``PublisherDNID``):
    a DNs lookup; with ``publisher_as_text`` the id is stored as text (CloudSummaries).
    """

    record_type: str
    table: str
    sources: tuple[Source, ...]
    derived: tuple[str, ...] = ()
    # computes the derived columns from the converted source columns
    derive: Optional[Callable[[list[list[Any]]], Sequence[list[Any]]]] = None
    publisher: bool = True
    publisher_as_text: bool = False
    columns: tuple[str, ...] = field(init=False)
    lookup_positions: tuple[tuple[int, str], ...] = field(init=False)
    # columns holding text (never NULL: a null string is 'None'); all others may be NULL
    text_columns: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        columns = [src.column for src in self.sources] + list(self.derived)
        lookups = [(i, src.lookup) for i, src in enumerate(self.sources) if src.lookup]
        if self.publisher:
            lookups.append((len(columns), "DNs"))
            columns.append("PublisherDNID")
        text = {src.column for src in self.sources if isinstance(src.convert, _Text) and not src.lookup}
        if self.publisher and self.publisher_as_text:
            text.add("PublisherDNID")
        object.__setattr__(self, "columns", tuple(columns))
        object.__setattr__(self, "lookup_positions", tuple(lookups))
        object.__setattr__(self, "text_columns", frozenset(text))

    def positions_of(self, kind: type) -> tuple[int, ...]:
        """Positions of the columns whose built values are of ``kind`` (datetime, Decimal)."""
        found = []
        for i, column in enumerate(self.columns):
            if kind is _dt.datetime and column in DATETIME_COLUMNS:
                found.append(i)
            if kind is Decimal and column in DECIMAL_COLUMNS:
                found.append(i)
        return tuple(found)

    def build(self, records: Sequence[model.Record], publisher_dn: str = "") -> list[list[Any]]:
        """Rows for ``records``; StorageError names a refused record (1-based) and field."""
        return transpose(self.build_columns(records, publisher_dn))

    def build_columns(self, records: Sequence[model.Record], publisher_dn: str = "") -> list[list[Any]]:
        """The values of each of :attr:`columns` for ``records`` (column-major)."""
        if not records:
            return [[] for _ in self.columns]
        columns = []
        count = len(records)
        for src in self.sources:
            name = src.field
            values = list(map(dict.get, records, repeat(name, count)))
            try:
                columns.append(src.convert.many(values))
            except (_Refused, OverflowError):
                self._refuse(src, values)
        if self.derive is not None:
            try:
                columns.extend(self.derive(columns))
            except (_Refused, OverflowError) as exc:
                raise StorageError(f"{self.record_type} record: {exc}") from None
        if self.publisher:
            columns.append([publisher_dn] * len(records))
        return columns

    def _refuse(self, src: Source, values: list[Any]) -> None:
        for number, value in enumerate(values, 1):
            try:
                src.convert.one(value)
            except (_Refused, OverflowError) as exc:
                raise StorageError(f"{self.record_type} record {number}: {src.field} {exc}") from None
        raise StorageError(f"{self.record_type}: {src.field} holds values the column cannot store")


def _text_column(column: str, max_length: int = NAME_LENGTH) -> Source:
    return Source(column, column, _text(max_length))


def _lookup(column: str, field_name: str, table: str) -> Source:
    return Source(column, field_name, _name(), lookup=table)


def _index(sources: Sequence[Source], column: str) -> int:
    return [src.column for src in sources].index(column)


# Job records -> JobRecords
_JOB_SOURCES = (
    _lookup("SiteID", "Site", "Sites"),
    _lookup("SubmitHostID", "SubmitHost", "SubmitHosts"),
    _lookup("MachineNameID", "MachineName", "MachineNames"),
    _lookup("QueueID", "Queue", "Queues"),
    Source("LocalJobId", "LocalJobId", _text(NAME_LENGTH)),
    _text_column("LocalUserId"),
    _lookup("GlobalUserNameID", "GlobalUserName", "DNs"),
    _text_column("FQAN"),
    _lookup("VOID", "VO", "VOs"),
    _lookup("VOGroupID", "VOGroup", "VOGroups"),
    _lookup("VORoleID", "VORole", "VORoles"),
    Source("WallDuration", "WallDuration", _BIG),
    Source("CpuDuration", "CpuDuration", _BIG),
    Source("Processors", "Processors", _UINT_NULL0),
    Source("NodeCount", "NodeCount", _UINT_NULL0),
    Source("StartTime", "StartTime", _DT),
    Source("EndTime", "EndTime", _DT),
    _text_column("InfrastructureDescription", 100),
    _text_column("InfrastructureType", 20),
    Source("MemoryReal", "MemoryReal", _BIG_NULL),
    Source("MemoryVirtual", "MemoryVirtual", _BIG_NULL),
    _text_column("ServiceLevelType", 50),
    Source("ServiceLevel", "ServiceLevel", _decimal3(null=None)),
)
_JOB_END = _index(_JOB_SOURCES, "EndTime")


def _job_derive(columns: list[list[Any]]) -> tuple[list[int], list[int]]:
    ends = columns[_JOB_END]  # already naive UTC
    return list(map(_YEAR, ends)), list(map(_MONTH, ends))


_YEAR = attrgetter("year")
_MONTH = attrgetter("month")


JOB = Layout(model.JOB, "JobRecords", _JOB_SOURCES, ("EndYear", "EndMonth"), _job_derive)

_SUMMARY_HEAD = (
    _lookup("SiteID", "Site", "Sites"),
    Source("Month", "Month", _INT),
    Source("Year", "Year", _INT),
    _lookup("GlobalUserNameID", "GlobalUserName", "DNs"),
    _lookup("VOID", "VO", "VOs"),
    _lookup("VOGroupID", "VOGroup", "VOGroups"),
    _lookup("VORoleID", "VORole", "VORoles"),
    _lookup("SubmitHostID", "SubmitHost", "SubmitHosts"),
)

SUMMARY = Layout(model.SUMMARY, "Summaries", _SUMMARY_HEAD + (
    _text_column("InfrastructureType", 20),
    _text_column("InfrastructureDescription", 100),
    _text_column("ServiceLevelType", 50),
    Source("ServiceLevel", "ServiceLevel", _decimal3(null=None)),
    Source("NodeCount", "NodeCount", _UINT),
    Source("Processors", "Processors", _UINT),
    Source("EarliestEndTime", "EarliestEndTime", _DT_NULL),
    Source("LatestEndTime", "LatestEndTime", _DT_NULL),
    Source("WallDuration", "WallDuration", _BIG),
    Source("CpuDuration", "CpuDuration", _BIG),
    Source("NumberOfJobs", "NumberOfJobs", _BIG),
))

NORMALISED_SUMMARY = Layout(model.NORMALISED_SUMMARY, "NormalisedSummaries", _SUMMARY_HEAD + (
    _text_column("Infrastructure", 20),
    _text_column("InfrastructureDescription", 100),
    _text_column("ServiceLevelType", 50),
    Source("NodeCount", "NodeCount", _UINT_NULL0),
    Source("Processors", "Processors", _UINT_NULL0),
    Source("EarliestEndTime", "EarliestEndTime", _DT_NULL),
    Source("LatestEndTime", "LatestEndTime", _DT_NULL),
    Source("WallDuration", "WallDuration", _BIG),
    Source("CpuDuration", "CpuDuration", _BIG),
    Source("NormalisedWallDuration", "NormalisedWallDuration", _BIG),
    Source("NormalisedCpuDuration", "NormalisedCpuDuration", _BIG),
    Source("NumberOfJobs", "NumberOfJobs", _BIG),
))

SYNC = Layout(model.SYNC, "SyncRecords", (
    _lookup("SiteID", "Site", "Sites"),
    _lookup("SubmitHostID", "SubmitHost", "SubmitHosts"),
    Source("NumberOfJobs", "NumberOfJobs", _BIG),
    Source("Month", "Month", _INT),
    Source("Year", "Year", _INT),
))

_CLOUD_SOURCES = (
    _text_column("VMUUID"),
    _lookup("SiteID", "SiteName", "Sites"),
    _lookup("CloudComputeServiceID", "CloudComputeService", "CloudComputeServices"),
    _text_column("MachineName"),
    _text_column("LocalUserId"),
    _text_column("LocalGroupId"),
    _lookup("GlobalUserNameID", "GlobalUserName", "DNs"),
    _text_column("FQAN"),
    _lookup("VOID", "VO", "VOs"),
    _lookup("VOGroupID", "VOGroup", "VOGroups"),
    _lookup("VORoleID", "VORole", "VORoles"),
    _text_column("Status"),
    Source("StartTime", "StartTime", _DT_NULL),
    Source("EndTime", "EndTime", _DT_NULL),
    Source("RecordCreateTime", "RecordCreateTime", _DT_NULL),
    Source("SuspendDuration", "SuspendDuration", _BIG_NULL),
    Source("WallDuration", "WallDuration", _BIG_NULL),
    Source("CpuDuration", "CpuDuration", _BIG_NULL),
    Source("CpuCount", "CpuCount", _decimal3(null=_ZERO, unsigned=True)),
    _text_column("NetworkType"),
    Source("NetworkInbound", "NetworkInbound", _BIG_NULL),
    Source("NetworkOutbound", "NetworkOutbound", _BIG_NULL),
    Source("PublicIPCount", "PublicIPCount", _BIG_NULL),
    Source("Memory", "Memory", _BIG_NULL),
    Source("Disk", "Disk", _BIG_NULL),
    _text_column("BenchmarkType", 50),
    Source("Benchmark", "Benchmark", _decimal3(null=_ZERO)),
    _text_column("StorageRecordId"),
    _text_column("ImageId"),
    _text_column("CloudType"),
)
_C = {src.column: i for i, src in enumerate(_CLOUD_SOURCES)}


def measurement_time(
    status: str,
    start: Optional[_dt.datetime],
    end: Optional[_dt.datetime],
    created: Optional[_dt.datetime],
    suspend: Optional[int],
    wall: Optional[int],
) -> Optional[_dt.datetime]:
    """The cloud record's MeasurementTime (``database.md`` §8.1), or None for "unknown".

    ``completed``: EndTime. Otherwise RecordCreateTime if given, else StartTime +
    SuspendDuration + WallDuration (nulls count as 0). Where the old schema stored the
    zero date (completed without EndTime, or no StartTime), this returns None: strict
    SQL modes forbid zero dates, so the row gets a NULL MeasurementTime and month/year 0.
    The Status comparison is case-insensitive, as MySQL's was.
    """
    if status.lower() == "completed":
        return end
    if created is not None:
        return created
    if start is None:
        return None
    return start + _dt.timedelta(seconds=(suspend or 0) + (wall or 0))


def _cloud_derive(columns: list[list[Any]]) -> tuple[list[Any], list[int], list[int]]:
    times, months, years = [], [], []
    inputs = zip(
        columns[_C["Status"]], columns[_C["StartTime"]], columns[_C["EndTime"]],
        columns[_C["RecordCreateTime"]], columns[_C["SuspendDuration"]], columns[_C["WallDuration"]],
    )
    for number, args in enumerate(inputs, 1):
        when = measurement_time(*args)
        if when is not None and when > _DT_MAX:
            raise _Refused(f"{number}: MeasurementTime {when.isoformat()} is beyond the storable range")
        times.append(when)
        months.append(0 if when is None else when.month)
        years.append(0 if when is None else when.year)
    return times, months, years


CLOUD = Layout(
    model.CLOUD, "CloudRecords", _CLOUD_SOURCES,
    ("MeasurementTime", "MeasurementMonth", "MeasurementYear"), _cloud_derive,
)

CLOUD_SUMMARY = Layout(model.CLOUD_SUMMARY, "CloudSummaries", (
    _lookup("SiteID", "SiteName", "Sites"),
    _lookup("CloudComputeServiceID", "CloudComputeService", "CloudComputeServices"),
    Source("Month", "Month", _INT),
    Source("Year", "Year", _INT),
    _lookup("GlobalUserNameID", "GlobalUserName", "DNs"),
    _lookup("VOID", "VO", "VOs"),
    _lookup("VOGroupID", "VOGroup", "VOGroups"),
    _lookup("VORoleID", "VORole", "VORoles"),
    _text_column("Status"),
    _text_column("CloudType"),
    _text_column("ImageId"),
    Source("EarliestStartTime", "EarliestStartTime", _DT_NULL),
    Source("LatestStartTime", "LatestStartTime", _DT_NULL),
    Source("WallDuration", "WallDuration", _SBIG_NULL),
    Source("CpuDuration", "CpuDuration", _SBIG_NULL),
    Source("CpuCount", "CpuCount", _decimal3(null=_ZERO, unsigned=True)),
    Source("NetworkInbound", "NetworkInbound", _SBIG_NULL),
    Source("NetworkOutbound", "NetworkOutbound", _SBIG_NULL),
    Source("Memory", "Memory", _SBIG_NULL),
    Source("Disk", "Disk", _SBIG_NULL),
    _text_column("BenchmarkType", 50),
    Source("Benchmark", "Benchmark", _decimal3(null=_ZERO)),
    Source("NumberOfVMs", "NumberOfVMs", _SBIG),
), publisher_as_text=True)

STORAGE = Layout(model.STORAGE, "StarRecords", (
    _text_column("RecordId"),
    Source("CreateTime", "CreateTime", _DT),
    _lookup("StorageSystemID", "StorageSystem", "StorageSystems"),
    _lookup("SiteID", "Site", "Sites"),
    _lookup("StorageShareID", "StorageShare", "StorageShares"),
    _lookup("StorageMediaID", "StorageMedia", "StorageMedia"),
    _lookup("StorageClassID", "StorageClass", "StorageClasses"),
    Source("FileCount", "FileCount", _BIG_NULL),
    _text_column("DirectoryPath"),
    _text_column("LocalUser"),
    _text_column("LocalGroup"),
    _lookup("UserIdentityID", "UserIdentity", "UserIdentities"),
    _lookup("GroupID", "Group", "GroupNames"),
    _lookup("SubGroupID", "SubGroup", "SubGroups"),
    _lookup("RoleID", "Role", "Roles"),
    Source("StartTime", "StartTime", _DT),
    Source("EndTime", "EndTime", _DT),
    Source("ResourceCapacityUsed", "ResourceCapacityUsed", _BIG),
    Source("LogicalCapacityUsed", "LogicalCapacityUsed", _BIG_NULL),
    Source("ResourceCapacityAllocated", "ResourceCapacityAllocated", _BIG_NULL),
), publisher=False)

GROUP_ATTRIBUTE = Layout(model.GROUP_ATTRIBUTE, "GroupAttributes", (
    _text_column("StarRecordID"),
    _text_column("AttributeType"),
    _text_column("AttributeValue"),
), publisher=False)

LAYOUTS: dict[str, Layout] = {
    layout.record_type: layout
    for layout in (JOB, SUMMARY, NORMALISED_SUMMARY, SYNC, CLOUD, CLOUD_SUMMARY, STORAGE, GROUP_ATTRIBUTE)
}


def transpose(columns: list[list[Any]]) -> list[list[Any]]:
    """Column-major values -> one list per row."""
    return list(map(list, zip(*columns)))


@dataclass
class TableData:
    """The built values of one table's rows, column-major (``columns[i]`` belongs to
    ``layout.columns[i]``), as the bulk writers want them."""

    layout: Layout
    columns: list[list[Any]]

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def rows(self) -> list[list[Any]]:
        return transpose(self.columns)


def build_message(message: model.ParsedMessage, publisher_dn: str) -> list[TableData]:
    """Every value of ``message``, per table, in message order; StorageError if any is refused.

    Runs before the database is touched, so a refused record costs no transaction.
    StAR messages give two tables: StarRecords, then GroupAttributes.
    """
    layout = LAYOUTS.get(message.record_type)
    if layout is None:
        raise StorageError(f"no table stores records of type {message.record_type!r}")
    publisher = _text(NAME_LENGTH)
    try:
        dn = publisher.one(publisher_dn if publisher_dn is not None else "None")
    except _Refused as exc:
        raise StorageError(f"publisher DN: {exc}") from None
    parts = []
    if message.records:
        parts.append(TableData(layout, layout.build_columns(message.records, dn)))
    if message.group_attributes:
        parts.append(TableData(GROUP_ATTRIBUTE, GROUP_ATTRIBUTE.build_columns(message.group_attributes, dn)))
    return parts

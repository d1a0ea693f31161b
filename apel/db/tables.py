"""Every table of the accounting database, described once.

The record tables are derived from the record types' field definitions
(``apel.records.FIELDS``), which know nothing of storage: a string field becomes a text
column as wide as its longest value, an integer field the first column type of
:data:`FIELD_INTEGER_KINDS` that holds its range, a float a 3-decimal column, a
datetime a DATETIME. A field that may be missing gives a nullable column, except text
(a missing string is stored as ``'None'``) and the columns that store a missing number
as 0. What storage adds is stated per table below: fields stored as lookup-table ids,
derived columns, the publisher DN, and the few types that differ from the field's,
each with its reason. The summariser's tables take the HSS key's columns from the
tables that feed them.

``apel.db.rows`` builds and checks every value by these columns, the summariser
creates its temporary tables from them, and ``tests/test_schema_columns.py`` compares
them with the live schema of both built-in backends, so ``schemas/*.sql`` cannot drift
from the records unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Optional

from apel.db.dialect import Column, Kind
from apel.records import FIELDS, model
from apel.records.fields import DATETIME, FLOAT, INT, STR, Field

# The width of every lookup table's name (and of the publisher DN stored as text).
NAME_LENGTH = 255

# Every lookup table: id <-> name. GroupNames, not Groups (a reserved word in MySQL 8).
LOOKUP_TABLES = (
    "Sites", "DNs", "SubmitHosts", "MachineNames", "Queues", "VOs", "VORoles", "VOGroups",
    "CloudComputeServices", "StorageSystems", "StorageShares", "StorageMedia", "StorageClasses",
    "UserIdentities", "GroupNames", "SubGroups", "Roles",
)

# The views the unloader reads (its allowed table_name values).
VIEWS = (
    "VJobRecords", "VSummaries", "VSuperSummaries", "VNormalisedSummaries",
    "VNormalisedSuperSummaries", "VSyncRecords", "VCloudRecords", "VAnonCloudRecords",
    "VCloudSummaries", "VStarRecords",
)

# The values the loader stores in an integer column of each kind. BIGINT UNSIGNED goes
# to 2^64-1 on MySQL, but SQLite integers stop at 2^63-1: one limit keeps both backends
# accepting the same values.
_BIG_MAX = 2**63 - 1
INTEGER_RANGES: dict[Kind, tuple[int, int]] = {
    Kind.INT: (-(2**31), 2**31 - 1),
    Kind.UINT: (0, 2**32 - 1),
    Kind.TINY_UINT: (0, 2**8 - 1),
    Kind.SMALL_UINT: (0, 2**16 - 1),
    Kind.COUNTER: (0, _BIG_MAX),
    Kind.BIGINT: (-_BIG_MAX - 1, _BIG_MAX),
}
# The column types an integer field may get, narrowest first.
FIELD_INTEGER_KINDS = (Kind.INT, Kind.UINT, Kind.COUNTER, Kind.BIGINT)
DECIMAL_KINDS = frozenset({Kind.DECIMAL, Kind.UDECIMAL})
DATETIME_KINDS = frozenset({Kind.DATETIME, Kind.TIMESTAMP})


@dataclass(frozen=True)
class Table:
    """One table: its columns and its primary key, in the key's index order."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name}")

    def text_columns(self) -> frozenset[str]:
        """The text columns that are never NULL (bulk writers write them unescaped)."""
        return frozenset(c.name for c in self.columns if c.kind is Kind.TEXT and not c.nullable)


@dataclass(frozen=True)
class Stored:
    """One column of a record table, filled from one record field."""

    column: Column
    field: str
    lookup: Optional[str] = None  # the lookup table when the column holds a name's id
    zero_when_null: bool = False  # a missing value is stored as 0


@dataclass(frozen=True)
class RecordTable:
    """How the records of one type are stored: the table, and where each value goes.

    ``derived`` columns are computed from the stored ones (``apel.db.rows``);
    ``publisher`` is the PublisherDNID column, None where the table keeps no publisher.
    """

    record_type: str
    table: Table
    stored: tuple[Stored, ...]
    derived: tuple[Column, ...] = ()
    publisher: Optional[Column] = None


_UPDATE_TIME = Column("UpdateTime", Kind.TIMESTAMP)
# The lookup table of each field that may be stored as a lookup id.
_LOOKUPS = {
    "Site": "Sites", "SiteName": "Sites", "SubmitHost": "SubmitHosts", "MachineName": "MachineNames",
    "Queue": "Queues", "GlobalUserName": "DNs", "VO": "VOs", "VOGroup": "VOGroups", "VORole": "VORoles",
    "CloudComputeService": "CloudComputeServices", "StorageSystem": "StorageSystems",
    "StorageShare": "StorageShares", "StorageMedia": "StorageMedia", "StorageClass": "StorageClasses",
    "UserIdentity": "UserIdentities", "Group": "GroupNames", "SubGroup": "SubGroups", "Role": "Roles",
}
_ID_COLUMNS = {"SiteName": "SiteID"}  # the cloud tables' site is a site like any other


def field_kind(field: Field) -> Kind:
    """The column type a record field gets by default."""
    if field.kind == STR:
        return Kind.TEXT
    if field.kind == DATETIME:
        return Kind.DATETIME
    if field.kind == FLOAT:
        return Kind.DECIMAL
    if field.kind != INT:
        raise ValueError(f"no column type for {field.kind!r} field {field.name}")
    for kind in FIELD_INTEGER_KINDS:
        low, high = INTEGER_RANGES[kind]
        if low <= field.minimum and field.maximum <= high:  # type: ignore[operator]
            return kind
    raise ValueError(f"no integer column holds the range of field {field.name}")


def _stored(field: Field, lookups: frozenset[str], zero: frozenset[str], kinds: Mapping[str, Kind]) -> Stored:
    if field.name in lookups:
        column = Column(_ID_COLUMNS.get(field.name, field.name + "ID"), Kind.INT)
        return Stored(column, field.name, lookup=_LOOKUPS[field.name])
    kind = kinds.get(field.name, field_kind(field))
    length = field.max_length if kind is Kind.TEXT else 0
    nullable = not field.mandatory and kind is not Kind.TEXT and field.name not in zero
    return Stored(Column(field.name, kind, length, nullable), field.name, zero_when_null=field.name in zero)


def _record_table(
    record_type: str, name: str, key: tuple[str, ...], lookups: Iterable[str] = (), zero: Iterable[str] = (),
    kinds: Optional[Mapping[str, Kind]] = None, derived: tuple[Column, ...] = (),
    publisher: Optional[Kind] = Kind.INT,
) -> RecordTable:
    """The table of ``record_type``: every field in message order, then ``derived``,
    then the publisher's DN (a DNs id, or with ``publisher`` TEXT that id as text)."""
    lookups, zero = frozenset(lookups), frozenset(zero)
    stored = tuple(_stored(field, lookups, zero, kinds or {}) for field in FIELDS[record_type])
    unknown = (lookups | zero | set(kinds or {})) - {s.field for s in stored}
    if unknown:
        raise ValueError(f"{name}: no field {', '.join(sorted(unknown))}")
    dn = None
    if publisher is not None:
        dn = Column("PublisherDNID", publisher, NAME_LENGTH if publisher is Kind.TEXT else 0)
    columns = (_UPDATE_TIME, *(s.column for s in stored), *derived, *((dn,) if dn else ()))
    return RecordTable(record_type, Table(name, columns, key), stored, derived, dn)


_GRID_LOOKUPS = ("Site", "GlobalUserName", "VO", "VOGroup", "VORole", "SubmitHost")
_SUMMARY_KEY = (
    "SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VORoleID", "VOGroupID", "SubmitHostID",
)

JOB = _record_table(
    model.JOB, "JobRecords", ("SiteID", "LocalJobId", "EndTime"),
    lookups=(*_GRID_LOOKUPS, "MachineName", "Queue"), zero=("Processors", "NodeCount"),
    derived=(Column("EndYear", Kind.SMALL_UINT), Column("EndMonth", Kind.TINY_UINT)),
)
SUMMARY = _record_table(
    model.SUMMARY, "Summaries",
    (*_SUMMARY_KEY, "InfrastructureType", "ServiceLevelType", "ServiceLevel", "NodeCount", "Processors"),
    lookups=_GRID_LOOKUPS,
)
NORMALISED_SUMMARY = _record_table(
    model.NORMALISED_SUMMARY, "NormalisedSummaries",
    (*_SUMMARY_KEY, "Infrastructure", "NodeCount", "Processors", "ServiceLevelType"),
    lookups=_GRID_LOOKUPS, zero=("NodeCount", "Processors"),
)
SYNC = _record_table(model.SYNC, "SyncRecords", ("SiteID", "SubmitHostID", "Month", "Year"),
                     lookups=("Site", "SubmitHost"))
_CLOUD_LOOKUPS = ("SiteName", "CloudComputeService", "GlobalUserName", "VO", "VOGroup", "VORole")
CLOUD = _record_table(
    model.CLOUD, "CloudRecords", ("VMUUID", "MeasurementMonth", "MeasurementYear"),
    lookups=_CLOUD_LOOKUPS, zero=("CpuCount", "Benchmark"), kinds={"CpuCount": Kind.UDECIMAL},
    derived=(Column("MeasurementTime", Kind.DATETIME, nullable=True),
             Column("MeasurementMonth", Kind.TINY_UINT), Column("MeasurementYear", Kind.SMALL_UINT)),
)
CLOUD_SUMMARY = _record_table(
    model.CLOUD_SUMMARY, "CloudSummaries",
    ("SiteID", "CloudComputeServiceID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID",
     "Status", "ImageId", "CpuCount", "BenchmarkType", "Benchmark"),
    lookups=_CLOUD_LOOKUPS, zero=("CpuCount", "Benchmark"),
    # the summariser writes sums of deltas here, which a restarted VM can make negative
    kinds={"CpuCount": Kind.UDECIMAL, **dict.fromkeys(
        ("WallDuration", "CpuDuration", "NetworkInbound", "NetworkOutbound", "Memory", "Disk", "NumberOfVMs"),
        Kind.BIGINT)},
    # the summariser's rows name no DN: it writes the word 'summariser' instead of an id
    publisher=Kind.TEXT,
)
STORAGE = _record_table(
    model.STORAGE, "StarRecords", ("RecordId",),
    lookups=("StorageSystem", "Site", "StorageShare", "StorageMedia", "StorageClass", "UserIdentity", "Group",
             "SubGroup", "Role"),
    publisher=None,
)
GROUP_ATTRIBUTE = _record_table(model.GROUP_ATTRIBUTE, "GroupAttributes", ("StarRecordID", "AttributeType"),
                                publisher=None)

RECORD_TABLES: dict[str, RecordTable] = {
    table.record_type: table
    for table in (JOB, SUMMARY, NORMALISED_SUMMARY, SYNC, CLOUD, CLOUD_SUMMARY, STORAGE, GROUP_ATTRIBUTE)
}

# -- the summariser's tables -----------------------------------------------------------

# The key of a HybridSuperSummaries (HSS) row, in the column order of the bookkeeping
# tables (PendingSummaryKeys, StaleSummaryKeys).
HSS_KEY = (
    "SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID", "SubmitHostID",
    "Infrastructure", "ServiceLevelType", "ServiceLevel", "NodeCount", "Processors",
)
# The columns of each table that feeds HSS rows that make up the HSS key, in HSS_KEY
# order (None: the constant 0, the ServiceLevel of a normalised summary's HSS row).
HSS_SOURCE_KEYS: dict[str, tuple[Optional[str], ...]] = {
    JOB.table.name: ("SiteID", "EndMonth", "EndYear", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID",
                     "SubmitHostID", "InfrastructureType", "ServiceLevelType", "ServiceLevel", "NodeCount",
                     "Processors"),
    SUMMARY.table.name: ("SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID", "VORoleID",
                         "SubmitHostID", "InfrastructureType", "ServiceLevelType", "ServiceLevel",
                         "NodeCount", "Processors"),
    NORMALISED_SUMMARY.table.name: ("SiteID", "Month", "Year", "GlobalUserNameID", "VOID", "VOGroupID",
                                    "VORoleID", "SubmitHostID", "Infrastructure", "ServiceLevelType", None,
                                    "NodeCount", "Processors"),
}


def _hss_columns() -> tuple[Column, ...]:
    """A normalised summary's columns with a job's ServiceLevel after ServiceLevelType:
    an HSS row holds both, and jobs, summaries and normalised summaries all feed it."""
    columns: list[Column] = []
    for column in NORMALISED_SUMMARY.table.columns:
        if column.name != "PublisherDNID":
            columns.append(column)
        if column.name == "ServiceLevelType":
            columns.append(SUMMARY.table.column("ServiceLevel"))
    return tuple(columns)


HSS = Table("HybridSuperSummaries", _hss_columns(),
            (*_SUMMARY_KEY, "Infrastructure", "ServiceLevelType", "ServiceLevel", "NodeCount", "Processors"))
_KEY_COLUMNS = tuple(HSS.column(name) for name in HSS_KEY)
# What the jobs added at one key contribute to its HSS row (NULL: recompute the key).
_DELTAS = tuple(replace(HSS.column(name), nullable=True) for name in (
    "InfrastructureDescription", "EarliestEndTime", "LatestEndTime", "WallDuration", "CpuDuration",
    "NumberOfJobs"))
_ID = Column("id", Kind.COUNTER)
PENDING_SUMMARY_KEYS = Table("PendingSummaryKeys", (_ID, *_KEY_COLUMNS, *_DELTAS),
                             ("SiteID", "Month", "Year", "id"))
STALE_SUMMARY_KEYS = Table("StaleSummaryKeys", _KEY_COLUMNS, HSS.key)
PENDING_CLOUD_MONTHS = Table(
    "PendingCloudMonths",
    (_ID, Column("SiteID", Kind.INT), Column("Year", Kind.INT), Column("Month", Kind.INT)), ("id",))
# Only where the dialect has a summariser gate (``apel.db.pending``).
SUMMARISER_GATE = Table("SummariserGate", (Column("id", Kind.TINY_UINT),), ("id",))

# -- the rest ----------------------------------------------------------------------------

_LOOKUP_COLUMNS = (Column("id", Kind.INT), Column("name", Kind.TEXT, NAME_LENGTH))
SCHEMA_VERSION = Table("SchemaVersion", (Column("Version", Kind.INT), Column("AppliedTime", Kind.TIMESTAMP)),
                       ("Version",))
LAST_UPDATED = Table("LastUpdated", (_UPDATE_TIME, Column("Type", Kind.TEXT, NAME_LENGTH)), ("Type",))

# Every table of every schema (SUMMARISER_GATE only where the dialect has a gate).
TABLES: dict[str, Table] = {table.name: table for table in (
    *(Table(name, _LOOKUP_COLUMNS, ("id",)) for name in LOOKUP_TABLES),
    SCHEMA_VERSION, LAST_UPDATED, *(record.table for record in RECORD_TABLES.values()),
    HSS, PENDING_SUMMARY_KEYS, STALE_SUMMARY_KEYS, PENDING_CLOUD_MONTHS,
)}


def _named(kinds: frozenset[Kind]) -> frozenset[str]:
    return frozenset(c.name for table in (*TABLES.values(), SUMMARISER_GATE) for c in table.columns
                     if c.kind in kinds)


# Columns holding datetimes or 3-decimal values, by name, in any table or view (a view
# column has the name of the table column it shows): the SQLite backend returns them
# with the Python types the MySQL driver gives.
DATETIME_COLUMNS = _named(DATETIME_KINDS)
DECIMAL_COLUMNS = _named(DECIMAL_KINDS)

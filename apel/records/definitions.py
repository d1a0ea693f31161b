"""What each record type holds, and what each message header means.

``FIELDS[record_type]`` lists a record type's fields in message order
(the order APEL clients write them): the parser coerces by it, the renderer writes by it, and
the storage layer can size its columns by it.  ``MessageSpec`` adds what differs
between message versions of one record type (v0.4 benchmark dicts, ignored keys,
the per-type checks), and the routing tables map header lines to specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

from apel.records import checks
from apel.records.fields import (
    DATETIME,
    FLOAT,
    INT,
    MONTH,
    MONTH_YEAR_NOTE,
    STR,
    UNSIGNED_BIGINT,
    UNSIGNED_INT,
    YEAR,
    Field,
    converter,
    dt,
    f,
    i,
    s,
)
from apel.records.model import (
    CLOUD,
    CLOUD_SUMMARY,
    GROUP_ATTRIBUTE,
    JOB,
    NORMALISED_SUMMARY,
    STORAGE,
    SUMMARY,
    SYNC,
    Record,
)

_NEGATIVE = "Negative WallDuration or CpuDuration"  # contains the existing server's text


def _month_year() -> tuple[Field, Field]:
    return (
        i("Month", True, MONTH, MONTH_YEAR_NOTE, MONTH_YEAR_NOTE),
        i("Year", True, YEAR, MONTH_YEAR_NOTE, MONTH_YEAR_NOTE),
    )


_JOB_FIELDS = (
    s("Site", True), s("SubmitHost"), s("MachineName"), s("Queue"), s("LocalJobId", True),
    s("LocalUserId"), s("GlobalUserName"), s("FQAN"), s("VO"), s("VOGroup"), s("VORole"),
    i("WallDuration", True, UNSIGNED_BIGINT), i("CpuDuration", True, UNSIGNED_BIGINT),
    i("Processors", bounds=UNSIGNED_INT), i("NodeCount", bounds=UNSIGNED_INT),
    dt("StartTime", True), dt("EndTime", True),
    s("InfrastructureDescription", max_length=100), s("InfrastructureType", max_length=20),
    i("MemoryReal", bounds=UNSIGNED_BIGINT), i("MemoryVirtual", bounds=UNSIGNED_BIGINT),
    s("ServiceLevelType", True, max_length=50), f("ServiceLevel", True),
)

_SUMMARY_FIELDS = (
    s("Site", True), *_month_year(), s("GlobalUserName"), s("VO"), s("VOGroup"), s("VORole"),
    s("SubmitHost"), s("InfrastructureType", max_length=20),
    s("InfrastructureDescription", max_length=100), s("ServiceLevelType", max_length=50),
    f("ServiceLevel", True), i("NodeCount", True, UNSIGNED_INT), i("Processors", True, UNSIGNED_INT),
    dt("EarliestEndTime"), dt("LatestEndTime"),
    i("WallDuration", True, UNSIGNED_BIGINT, _NEGATIVE), i("CpuDuration", True, UNSIGNED_BIGINT, _NEGATIVE),
    i("NumberOfJobs", True, UNSIGNED_BIGINT),
)

_NORMALISED_FIELDS = (
    s("Site", True), *_month_year(), s("GlobalUserName"), s("VO"), s("VOGroup"), s("VORole"),
    s("SubmitHost"), s("Infrastructure", max_length=20), s("InfrastructureDescription", max_length=100),
    # Not a line of v0.3 messages (it is only accepted there); v0.4 takes it from the dicts.
    s("ServiceLevelType", max_length=50, in_message=False),
    i("NodeCount", bounds=UNSIGNED_INT), i("Processors", bounds=UNSIGNED_INT),
    dt("EarliestEndTime"), dt("LatestEndTime"),
    i("WallDuration", True, UNSIGNED_BIGINT, _NEGATIVE), i("CpuDuration", True, UNSIGNED_BIGINT, _NEGATIVE),
    i("NormalisedWallDuration", True, UNSIGNED_BIGINT, "Negative NormalisedWallDuration"),
    i("NormalisedCpuDuration", True, UNSIGNED_BIGINT, "Negative NormalisedCpuDuration"),
    i("NumberOfJobs", True, UNSIGNED_BIGINT),
)

_SYNC_FIELDS = (
    s("Site", True), s("SubmitHost"), i("NumberOfJobs", True, UNSIGNED_BIGINT), *_month_year(),
)

_CLOUD_FIELDS = (
    dt("RecordCreateTime"), s("VMUUID", True), s("SiteName", True), s("CloudComputeService"),
    s("MachineName"), s("LocalUserId"), s("LocalGroupId"), s("GlobalUserName"), s("FQAN"),
    # Always derived from the FQAN: accepted as keys, never written.
    s("VO", in_message=False), s("VOGroup", in_message=False), s("VORole", in_message=False),
    s("Status"), dt("StartTime"), dt("EndTime"),
    i("SuspendDuration", bounds=UNSIGNED_BIGINT), i("WallDuration", bounds=UNSIGNED_BIGINT),
    i("CpuDuration", bounds=UNSIGNED_BIGINT), f("CpuCount"), s("NetworkType"),
    i("NetworkInbound", bounds=UNSIGNED_BIGINT), i("NetworkOutbound", bounds=UNSIGNED_BIGINT),
    i("PublicIPCount", bounds=UNSIGNED_BIGINT), i("Memory", bounds=UNSIGNED_BIGINT),
    i("Disk", bounds=UNSIGNED_BIGINT), s("BenchmarkType", max_length=50), f("Benchmark"),
    s("StorageRecordId"), s("ImageId"), s("CloudType"),
)

_CLOUD_SUMMARY_FIELDS = (
    s("SiteName", True), s("CloudComputeService"), *_month_year(), s("GlobalUserName"),
    s("VO"), s("VOGroup"), s("VORole"), s("Status"), s("CloudType"), s("ImageId"),
    dt("EarliestStartTime"), dt("LatestStartTime"),
    i("WallDuration", bounds=UNSIGNED_BIGINT), i("CpuDuration", bounds=UNSIGNED_BIGINT), f("CpuCount"),
    i("NetworkInbound", bounds=UNSIGNED_BIGINT), i("NetworkOutbound", bounds=UNSIGNED_BIGINT),
    i("Memory", bounds=UNSIGNED_BIGINT), i("Disk", bounds=UNSIGNED_BIGINT),
    s("BenchmarkType", max_length=50), f("Benchmark"), i("NumberOfVMs", True, UNSIGNED_BIGINT),
)

_STORAGE_FIELDS = (
    s("RecordId", True), dt("CreateTime", True), s("StorageSystem", True), s("Site"),
    s("StorageShare"), s("StorageMedia"), s("StorageClass"), i("FileCount", bounds=UNSIGNED_BIGINT),
    s("DirectoryPath"), s("LocalUser"), s("LocalGroup"), s("UserIdentity"), s("Group"),
    s("SubGroup"), s("Role"), dt("StartTime", True), dt("EndTime", True),
    i("ResourceCapacityUsed", True, UNSIGNED_BIGINT), i("LogicalCapacityUsed", bounds=UNSIGNED_BIGINT),
    i("ResourceCapacityAllocated", bounds=UNSIGNED_BIGINT),
)

_GROUP_ATTRIBUTE_FIELDS = (s("StarRecordID", True), s("AttributeType", True), s("AttributeValue"))

FIELDS: dict[str, tuple[Field, ...]] = {
    JOB: _JOB_FIELDS,
    SUMMARY: _SUMMARY_FIELDS,
    NORMALISED_SUMMARY: _NORMALISED_FIELDS,
    SYNC: _SYNC_FIELDS,
    CLOUD: _CLOUD_FIELDS,
    CLOUD_SUMMARY: _CLOUD_SUMMARY_FIELDS,
    STORAGE: _STORAGE_FIELDS,
    GROUP_ATTRIBUTE: _GROUP_ATTRIBUTE_FIELDS,
}

# Derivation of VO/VOGroup/VORole from the FQAN, as the existing server does.
FQAN_IF_PRESENT = "if-present"  # job records: only a non-null FQAN overwrites
FQAN_ALWAYS = "always"  # cloud records


class Steps(NamedTuple):
    """A spec's per-field work, grouped by kind so the per-record loops do no dispatching
    (see "Records" in docs/design.md)."""

    names: tuple[str, ...]  # every field, in message order (the record's key order)
    strings: tuple[tuple[str, bool, int], ...]  # name, mandatory, max length
    ints: tuple[tuple[str, bool, Field], ...]  # name, mandatory, field (for its range)
    datetimes: tuple[tuple[str, bool], ...]
    others: tuple[tuple[str, bool, Callable[[Any], Any], bool], ...]  # floats and dicts: ..., is_dict


@dataclass(frozen=True)
class MessageSpec:
    """How one message version of a record type is read."""

    record_type: str
    header: str
    ignored: frozenset[str] = frozenset()
    # v0.4: fields whose value is a benchmark dict; the chosen key becomes ServiceLevelType.
    dict_fields: tuple[str, ...] = ()
    # Mandatory fields whose absence the type's check reports with its own wording.
    checked_by_rule: frozenset[str] = frozenset()
    fqan: Optional[str] = None
    check: Callable[[Record, int, Any], None] = checks.no_check
    # The same rules over a whole message's columns: True if no record can fail ``check``.
    check_columns: Callable[[checks.ColumnOf, Any], bool] = checks.no_check_columns
    steps: Steps = field(init=False, repr=False, compare=False)
    accepted: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = FIELDS[self.record_type]
        strings, ints, datetimes, others = [], [], [], []
        for fld in fields:
            mandatory = fld.mandatory and fld.name not in self.checked_by_rule
            if self.dict_fields and fld.name == "ServiceLevelType":
                mandatory = False  # filled from the dicts
            if fld.name in self.dict_fields:
                others.append((fld.name, mandatory, _dict_value_converter(fld), True))
            elif fld.kind == STR:
                strings.append((fld.name, mandatory, fld.max_length))
            elif fld.kind == INT:
                ints.append((fld.name, mandatory, fld))
            elif fld.kind == DATETIME:
                datetimes.append((fld.name, mandatory))
            else:
                others.append((fld.name, mandatory, converter(fld), False))
        steps = Steps(tuple(fld.name for fld in fields), tuple(strings), tuple(ints), tuple(datetimes),
                      tuple(others))
        object.__setattr__(self, "steps", steps)
        names = frozenset(fld.name for fld in fields)
        object.__setattr__(self, "accepted", names | self.ignored)


def _dict_value_converter(fld: Field) -> Callable[[Any], Any]:
    """The chosen benchmark value: float for ServiceLevel, truncated int for durations (10.7 → 10).

    Integer literals are read exactly; only decimals go through a float.
    """
    if fld.kind == FLOAT:
        return converter(fld)
    int_convert = converter(fld)

    def convert(text: str) -> int:
        try:
            return int_convert(int(text))
        except ValueError:
            return int_convert(int(float(text)))

    return convert


_JOB_IGNORED = frozenset(("SubmitHostType", "UpdateTime"))
_UPDATE_TIME = frozenset(("UpdateTime",))

_JOB_RULES: dict[str, Any] = {"check": checks.job, "check_columns": checks.job_columns}
_SUMMARY_RULES: dict[str, Any] = {"check": checks.summary, "check_columns": checks.summary_columns}

JOB_SPEC = MessageSpec(JOB, "APEL-individual-job-message: v0.3", _JOB_IGNORED,
                       checked_by_rule=frozenset(("ServiceLevel", "ServiceLevelType")),
                       fqan=FQAN_IF_PRESENT, **_JOB_RULES)
JOB_V04_SPEC = MessageSpec(JOB, "APEL-individual-job-message: v0.4", _JOB_IGNORED, ("ServiceLevel",),
                           fqan=FQAN_IF_PRESENT, **_JOB_RULES)
SUMMARY_SPEC = MessageSpec(SUMMARY, "APEL-summary-job-message: v0.2", _UPDATE_TIME, **_SUMMARY_RULES)
SUMMARY_V04_SPEC = MessageSpec(SUMMARY, "APEL-summary-job-message: v0.4", _UPDATE_TIME, ("ServiceLevel",),
                               **_SUMMARY_RULES)
NORMALISED_SPEC = MessageSpec(NORMALISED_SUMMARY, "APEL-summary-job-message: v0.3", _UPDATE_TIME,
                              **_SUMMARY_RULES)
NORMALISED_V04_SPEC = MessageSpec(NORMALISED_SUMMARY, "APEL-normalised-summary-message: v0.4", _UPDATE_TIME,
                                  ("NormalisedWallDuration", "NormalisedCpuDuration"), **_SUMMARY_RULES)
SYNC_SPEC = MessageSpec(SYNC, "APEL-sync-message: v0.1")
CLOUD_SPEC = MessageSpec(CLOUD, "APEL-cloud-message: v0.4",
                         frozenset(("UpdateTime", "MeasurementTime", "MeasurementMonth", "MeasurementYear")),
                         fqan=FQAN_ALWAYS)
CLOUD_SUMMARY_SPEC = MessageSpec(CLOUD_SUMMARY, "APEL-cloud-summary-message: v0.4", _UPDATE_TIME)
# XML record types have no header of their own; these carry their fields and checks.
CAR_SPEC = MessageSpec(JOB, "urf:UsageRecords", checked_by_rule=JOB_SPEC.checked_by_rule,
                       fqan=FQAN_IF_PRESENT, **_JOB_RULES)
STAR_SPEC = MessageSpec(STORAGE, "sr:StorageUsageRecords")
GROUP_ATTRIBUTE_SPEC = MessageSpec(GROUP_ATTRIBUTE, "sr:GroupAttribute")

# Header routing: v0.4 table or the old one; by type first, then by the full line.
V04_BY_TYPE = {
    "APEL-individual-job-message": JOB_V04_SPEC,
    "APEL-sync-message": SYNC_SPEC,
    "APEL-cloud-message": CLOUD_SPEC,
    "APEL-cloud-summary-message": CLOUD_SUMMARY_SPEC,
}
V04_BY_HEADER = {
    "APEL-summary-job-message: v0.4": SUMMARY_V04_SPEC,
    "APEL-normalised-summary-message: v0.4": NORMALISED_V04_SPEC,
}
OLD_BY_TYPE = {
    "APEL-individual-job-message": JOB_SPEC,
    "APEL-sync-message": SYNC_SPEC,
    "APEL-cloud-message": CLOUD_SPEC,
    "APEL-cloud-summary-message": CLOUD_SUMMARY_SPEC,
}
OLD_BY_HEADER = {
    "APEL-summary-job-message: v0.2": SUMMARY_SPEC,
    "APEL-summary-job-message: v0.3": NORMALISED_SPEC,
}

# Headers the renderer writes: (plain, dict mode); None = not available in that mode.
RENDER_HEADERS: dict[str, tuple[Optional[str], Optional[str]]] = {
    JOB: (JOB_SPEC.header, JOB_V04_SPEC.header),
    SUMMARY: (SUMMARY_SPEC.header, SUMMARY_V04_SPEC.header),
    NORMALISED_SUMMARY: (NORMALISED_SPEC.header, NORMALISED_V04_SPEC.header),
    SYNC: (SYNC_SPEC.header, None),
    CLOUD: (CLOUD_SPEC.header, None),
    CLOUD_SUMMARY: (CLOUD_SUMMARY_SPEC.header, None),
}
DICT_FIELDS_BY_TYPE = {
    JOB: JOB_V04_SPEC.dict_fields,
    SUMMARY: SUMMARY_V04_SPEC.dict_fields,
    NORMALISED_SUMMARY: NORMALISED_V04_SPEC.dict_fields,
}

"""Records → APEL text messages, as the unloader sends them (messages.md §7.1).

The output parses back to the same records (``parse_message(render_message(t, rs))``),
which is what the round-trip tests hold us to.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Callable

from apel.records.definitions import DICT_FIELDS_BY_TYPE, FIELDS, RENDER_HEADERS
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

WITHHELD = "withheld"
# Only these types may have their user DNs withheld; the others' names for the error.
_WITHHOLDABLE = frozenset((JOB, SYNC, CLOUD))
_CLASS_NAMES = {SUMMARY: "SummaryRecord", NORMALISED_SUMMARY: "NormalisedSummaryRecord",
                CLOUD_SUMMARY: "CloudSummaryRecord"}
_SUMMARY_TYPES = frozenset((SUMMARY, NORMALISED_SUMMARY))


def format_value(value: Any) -> str:
    """Datetimes as UTC epoch seconds (naive ones are taken as UTC), the rest by ``str()``."""
    if isinstance(value, datetime):
        return str(calendar.timegm(value.utctimetuple()))
    return value if value.__class__ is str else str(value)


def _cpu_count(value: Any) -> Any:
    """CpuCount as an integer, with 0 < x < 1 counted as one CPU (§7.1)."""
    return 1 if 0 < value < 1 else int(value)


def _benchmark_type(record: Record) -> str:
    level_type = record.get("ServiceLevelType")
    return "HEPSPEC" if level_type in (None, "", "None") else level_type


def render_message(record_type: str, records: Iterable[Record], *, dict_benchmark: bool = False,
                   include_infrastructure_description: bool = False, withhold_dns: bool = False,
                   decimal_cpu_count: bool = False) -> str:
    """One APEL text message holding ``records``: header, ``Key: value`` lines, ``%%`` after each.

    Raises ValueError for combinations the format cannot express (storage records,
    dict mode for sync/cloud types, withheld DNs in summaries).
    """
    if record_type in (STORAGE, GROUP_ATTRIBUTE):
        raise ValueError("Cannot unload StorageRecords in APEL format")
    if record_type not in RENDER_HEADERS:
        raise ValueError(f"Unknown record type {record_type!r}")
    header = RENDER_HEADERS[record_type][1 if dict_benchmark else 0]
    if header is None:
        raise ValueError(f"Cannot unload {record_type} records with benchmark dicts (dict_benchmark): "
                         "only job, summary and normalised summary messages have a v0.4 dict form")
    if withhold_dns and record_type not in _WITHHOLDABLE:
        raise ValueError(f"Cannot withhold DNs for {_CLASS_NAMES[record_type]}")

    dict_fields = DICT_FIELDS_BY_TYPE.get(record_type, ()) if dict_benchmark else ()
    plan: list[tuple[str, Callable[[Record, Any], Any]]] = []
    for field in FIELDS[record_type]:
        name = field.name
        if not field.in_message:
            continue
        if dict_fields and name == "ServiceLevelType":
            continue  # carried inside the dict values
        if name == "InfrastructureDescription" and record_type in _SUMMARY_TYPES \
                and not include_infrastructure_description:
            continue
        plan.append((name, _value_getter(record_type, name, dict_fields, withhold_dns, decimal_cpu_count)))

    parts = [header, "\n"]
    for record in records:
        for name, get in plan:
            value = get(record, record.get(name))
            if value is None or value == "":
                continue
            parts.append(f"{name}: {format_value(value)}\n")
        parts.append("%%\n")
    return "".join(parts)


def _value_getter(record_type: str, name: str, dict_fields: tuple[str, ...], withhold_dns: bool,
                  decimal_cpu_count: bool) -> Callable[[Record, Any], Any]:
    """How one field's value is taken from a record for this output mode."""
    if name in dict_fields:
        return lambda record, value: None if value is None else \
            f"{{{_benchmark_type(record)}: {format_value(value)}}}"
    if withhold_dns and name == "GlobalUserName":
        return lambda record, value: WITHHELD
    if record_type == CLOUD and name == "CpuCount" and not decimal_cpu_count:
        return lambda record, value: None if value is None else _cpu_count(value)
    return lambda record, value: value

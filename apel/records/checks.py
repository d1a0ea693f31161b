"""Per-record-type rules that look at more than one field.

Each check gets the coerced record, its 1-based index in the message and the
time the message is being parsed (UTC), and raises :class:`InvalidMessage` with a
reason naming the record, the field, the value and the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from operator import le
from typing import Any, Callable

from apel.records.fields import UTC
from apel.records.model import InvalidMessage, Record
from apel.records.quote import quote
from apel.records.service_level import VALID_SERVICE_LEVEL_TYPES

FUTURE_ALLOWANCE = timedelta(days=2)

# A message's value column by field name: every record's value of that field, in record order.
ColumnOf = Callable[[str], Sequence[Any]]


def iso(value: datetime) -> str:
    """A datetime as it appears in reasons: ISO 8601 in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def no_check(record: Record, index: int, now: datetime) -> None:
    """Types whose rules are all per field (sync, cloud, cloud summary, storage)."""


def job(record: Record, index: int, now: datetime) -> None:
    """Benchmark pair, benchmark type, EndTime ≥ StartTime, EndTime ≤ now + 2 days (UTC).

    A job without ServiceLevel and ServiceLevelType is refused here, naming both
    fields, rather than later as the existing server's puzzling ``ScalingFactorUnit custom not valid``.
    """
    level_type = record["ServiceLevelType"]
    level = record["ServiceLevel"]
    if level is None and level_type == "None":
        raise InvalidMessage(
            f"record {index}: fields ServiceLevelType and ServiceLevel are missing: every job record "
            "needs its benchmark (e.g. 'ServiceLevelType: HEPSPEC' and 'ServiceLevel: 10.0', "
            "or in v0.4 'ServiceLevel: {hepspec: 10.0}')")
    if level is None:
        raise InvalidMessage(
            f"record {index}: field ServiceLevel: Unit but not value supplied for ScalingFactor "
            f"(ServiceLevelType {quote(level_type)} is given without a ServiceLevel)")
    if level_type == "None":
        raise InvalidMessage(
            f"record {index}: field ServiceLevelType: Unit but not value supplied for ScalingFactor "
            f"(ServiceLevel {quote(level)} is given without a ServiceLevelType)")
    if level_type.lower() not in VALID_SERVICE_LEVEL_TYPES:
        raise InvalidMessage(
            f"record {index}: field ServiceLevelType: value {quote(level_type)} is not a valid benchmark "
            "type (si2k, HEPSPEC or HEPscore23, in any letter case)")
    start, end = record["StartTime"], record["EndTime"]
    if end < start:
        raise InvalidMessage(
            f"record {index}: field EndTime: value '{iso(end)}' is before StartTime '{iso(start)}'")
    if end > now + FUTURE_ALLOWANCE:
        raise InvalidMessage(
            f"record {index}: field EndTime: value '{iso(end)}' is more than 2 days in the future "
            f"(now is '{iso(now)}')")


@lru_cache(maxsize=1024)  # a message's summaries cover a few months
def first_instant(year: int, month: int) -> datetime:
    """The first instant (UTC) of a month."""
    return datetime(year, month, 1, tzinfo=UTC)


@lru_cache(maxsize=1024)
def _next_month(year: int, month: int) -> datetime:
    return first_instant(year + (month == 12), month % 12 + 1)


def summary(record: Record, index: int, now: datetime) -> None:
    """The month must not be in the future; end times, when both given, lie in the month.

    Used for summaries and normalised summaries.  Month/Year ranges and negative
    durations are refused by the field ranges before this runs.
    """
    year, month = record["Year"], record["Month"]
    month_start = first_instant(year, month)
    if month_start > now:
        raise InvalidMessage(
            f"record {index}: field Month: {year:04d}-{month:02d} is in the future (now is '{iso(now)}')")
    next_start = first_instant(year + (month == 12), month % 12 + 1)
    earliest, latest = record["EarliestEndTime"], record["LatestEndTime"]
    if earliest is None or latest is None:
        return
    for name, value in (("EarliestEndTime", earliest), ("LatestEndTime", latest)):
        if not month_start <= value <= next_start:
            raise InvalidMessage(
                f"record {index}: field {name}: value '{iso(value)}' is not within the stated month "
                f"{year:04d}-{month:02d} ['{iso(month_start)}', '{iso(next_start)}']")
    if earliest > latest:
        raise InvalidMessage(
            f"record {index}: field LatestEndTime: value '{iso(latest)}' is before "
            f"EarliestEndTime '{iso(earliest)}'")


# Whole-message forms of the checks, for messages whose records are built column by column
# (apel.records.text_fast).  Each only proves that no record of the message can fail its
# per-record check; when it cannot, the per-record check runs on every record, in order,
# and raises the reason.


def job_columns(column: ColumnOf, now: datetime) -> bool:
    """True if :func:`job` accepts every record: benchmarks given and valid, times in order."""
    level_types, levels = column("ServiceLevelType"), column("ServiceLevel")
    if "None" in level_types or None in levels:
        return False
    if not VALID_SERVICE_LEVEL_TYPES.issuperset(map(str.lower, level_types)):
        return False
    starts, ends = column("StartTime"), column("EndTime")
    return all(map(le, starts, ends)) and max(ends) <= now + FUTURE_ALLOWANCE


def summary_columns(column: ColumnOf, now: datetime) -> bool:
    """True if :func:`summary` accepts every record: past months, end times within them and in order."""
    years, months = column("Year"), column("Month")
    starts = list(map(first_instant, years, months))
    if max(starts) > now:
        return False
    next_starts = list(map(_next_month, years, months))  # no later than next month: within datetime's range
    earliest, latest = column("EarliestEndTime"), column("LatestEndTime")
    if None in earliest or None in latest:
        return False  # the per-record check skips those records' end-time rules
    return (all(map(le, starts, earliest)) and all(map(le, earliest, next_starts))
            and all(map(le, starts, latest)) and all(map(le, latest, next_starts))
            and all(map(le, earliest, latest)))


def no_check_columns(column: ColumnOf, now: datetime) -> bool:
    """Types without cross-field rules."""
    return True

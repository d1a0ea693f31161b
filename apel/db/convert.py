"""Message values -> database values, checked against the column that stores them.

Every value is checked against its column (text length, integer range, decimal range,
datetime range), so a bad value is refused with a reason naming the record and field,
identically on MySQL and SQLite, and nothing is ever clamped. ServiceLevel, CpuCount and
Benchmark are rounded to 3 decimals, half away from zero, on the decimal text of the
value; datetimes become naive UTC (the database stores UTC).

Each converter checks and converts a whole column of a message at once: the common case
(all values of the expected type and in range) runs in a few C-level passes
(``set(map(type, ...))``, ``min``/``max``); anything unusual falls back to the
per-value ``one`` that names the problem.
"""

from __future__ import annotations

import abc
import datetime as _dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import repeat
from math import isfinite
from operator import add, attrgetter, methodcaller, sub
from typing import Any, Optional

from apel.db.dialect import Kind
from apel.db.tables import DECIMAL_KINDS, INTEGER_RANGES, NAME_LENGTH, Stored
from apel.records.quote import quote

UTC = _dt.timezone.utc

DECIMAL_MAX = Decimal("9999999.999")  # DECIMAL(10,3)
_MILLI = Decimal("0.001")
DT_MIN = _dt.datetime(1000, 1, 1)  # MySQL DATETIME range
DT_MAX = _dt.datetime(9999, 12, 31, 23, 59, 59)
ZERO = Decimal("0.000")


class Refused(ValueError):
    """A value its column cannot hold; becomes a StorageError naming record and field."""


_NoneType = type(None)


class Converter(abc.ABC):
    """Checks and converts the values of one column."""

    @abc.abstractmethod
    def one(self, value: Any) -> Any:
        """Convert one value, or raise ValueError naming the problem."""

    def many(self, values: list[Any]) -> list[Any]:
        return [self.one(value) for value in values]


class Text(Converter):
    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def one(self, value: Any) -> str:
        if value is None:
            return "None"
        if not isinstance(value, str):
            raise Refused(f"expected text, got {type(value).__name__} {quote(value)}")
        if len(value) > self.max_length:
            raise Refused(f"{len(value)} characters, the column holds at most {self.max_length}")
        return value

    def many(self, values: list[Any]) -> list[Any]:
        if set(map(type, values)) == {str} and max(map(len, values)) <= self.max_length:
            return values
        return [self.one(value) for value in values]


class Integer(Converter):
    def __init__(self, low: int, high: int, null: Optional[int] = None, nullable: bool = True) -> None:
        self.low, self.high, self.null, self.nullable = low, high, null, nullable

    def one(self, value: Any) -> Optional[int]:
        if value is None:
            if self.null is not None:
                return self.null
            if self.nullable:
                return None
            raise Refused("is missing, and the database requires a value")
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refused(f"expected an integer, got {type(value).__name__} {quote(value)}")
        if value < self.low:
            if self.low == 0:
                raise Refused(f"{quote(value)} is negative; the column is unsigned")
            raise Refused(f"{quote(value)} is below the column's minimum {self.low}")
        if value > self.high:
            raise Refused(f"{quote(value)} exceeds the column's maximum {self.high}")
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
        raise Refused(f"expected a number, got {type(value).__name__} {quote(value)}")
    try:
        exact = value if isinstance(value, Decimal) else Decimal(repr(value))
        rounded = exact.quantize(_MILLI, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise Refused(f"{quote(value)} is not a finite number") from None
    if not rounded.is_finite():
        raise Refused(f"{quote(value)} is not a finite number")
    return rounded


_ROUND3 = methodcaller("quantize", _MILLI, ROUND_HALF_UP)


class Decimal3(Converter):
    def __init__(self, null: Optional[Decimal], unsigned: bool = False, nullable: bool = False) -> None:
        self.null, self.unsigned, self.nullable = null, unsigned, nullable

    def one(self, value: Any) -> Optional[Decimal]:
        if value is None:
            if self.null is not None or self.nullable:
                return self.null
            raise Refused("is missing, and the database requires a value")
        rounded = round_decimal3(value)
        if abs(rounded) > DECIMAL_MAX:
            raise Refused(f"{quote(value)} is outside the column's range ±{DECIMAL_MAX}")
        if self.unsigned and rounded < 0:
            raise Refused(f"{quote(value)} is negative; the column is unsigned")
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


class Datetime(Converter):
    def __init__(self, nullable: bool) -> None:
        self.nullable = nullable

    def one(self, value: Any) -> Optional[_dt.datetime]:
        if value is None:
            if self.nullable:
                return None
            raise Refused("is missing, and the database requires a value")
        if not isinstance(value, _dt.datetime):
            raise Refused(f"expected a datetime, got {type(value).__name__} {quote(value)}")
        naive = to_naive_utc(value)
        if naive < DT_MIN or naive > DT_MAX:
            raise Refused(f"{value.isoformat()} is outside the storable range (years 1000 to 9999)")
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
            if min(naive) >= DT_MIN and max(naive) <= DT_MAX and not any(map(_MICROSECOND, naive)):
                if present is values:
                    return naive
                found = iter(naive)
                return [None if value is None else next(found) for value in values]
        return [self.one(value) for value in values]


_TZINFO = attrgetter("tzinfo")
_MICROSECOND = attrgetter("microsecond")
_EPOCH = _dt.datetime(1970, 1, 1)
_UTC_EPOCH = _EPOCH.replace(tzinfo=UTC)


def converter(stored: Stored) -> Converter:
    """The converter of one record table column (``apel.db.tables``)."""
    if stored.lookup is not None:  # the name, as the lookup table stores it
        return Text(NAME_LENGTH)
    column = stored.column
    kind = column.kind
    if kind is Kind.TEXT:
        return Text(column.length)
    if kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        return Integer(low, high, null=0 if stored.zero_when_null else None, nullable=column.nullable)
    if kind in DECIMAL_KINDS:
        null = ZERO if stored.zero_when_null else None
        return Decimal3(null, unsigned=kind is Kind.UDECIMAL, nullable=column.nullable)
    if kind is Kind.DATETIME:
        return Datetime(column.nullable)
    raise ValueError(f"no converter for the {kind.value} column {column.name}")

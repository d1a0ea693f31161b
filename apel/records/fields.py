"""Field descriptions and the coercion of one message value into its typed form.

A :class:`Field` says what a record field holds (kind, whether it is mandatory,
the range a database column must be able to store, the longest string), so the
parser can refuse a value *before* storage ever sees it, and the storage layer
can size its columns from the same description.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional, Union

from apel.records.quote import quote

# Field kinds.
STR = "s"
INT = "i"
FLOAT = "f"
DATETIME = "dt"

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# What SQL DATETIME can hold; anything outside is refused while parsing.
DATETIME_MIN = datetime(1000, 1, 1, tzinfo=UTC)
DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
EPOCH_MIN = int((DATETIME_MIN - EPOCH).total_seconds())
EPOCH_MAX = int((DATETIME_MAX - EPOCH).total_seconds())

# Integer ranges of the columns the values end up in.
SIGNED_BIGINT = (-(2**63), 2**63 - 1)
UNSIGNED_BIGINT = (0, 2**63 - 1)  # capped at the signed maximum: every driver and SQLite can hold it
UNSIGNED_INT = (0, 2**32 - 1)
MONTH = (1, 12)
YEAR = (1970, 9999)
DECIMAL_10_3 = (0.0, 9_999_999.999)  # DECIMAL(10,3): storage rounds to 3 decimals

MONTH_YEAR_NOTE = "Invalid values for month and/or year"

NULL_WORDS = frozenset(("", "none", "null"))


def _spellings(word: str) -> set[str]:
    return {"".join(chars) for chars in itertools.product(*((c.lower(), c.upper()) for c in word))}


# Every letter-case spelling of the null words: one set lookup per value in the hot loop.
NULL_SPELLINGS = frozenset(set().union(*(_spellings(word) for word in NULL_WORDS)))

Number = Union[int, float]


def is_null(value: str) -> bool:
    """`none`, `null` and the empty string, in any letter case, mean "no value"."""
    return len(value) < 5 and value.lower() in NULL_WORDS


@dataclass(frozen=True)
class Field:
    """One field of a record type, in message order.

    ``in_message`` is False for values that are derived rather than written by
    the renderer (cloud VO/VOGroup/VORole come from the FQAN).  ``low_note`` and
    ``high_note`` prefix a range error with the compatibility text the existing
    server used (``Invalid values for month and/or year``, ``Negative WallDuration``).
    """

    name: str
    kind: str
    mandatory: bool = False
    minimum: Optional[Number] = None
    maximum: Optional[Number] = None
    max_length: int = 255
    in_message: bool = True
    low_note: str = ""
    high_note: str = ""

    @property
    def null(self) -> Any:
        """The stored form of a missing value: ``None`` for strings, as the existing server has it."""
        return "None" if self.kind == STR else None


def s(name: str, mandatory: bool = False, max_length: int = 255, in_message: bool = True) -> Field:
    """A string field."""
    return Field(name, STR, mandatory, max_length=max_length, in_message=in_message)


def i(name: str, mandatory: bool = False, bounds: tuple[int, int] = SIGNED_BIGINT,
      low_note: str = "", high_note: str = "") -> Field:
    """An integer field that must fit ``bounds`` (inclusive)."""
    return Field(name, INT, mandatory, bounds[0], bounds[1], low_note=low_note, high_note=high_note)


def f(name: str, mandatory: bool = False, bounds: tuple[float, float] = DECIMAL_10_3) -> Field:
    """A float field that must fit ``bounds`` (inclusive, after rounding to 3 decimals)."""
    return Field(name, FLOAT, mandatory, bounds[0], bounds[1])


def dt(name: str, mandatory: bool = False) -> Field:
    """A datetime field (UTC)."""
    return Field(name, DATETIME, mandatory)


# ---------------------------------------------------------------------------
# Coercion.  Each converter takes the stripped, non-null message text (or an
# already typed value from the XML parsers) and returns the typed value, or
# raises ValueError with the reason (without the record/field prefix).
# build.py inlines the commonest paths (strings, integers, epoch seconds).

_ISO_Z = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z", re.ASCII)


def datetime_from_epoch(seconds: int) -> datetime:
    """Epoch seconds are UTC whatever the host's time zone (the existing server read them as local time)."""
    if not EPOCH_MIN <= seconds <= EPOCH_MAX:
        raise ValueError(f"epoch {quote(seconds)} is outside the storable range "
                         f"{DATETIME_MIN:%Y-%m-%d}..{DATETIME_MAX:%Y-%m-%d}")
    return EPOCH + timedelta(seconds=seconds)


def _check_datetime(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():
        value = value.astimezone(UTC)
    if not DATETIME_MIN <= value <= DATETIME_MAX:
        raise ValueError(f"datetime {value.isoformat()} is outside the storable range")
    return value


def to_datetime(value: Any) -> datetime:
    """Epoch seconds (UTC) or ``YYYY-MM-DDThh:mm:ssZ`` (UTC), nothing else."""
    if value.__class__ is str:
        if value.isdigit() and value.isascii():
            return datetime_from_epoch(int(value))
        m = _ISO_Z.fullmatch(value)
        if m is not None:
            try:
                return _check_datetime(datetime(*map(int, m.groups()), tzinfo=UTC))  # type: ignore[misc,arg-type]  # 6 ints
            except ValueError as exc:
                raise ValueError(f"Invalid datetime value {quote(value)}: {exc}") from None
        try:
            return datetime_from_epoch(int(value))
        except ValueError:
            raise ValueError(f"Invalid datetime value {quote(value)}: expected epoch seconds "
                             "or YYYY-MM-DDThh:mm:ssZ") from None
    if isinstance(value, datetime):
        return _check_datetime(value)
    raise ValueError(f"Invalid datetime value {quote(value)}")


def range_error(field: Field, value: Number) -> ValueError:
    """The reason a value is outside its column's range, with the compatibility note if any."""
    if field.minimum is not None and value < field.minimum:
        note = f"{field.low_note}: " if field.low_note else ""
        return ValueError(f"{note}value {quote(value)} is below the minimum {field.minimum}")
    note = f"{field.high_note}: " if field.high_note else ""
    return ValueError(f"{note}value {quote(value)} is above the maximum {field.maximum}")


def int_converter(field: Field) -> Callable[[Any], int]:
    """A converter for one integer field, with its range check bound in."""
    lo, hi = field.minimum, field.maximum

    def convert(value: Any) -> int:
        try:
            n = int(value)
        except (ValueError, TypeError):
            raise ValueError(f"Invalid int value {quote(value)}") from None
        if value.__class__ is float and n != value:
            raise ValueError(f"Invalid int value {quote(value)}")
        if not lo <= n <= hi:  # type: ignore[operator]  # int fields have both bounds
            raise range_error(field, n)
        return n

    return convert


def check_float(field: Field, x: float) -> float:
    """Refuse NaN/infinity and values a DECIMAL(10,3) column cannot hold."""
    if not math.isfinite(x):
        raise ValueError(f"value {quote(x)} is not a finite number")
    if field.minimum is not None and round(x, 3) < field.minimum:
        raise range_error(field, x)
    if field.maximum is not None and round(x, 3) > field.maximum:
        raise range_error(field, x)
    return x


def float_converter(field: Field) -> Callable[[Any], float]:
    """A converter for one float field, with its range check bound in."""

    def convert(value: Any) -> float:
        try:
            x = float(value)
        except (ValueError, TypeError):
            raise ValueError(f"Invalid float value {quote(value)}") from None
        return check_float(field, x)

    return convert


def converter(field: Field) -> Callable[[Any], Any]:
    """The converter for a numeric or datetime field (strings need only their length checked)."""
    if field.kind == INT:
        return int_converter(field)
    if field.kind == FLOAT:
        return float_converter(field)
    if field.kind == DATETIME:
        return to_datetime
    raise ValueError(f"no converter for {field.kind!r} field {field.name}")

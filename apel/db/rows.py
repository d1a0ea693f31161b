"""Record dicts -> table rows: one place for every storage rule both backends share.

The old server computed derived columns inside stored procedures the tests could not
see, and let MySQL clamp or truncate values depending on its SQL mode. Here every rule
is plain Python, applied before the database is touched:

- the columns, and what each may hold, are those of ``apel.db.tables`` (derived from
  the record types' fields); every value is checked and converted by
  ``apel.db.convert``, so nothing is ever clamped;
- EndYear/EndMonth from the UTC EndTime; Processors/NodeCount null -> 0;
- the cloud MeasurementTime/Month/Year (:func:`measurement_time`).

A :class:`Layout` says which columns a record type fills, which of them hold a name to
be replaced by a lookup-table id (``lookups``) and where the publisher DN goes. The
backends only resolve names to ids and write the rows.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from operator import attrgetter
from typing import Any, Callable, Optional

from apel.db import tables
from apel.db.backend import StorageError
from apel.db.convert import DT_MAX, Converter, Refused, Text, converter
from apel.db.dialect import Kind
from apel.db.tables import DATETIME_KINDS, DECIMAL_KINDS, NAME_LENGTH, RecordTable
from apel.records import model

# computes the derived columns, by name, from the converted stored columns, by name
Derive = Callable[[Mapping[str, list[Any]]], Mapping[str, list[Any]]]


@dataclass(frozen=True)
class Source:
    """One database column filled from one record field."""

    column: str
    field: str
    convert: Converter
    lookup: Optional[str] = None  # the lookup table when the column holds its id


@dataclass(frozen=True)
class Layout:
    """How the records of one type become rows of one table (``record``).

    A row lists the values of :attr:`columns` in order. At :attr:`lookup_positions` it
    holds the *name* (``str``); the backend replaces it by the lookup table's id. The
    publisher DN, when the table stores one, is the last column (``PublisherDNID``):
    a DNs lookup; with :attr:`publisher_as_text` the id is stored as text.
    """

    record: RecordTable
    derive: Optional[Derive] = None
    sources: tuple[Source, ...] = field(init=False)
    columns: tuple[str, ...] = field(init=False)
    lookup_positions: tuple[tuple[int, str], ...] = field(init=False)
    # columns holding text (never NULL: a null string is 'None'); all others may be NULL
    text_columns: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        record = self.record
        sources = tuple(Source(s.column.name, s.field, converter(s), s.lookup) for s in record.stored)
        columns = [src.column for src in sources] + [c.name for c in record.derived]
        lookups = [(i, src.lookup) for i, src in enumerate(sources) if src.lookup]
        if record.publisher is not None:
            lookups.append((len(columns), "DNs"))
            columns.append(record.publisher.name)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "columns", tuple(columns))
        object.__setattr__(self, "lookup_positions", tuple(lookups))
        object.__setattr__(self, "text_columns", record.table.text_columns())

    @property
    def record_type(self) -> str:
        return self.record.record_type

    @property
    def table(self) -> str:
        return self.record.table.name

    @property
    def publisher_as_text(self) -> bool:
        return self.record.publisher is not None and self.record.publisher.kind is Kind.TEXT

    def positions_of(self, kind: type) -> tuple[int, ...]:
        """Positions of the columns whose built values are of ``kind`` (datetime, Decimal)."""
        kinds = DATETIME_KINDS if kind is _dt.datetime else DECIMAL_KINDS if kind is Decimal else frozenset()
        names = {c.name for c in self.record.table.columns if c.kind in kinds}
        return tuple(i for i, column in enumerate(self.columns) if column in names)

    def build_columns(self, records: Sequence[model.Record], publisher_dn: str = "") -> list[list[Any]]:
        """The values of each of :attr:`columns` for ``records`` (column-major);
        StorageError names a refused record (1-based) and field."""
        if not records:
            return [[] for _ in self.columns]
        columns = []
        count = len(records)
        for src in self.sources:
            name = src.field
            values = list(map(dict.get, records, repeat(name, count)))
            try:
                columns.append(src.convert.many(values))
            except (Refused, OverflowError):
                self._refuse(src, values)
        if self.derive is not None:
            try:
                derived = self.derive(dict(zip(self.columns, columns)))
                columns.extend(derived[c.name] for c in self.record.derived)
            except (Refused, OverflowError) as exc:
                raise StorageError(f"{self.record_type} record: {exc}") from None
        if self.record.publisher is not None:
            columns.append([publisher_dn] * len(records))
        return columns

    def _refuse(self, src: Source, values: list[Any]) -> None:
        for number, value in enumerate(values, 1):
            try:
                src.convert.one(value)
            except (Refused, OverflowError) as exc:
                raise StorageError(f"{self.record_type} record {number}: {src.field} {exc}") from None
        raise StorageError(f"{self.record_type}: {src.field} holds values the column cannot store")


def _job_derive(values: Mapping[str, list[Any]]) -> dict[str, list[int]]:
    ends = values["EndTime"]  # already naive UTC
    return {"EndYear": list(map(_YEAR, ends)), "EndMonth": list(map(_MONTH, ends))}


_YEAR = attrgetter("year")
_MONTH = attrgetter("month")


def measurement_time(
    status: str,
    start: Optional[_dt.datetime],
    end: Optional[_dt.datetime],
    created: Optional[_dt.datetime],
    suspend: Optional[int],
    wall: Optional[int],
) -> Optional[_dt.datetime]:
    """The cloud record's MeasurementTime, or None for "unknown".

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


def _cloud_derive(values: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    times, months, years = [], [], []
    inputs = zip(*(values[name] for name in (
        "Status", "StartTime", "EndTime", "RecordCreateTime", "SuspendDuration", "WallDuration")))
    for number, args in enumerate(inputs, 1):
        when = measurement_time(*args)
        if when is not None and when > DT_MAX:
            raise Refused(f"{number}: MeasurementTime {when.isoformat()} is beyond the storable range")
        times.append(when)
        months.append(0 if when is None else when.month)
        years.append(0 if when is None else when.year)
    return {"MeasurementTime": times, "MeasurementMonth": months, "MeasurementYear": years}

_DERIVE: dict[str, Derive] = {model.JOB: _job_derive, model.CLOUD: _cloud_derive}


LAYOUTS: dict[str, Layout] = {
    record_type: Layout(record, _DERIVE.get(record_type))
    for record_type, record in tables.RECORD_TABLES.items()
}
GROUP_ATTRIBUTE = LAYOUTS[model.GROUP_ATTRIBUTE]


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
    publisher = Text(NAME_LENGTH)
    try:
        dn = publisher.one(publisher_dn if publisher_dn is not None else "None")
    except Refused as exc:
        raise StorageError(f"publisher DN: {exc}") from None
    parts = []
    if message.records:
        parts.append(TableData(layout, layout.build_columns(message.records, dn)))
    if message.group_attributes:
        parts.append(TableData(GROUP_ATTRIBUTE, GROUP_ATTRIBUTE.build_columns(message.group_attributes, dn)))
    return parts

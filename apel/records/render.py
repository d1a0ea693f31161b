"""Records → APEL text messages, as the unloader sends them.

The output parses back to the same records (``parse_message(render_message(t, rs))``),
which is what the round-trip tests hold us to.

A message is rendered column by column: each field's values over all records are
taken in one ``map``, transformed in bulk (benchmark dicts, withheld DNs, CPU counts,
datetimes → epoch seconds), and every record is then one ``%`` format of a template
shared by the message (why: "Records" in docs/design.md).  The output is byte-identical
to formatting field by field: ``tests/test_records_render_bulk.py`` holds it to a
field-by-field reference.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import repeat
from operator import attrgetter, floordiv, sub
from typing import Any

from apel.records import model
from apel.records.definitions import DICT_FIELDS_BY_TYPE, FIELDS, RENDER_HEADERS
from apel.records.fields import DATETIME, EPOCH, UTC

WITHHELD = "withheld"
# Only these types may have their user DNs withheld; the others' names for the error.
_WITHHOLDABLE = frozenset((model.JOB, model.SYNC, model.CLOUD))
_CLASS_NAMES = {model.SUMMARY: "SummaryRecord", model.NORMALISED_SUMMARY: "NormalisedSummaryRecord",
                model.CLOUD_SUMMARY: "CloudSummaryRecord"}
_SUMMARY_TYPES = frozenset((model.SUMMARY, model.NORMALISED_SUMMARY))
_NAIVE_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_TZINFO = attrgetter("tzinfo")
_PLAIN_TYPES = frozenset((str, int, float, type(None)))


def format_value(value: Any) -> str:
    """Datetimes as UTC epoch seconds (naive ones are taken as UTC), the rest by ``str()``."""
    if isinstance(value, datetime):
        return str(calendar.timegm(value.utctimetuple()))
    return value if value.__class__ is str else str(value)


def _epoch_text(value: Any) -> Any:
    """:func:`format_value` for datetimes, by integer arithmetic for naive and UTC ones (the
    unloader's and the parser's); anything else is returned unchanged, for ``%s`` to ``str()``."""
    if value.__class__ is datetime:
        tzinfo = value.tzinfo
        if tzinfo is None:
            return str((value - _NAIVE_EPOCH) // _SECOND)
        if tzinfo is UTC:
            return str((value - EPOCH) // _SECOND)
    return format_value(value) if isinstance(value, datetime) else value


def _holds_datetime(column: list[Any], likely: bool) -> bool:
    """Whether :func:`format_value` would meet a datetime in this column (of any field).

    Columns of other fields are first cleared by proofs cheaper than ``isinstance`` over
    the column: ``str.join`` takes only strings, and a set of types.
    """
    if not likely:
        try:
            "".join(column)
            return False
        except TypeError:
            pass
        if _PLAIN_TYPES.issuperset(map(type, column)):
            return False
    return any(map(isinstance, column, repeat(datetime)))


def _epoch_column(column: list[Any]) -> list[Any]:
    """:func:`_epoch_text` over a column; all-naive or all-UTC datetime columns in bulk.

    The integers stand for their text: ``%s`` formats them with ``str()``.
    """
    if None not in column and set(map(type, column)) == {datetime}:
        zones = set(map(_TZINFO, column))
        epoch = _NAIVE_EPOCH if zones == {None} else EPOCH if zones == {UTC} else None
        if epoch is not None:
            return list(map(floordiv, map(sub, column, repeat(epoch)), repeat(_SECOND)))
    return list(map(_epoch_text, column))


def _cpu_count(value: Any) -> Any:
    """CpuCount as an integer, with 0 < x < 1 counted as one CPU, as the existing unloader writes it."""
    return 1 if 0 < value < 1 else int(value)


def _benchmark_type(level_type: Any) -> str:
    return "HEPSPEC" if level_type in (None, "", "None") else level_type


def render_message(record_type: str, records: Iterable[model.Record], *, dict_benchmark: bool = False,
                   include_infrastructure_description: bool = False, withhold_dns: bool = False,
                   decimal_cpu_count: bool = False) -> str:
    """One APEL text message holding ``records``: header, ``Key: value`` lines, ``%%`` after each.

    Raises ValueError for combinations the format cannot express (storage records,
    dict mode for sync/cloud types, withheld DNs in summaries).
    """
    if record_type in (model.STORAGE, model.GROUP_ATTRIBUTE):
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
    names = []
    datetime_fields = set()
    for field in FIELDS[record_type]:
        name = field.name
        if not field.in_message:
            continue
        if dict_fields and name == "ServiceLevelType":
            continue  # carried inside the dict values
        if name == "InfrastructureDescription" and record_type in _SUMMARY_TYPES \
                and not include_infrastructure_description:
            continue
        names.append(name)
        if field.kind == DATETIME:
            datetime_fields.add(name)

    records = records if isinstance(records, list) else list(records)
    columns = [list(map(dict.get, records, repeat(name))) for name in names]
    for name, column in zip(names, columns):
        if name in dict_fields:
            level_types = map(_benchmark_type, map(dict.get, records, repeat("ServiceLevelType")))
            column[:] = [None if value is None else f"{{{level_type}: {format_value(value)}}}"
                         for value, level_type in zip(column, level_types)]
        elif withhold_dns and name == "GlobalUserName":
            column[:] = repeat(WITHHELD, len(column))
        elif record_type == model.CLOUD and name == "CpuCount" and not decimal_cpu_count:
            column[:] = [None if value is None else _cpu_count(value) for value in column]
        if _holds_datetime(column, name in datetime_fields):
            column[:] = _epoch_column(column)
    return header + "\n" + "".join(_lines(names, columns))


def _lines(names: list[str], columns: list[list[Any]]) -> list[str]:
    """Each record's lines and its ``%%``: one ``%`` format per record, skipping null and empty values.

    A field that some record leaves out (None or "") gets a whole-line slot instead of a
    ``Name: %s`` line, filled with its line or with "", so every record shares one template.
    """
    if not columns or not columns[0]:
        return []
    sparse = []
    for name, column in zip(names, columns):
        gaps = None in column or "" in column
        if gaps:
            line = f"{name}: %s\n"
            column[:] = ["" if value is None or value == "" else line % (value,) for value in column]
        sparse.append(gaps)
    return list(map(_template(tuple(names), tuple(sparse)).__mod__, zip(*columns)))


@lru_cache(maxsize=256)
def _template(names: tuple[str, ...], sparse: tuple[bool, ...]) -> str:
    """``Name: %s`` lines (``%s`` is ``str()``, as format_value does), whole-line slots for the
    sparse fields, then the separator."""
    return "".join("%s" if gaps else f"{name}: %s\n" for name, gaps in zip(names, sparse)) + "%%%%\n"

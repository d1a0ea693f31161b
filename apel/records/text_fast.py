"""Fast path for text messages in the canonical layout: ``Key: value`` lines in field order.

APEL clients and our own renderer write every record's lines in field order
(``FIELDS``), one space after the colon, fields left out or written as ``None``.
For such a message a regular expression returns each record's values at once,
and the values are then checked and coerced *column by column*, one bulk
operation per field over all records of the message (``map(int, column)``,
``min``/``max`` against the column's range, set membership for nulls).  Python
code then runs per field and per message instead of per line and per record
(figures: "Records" in docs/design.md).

The fast path only *accepts*.  Whatever it cannot prove valid for the whole
message -- another line layout, an ignored or unknown key, a duplicate key, a
null mandatory field, a value out of range, an ISO datetime, a malformed or
mixed benchmark dict, a ServiceLevelType next to a dict -- makes
:meth:`CanonicalReader.read` return ``None``, and the caller parses the message
again on the exact path (:func:`apel.records.build.build_record`, record by
record), the only one that words reasons.  The records it returns are equal,
key order included, to the exact path's; the per-record cross-field checks run
on them in record order, so the first reason raised is the one the exact path
raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import cache, lru_cache
from itertools import repeat, takewhile
from operator import eq, le
from typing import Any, Callable, Optional

from apel.records.definitions import FIELDS, FQAN_ALWAYS, MessageSpec
from apel.records.fields import EPOCH_MAX, EPOCH_MIN, FLOAT, INT, NULL_SPELLINGS, UTC
from apel.records.fqan import parse_fqan
from apel.records.model import Record
from apel.records.service_level import VALID_SERVICE_LEVEL_TYPES, parse_benchmark_dict

_STRIP = str.strip
_GROUPS = re.Match.groups
_NULL_TO_NONE = dict.fromkeys(NULL_SPELLINGS, "None")  # a null string field is stored as "None"
_ONE_BENCHMARK = re.compile(r"\{([A-Za-z0-9]+): ([0-9]+(?:\.[0-9]+)?)\}")
_MAX_LAYOUTS = 64  # compiled per-layout patterns kept per spec

Column = list  # one field's values over every record of the message, in record order


def _in_range(numbers: Column, low: Any, high: Any) -> bool:
    """Every number within [low, high]; NaN is never within (comparisons with it are false)."""
    return all(map(le, repeat(low), numbers)) and all(map(le, numbers, repeat(high)))


def _ints_in_range(numbers: Column, low: int, high: int) -> bool:
    """Integers (no NaN among them) within [low, high]."""
    return not numbers or (min(numbers) >= low and max(numbers) <= high)


def _strings(texts: Column, mandatory: bool, max_length: int) -> Optional[Column]:
    lengths = list(map(len, texts))
    if max(lengths) > max_length:  # nulls are at most 4 long, so they never fail this
        return None
    if min(lengths) > 4 or NULL_SPELLINGS.isdisjoint(texts):  # the length test saves hashing every value
        return texts
    if mandatory:
        return None
    return list(map(_NULL_TO_NONE.get, texts, texts))


def _numbers(convert: Callable[[str], Any], texts: Column, mandatory: bool) -> Optional[Column]:
    """``convert`` over a column, nulls → None (none of them is a number); None if a text is not one."""
    try:
        return list(map(convert, texts))
    except ValueError:
        if mandatory:
            return None
    try:
        return [None if text in NULL_SPELLINGS else convert(text) for text in texts]
    except ValueError:
        return None


def _bounded(convert: Callable[[str], Any], in_range: Callable[[Column, Any, Any], bool],
             texts: Column, mandatory: bool, low: Any, high: Any) -> Optional[Column]:
    """``convert`` over a column whose non-null numbers all lie within [low, high], else None."""
    numbers = _numbers(convert, texts, mandatory)
    if numbers is None:
        return None
    present = [number for number in numbers if number is not None] if None in numbers else numbers
    return numbers if in_range(present, low, high) else None


def _ints(texts: Column, mandatory: bool, low: int, high: int) -> Optional[Column]:
    return _bounded(int, _ints_in_range, texts, mandatory, low, high)


def _datetimes(texts: Column, mandatory: bool) -> Optional[Column]:
    """Epoch seconds in the storable range; ISO forms are left to the exact path.

    A text ``int()`` reads can never be an ISO date-time, so this accepts exactly the
    values the exact path reads as epoch seconds, and builds the same datetimes.
    """
    seconds = _ints(texts, mandatory, EPOCH_MIN, EPOCH_MAX)
    if seconds is None:
        return None
    if None not in seconds:  # equal to the exact path's EPOCH + timedelta(seconds=n), and faster
        return list(map(datetime.fromtimestamp, seconds, repeat(UTC)))
    return [None if number is None else datetime.fromtimestamp(number, UTC) for number in seconds]


def _floats(texts: Column, mandatory: bool, low: float, high: float) -> Optional[Column]:
    """Floats within [low, high]: the exact path's rounded check accepts these and only refuses outside."""
    return _bounded(float, _in_range, texts, mandatory, low, high)


def _benchmark_dicts(texts: Column) -> Optional[tuple[Sequence[str], Sequence[str]]]:
    """Each v0.4 benchmark dict's chosen (type, value text), as :func:`parse_benchmark_dict` picks it.

    The usual one-benchmark form ``{HEPSPEC: 10.5}`` is read by one pattern over the column;
    for it ``parse_benchmark_dict`` returns the lower-cased key and the number as written,
    provided the key is a benchmark.  Any other form goes through ``parse_benchmark_dict``.
    """
    matches = list(map(_ONE_BENCHMARK.fullmatch, texts))
    if None not in matches:
        keys, numbers = zip(*map(_GROUPS, matches))  # type: ignore[arg-type]  # no None: checked above
        kinds = list(map(str.lower, keys))
        if VALID_SERVICE_LEVEL_TYPES.issuperset(kinds):
            return kinds, numbers
    try:
        kinds, numbers = zip(*map(parse_benchmark_dict, texts))  # type: ignore[assignment]
    except ValueError:  # also a null: "" is not a dict
        return None
    return kinds, numbers


class _Step:
    """How one field's column is coerced: its position and the coercion with its bounds bound in."""

    def __init__(self, position: int, coerce: Callable[[Column], Optional[Column]]) -> None:
        self.position = position
        self.coerce = coerce


class CanonicalReader:
    """Reads whole messages of one :class:`MessageSpec` written in the canonical layout."""

    def __init__(self, spec: MessageSpec) -> None:
        self.spec = spec
        fields = FIELDS[spec.record_type]
        self.names = tuple(fld.name for fld in fields)
        self.by_name = {fld.name: fld for fld in fields}
        self.position = {name: number for number, name in enumerate(self.names)}
        # Any subset of the fields, in order, each at most once; the value is the rest of its line.
        # A chunk between two '%%' starts and ends with the newlines around them.  ``(?:...|)``
        # matches as ``(?:...)?`` does, and faster.
        self.any_layout = re.compile(
            "\n?" + "".join(f"(?:{re.escape(name)}: (.*)(?:\n|\\Z)|)" for name in self.names))
        self.layout_pattern = lru_cache(maxsize=_MAX_LAYOUTS)(self._layout_pattern)
        self.steps: list[_Step] = []
        self.dicts: list[tuple[int, Callable[[Column], Optional[Column]]]] = []  # v0.4 benchmark dict fields
        steps = spec.steps
        if min((length for _, _, length in steps.strings), default=4) < 4:
            raise ValueError("the string checks below assume no field is shorter than a null spelling")
        for name, mandatory, max_length in steps.strings:
            self._add(name, _strings, mandatory, max_length)
        for name, mandatory, fld in steps.ints:
            self._add(name, _ints, mandatory, fld.minimum, fld.maximum)
        for name, mandatory in steps.datetimes:
            self._add(name, _datetimes, mandatory)
        for name, mandatory, convert, is_dict in steps.others:
            fld = self.by_name[name]
            if is_dict:
                self.dicts.append((self.position[name], self._dict_values(fld, mandatory, convert)))
            elif fld.kind == FLOAT and fld.minimum is not None and fld.maximum is not None:
                self._add(name, _floats, mandatory, fld.minimum, fld.maximum)
            else:
                raise ValueError(f"no column coercion for field {name}")

    def _add(self, name: str, coerce: Callable[..., Optional[Column]], *bounds: Any) -> None:
        self.steps.append(_Step(self.position[name], lambda texts: coerce(texts, *bounds)))

    def _dict_values(self, fld: Any, mandatory: bool,
                     convert: Callable[[str], Any]) -> Callable[[Column], Optional[Column]]:
        """The chosen benchmark's value texts → the field's values, as the exact path converts them."""
        if fld.kind == FLOAT:
            return lambda texts: _floats(texts, mandatory, fld.minimum, fld.maximum)
        if fld.kind != INT:
            raise ValueError(f"no column coercion for benchmark dict field {fld.name}")

        def ints(texts: Column) -> Optional[Column]:
            numbers = _ints(texts, mandatory, fld.minimum, fld.maximum)
            if numbers is not None:
                return numbers
            try:  # decimals: the converter truncates them (10.7 → 10)
                return list(map(convert, texts))
            except ValueError:
                return None

        return ints

    def _layout_pattern(self, keys: tuple[str, ...]) -> Optional[re.Pattern]:
        """A pattern for records holding exactly ``keys``, in field order: faster to match than the
        any-subset pattern."""
        if any(key not in self.position for key in keys) or \
                list(keys) != sorted(set(keys), key=self.position.__getitem__):
            return None
        return re.compile("\n?" + "\n".join(f"{re.escape(key)}: (.*)" for key in keys) + "\n?")

    def _columns(self, chunks: list[str]) -> Optional[list[Column]]:
        """Every field's column of value texts, or None if a record is not in the canonical layout.

        The first record's keys pick a pattern that expects exactly those lines; a message
        whose records differ in which fields they carry is matched with the any-subset pattern.
        """
        keys = tuple(line.partition(":")[0] for line in chunks[0].strip().split("\n"))
        pattern = self.layout_pattern(keys) if len(keys) <= len(self.names) else None
        if pattern is not None:
            matches = list(takewhile(bool, map(pattern.fullmatch, chunks)))  # up to the first miss
            if len(matches) == len(chunks):
                rows = list(map(_GROUPS, matches))  # type: ignore[arg-type]  # all matched
                columns = [[""] * len(chunks) for _ in self.names]  # absent fields read as null
                for key, column in zip(keys, zip(*rows)):
                    columns[self.position[key]] = list(map(_STRIP, column))
                return columns
        if "\n" in chunks:  # the empty record the any-subset pattern matches: an empty chunk
            return None
        matches = list(takewhile(bool, map(self.any_layout.fullmatch, chunks)))  # a miss costs one match
        if len(matches) != len(chunks):
            return None
        rows = list(map(_GROUPS, matches, repeat("")))  # type: ignore[arg-type]  # an absent field reads as "", i.e. null
        return [list(map(_STRIP, column)) for column in zip(*rows)]

    def read(self, parts: list[str], now: datetime) -> Optional[list[Record]]:
        """Every validated record of a message body (header removed, split at ``%%``), or None
        for the exact path.

        The records are the chunks that are not empty once stripped, as on the exact path;
        here a chunk must be a canonical record between the newlines after and before a ``%%``,
        so stripping it changes no value.  The per-record checks raise InvalidMessage as the
        exact path would.
        """
        chunks = list(filter(None, parts))
        if not chunks:
            return []
        columns = self._columns(chunks)
        if columns is None:
            return None
        spec = self.spec
        for step in self.steps:
            values = step.coerce(columns[step.position])
            if values is None:
                return None
            columns[step.position] = values
        if self.dicts and not self._benchmarks(columns):
            return None
        if spec.fqan is not None and not self._fqan(columns):
            return None
        records = list(map(dict, map(zip, repeat(self.names), zip(*columns))))
        if not spec.check_columns(lambda name: columns[self.position[name]], now):
            check = spec.check  # some record fails: the first one raises, as on the exact path
            for index, record in enumerate(records, 1):
                check(record, index, now)
        return records

    def _benchmarks(self, columns: list[Column]) -> bool:
        """v0.4 dicts: each record's benchmark type, the same in all its dict fields, becomes its
        ServiceLevelType; a record that also gives ServiceLevelType goes to the exact path."""
        level_types = columns[self.position["ServiceLevelType"]]
        if level_types.count("None") != len(level_types):
            return False
        chosen: Optional[Sequence[str]] = None
        for position, coerce in self.dicts:
            parsed = _benchmark_dicts(columns[position])
            if parsed is None:
                return False
            kinds, texts = parsed
            if chosen is None:
                chosen = kinds
            elif not all(map(eq, kinds, chosen)):
                return False
            values = coerce(list(texts))
            if values is None:
                return False
            columns[position] = values
        columns[self.position["ServiceLevelType"]] = list(chosen or ())
        return True

    def _fqan(self, columns: list[Column]) -> bool:
        """VO, VOGroup and VORole from the FQAN: always for cloud, from a non-null FQAN for jobs."""
        fqans = columns[self.position["FQAN"]]
        derived = list(map(parse_fqan, fqans))
        if self.spec.fqan != FQAN_ALWAYS and "None" in fqans:
            given = zip(*(columns[self.position[name]] for name in ("VO", "VOGroup", "VORole")))
            derived = [own if fqan == "None" else parts for fqan, parts, own in zip(fqans, derived, given)]
        for name, column in zip(("VO", "VOGroup", "VORole"), zip(*derived)):
            columns[self.position[name]] = list(column)
        return True


@cache  # one per message spec: a handful
def reader_for(spec: MessageSpec) -> CanonicalReader:
    """The canonical-layout reader of a spec, built on first use."""
    return CanonicalReader(spec)

"""Turn one record's raw key → value mapping into a validated, typed record.

Shared by the APEL text parser and the CAR/StAR parsers, so every record, from
whatever format, passes the same coercion, derivation and checks before any
record of its message is handed to storage: a message is stored whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Optional, Union

from apel.records.definitions import FQAN_ALWAYS, MessageSpec
from apel.records.fields import NULL_SPELLINGS, Field, datetime_from_epoch, range_error, to_datetime
from apel.records.fqan import parse_fqan
from apel.records.model import InvalidMessage, Record
from apel.records.quote import quote
from apel.records.service_level import MIXTURE, parse_benchmark_dict


def build_record(spec: MessageSpec, raw: Mapping[str, Any], index: Union[int, str], now: datetime) -> Record:
    """Coerce, derive and check one record; raise InvalidMessage naming what is wrong.

    ``raw`` holds message text (str) per key, or values the XML parsers already
    typed (int durations, datetimes).  ``index`` is the 1-based record number
    (or a label such as ``2 GroupAttribute 1`` for StAR group attributes).
    """
    accepted = spec.accepted
    if not accepted.issuperset(raw):
        unknown = next(key for key in raw if key not in accepted)
        raise InvalidMessage(f"record {index}: Unknown field: {quote(unknown, bare=True)}")
    steps = spec.steps
    record: Record = dict.fromkeys(steps.names)
    for name, mandatory, max_length in steps.strings:
        value = _given(raw, index, name, mandatory)
        if value is None:
            record[name] = "None"
        elif len(value) > max_length:
            raise InvalidMessage(f"record {index}: field {name}: value of {len(value)} characters "
                                 f"is longer than the maximum {max_length}")
        else:
            record[name] = value
    for name, mandatory, field in steps.ints:
        value = _given(raw, index, name, mandatory)
        if value is not None:
            record[name] = _int_in_range(value, field, index, name)
    for name, mandatory in steps.datetimes:
        value = _given(raw, index, name, mandatory)
        if value is not None:
            record[name] = _datetime(value, index, name)
    chosen, chosen_from = _others(spec, raw, record, index)
    finish_record(spec, record, chosen, chosen_from, index, now)
    return record


def _given(raw: Mapping[str, Any], index: Union[int, str], name: str, mandatory: bool) -> Any:
    """The raw value, or None when it is missing or null: which a mandatory field refuses."""
    value = raw.get(name)
    if value is None or value in NULL_SPELLINGS:
        if mandatory:
            raise _missing(raw, index, name)
        return None
    return value


def _int_in_range(value: Any, field: Field, index: Union[int, str], name: str) -> int:
    try:
        number = int(value)
    except (ValueError, TypeError):
        raise InvalidMessage(f"record {index}: field {name}: Invalid int value {quote(value)}") from None
    if number < field.minimum or number > field.maximum:  # type: ignore[operator]  # int fields have both
        raise InvalidMessage(f"record {index}: field {name}: {range_error(field, number)}")
    return number


def _datetime(value: Any, index: Union[int, str], name: str) -> datetime:
    try:
        if value.__class__ is str and value.isdigit() and value.isascii():
            return datetime_from_epoch(int(value))
        return to_datetime(value)
    except ValueError as exc:
        raise InvalidMessage(f"record {index}: field {name}: {exc}") from None


def _others(spec: MessageSpec, raw: Mapping[str, Any], record: Record,
            index: Union[int, str]) -> tuple[Optional[str], str]:
    """Floats and v0.4 benchmark dicts into ``record``; returns the benchmark type the dicts
    chose and the field it was first chosen from, so a mixture is refused naming both."""
    chosen = None
    chosen_from = ""
    for name, mandatory, convert, is_dict in spec.steps.others:
        value = _given(raw, index, name, mandatory)
        if value is None:
            continue
        try:
            if is_dict:
                kind, value = parse_benchmark_dict(value)
                if chosen is None:
                    chosen, chosen_from = kind, name
                elif kind != chosen:
                    raise ValueError(f"{MIXTURE}: {quote(kind)} here but {quote(chosen)} in {chosen_from}")
            record[name] = convert(value)
        except ValueError as exc:
            raise InvalidMessage(f"record {index}: field {name}: {exc}") from None
    return chosen, chosen_from


def finish_record(spec: MessageSpec, record: Record, chosen: Optional[str], chosen_from: str,
                  index: Union[int, str], now: datetime) -> None:
    """The work after every field is coerced: benchmark type, FQAN derivation, cross-field checks.

    Shared with the canonical-layout fast path, so both raise the same reasons.
    ``chosen`` is the benchmark type picked from v0.4 dicts (``chosen_from`` names the field).
    """
    if chosen is not None:
        given = record["ServiceLevelType"]
        if given != "None" and given.lower() != chosen:
            raise InvalidMessage(
                f"record {index}: field ServiceLevelType: value {quote(given)} contradicts the benchmark "
                f"{quote(chosen)} chosen from {chosen_from}")
        record["ServiceLevelType"] = chosen
    if spec.fqan is not None:
        fqan = record["FQAN"]
        if fqan != "None" or spec.fqan == FQAN_ALWAYS:
            record["VO"], record["VOGroup"], record["VORole"] = parse_fqan(fqan)
    spec.check(record, index, now)  # type: ignore[arg-type]  # checks only format the index


def _missing(raw: Mapping[str, Any], index: Union[int, str], name: str) -> InvalidMessage:
    why = "is missing" if raw.get(name) is None else f"is null ({quote(raw[name])})"
    return InvalidMessage(f"record {index}: field {name}: mandatory field {why}")

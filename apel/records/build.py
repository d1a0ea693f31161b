"""Turn one record's raw key → value mapping into a validated, typed record.

Shared by the APEL text parser and the CAR/StAR parsers, so every record, from
whatever format, passes the same coercion, derivation and checks before any
record of its message is handed to storage (messages.md §6).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Optional, Union

from apel.records.benchmark import MIXTURE, parse_benchmark_dict
from apel.records.definitions import FQAN_ALWAYS, MessageSpec
from apel.records.fields import NULL_SPELLINGS, datetime_from_epoch, range_error, to_datetime
from apel.records.fqan import parse_fqan
from apel.records.model import InvalidMessage, Record
from apel.records.quote import quote


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
    get = raw.get
    for name, mandatory, max_length in steps.strings:
        value = get(name)
        if value is None or value in NULL_SPELLINGS:
            if mandatory:
                raise _missing(raw, index, name)
            record[name] = "None"
        elif len(value) > max_length:
            raise InvalidMessage(f"record {index}: field {name}: value of {len(value)} characters "
                                 f"is longer than the maximum {max_length}")
        else:
            record[name] = value
    for name, mandatory, field in steps.ints:
        value = get(name)
        if value is None or value in NULL_SPELLINGS:
            if mandatory:
                raise _missing(raw, index, name)
            continue
        try:
            number = int(value)
        except (ValueError, TypeError):
            raise InvalidMessage(f"record {index}: field {name}: Invalid int value {quote(value)}") from None
        if number < field.minimum or number > field.maximum:  # type: ignore[operator]  # int fields have both
            raise InvalidMessage(f"record {index}: field {name}: {range_error(field, number)}")
        record[name] = number
    for name, mandatory in steps.datetimes:
        value = get(name)
        if value is None or value in NULL_SPELLINGS:
            if mandatory:
                raise _missing(raw, index, name)
            continue
        try:
            if value.__class__ is str and value.isdigit() and value.isascii():
                record[name] = datetime_from_epoch(int(value))
            else:
                record[name] = to_datetime(value)
        except ValueError as exc:
            raise InvalidMessage(f"record {index}: field {name}: {exc}") from None
    chosen = None  # benchmark type picked by the v0.4 dict fields
    chosen_from = ""
    for name, mandatory, convert, is_dict in steps.others:
        value = get(name)
        if value is None or value in NULL_SPELLINGS:
            if mandatory:
                raise _missing(raw, index, name)
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
    finish_record(spec, record, chosen, chosen_from, index, now)
    return record


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

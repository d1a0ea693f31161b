"""Turn one record's raw key → value mapping into a validated, typed record.

Shared by the APEL text parser and the CAR/StAR parsers, so every record, from
whatever format, passes the same coercion, derivation and checks before any
record of its message is handed to storage (messages.md §6).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Union

from apel.records.benchmark import MIXTURE, parse_benchmark_dict
from apel.records.definitions import FQAN_ALWAYS, MessageSpec
from apel.records.fields import NULL_SPELLINGS
from apel.records.fqan import parse_fqan
from apel.records.model import InvalidMessage, Record


def build_record(spec: MessageSpec, raw: Mapping[str, Any], index: Union[int, str], now: datetime) -> Record:
    """Coerce, derive and check one record; raise InvalidMessage naming what is wrong.

    ``raw`` holds message text (str) per key, or values the XML parsers already
    typed (int durations, datetimes).  ``index`` is the 1-based record number
    (or a label such as ``2 GroupAttribute 1`` for StAR group attributes).
    """
    accepted = spec.accepted
    if not accepted.issuperset(raw):
        unknown = next(key for key in raw if key not in accepted)
        raise InvalidMessage(f"record {index}: Unknown field: {unknown}")
    record: Record = {}
    chosen = None  # benchmark type picked by the v0.4 dict fields
    chosen_from = ""
    get = raw.get
    for name, convert, mandatory, null, is_dict, max_length in spec.steps:
        value = get(name)
        if value is None or value in NULL_SPELLINGS:
            if mandatory:
                why = "is missing" if raw.get(name) is None else f"is null ({raw[name]!r})"
                raise InvalidMessage(f"record {index}: field {name}: mandatory field {why}")
            record[name] = null
        elif convert is None:
            if len(value) > max_length:
                raise InvalidMessage(f"record {index}: field {name}: value of {len(value)} characters "
                                     f"is longer than the maximum {max_length}")
            record[name] = value
        else:
            try:
                if is_dict:
                    kind, value = parse_benchmark_dict(value)
                    if chosen is None:
                        chosen, chosen_from = kind, name
                    elif kind != chosen:
                        raise ValueError(f"{MIXTURE}: {kind!r} here but {chosen!r} in {chosen_from}")
                record[name] = convert(value)
            except ValueError as exc:
                raise InvalidMessage(f"record {index}: field {name}: {exc}") from None
    if chosen is not None:
        given = record["ServiceLevelType"]
        if given != "None" and given.lower() != chosen:
            raise InvalidMessage(
                f"record {index}: field ServiceLevelType: value {given!r} contradicts the benchmark "
                f"{chosen!r} chosen from {chosen_from}")
        record["ServiceLevelType"] = chosen
    if spec.fqan is not None:
        fqan = record["FQAN"]
        if fqan != "None" or spec.fqan == FQAN_ALWAYS:
            record["VO"], record["VOGroup"], record["VORole"] = parse_fqan(fqan)
    spec.check(record, index, now)
    return record

"""APEL text messages: header routing, ``%%`` splitting and ``Key: value`` lines.

A message in the canonical layout is read in bulk (:mod:`apel.records.text_fast`);
any other, and any message the bulk reader cannot prove valid, is read record by
record here, where lines are split with ``str.partition`` and the precise
diagnosis of a bad line only runs once a record is known bad.
"""

from __future__ import annotations

from datetime import datetime

from apel.records.build import build_record
from apel.records.definitions import (
    OLD_BY_HEADER,
    OLD_BY_TYPE,
    V04_BY_HEADER,
    V04_BY_TYPE,
    MessageSpec,
)
from apel.records.fields import UTC
from apel.records.model import InvalidMessage, ParsedMessage, Record
from apel.records.quote import quote
from apel.records.text_fast import reader_for

HEADER_NO_COLON = "Message header is incorrect: substring not found"
LINE_NO_COLON = "Message header is incorrect: not enough values to unpack"

def route(header: str) -> MessageSpec:
    """The spec for a header line, by the existing server's rules."""
    line = header.strip()
    kind, colon, version = line.partition(":")
    if not colon:
        raise InvalidMessage(f"{HEADER_NO_COLON} (no ':' in the header line {quote(line)})")
    kind = kind.strip()
    version = version.strip(": ")
    if version == "v0.4":
        by_type, by_header = V04_BY_TYPE, V04_BY_HEADER
    else:
        by_type, by_header = OLD_BY_TYPE, OLD_BY_HEADER
    spec = by_type.get(kind) or by_header.get(line)
    if spec is None:
        raise InvalidMessage(f"Message header is incorrect: unknown message type {quote(line)}")
    return spec


def _line_error(chunk: str, index: int) -> InvalidMessage:
    for number, line in enumerate(chunk.split("\n"), 1):
        if ":" not in line:
            return InvalidMessage(
                f"record {index}: {LINE_NO_COLON} (line {number} of the record has no ':': {quote(line)})")
    raise AssertionError("called for a record whose lines all have a ':'")


def parse_text(body: str) -> ParsedMessage:
    """Parse a stripped APEL text message; every record is validated or the message refused."""
    header, chunks = _split(body)
    spec = route(header)
    now = datetime.now(UTC)
    records = reader_for(spec).read(chunks, now)  # None: not provably valid in bulk, so record by record
    if records is None:
        records = parse_records(spec, chunks, now)
    return ParsedMessage(spec.record_type, header.strip(), records)


def _split(body: str) -> tuple[str, list[str]]:
    """The header line, and the rest of the body split at ``%%``.

    The body is split as it is: taking the rest after the header line first would copy
    nearly all of a large message once more.
    """
    newline = body.find("\n")
    if newline < 0:
        return body, []
    separator = body.find("%%", 0, newline)
    if separator >= 0:  # a "%%" in the header line belongs to the header
        return body[:newline], body[newline + 1:].split("%%")
    chunks = body.split("%%")
    chunks[0] = chunks[0][newline + 1:]
    return body[:newline], chunks


def parse_records(spec: MessageSpec, chunks: list[str], now: datetime) -> list[Record]:
    """The exact path: the records of a message body (header removed, split at ``%%``), in order.

    It accepts and refuses exactly what the canonical fast path does, and is the only
    path that words the reasons a message is refused.
    """
    records = []
    index = 0
    for chunk in chunks:
        chunk = chunk.strip()
        if not chunk:
            continue
        index += 1
        records.append(build_record(spec, _raw_values(chunk, index), index, now))
    return records


def _raw_values(chunk: str, index: int) -> dict[str, str]:
    """The exact path's view of a record: stripped key → stripped value, the last of a key winning."""
    raw = {}
    for line in chunk.split("\n"):
        key, colon, value = line.partition(":")
        if not colon:
            raise _line_error(chunk, index)
        raw[key.strip()] = value.strip()
    return raw

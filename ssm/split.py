"""Splitting an oversized APEL text message at record boundaries.

Brokers and AMS limit message size, and the old SSM blocked its whole queue on a
message it could not send. An APEL text message is a header line
followed by records each ended by ``%%``; cutting between records and repeating the
header gives several valid messages with the same records. This is pure text
handling: the messenger still knows nothing of what a record contains.
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Iterable, Iterator
from typing import Optional

SEPARATOR = "%%"


def split_message(text: str, parts: int) -> Optional[list[str]]:
    """``text`` as ``parts`` messages (fewer if it has fewer records), each repeating the
    header; None when it is not APEL text (XML, no header) or has a single record."""
    stripped = text.strip()
    if stripped.startswith("<"):
        return None
    header, newline, body = stripped.partition("\n")
    if not newline or ":" not in header:
        return None
    records = [record.strip() for record in body.split(SEPARATOR) if record.strip()]
    if len(records) < 2:
        return None
    parts = max(2, min(parts, len(records)))
    size, extra = divmod(len(records), parts)
    messages, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        messages.append(header + "\n" + "".join(f"{record}\n{SEPARATOR}\n" for record in records[start:end]))
        start = end
    return messages


class CannotSplit(ValueError):
    """The message is not APEL text that can be cut into parts of the size asked for."""


def iter_parts(chunks: Iterable[bytes], part_size: int, max_record: int) -> Iterator[str]:
    """Parts of an APEL text message read as UTF-8 ``chunks``, as ``split_message`` writes them.

    A part is yielded as soon as it holds about ``part_size`` bytes of records, so
    the message is never in memory whole: a 200 MB message made ssmsend use 2 GB.
    Raises CannotSplit when the text is XML, has no header line, has fewer than two
    records, has a record over ``max_record`` bytes, or is not UTF-8.
    """
    text = _decoded(chunks)
    header, first = _header(text, max_record)
    part: list[str] = []
    size = 0
    count = 0
    for record in _records(first, text, max_record):
        length = len(record.encode("utf-8")) + 4  # the record, "\n%%\n"
        if length - 4 > max_record:
            raise CannotSplit(f"a record is over {max_record} bytes")
        if part and size + length > part_size:
            yield _part(header, part)
            part, size = [], 0
        part.append(record)
        size += length
        count += 1
    if count < 2:
        raise CannotSplit("it holds a single record")
    yield _part(header, part)


def _part(header: str, records: list[str]) -> str:
    return header + "\n" + "".join(f"{record}\n{SEPARATOR}\n" for record in records)


def _decoded(chunks: Iterable[bytes]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes fed to the decoder so far
    for chunk in itertools.chain(chunks, [b""]):
        held = decoder.getstate()[0]  # bytes of an unfinished character, decoded with this chunk
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            where = offset - len(held) + exc.start
            raise CannotSplit(f"it is not valid UTF-8 ({exc.reason} at byte {where})") from None
        offset += len(chunk)
        if text:
            yield text


def _header(text: Iterator[str], max_record: int) -> tuple[str, str]:
    """The first line after leading white space, and what follows it in the text read so far."""
    start = ""
    for piece in text:
        start = (start + piece).lstrip()
        if start.startswith("<"):
            raise CannotSplit("it is XML")
        header, newline, rest = start.partition("\n")
        if newline:
            if ":" not in header:
                raise CannotSplit("its first line is not an APEL header")
            return header, rest
        if len(start) > max_record:
            break
    raise CannotSplit("it has no header line")


def _records(first: str, text: Iterator[str], max_record: int) -> Iterator[str]:
    """The stripped, non-empty records after the header, split on every ``%%`` as ``split_message`` does."""
    pending = first
    for piece in itertools.chain([""], text):
        pieces = (pending + piece).split(SEPARATOR)
        pending = pieces.pop()
        for record in pieces:
            record = record.strip()
            if record:
                yield record
        if len(pending) > max_record:
            raise CannotSplit(f"a record is over {max_record} bytes")
    record = pending.strip()
    if record:
        yield record

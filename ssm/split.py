"""Splitting an oversized APEL text message at record boundaries.

Brokers and AMS limit message size, and the old SSM blocked its whole queue on a
message it could not send (ssm.md §12.13). An APEL text message is a header line
followed by records each ended by ``%%``; cutting between records and repeating the
header gives several valid messages with the same records. This is pure text
handling: the messenger still knows nothing of what a record contains.
"""

from __future__ import annotations

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

"""Parse, validate and render every APEL message type; nothing here touches a database or a queue.

Public API:

- :func:`parse_message` — any accepted message body → :class:`ParsedMessage`
  (or :class:`InvalidMessage` with the reason);
- :func:`render_message`, :func:`render_car`, :func:`render_star` — records → message text;
- :func:`parse_fqan`, :data:`FIELDS` — shared with the storage and client layers.
"""

from __future__ import annotations

import re

from apel.records.definitions import FIELDS
from apel.records.fields import Field
from apel.records.fqan import parse_fqan
from apel.records.model import (
    CLOUD,
    CLOUD_SUMMARY,
    GROUP_ATTRIBUTE,
    JOB,
    NORMALISED_SUMMARY,
    RECORD_TYPES,
    STORAGE,
    SUMMARY,
    SYNC,
    InvalidMessage,
    ParsedMessage,
    Record,
)
from apel.records.render import render_message
from apel.records.render_xml import render_car, render_star
from apel.records.text import parse_text
from apel.records.xml_parse import parse_xml

_LEADING_SPACE = re.compile(r"\s*")  # what str.strip() removes (both use str.isspace)


def parse_message(body: str) -> ParsedMessage:
    """Classify a message body (XML if it starts with ``<`` once stripped) and parse it.

    Every record is parsed and validated before this returns, so a caller either
    gets a whole valid message or an :class:`InvalidMessage` and stores nothing.
    An XML body is parsed in place, between its surrounding whitespace, rather than
    stripped into a copy: a large message is then held once.
    """
    leading = _LEADING_SPACE.match(body)
    start = leading.end() if leading else 0
    if body.startswith("<", start):
        end = len(body)
        while end > start and body[end - 1].isspace():
            end -= 1
        return parse_xml(body, start, end)
    return parse_text(body.strip())


__all__ = [
    "CLOUD", "CLOUD_SUMMARY", "FIELDS", "GROUP_ATTRIBUTE", "JOB", "NORMALISED_SUMMARY", "RECORD_TYPES",
    "STORAGE", "SUMMARY", "SYNC", "Field", "InvalidMessage", "ParsedMessage", "Record",
    "parse_fqan", "parse_message", "render_car", "render_message", "render_star",
]

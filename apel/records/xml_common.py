"""Safe XML parsing and the ISO 8601 forms used by CAR and StAR.

Messages come from remote sites, so the parser refuses DTDs, entity expansion
and external entities (defusedxml) and bodies above a size limit. Documents are
parsed incrementally (:func:`closed_elements`): a 50 MB CAR message never exists
as one element tree.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable, Optional, Union
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from apel.records.fields import UTC
from apel.records.model import InvalidMessage, Record
from apel.records.quote import quote

MAX_XML_CHARS = 64 * 1024 * 1024

_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,]\d+)?)?)?"
    r"(Z|[+-]\d\d(?::?\d\d)?)?",
    re.ASCII,
)
_ISO_DURATION = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d*)?)S)?)?",
    re.ASCII,
)
# Y = 365 days, M (month) = 2,628,000 s, W = 7 days, as the existing server counts.
_DURATION_UNITS = (365 * 86400, 2_628_000, 7 * 86400, 86400, 3600, 60)


class _Slices:
    """A file-like view of ``text[start:end]`` for the incremental parser: each read is one
    slice, so a large message is never copied whole (a ``StringIO`` would copy it, at up
    to four bytes per character)."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text, self.position, self.end = text, start, end

    def read(self, size: int = -1) -> str:
        stop = self.end if size < 0 else min(self.end, self.position + size)
        chunk = self.text[self.position:stop]
        self.position = stop
        return chunk


def closed_elements(text: str, start: int = 0, end: Optional[int] = None) -> Iterator[Element]:
    """Every element of the XML document ``text[start:end]`` as it closes; the root comes last.

    The document is parsed incrementally, so a consumer that clears the elements it has
    used (each record, once read) keeps memory to about one record's tree instead of the
    whole document's. Safe parsing as before: DTDs, entities and external references are
    refused (defusedxml), and so is a document above the size limit, before parsing.
    Raises InvalidMessage saying why the document cannot be read.
    """
    end = len(text) if end is None else end
    if end - start > MAX_XML_CHARS:
        raise InvalidMessage(
            f"XML message of {end - start} characters is larger than the limit of {MAX_XML_CHARS}")
    events = defusedxml.ElementTree.iterparse(_Slices(text, start, end), events=("end",), forbid_dtd=True)
    try:
        for _, element in events:
            yield element
    except defusedxml.DTDForbidden:
        raise InvalidMessage("XML message refused: it contains a DTD (not allowed: entity expansion "
                             "and external entities are refused)") from None
    except defusedxml.EntitiesForbidden:
        raise InvalidMessage("XML message refused: it declares entities (not allowed)") from None
    except defusedxml.ExternalReferenceForbidden:
        raise InvalidMessage(
            "XML message refused: it references an external resource (not allowed)") from None
    except ParseError as exc:
        raise InvalidMessage(f"XML is malformed: {quote(str(exc), bare=True)}") from None


def namespace_of(element: Element) -> str:
    """The namespace URI of an ElementTree tag (``{uri}local``), or ''."""
    tag = element.tag
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def text_of(element: Element) -> str:
    """The element's own text (not its children's), stripped, as the existing server reads it."""
    parts = [element.text or ""]
    parts.extend(child.tail or "" for child in element)
    return "".join(parts).strip()


def attribute(element: Element, namespace: str, name: str) -> Optional[str]:
    """An attribute written with the record namespace's prefix (``urf:type``) or without one."""
    value = element.get(f"{{{namespace}}}{name}")
    return element.get(name) if value is None else value


def parse_iso_datetime(value: str) -> datetime:
    """ISO 8601 date-time; an offset is converted to UTC, none means UTC.

    Fractional seconds are dropped: the columns hold whole seconds and MariaDB
    would truncate them too.
    """
    m = _ISO_DATETIME.fullmatch(value)
    if m is None:
        raise ValueError(f"Invalid ISO 8601 datetime value {quote(value)}")
    year, month, day, hour, minute, second, offset = m.groups()
    tz = UTC
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        tz = timezone(-delta if offset[0] == "-" else delta)
    try:
        parsed = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                          int(second or 0), tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"Invalid ISO 8601 datetime value {quote(value)}: {exc}") from None
    return parsed.astimezone(UTC)


def parse_iso_duration(value: str) -> int:
    """ISO 8601 duration in whole seconds; fractional seconds are rounded."""
    m = _ISO_DURATION.fullmatch(value)
    if m is None:
        raise ValueError(f"Invalid ISO 8601 duration value {quote(value)}")
    *counts, seconds = m.groups()
    total = sum(int(count) * unit for count, unit in zip(counts, _DURATION_UNITS) if count)
    if seconds:
        # Decimal keeps large whole seconds exact (a float would not above 2**53); rounding is
        # half-to-even, as the existing server's round() does.
        total += int(Decimal(seconds.replace(",", ".")).to_integral_value(ROUND_HALF_EVEN))
    return total


def typed_value(index: Union[int, str], name: str, text: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, None for empty text: a bad value is refused naming its record and field."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise InvalidMessage(f"record {index}: field {name}: {exc}") from None


class RecordReader(abc.ABC):
    """The records of a CAR or StAR document, built one record element at a time as each closes.

    The first invalid record's reason is kept and raised by :meth:`refuse_if_invalid`,
    after the whole document has been read: a malformed document is refused as malformed,
    as when it was parsed whole, whatever its records hold. Subclasses name the record
    element (``tag``), say how one is read (``_read``) and what a refused message drops.
    """

    tag: str
    empty_reason: str  # the reason for a document without any record element

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.records: list[Record] = []
        self.count = 0
        self.error: Optional[InvalidMessage] = None

    def add(self, element: Element) -> None:
        """Read one closed record element (the caller may clear it afterwards)."""
        self.count += 1
        if self.error is not None:
            return
        try:
            self._read(element)
        except InvalidMessage as exc:
            self.error = exc
            self._drop()  # the message is refused: no need to hold what it had

    @abc.abstractmethod
    def _read(self, element: Element) -> None:
        """Turn one record element into a record (a subclass per format)."""

    def _drop(self) -> None:
        self.records = []

    def refuse_if_invalid(self) -> None:
        """Raise InvalidMessage if the document had no record, or the first invalid one's reason."""
        if not self.count:
            raise InvalidMessage(self.empty_reason)
        if self.error is not None:
            raise self.error

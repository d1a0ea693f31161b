"""Route an XML message by its root element's namespace.

The document is parsed incrementally and each record is read, then cleared, as soon
as it closes, so memory follows the records kept, not the size of the document's tree
("Records" in docs/design.md). The namespace
decides at the end which records the message has; every check, and the order in
which a bad document's problems are reported, is as when the document was parsed whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional, Union
from xml.etree.ElementTree import Element

from apel.records.fields import UTC
from apel.records.model import InvalidMessage, ParsedMessage
from apel.records.quote import quote
from apel.records.xml_car import CAR_NS, CarReader
from apel.records.xml_common import closed_elements, namespace_of
from apel.records.xml_star import STAR_NS, StarReader

AUR_NS = "http://eu-emi.eu/namespaces/2012/11/aggregatedcomputerecord"


def parse_xml(text: str, start: int = 0, end: Optional[int] = None) -> ParsedMessage:
    """CAR → job records, StAR → storage records; AUR and anything else are refused.

    ``text[start:end]`` is the document (the caller has skipped surrounding whitespace).
    """
    now = datetime.now(UTC)
    readers: dict[str, Union[CarReader, StarReader]] = {CarReader.tag: CarReader(now),
                                                        StarReader.tag: StarReader(now)}
    root: Optional[Element] = None
    for element in closed_elements(text, start, end):
        reader = readers.get(element.tag)
        if reader is not None:
            reader.add(element)
            element.clear()
        root = element
    assert root is not None  # an empty document is malformed
    namespace = namespace_of(root)
    if namespace == CAR_NS:
        return readers[CarReader.tag].message(root)
    if namespace == STAR_NS:
        return readers[StarReader.tag].message(root)
    if namespace == AUR_NS:
        raise InvalidMessage("Aggregated usage record not yet supported.")
    raise InvalidMessage(f"XML format not recognised. (root element {quote(root.tag)})")

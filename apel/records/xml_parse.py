"""Route an XML message by its root element's namespace (messages.md §5.1)."""

from __future__ import annotations

from apel.records.model import InvalidMessage, ParsedMessage
from apel.records.quote import quote
from apel.records.xml_car import CAR_NS, parse_car
from apel.records.xml_common import namespace_of, parse_document
from apel.records.xml_star import STAR_NS, parse_star

AUR_NS = "http://eu-emi.eu/namespaces/2012/11/aggregatedcomputerecord"


def parse_xml(text: str) -> ParsedMessage:
    """CAR → job records, StAR → storage records; AUR and anything else are refused."""
    root = parse_document(text)
    namespace = namespace_of(root)
    if namespace == CAR_NS:
        return parse_car(root)
    if namespace == STAR_NS:
        return parse_star(root)
    if namespace == AUR_NS:
        raise InvalidMessage("Aggregated usage record not yet supported.")
    raise InvalidMessage(f"XML format not recognised. (root element {quote(root.tag)})")

"""EMI Storage Accounting Record (StAR 1.2) → storage and group-attribute records."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element

from apel.records.build import build_record
from apel.records.definitions import GROUP_ATTRIBUTE_SPEC, STAR_SPEC
from apel.records.model import STORAGE, ParsedMessage, Record
from apel.records.xml_common import RecordReader, attribute, parse_iso_datetime, text_of, typed_value

STAR_NS = "http://eu-emi.eu/namespaces/2011/02/storagerecord"
_Q = f"{{{STAR_NS}}}"

_TEXT_ELEMENTS = (
    "StorageSystem", "Site", "StorageShare", "StorageMedia", "StorageClass", "FileCount", "DirectoryPath",
    "LocalUser", "LocalGroup", "UserIdentity", "Group", "ResourceCapacityUsed", "LogicalCapacityUsed",
    "ResourceCapacityAllocated",
)
# GroupAttribute types stored in the record itself; every other type is a group-attribute record.
_IN_RECORD = {"subgroup": "SubGroup", "role": "Role"}


def _parse_one(element: Element, index: int, now: datetime) -> tuple[Record, list[Record]]:
    raw: dict[str, Any] = {}
    identity = element.find(f".//{_Q}RecordIdentity")
    if identity is not None:
        record_id = attribute(identity, STAR_NS, "recordId")
        if record_id is not None:
            raw["RecordId"] = record_id.strip()
        create_time = attribute(identity, STAR_NS, "createTime")
        if create_time is not None:
            raw["CreateTime"] = typed_value(index, "CreateTime", create_time.strip(), parse_iso_datetime)
    for name in _TEXT_ELEMENTS:
        found = element.find(f".//{_Q}{name}")
        if found is not None:
            raw[name] = text_of(found)
    for name in ("StartTime", "EndTime"):
        found = element.find(f".//{_Q}{name}")
        if found is not None:
            raw[name] = typed_value(index, name, text_of(found), parse_iso_datetime)
    others = []
    for group_attribute in element.iter(f"{_Q}GroupAttribute"):
        kind = attribute(group_attribute, STAR_NS, "attributeType")
        field = _IN_RECORD.get(kind or "")
        if field is None:
            others.append((kind, text_of(group_attribute)))
        elif field not in raw:
            raw[field] = text_of(group_attribute)
    record = build_record(STAR_SPEC, raw, index, now)
    attributes = [
        build_record(GROUP_ATTRIBUTE_SPEC,
                     {"StarRecordID": record["RecordId"], "AttributeType": kind, "AttributeValue": value},
                     f"{index} GroupAttribute {number}", now)
        for number, (kind, value) in enumerate(others, 1)
    ]
    return record, attributes


class StarReader(RecordReader):
    """The storage and group-attribute records of a StAR document, one
    ``StorageUsageRecord`` at a time as each closes."""

    tag = f"{_Q}StorageUsageRecord"
    empty_reason = "StAR message contains no StorageUsageRecord element"

    def __init__(self, now: datetime) -> None:
        self.group_attributes: list[Record] = []
        super().__init__(now)

    def _read(self, element: Element) -> None:
        record, attributes = _parse_one(element, self.count, self.now)
        self.records.append(record)
        self.group_attributes.extend(attributes)

    def _drop(self) -> None:
        self.records, self.group_attributes = [], []

    def message(self, root: Element) -> ParsedMessage:
        """The parsed message, or InvalidMessage: no record, or the first invalid one's reason."""
        self.refuse_if_invalid()
        return ParsedMessage(STORAGE, root.tag.rpartition("}")[2], self.records, self.group_attributes)

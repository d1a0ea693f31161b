"""EMI Storage Accounting Record (StAR 1.2) → storage and group-attribute records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional
from xml.etree.ElementTree import Element

from apel.records.build import build_record
from apel.records.definitions import GROUP_ATTRIBUTE_SPEC, STAR_SPEC
from apel.records.model import STORAGE, InvalidMessage, ParsedMessage, Record
from apel.records.xml_common import attribute, parse_iso_datetime, text_of

STAR_NS = "http://eu-emi.eu/namespaces/2011/02/storagerecord"
_Q = f"{{{STAR_NS}}}"

_TEXT_ELEMENTS = (
    "StorageSystem", "Site", "StorageShare", "StorageMedia", "StorageClass", "FileCount", "DirectoryPath",
    "LocalUser", "LocalGroup", "UserIdentity", "Group", "ResourceCapacityUsed", "LogicalCapacityUsed",
    "ResourceCapacityAllocated",
)
# GroupAttribute types stored in the record itself; every other type is a group-attribute record.
_IN_RECORD = {"subgroup": "SubGroup", "role": "Role"}


def _datetime(index: int, name: str, text: str) -> Any:
    if not text:
        return None
    try:
        return parse_iso_datetime(text)
    except ValueError as exc:
        raise InvalidMessage(f"record {index}: field {name}: {exc}") from None


def _parse_one(element: Element, index: int, now: datetime) -> tuple[Record, list[Record]]:
    raw: dict[str, Any] = {}
    identity = element.find(f".//{_Q}RecordIdentity")
    if identity is not None:
        record_id = attribute(identity, STAR_NS, "recordId")
        if record_id is not None:
            raw["RecordId"] = record_id.strip()
        create_time = attribute(identity, STAR_NS, "createTime")
        if create_time is not None:
            raw["CreateTime"] = _datetime(index, "CreateTime", create_time.strip())
    for name in _TEXT_ELEMENTS:
        found = element.find(f".//{_Q}{name}")
        if found is not None:
            raw[name] = text_of(found)
    for name in ("StartTime", "EndTime"):
        found = element.find(f".//{_Q}{name}")
        if found is not None:
            raw[name] = _datetime(index, name, text_of(found))
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


class StarReader:
    """The storage and group-attribute records of a StAR document, one
    ``StorageUsageRecord`` at a time as each closes (see :class:`~apel.records.xml_car.CarReader`)."""

    tag = f"{_Q}StorageUsageRecord"

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.records: list[Record] = []
        self.group_attributes: list[Record] = []
        self.count = 0
        self.error: Optional[InvalidMessage] = None

    def add(self, element: Element) -> None:
        """Read one closed ``StorageUsageRecord`` (the caller may clear it afterwards)."""
        self.count += 1
        if self.error is not None:
            return
        try:
            record, attributes = _parse_one(element, self.count, self.now)
        except InvalidMessage as exc:
            self.error = exc
            self.records, self.group_attributes = [], []
            return
        self.records.append(record)
        self.group_attributes.extend(attributes)

    def message(self, root: Element) -> ParsedMessage:
        """The parsed message, or InvalidMessage: no record, or the first invalid one's reason."""
        if not self.count:
            raise InvalidMessage("StAR message contains no StorageUsageRecord element")
        if self.error is not None:
            raise self.error
        return ParsedMessage(STORAGE, root.tag.rpartition("}")[2], self.records, self.group_attributes)

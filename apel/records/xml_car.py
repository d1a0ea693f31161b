"""EMI Compute Accounting Record (CAR 1.2) → job records.

Every value is looked up anywhere below its ``UsageRecord``; the records then
pass the same job checks as text messages, before any is accepted. Records are read
as the incremental parser closes them (:class:`CarReader`).
"""

from __future__ import annotations

from typing import Any, Optional
from xml.etree.ElementTree import Element

from apel.records.build import build_record
from apel.records.definitions import CAR_SPEC
from apel.records.model import JOB, ParsedMessage
from apel.records.xml_common import (
    RecordReader,
    attribute,
    parse_iso_datetime,
    parse_iso_duration,
    text_of,
    typed_value,
)

CAR_NS = "http://eu-emi.eu/namespaces/2012/11/computerecord"
_Q = f"{{{CAR_NS}}}"

# Record field ← element whose text is the value.
_TEXT_ELEMENTS = (
    ("Site", "Site"), ("SubmitHost", "SubmitHost"), ("MachineName", "MachineName"), ("Queue", "Queue"),
    ("LocalJobId", "LocalJobId"), ("LocalUserId", "LocalUserId"), ("GlobalUserName", "GlobalUserName"),
    ("VO", "Group"), ("NodeCount", "NodeCount"), ("ServiceLevel", "ServiceLevel"),
)
# GroupAttribute type → field; the unloader writes vo-group/vo-role, so those are read too.
_GROUP_ATTRIBUTES = (("FQAN", ("FQAN",)), ("VOGroup", ("group", "vo-group")), ("VORole", ("role", "vo-role")))
# EGI mapping of Memory[@type]; only KB values are taken.
_MEMORY = {"Physical": "MemoryReal", "Shared": "MemoryVirtual"}


def _first(record: Element, local: str) -> Optional[Element]:
    return record.find(f".//{_Q}{local}")


def _cpu_duration(record: Element) -> Optional[Element]:
    """The one ``usageType="all"`` CpuDuration, else the first if none has a usageType."""
    elements = record.findall(f".//{_Q}CpuDuration")
    typed = [e for e in elements if attribute(e, CAR_NS, "usageType") is not None]
    all_usage = [e for e in typed if attribute(e, CAR_NS, "usageType") == "all"]
    if len(all_usage) == 1:
        return all_usage[0]
    if elements and not typed:
        return elements[0]
    return None


def _raw_record(record: Element, index: int) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name, local in _TEXT_ELEMENTS:
        element = _first(record, local)
        if element is not None:
            raw[name] = text_of(element)
    processors = record.findall(f".//{_Q}Processors")
    preferred = [e for e in processors if attribute(e, CAR_NS, "metric") == "max"] or processors
    if preferred:
        raw["Processors"] = text_of(preferred[0])
    group_attributes = record.findall(f".//{_Q}GroupAttribute")
    for name, types in _GROUP_ATTRIBUTES:
        for wanted in types:
            match = next((e for e in group_attributes if attribute(e, CAR_NS, "type") == wanted), None)
            if match is not None:
                raw[name] = text_of(match)
                break
    infrastructure = _first(record, "Infrastructure")
    if infrastructure is not None:
        for name, attr in (("InfrastructureDescription", "description"), ("InfrastructureType", "type")):
            value = attribute(infrastructure, CAR_NS, attr)
            if value is not None:
                raw[name] = value.strip()
    service_level = _first(record, "ServiceLevel")
    if service_level is not None:
        level_type = attribute(service_level, CAR_NS, "type")
        if level_type is not None:
            raw["ServiceLevelType"] = level_type.strip()
    for memory in record.findall(f".//{_Q}Memory"):
        name = _MEMORY.get(attribute(memory, CAR_NS, "type") or "")  # type: ignore[assignment]  # None: skipped
        unit = attribute(memory, CAR_NS, "storageUnit")
        if name and name not in raw and unit in (None, "KB"):
            raw[name] = text_of(memory)
    for name, element in (("WallDuration", _first(record, "WallDuration")),
                          ("CpuDuration", _cpu_duration(record))):
        if element is not None:
            raw[name] = typed_value(index, name, text_of(element), parse_iso_duration)
    for name in ("StartTime", "EndTime"):
        element = _first(record, name)
        if element is not None:
            raw[name] = typed_value(index, name, text_of(element), parse_iso_datetime)
    return raw


class CarReader(RecordReader):
    """The job records of a CAR document, one ``UsageRecord`` at a time as each closes."""

    tag = f"{_Q}UsageRecord"
    empty_reason = "CAR message contains no UsageRecord element"

    def _read(self, element: Element) -> None:
        raw = _raw_record(element, self.count)
        self.records.append(build_record(CAR_SPEC, raw, self.count, self.now))

    def message(self, root: Element) -> ParsedMessage:
        """The parsed message, or InvalidMessage: no record, or the first invalid one's reason."""
        self.refuse_if_invalid()
        return ParsedMessage(JOB, root.tag.rpartition("}")[2], self.records)

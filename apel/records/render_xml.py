"""Job records → CAR and storage records → StAR documents, for ``send_ur``.

Strings are escaped (the existing unloader relied on minidom for that); a null
MachineName no longer breaks the record id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Optional
from xml.sax.saxutils import escape, quoteattr

from apel.records.fields import UTC
from apel.records.model import Record
from apel.records.xml_car import CAR_NS
from apel.records.xml_star import STAR_NS

XML_DECLARATION = '<?xml version="1.0" ?>'
CAR_ROOT = (f'<urf:UsageRecords xmlns:urf="{CAR_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{CAR_NS} car_v1.2.xsd">')
STAR_ROOT = f'<sr:StorageUsageRecords xmlns:sr="{STAR_NS}">'


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != "None"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _element(prefix: str, name: str, value: Any, attributes: Optional[dict[str, str]] = None) -> str:
    attrs = "".join(f" {prefix}:{key}={quoteattr(val)}" for key, val in (attributes or {}).items())
    text = _iso(value) if isinstance(value, datetime) else str(value)
    return f"<{prefix}:{name}{attrs}>{escape(text)}</{prefix}:{name}>"


def _empty(prefix: str, name: str, attributes: dict[str, str]) -> str:
    attrs = "".join(f" {prefix}:{key}={quoteattr(val)}" for key, val in attributes.items())
    return f"<{prefix}:{name}{attrs}/>"


def car_record_id(record: Record) -> str:
    """``"<MachineName> <LocalJobId> <EndTime>"`` with EndTime as naive UTC ``str()``, as before."""
    end = record.get("EndTime")
    end_text = str(_utc(end).replace(tzinfo=None)) if isinstance(end, datetime) else str(end)
    return f"{record.get('MachineName')} {record.get('LocalJobId')} {end_text}"


def _car_record(record: Record, create_time: str) -> str:
    get = record.get
    out = ["<urf:UsageRecord>",
           _empty("urf", "RecordIdentity", {"createTime": create_time, "recordId": car_record_id(record)}),
           "<urf:JobIdentity>" + _element("urf", "LocalJobId", get("LocalJobId")) + "</urf:JobIdentity>",
           "<urf:UserIdentity>"]
    if _present(get("GlobalUserName")):
        out.append(_element("urf", "GlobalUserName", get("GlobalUserName"), {"type": "opensslCompat"}))
    if _present(get("VO")):
        out.append(_element("urf", "Group", get("VO")))
    for name, kind in (("FQAN", "FQAN"), ("VOGroup", "vo-group"), ("VORole", "vo-role")):
        if _present(get(name)):
            out.append(_element("urf", "GroupAttribute", get(name), {"type": kind}))
    if _present(get("LocalUserId")):
        out.append(_element("urf", "LocalUserId", get("LocalUserId")))
    out.append("</urf:UserIdentity>")
    out.append(_element("urf", "Status", "completed"))
    infrastructure = {key: get(name) for key, name in (("type", "InfrastructureType"),
                                                       ("description", "InfrastructureDescription"))
                      if _present(get(name))}
    if infrastructure:
        out.append(_empty("urf", "Infrastructure", infrastructure))  # type: ignore[arg-type]  # present values
    out.append(_element("urf", "WallDuration", f"PT{get('WallDuration')}S"))
    out.append(_element("urf", "CpuDuration", f"PT{get('CpuDuration')}S", {"usageType": "all"}))
    if _present(get("ServiceLevel")):
        level_type = get("ServiceLevelType")
        attrs = {"type": level_type} if _present(level_type) else {}
        out.append(_element("urf", "ServiceLevel", get("ServiceLevel"), attrs))  # type: ignore[arg-type]
    for name, kind in (("MemoryReal", "Physical"), ("MemoryVirtual", "Shared")):
        if _present(get(name)):
            out.append(_element("urf", "Memory", get(name), {"type": kind, "storageUnit": "KB"}))
    for name in ("NodeCount", "Processors", "EndTime", "StartTime", "MachineName", "SubmitHost", "Queue",
                 "Site"):
        if _present(get(name)):
            out.append(_element("urf", name, get(name)))
    out.append("</urf:UsageRecord>")
    return "".join(out)


def render_car(records: Iterable[Record]) -> str:
    """A CAR document (``urf:UsageRecords``) of job records."""
    create_time = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = [_car_record(record, create_time) for record in records]
    return "\n".join([XML_DECLARATION, CAR_ROOT, *body, "</urf:UsageRecords>"])


_STAR_HEAD = ("StorageSystem", "Site", "StorageShare", "StorageMedia", "StorageClass", "FileCount",
              "DirectoryPath")
_STAR_SUBJECT = ("LocalUser", "LocalGroup", "UserIdentity", "Group")
_STAR_TAIL = ("StartTime", "EndTime", "ResourceCapacityUsed", "LogicalCapacityUsed",
              "ResourceCapacityAllocated")


def _star_record(record: Record, attributes: list[Record]) -> str:
    get = record.get
    identity = {"createTime": _iso(get("CreateTime")) if isinstance(get("CreateTime"), datetime)  # type: ignore[arg-type]
                else str(get("CreateTime")), "recordId": str(get("RecordId"))}
    out = ["<sr:StorageUsageRecord>", _empty("sr", "RecordIdentity", identity)]
    out.extend(_element("sr", name, get(name)) for name in _STAR_HEAD if _present(get(name)))
    subject = [_element("sr", name, get(name)) for name in _STAR_SUBJECT if _present(get(name))]
    for name, kind in (("SubGroup", "subgroup"), ("Role", "role")):
        if _present(get(name)):
            subject.append(_element("sr", "GroupAttribute", get(name), {"attributeType": kind}))
    for attribute in attributes:
        subject.append(_element("sr", "GroupAttribute", attribute.get("AttributeValue") or "",
                                {"attributeType": str(attribute.get("AttributeType"))}))
    if subject:
        out.append("<sr:SubjectIdentity>" + "".join(subject) + "</sr:SubjectIdentity>")
    out.extend(_element("sr", name, get(name)) for name in _STAR_TAIL if _present(get(name)))
    out.append("</sr:StorageUsageRecord>")
    return "".join(out)


def render_star(records: Iterable[Record], group_attributes: Iterable[Record] = ()) -> str:
    """A StAR document; each group attribute goes into the record whose RecordId it names."""
    by_record: dict[Any, list[Record]] = {}
    for attribute in group_attributes:
        by_record.setdefault(attribute.get("StarRecordID"), []).append(attribute)
    body = [_star_record(record, by_record.get(record.get("RecordId"), [])) for record in records]
    return "\n".join([XML_DECLARATION, STAR_ROOT, *body, "</sr:StorageUsageRecords>"])

"""CAR and StAR XML messages, hostile XML, and namespace routing (messages.md §5)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from car_messages import CAR_NS, car, car_record

from apel.records import JOB, STORAGE, InvalidMessage, parse_message, xml_common
from apel.records.xml_common import parse_iso_datetime, parse_iso_duration

UTC = timezone.utc
STAR_NS = "http://eu-emi.eu/namespaces/2011/02/storagerecord"
AUR_NS = "http://eu-emi.eu/namespaces/2012/11/aggregatedcomputerecord"


def reject(body: str) -> str:
    with pytest.raises(InvalidMessage) as info:
        parse_message(body)
    return str(info.value)


# --------------------------------------------------------------------------- CAR


def test_car_record_values():
    parsed = parse_message(car(car_record()))
    assert parsed.record_type == JOB and parsed.header == "UsageRecords"
    assert parsed.records == [{
        "Site": "RAL-LCG2", "SubmitHost": "ce01.example.org:8443/cream-pbs-atlas",
        "MachineName": "wn1.example.org",
        "Queue": "atlas", "LocalJobId": "123456", "LocalUserId": "atlas001",
        "GlobalUserName": "/C=UK/O=eScience/CN=a user",
        "FQAN": "/atlas/higgs/Role=production/Capability=NULL",
        "VO": "atlas", "VOGroup": "/atlas/higgs", "VORole": "Role=production",
        "WallDuration": 86400 + 3600 + 60 + 2, "CpuDuration": 3600, "Processors": 8, "NodeCount": 1,
        "StartTime": datetime(2012, 5, 31, 22, tzinfo=UTC), "EndTime": datetime(2012, 6, 1, 1, tzinfo=UTC),
        "InfrastructureDescription": "APEL-CREAM-PBS", "InfrastructureType": "grid",
        "MemoryReal": 2048, "MemoryVirtual": 4096, "ServiceLevelType": "HEPSPEC", "ServiceLevel": 10.5,
    }]


def test_car_many_records_and_single_record_root():
    assert len(parse_message(car(car_record(job_id="1"), car_record(job_id="2"))).records) == 2
    single = car_record().replace("<urf:UsageRecord>", f'<urf:UsageRecord xmlns:urf="{CAR_NS}">', 1)
    assert parse_message(single).records[0]["LocalJobId"] == "123456"


def test_car_elements_found_anywhere_below_the_record():
    nested = car_record(machine="").replace(
        "<urf:Site urf:type=\"gocdb\">RAL-LCG2</urf:Site>",
        "<urf:Extra><urf:Deeper><urf:Site>NESTED</urf:Site></urf:Deeper></urf:Extra>")
    record = parse_message(car(nested)).records[0]
    assert record["Site"] == "NESTED" and record["MachineName"] == "None"


@pytest.mark.parametrize("cpu, expected", [
    ('<urf:CpuDuration urf:usageType="user">PT10S</urf:CpuDuration>'
     '<urf:CpuDuration urf:usageType="all">PT30S</urf:CpuDuration>', 30),
    ("<urf:CpuDuration>PT7S</urf:CpuDuration><urf:CpuDuration>PT9S</urf:CpuDuration>", 7),
    ('<urf:CpuDuration usageType="all">PT5S</urf:CpuDuration>', 5),
])
def test_car_cpu_duration_usage_types(cpu, expected):
    assert parse_message(car(car_record(cpu=cpu))).records[0]["CpuDuration"] == expected


@pytest.mark.parametrize("cpu", [
    '<urf:CpuDuration urf:usageType="user">PT10S</urf:CpuDuration>'
    '<urf:CpuDuration urf:usageType="system">PT3S</urf:CpuDuration>',
    '<urf:CpuDuration urf:usageType="all">PT1S</urf:CpuDuration>'
    '<urf:CpuDuration urf:usageType="all">PT2S</urf:CpuDuration>',
    "",
])
def test_car_without_a_usable_cpu_duration_is_rejected(cpu):
    assert reject(car(car_record(cpu=cpu))) == "record 1: field CpuDuration: mandatory field is missing"


def test_car_records_get_the_job_checks():
    assert reject(car(car_record(), car_record(service_level=""))).startswith(
        "record 2: fields ServiceLevelType and ServiceLevel are missing")
    reason = reject(car(car_record(service_level='<urf:ServiceLevel urf:type="custom">1</urf:ServiceLevel>')))
    assert "value 'custom' is not a valid benchmark type" in reason
    reason = reject(car(car_record(end="2012-05-31T21:00:00Z")))
    assert reason.startswith("record 1: field EndTime: value '2012-05-31T21:00:00Z' is before StartTime")


def test_car_bad_duration_and_datetime_name_the_field():
    assert reject(car(car_record(wall="1 hour"))) \
        == "record 1: field WallDuration: Invalid ISO 8601 duration value '1 hour'"
    assert reject(car(car_record(end="June 1st"))) \
        == "record 1: field EndTime: Invalid ISO 8601 datetime value 'June 1st'"


def test_car_null_machine_name_is_fine():
    record = parse_message(car(car_record(machine="<urf:MachineName/>"))).records[0]
    assert record["MachineName"] == "None"


def test_car_without_usage_record_is_rejected():
    assert reject(f'<urf:UsageRecords xmlns:urf="{CAR_NS}"/>') \
        == "CAR message contains no UsageRecord element"


@pytest.mark.parametrize("text, seconds", [
    ("PT0S", 0), ("P", 0), ("PT1H", 3600), ("PT1M", 60), ("P1M", 2_628_000), ("P1Y", 365 * 86400),
    ("P1W", 7 * 86400), ("P2D", 2 * 86400), ("PT1.4S", 1), ("PT1,6S", 2), ("PT2.5S", 2),
    ("P1Y1M1W1DT1H1M1S", 31536000 + 2628000 + 604800 + 86400 + 3600 + 60 + 1), ("PT123456S", 123456),
])
def test_iso_durations(text, seconds):
    assert parse_iso_duration(text) == seconds


@pytest.mark.parametrize("text", ["-PT1S", "PT1.5H", "1S", "P1S", "PTS"])
def test_bad_iso_durations(text):
    with pytest.raises(ValueError):
        parse_iso_duration(text)


@pytest.mark.parametrize("text, expected", [
    ("2016-06-09T02:42:15Z", datetime(2016, 6, 9, 2, 42, 15, tzinfo=UTC)),
    ("2016-06-09T02:42:15.123456Z", datetime(2016, 6, 9, 2, 42, 15, tzinfo=UTC)),
    ("2016-06-09T02:42:15", datetime(2016, 6, 9, 2, 42, 15, tzinfo=UTC)),
    ("2016-06-09T02:42:15+02:00", datetime(2016, 6, 9, 0, 42, 15, tzinfo=UTC)),
    ("2016-06-09T02:42:15-0130", datetime(2016, 6, 9, 4, 12, 15, tzinfo=UTC)),
    ("2016-01-01T00:30:00+01", datetime(2015, 12, 31, 23, 30, tzinfo=UTC)),
])
def test_iso_datetimes(text, expected):
    assert parse_iso_datetime(text) == expected


# --------------------------------------------------------------------------- StAR

STAR = f"""<?xml version="1.0" encoding="UTF-8"?>
<sr:StorageUsageRecords xmlns:sr="{STAR_NS}">
  <sr:StorageUsageRecord>
    <sr:RecordIdentity sr:createTime="2016-06-09T02:42:15.123Z" sr:recordId="c698f1a4-dcache-1"/>
    <sr:StorageSystem>dcache.example.org</sr:StorageSystem>
    <sr:Site>RAL-LCG2</sr:Site>
    <sr:StorageShare>atlas-disk</sr:StorageShare>
    <sr:StorageMedia>disk</sr:StorageMedia>
    <sr:StorageClass>replicated</sr:StorageClass>
    <sr:FileCount>42</sr:FileCount>
    <sr:DirectoryPath>/pnfs/example.org/data/atlas</sr:DirectoryPath>
    <sr:SubjectIdentity>
      <sr:LocalUser>atlas001</sr:LocalUser>
      <sr:LocalGroup>atlas</sr:LocalGroup>
      <sr:UserIdentity>/C=UK/CN=a user</sr:UserIdentity>
      <sr:Group>atlas</sr:Group>
      <sr:GroupAttribute sr:attributeType="subgroup">higgs</sr:GroupAttribute>
      <sr:GroupAttribute sr:attributeType="role">production</sr:GroupAttribute>
      <sr:GroupAttribute sr:attributeType="authority">/O=Grid/CN=voms.example.org</sr:GroupAttribute>
      <sr:GroupAttribute sr:attributeType="project">higgs-search</sr:GroupAttribute>
    </sr:SubjectIdentity>
    <sr:StartTime>2016-06-08T02:42:15Z</sr:StartTime>
    <sr:EndTime>2016-06-09T04:42:15+02:00</sr:EndTime>
    <sr:ResourceCapacityUsed>14728</sr:ResourceCapacityUsed>
    <sr:LogicalCapacityUsed>13617</sr:LogicalCapacityUsed>
    <sr:ResourceCapacityAllocated>20000</sr:ResourceCapacityAllocated>
  </sr:StorageUsageRecord>
  <sr:StorageUsageRecord>
    <sr:RecordIdentity sr:createTime="2016-06-09T02:42:15Z" sr:recordId="c698f1a4-dcache-2"/>
    <sr:StorageSystem>dcache.example.org</sr:StorageSystem>
    <sr:StartTime>2016-06-08T02:42:15Z</sr:StartTime>
    <sr:EndTime>2016-06-09T02:42:15Z</sr:EndTime>
    <sr:ResourceCapacityUsed>0</sr:ResourceCapacityUsed>
  </sr:StorageUsageRecord>
</sr:StorageUsageRecords>"""


def test_star_records_and_group_attributes():
    parsed = parse_message(STAR)
    assert parsed.record_type == STORAGE and parsed.header == "StorageUsageRecords"
    first, second = parsed.records
    assert first == {
        "RecordId": "c698f1a4-dcache-1", "CreateTime": datetime(2016, 6, 9, 2, 42, 15, tzinfo=UTC),
        "StorageSystem": "dcache.example.org", "Site": "RAL-LCG2", "StorageShare": "atlas-disk",
        "StorageMedia": "disk", "StorageClass": "replicated", "FileCount": 42,
        "DirectoryPath": "/pnfs/example.org/data/atlas", "LocalUser": "atlas001", "LocalGroup": "atlas",
        "UserIdentity": "/C=UK/CN=a user", "Group": "atlas", "SubGroup": "higgs", "Role": "production",
        "StartTime": datetime(2016, 6, 8, 2, 42, 15, tzinfo=UTC),
        "EndTime": datetime(2016, 6, 9, 2, 42, 15, tzinfo=UTC),
        "ResourceCapacityUsed": 14728, "LogicalCapacityUsed": 13617, "ResourceCapacityAllocated": 20000,
    }
    assert second["Site"] == "None" and second["FileCount"] is None and second["SubGroup"] == "None"
    assert parsed.group_attributes == [
        {"StarRecordID": "c698f1a4-dcache-1", "AttributeType": "authority",
         "AttributeValue": "/O=Grid/CN=voms.example.org"},
        {"StarRecordID": "c698f1a4-dcache-1", "AttributeType": "project", "AttributeValue": "higgs-search"},
    ]


@pytest.mark.parametrize("remove, field", [
    ('sr:recordId="c698f1a4-dcache-2"', "RecordId"),
    ('<sr:StorageSystem>dcache.example.org</sr:StorageSystem>\n    <sr:StartTime>', "StorageSystem"),
    ("<sr:ResourceCapacityUsed>0</sr:ResourceCapacityUsed>", "ResourceCapacityUsed"),
])
def test_star_mandatory_fields(remove, field):
    text = STAR.replace(remove, "<sr:StartTime>" if "StartTime" in remove else "")
    assert reject(text) == f"record 2: field {field}: mandatory field is missing"


def test_star_bad_values_name_the_record_and_field():
    assert reject(STAR.replace("<sr:FileCount>42<", "<sr:FileCount>many<")) \
        == "record 1: field FileCount: Invalid int value 'many'"
    assert reject(STAR.replace('sr:createTime="2016-06-09T02:42:15Z"', 'sr:createTime="today"')) \
        == "record 2: field CreateTime: Invalid ISO 8601 datetime value 'today'"
    text = STAR.replace('<sr:GroupAttribute sr:attributeType="project">', "<sr:GroupAttribute>")
    assert reject(text) == "record 1 GroupAttribute 2: field AttributeType: mandatory field is missing"


def test_star_without_records_is_rejected():
    assert reject(f'<sr:StorageUsageRecords xmlns:sr="{STAR_NS}"></sr:StorageUsageRecords>') \
        == "StAR message contains no StorageUsageRecord element"


# --------------------------------------------------------------------------- routing and hostile XML


def test_aur_and_unknown_namespaces():
    aur = f'<aur:SummaryRecords xmlns:aur="{AUR_NS}"><aur:SummaryRecord/></aur:SummaryRecords>'
    assert reject(aur) == "Aggregated usage record not yet supported."
    assert reject("<UsageRecords/>").startswith("XML format not recognised.")
    other = '<x:UsageRecords xmlns:x="http://example.org/other"/>'
    assert reject(other).startswith("XML format not recognised.")


def test_leading_whitespace_before_xml():
    assert parse_message("\n\n   " + car(car_record()) + "\n\n").record_type == JOB


@pytest.mark.parametrize("text, expected", [
    ("<urf:UsageRecords><unclosed></urf:UsageRecords>", "XML is malformed: "),
    ("<a><b></a>", "XML is malformed: mismatched tag: line 1, column 8"),
    ("<", "XML is malformed: "),
])
def test_malformed_xml_gives_the_parser_text(text, expected):
    assert reject(text).startswith(expected)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_ENTITY = f"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urf:UsageRecords xmlns:urf="{CAR_NS}"><urf:UsageRecord><urf:Site>&xxe;</urf:Site></urf:UsageRecord>
</urf:UsageRecords>"""

EXTERNAL_DTD = f"""<?xml version="1.0"?>
<!DOCTYPE r SYSTEM "http://example.org/evil.dtd">
<urf:UsageRecords xmlns:urf="{CAR_NS}"/>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_hostile_xml_is_refused_before_expansion(text):
    reason = reject(text)
    assert reason.startswith("XML message refused: it contains a DTD")
    assert "root:" not in reason


def test_oversized_xml_is_refused_before_parsing(monkeypatch):
    body = "<" + "a" * (64 * 1024 * 1024)
    assert reject(body) == (f"XML message of {len(body)} characters is larger than the limit of "
                            f"{64 * 1024 * 1024}")
    monkeypatch.setattr(xml_common, "MAX_XML_CHARS", 100)
    assert reject(car(car_record())).startswith("XML message of ")


# --------------------------------------------------------------------------- incremental parsing


def test_a_bad_record_at_the_end_of_a_large_car_message_refuses_the_whole_message():
    records = [car_record(job_id=str(n)) for n in range(2000)] + [car_record(job_id="bad", wall="soon")]
    assert reject(car(*records)) == "record 2001: field WallDuration: Invalid ISO 8601 duration value 'soon'"


def test_malformed_xml_after_a_bad_record_is_reported_as_malformed():
    """The document is read to its end before a record's reason is given, as when it was parsed whole."""
    text = car(car_record(wall="soon"), car_record()).replace("</urf:UsageRecords>", "</urf:Usage>")
    assert reject(text).startswith("XML is malformed: mismatched tag")


def test_the_root_namespace_decides_which_records_count():
    star_in_car = car(car_record(), f'<sr:StorageUsageRecord xmlns:sr="{STAR_NS}"><sr:FileCount>x'
                                    "</sr:FileCount></sr:StorageUsageRecord>")
    assert [r["LocalJobId"] for r in parse_message(star_in_car).records] == ["123456"]
    inner = car(car_record()).split("?>", 1)[1]
    car_in_unknown = f'<x:Records xmlns:x="http://example.org/other">{inner}</x:Records>'
    assert reject(car_in_unknown).startswith("XML format not recognised.")


def test_large_car_message_parses_every_record():
    parsed = parse_message("\n " + car(*(car_record(job_id=str(n)) for n in range(3000))) + "\n")
    assert [r["LocalJobId"] for r in parsed.records] == [str(n) for n in range(3000)]
    assert parsed.records[-1]["WallDuration"] == 86400 + 3600 + 60 + 2

"""Rendering records for the unloader: APEL text layout, dict mode, options, CAR and StAR (messages.md §7)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    GROUP_ATTRIBUTE,
    JOB,
    NORMALISED_SUMMARY,
    STORAGE,
    SUMMARY,
    SYNC,
    parse_message,
    render_car,
    render_message,
    render_star,
)
from apel.records.render_xml import car_record_id

UTC = timezone.utc

JOB_TEXT = """APEL-individual-job-message: v0.3
Site: RAL-LCG2
SubmitHost: None
MachineName: wn1.example.org
Queue: atlas
LocalJobId: 42
LocalUserId: atlas001
GlobalUserName: /C=UK/CN=a user
FQAN: /atlas/Role=production/Capability=NULL
VO: atlas
VOGroup: /atlas
VORole: Role=production
WallDuration: 3600
CpuDuration: 1800
Processors: 0
NodeCount: 1
StartTime: 1600000000
EndTime: 1600003600
InfrastructureDescription: APEL-CREAM-PBS
InfrastructureType: grid
ServiceLevelType: HEPSPEC
ServiceLevel: 10.0
%%
"""


def job_record(**changes) -> dict:
    record = parse_message(JOB_TEXT).records[0]
    record.update(changes)
    return record


SUMMARY_TEXT = """APEL-summary-job-message: v0.2
Site: RAL-LCG2
Month: 3
Year: 2020
GlobalUserName: /C=UK/CN=a user
VO: atlas
VOGroup: /atlas
VORole: Role=production
SubmitHost: ce01.example.org
InfrastructureType: grid
InfrastructureDescription: APEL-CREAM-PBS
ServiceLevelType: HEPSPEC
ServiceLevel: 10.5
NodeCount: 1
Processors: 8
EarliestEndTime: 1583020800
LatestEndTime: 1585699199
WallDuration: 1000
CpuDuration: 900
NumberOfJobs: 7
%%
"""

NORMALISED_TEXT = """APEL-summary-job-message: v0.3
Site: RAL-LCG2
Month: 3
Year: 2020
GlobalUserName: None
VO: atlas
VOGroup: None
VORole: None
SubmitHost: None
Infrastructure: grid
InfrastructureDescription: APEL-CREAM-PBS
ServiceLevelType: hepscore23
NodeCount: 1
Processors: 8
WallDuration: 1000
CpuDuration: 900
NormalisedWallDuration: 10000
NormalisedCpuDuration: 9000
NumberOfJobs: 7
%%
"""


def test_job_layout_is_exact():
    assert render_message(JOB, [job_record()]) == JOB_TEXT


def test_nulls_and_empty_values_are_skipped_and_records_end_with_separator():
    text = render_message(JOB, [job_record(MemoryReal=None, Queue=""), job_record(LocalJobId="43")])
    assert "Queue:" not in text.split("%%")[0] and "MemoryReal" not in text
    assert text.count("%%\n") == 2 and text.endswith("%%\n")
    assert "SubmitHost: None\n" in text and "Processors: 0\n" in text


def test_datetimes_as_utc_epoch_including_naive_and_other_zones():
    from datetime import timedelta
    tokyo = timezone(timedelta(hours=9))
    text = render_message(JOB, [job_record(StartTime=datetime(2020, 9, 13, 12, 26, 40),
                                           EndTime=datetime(2020, 9, 13, 21, 26, 40, tzinfo=tokyo))])
    assert "StartTime: 1600000000\n" in text and "EndTime: 1600000000\n" in text


def test_job_dict_mode():
    text = render_message(JOB, [job_record(), job_record(ServiceLevelType="None")], dict_benchmark=True)
    assert text.startswith("APEL-individual-job-message: v0.4\n")
    assert "ServiceLevelType" not in text
    assert "ServiceLevel: {HEPSPEC: 10.0}\n" in text
    parsed = parse_message(text).records
    assert [r["ServiceLevelType"] for r in parsed] == ["hepspec", "hepspec"]


def test_summary_layout_omits_infrastructure_description_unless_asked():
    record = parse_message(SUMMARY_TEXT).records[0]
    text = render_message(SUMMARY, [record])
    assert text == SUMMARY_TEXT.replace("InfrastructureDescription: APEL-CREAM-PBS\n", "")
    assert render_message(SUMMARY, [record], include_infrastructure_description=True) == SUMMARY_TEXT
    dict_text = render_message(SUMMARY, [record], dict_benchmark=True)
    assert dict_text.startswith("APEL-summary-job-message: v0.4\n")
    assert "ServiceLevel: {HEPSPEC: 10.5}\n" in dict_text and "ServiceLevelType" not in dict_text


def test_normalised_summary_plain_and_dict():
    record = parse_message(NORMALISED_TEXT).records[0]
    plain = render_message(NORMALISED_SUMMARY, [record], include_infrastructure_description=True)
    assert plain == NORMALISED_TEXT.replace("ServiceLevelType: hepscore23\n", "")
    text = render_message(NORMALISED_SUMMARY, [record], dict_benchmark=True)
    assert text.startswith("APEL-normalised-summary-message: v0.4\n")
    assert "NormalisedWallDuration: {hepscore23: 10000}\n" in text
    assert "NormalisedCpuDuration: {hepscore23: 9000}\n" in text
    again = parse_message(text).records[0]
    assert again["ServiceLevelType"] == "hepscore23" and again["NormalisedCpuDuration"] == 9000
    nulltype = render_message(NORMALISED_SUMMARY, [dict(record, ServiceLevelType="None")],
                              dict_benchmark=True)
    assert "NormalisedWallDuration: {HEPSPEC: 10000}\n" in nulltype


@pytest.mark.parametrize("record_type, header", [
    (SYNC, "APEL-sync-message: v0.1"),
    (CLOUD, "APEL-cloud-message: v0.4"),
    (CLOUD_SUMMARY, "APEL-cloud-summary-message: v0.4"),
])
def test_other_headers_and_no_dict_mode(record_type, header):
    assert render_message(record_type, []) == header + "\n"
    with pytest.raises(ValueError, match="benchmark dicts"):
        render_message(record_type, [], dict_benchmark=True)


@pytest.mark.parametrize("record_type", [STORAGE, GROUP_ATTRIBUTE])
def test_storage_cannot_be_text(record_type):
    with pytest.raises(ValueError, match="Cannot unload StorageRecords in APEL format"):
        render_message(record_type, [])


def test_withhold_dns():
    text = render_message(JOB, [job_record()], withhold_dns=True)
    assert "GlobalUserName: withheld\n" in text and "/C=UK" not in text
    sync = {"Site": "S", "SubmitHost": "h", "NumberOfJobs": 1, "Month": 1, "Year": 2020}
    assert render_message(SYNC, [sync], withhold_dns=True) == render_message(SYNC, [sync])
    with pytest.raises(ValueError, match="^Cannot withhold DNs for SummaryRecord$"):
        render_message(SUMMARY, [], withhold_dns=True)
    with pytest.raises(ValueError, match="Cannot withhold DNs"):
        render_message(CLOUD_SUMMARY, [], withhold_dns=True)


@pytest.mark.parametrize("cpu_count, integer, decimal", [
    (0.5, "1", "0.5"), (0.0, "0", "0.0"), (2.0, "2", "2.0"), (2.7, "2", "2.7"), (1.0, "1", "1.0"),
])
def test_cloud_cpu_count(cpu_count, integer, decimal):
    record = {"VMUUID": "vm", "SiteName": "S", "CpuCount": cpu_count, "GlobalUserName": "/CN=u"}
    assert f"CpuCount: {integer}\n" in render_message(CLOUD, [record])
    assert f"CpuCount: {decimal}\n" in render_message(CLOUD, [record], decimal_cpu_count=True)
    assert "GlobalUserName: withheld" in render_message(CLOUD, [record], withhold_dns=True)


def test_cloud_vo_fields_are_not_written():
    record = {"VMUUID": "vm", "SiteName": "S", "FQAN": "/ops", "VO": "ops", "VOGroup": "/ops",
              "VORole": "None"}
    text = render_message(CLOUD, [record])
    assert "FQAN: /ops\n" in text and "VO:" not in text and "VORole" not in text


# --------------------------------------------------------------------------- CAR / StAR


def test_car_document():
    text = render_car([job_record(), job_record(LocalJobId="43", GlobalUserName="/CN=<odd> & \"quoted\"")])
    lines = text.split("\n")
    assert lines[0] == '<?xml version="1.0" ?>'
    assert lines[1].startswith('<urf:UsageRecords xmlns:urf="http://eu-emi.eu/namespaces/2012/11/computerecord"')
    assert "car_v1.2.xsd" in lines[1] and lines[-1] == "</urf:UsageRecords>"
    assert len(lines) == 5
    assert 'urf:recordId="wn1.example.org 42 2020-09-13 13:26:40"' in lines[2]
    assert 'urf:type="vo-group">/atlas<' in lines[2] and 'urf:type="vo-role">Role=production<' in lines[2]
    parsed = parse_message(text).records
    assert parsed == [job_record(), job_record(LocalJobId="43", GlobalUserName="/CN=<odd> & \"quoted\"")]


def test_car_null_machine_name_does_not_crash():
    record = job_record(MachineName="None")
    assert car_record_id(record) == "None 42 2020-09-13 13:26:40"
    assert car_record_id(job_record(MachineName=None)) == "None 42 2020-09-13 13:26:40"
    assert parse_message(render_car([record])).records == [record]


def test_star_document_round_trip():
    star = """<sr:StorageUsageRecords xmlns:sr="http://eu-emi.eu/namespaces/2011/02/storagerecord">
<sr:StorageUsageRecord><sr:RecordIdentity sr:createTime="2016-06-09T02:42:15Z" sr:recordId="r1"/>
<sr:StorageSystem>se.example.org</sr:StorageSystem><sr:Site>RAL</sr:Site>
<sr:SubjectIdentity><sr:Group>atlas</sr:Group>
<sr:GroupAttribute sr:attributeType="role">prod</sr:GroupAttribute>
<sr:GroupAttribute sr:attributeType="authority">/CN=voms</sr:GroupAttribute></sr:SubjectIdentity>
<sr:StartTime>2016-06-08T02:42:15Z</sr:StartTime><sr:EndTime>2016-06-09T02:42:15Z</sr:EndTime>
<sr:ResourceCapacityUsed>5</sr:ResourceCapacityUsed></sr:StorageUsageRecord>
</sr:StorageUsageRecords>"""
    parsed = parse_message(star)
    text = render_star(parsed.records, parsed.group_attributes)
    lines = text.split("\n")
    assert lines[0] == '<?xml version="1.0" ?>'
    assert lines[1] == '<sr:StorageUsageRecords xmlns:sr="http://eu-emi.eu/namespaces/2011/02/storagerecord">'
    assert lines[-1] == "</sr:StorageUsageRecords>"
    again = parse_message(text)
    assert again.records == parsed.records and again.group_attributes == parsed.group_attributes
    assert 'sr:createTime="2016-06-09T02:42:15Z"' in text


def test_render_uses_utc_created_at():
    text = render_car([job_record()])
    stamp = text.split('urf:createTime="')[1].split('"')[0]
    assert abs((datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                - datetime.now(UTC)).total_seconds()) < 60

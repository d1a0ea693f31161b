"""APEL text messages: routing, line syntax, nulls, coercion and every record type (messages.md §3, §4)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    FIELDS,
    JOB,
    NORMALISED_SUMMARY,
    SUMMARY,
    SYNC,
    InvalidMessage,
    parse_fqan,
    parse_message,
)

UTC = timezone.utc

JOB_V03 = "APEL-individual-job-message: v0.3"
JOB_V04 = "APEL-individual-job-message: v0.4"
SUMMARY_V02 = "APEL-summary-job-message: v0.2"
SUMMARY_V04 = "APEL-summary-job-message: v0.4"
NORMALISED_V03 = "APEL-summary-job-message: v0.3"
NORMALISED_V04 = "APEL-normalised-summary-message: v0.4"
SYNC_V01 = "APEL-sync-message: v0.1"
CLOUD_V04 = "APEL-cloud-message: v0.4"
CLOUD_SUMMARY_V04 = "APEL-cloud-summary-message: v0.4"

JOB_LINES = {
    "Site": "RAL-LCG2", "SubmitHost": "ce01.example.org:8443/cream-pbs-atlas",
    "MachineName": "wn1.example.org", "Queue": "atlas", "LocalJobId": "31564872",
    "LocalUserId": "atlasprd019",
    "GlobalUserName": "/C=UK/O=eScience/CN=some user", "FQAN": "/atlas/Role=production/Capability=NULL",
    "WallDuration": "234256", "CpuDuration": "2345", "Processors": "2", "NodeCount": "1",
    "StartTime": "1600000000", "EndTime": "1600003600", "InfrastructureDescription": "APEL-CREAM-PBS",
    "InfrastructureType": "grid", "MemoryReal": "1000", "MemoryVirtual": "2000",
    "ServiceLevelType": "HEPSPEC", "ServiceLevel": "10.5",
}
SUMMARY_LINES = {
    "Site": "RAL-LCG2", "Month": "3", "Year": "2020", "GlobalUserName": "/C=UK/CN=user", "VO": "atlas",
    "VOGroup": "/atlas", "VORole": "Role=production", "SubmitHost": "ce01.example.org",
    "InfrastructureType": "grid", "ServiceLevelType": "HEPSPEC", "ServiceLevel": "10.0", "NodeCount": "1",
    "Processors": "8", "EarliestEndTime": "1583020800", "LatestEndTime": "1585699199",
    "WallDuration": "1000", "CpuDuration": "900", "NumberOfJobs": "7",
}
NORMALISED_LINES = {
    "Site": "RAL-LCG2", "Month": "3", "Year": "2020", "VO": "atlas", "Infrastructure": "grid",
    "NodeCount": "1", "Processors": "8", "WallDuration": "1000", "CpuDuration": "900",
    "NormalisedWallDuration": "10000", "NormalisedCpuDuration": "9000", "NumberOfJobs": "7",
}
SYNC_LINES = {"Site": "RAL-LCG2", "SubmitHost": "ce01.example.org", "NumberOfJobs": "42", "Month": "3",
              "Year": "2020"}
CLOUD_LINES = {
    "VMUUID": "2a4f-vm-1", "SiteName": "CESNET", "CloudComputeService": "OpenStack", "MachineName": "vm-1",
    "LocalUserId": "u1", "LocalGroupId": "g1", "GlobalUserName": "/C=CZ/CN=user",
    "FQAN": "/fedcloud/Role=NULL",
    "Status": "completed", "StartTime": "1600000000", "EndTime": "1600086400", "SuspendDuration": "0",
    "WallDuration": "86400", "CpuDuration": "40000", "CpuCount": "2", "NetworkType": "private",
    "NetworkInbound": "1", "NetworkOutbound": "2", "PublicIPCount": "1", "Memory": "4", "Disk": "20",
    "BenchmarkType": "HEPSPEC", "Benchmark": "9.5", "StorageRecordId": "None", "ImageId": "img-1",
    "CloudType": "caso/5.2.1 (OpenStack)",
}
CLOUD_SUMMARY_LINES = {
    "SiteName": "CESNET", "CloudComputeService": "OpenStack", "Month": "3", "Year": "2020",
    "GlobalUserName": "/C=CZ/CN=user", "VO": "fedcloud", "VOGroup": "/fedcloud", "VORole": "Role=NULL",
    "Status": "completed", "CloudType": "caso", "ImageId": "img-1", "EarliestStartTime": "1583020800",
    "LatestStartTime": "1585699199", "WallDuration": "86400", "CpuDuration": "40000", "CpuCount": "2",
    "NetworkInbound": "1", "NetworkOutbound": "2", "Memory": "4", "Disk": "20", "BenchmarkType": "HEPSPEC",
    "Benchmark": "9.5", "NumberOfVMs": "3",
}


def message(header: str, *records: dict, trailer: str = "%%\n") -> str:
    body = "".join("".join(f"{k}: {v}\n" for k, v in record.items()) + trailer for record in records)
    return f"{header}\n{body}"


def with_(base: dict, **changes) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def reject(body: str) -> str:
    with pytest.raises(InvalidMessage) as info:
        parse_message(body)
    return str(info.value)


def epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("header, record_type, lines", [
    ("APEL-individual-job-message: v0.1", JOB, JOB_LINES),
    ("APEL-individual-job-message: v0.2", JOB, JOB_LINES),
    (JOB_V03, JOB, JOB_LINES),
    ("APEL-individual-job-message: v9.9", JOB, JOB_LINES),
    ("APEL-individual-job-message:v0.3", JOB, JOB_LINES),
    ("APEL-individual-job-message: v0.3   ", JOB, JOB_LINES),
    (SUMMARY_V02, SUMMARY, SUMMARY_LINES),
    ("APEL-summary-job-message: v0.2 \t", SUMMARY, SUMMARY_LINES),
    (NORMALISED_V03, NORMALISED_SUMMARY, NORMALISED_LINES),
    (SYNC_V01, SYNC, SYNC_LINES),
    ("APEL-sync-message: v0.4", SYNC, SYNC_LINES),
    ("APEL-cloud-message: v0.2", CLOUD, CLOUD_LINES),
    (CLOUD_V04, CLOUD, CLOUD_LINES),
    (CLOUD_SUMMARY_V04, CLOUD_SUMMARY, CLOUD_SUMMARY_LINES),
    ("APEL-cloud-summary-message: v0.1", CLOUD_SUMMARY, CLOUD_SUMMARY_LINES),
])
def test_header_routing(header, record_type, lines):
    parsed = parse_message(message(header, lines))
    assert parsed.record_type == record_type
    assert parsed.header == header.strip()
    assert len(parsed.records) == 1


def test_v04_headers_route_to_dict_parsers():
    job = with_(JOB_LINES, ServiceLevelType=None, ServiceLevel="{hepspec: 10.5}")
    assert parse_message(message(JOB_V04, job)).records[0]["ServiceLevelType"] == "hepspec"
    summary = with_(SUMMARY_LINES, ServiceLevelType=None, ServiceLevel="{hepspec: 10.0}")
    assert parse_message(message(SUMMARY_V04, summary)).record_type == SUMMARY
    normalised = with_(NORMALISED_LINES, NormalisedWallDuration="{hepspec: 1}",
                       NormalisedCpuDuration="{hepspec: 1}")
    assert parse_message(message(NORMALISED_V04, normalised)).record_type == NORMALISED_SUMMARY


@pytest.mark.parametrize("header", [
    "APEL-summary-job-message: v0.1",
    "APEL-summary-job-message:v0.2",
    "APEL-summary-job-message:  v0.2",
    "APEL-normalised-summary-message: v0.3",
    "APEL-something-else: v0.1",
    "APEL-summary-job-message:v0.4",
])
def test_rejected_headers(header):
    reason = reject(message(header, SUMMARY_LINES))
    assert reason.startswith("Message header is incorrect: unknown message type")
    assert header.strip() in reason


def test_header_without_colon():
    reason = reject("APEL-individual-job-message v0.3\nSite: x\n%%\n")
    assert reason.startswith("Message header is incorrect: substring not found")
    assert "APEL-individual-job-message v0.3" in reason


@pytest.mark.parametrize("body", [JOB_V03, JOB_V03 + "\n", "\n\n  " + JOB_V03 + "\n%%\n", JOB_V03 + "\n%%"])
def test_header_only_message_has_zero_records(body):
    parsed = parse_message(body)
    assert parsed.record_type == JOB and parsed.records == []


def test_a_separator_in_the_header_line_belongs_to_the_header():
    """Routing by type takes "APEL-sync-message: v0.1%%" as a sync header; the records follow it."""
    lines = "".join(f"{k}: {v}\n" for k, v in SYNC_LINES.items())
    parsed = parse_message(f"{SYNC_V01}%%\n{lines}%%\n{lines}")
    assert parsed.header == f"{SYNC_V01}%%" and len(parsed.records) == 2


# --------------------------------------------------------------------------- line syntax


def test_separator_anywhere_and_whitespace_chunks():
    one = "".join(f"{k}: {v}\n" for k, v in JOB_LINES.items())
    body = f"{JOB_V03}\n%%\n   \n%%{one}%%  \n%%\n{one}%%"
    assert len(parse_message(body).records) == 2


def test_separator_inside_value_splits_the_record():
    lines = with_(JOB_LINES, Queue="a%%b")
    reason = reject(message(JOB_V03, lines))
    assert "record 1" in reason or "record 2" in reason


def test_crlf_indentation_colons_in_values_and_last_wins():
    text = (f"{JOB_V03}\r\n" + "".join(f"   {k} :  {v}  \r\n" for k, v in JOB_LINES.items())
            + "Queue: first\r\nQueue: a:b:c\r\n%%\r\n")
    record = parse_message(text).records[0]
    assert record["Queue"] == "a:b:c"
    assert record["SubmitHost"] == "ce01.example.org:8443/cream-pbs-atlas"
    assert record["Site"] == "RAL-LCG2"


def test_body_normalised_by_the_receiver_is_accepted():
    text = message(JOB_V03, JOB_LINES).rstrip()  # ends in '%%' without a newline
    assert len(parse_message(text).records) == 1


@pytest.mark.parametrize("bad_line", ["", "   ", "no colon here"])
def test_line_without_colon_rejects_the_message(bad_line):
    lines = list(JOB_LINES.items())
    text = JOB_V03 + "\n" + "".join(f"{k}: {v}\n" for k, v in lines[:3]) + bad_line + "\n" \
        + "".join(f"{k}: {v}\n" for k, v in lines[3:]) + "%%\n"
    reason = reject(text)
    assert reason.startswith("record 1: Message header is incorrect: not enough values to unpack")
    assert "line 4" in reason


def test_unknown_and_case_sensitive_keys():
    assert reject(message(JOB_V03, JOB_LINES, with_(JOB_LINES, Foo="bar"))) == "record 2: Unknown field: Foo"
    assert reject(message(JOB_V03, with_(JOB_LINES, site="x"))) == "record 1: Unknown field: site"
    assert reject(message(SUMMARY_V02, with_(SUMMARY_LINES, Infrastructure="grid"))) \
        == "record 1: Unknown field: Infrastructure"


@pytest.mark.parametrize("header, lines, ignored", [
    (JOB_V03, JOB_LINES, ("SubmitHostType", "UpdateTime")),
    (SUMMARY_V02, SUMMARY_LINES, ("UpdateTime",)),
    (NORMALISED_V03, NORMALISED_LINES, ("UpdateTime",)),
    (CLOUD_V04, CLOUD_LINES, ("UpdateTime", "MeasurementTime", "MeasurementMonth", "MeasurementYear")),
    (CLOUD_SUMMARY_V04, CLOUD_SUMMARY_LINES, ("UpdateTime",)),
])
def test_ignored_keys_are_dropped(header, lines, ignored):
    extra = {key: "2020-01-01 00:00:00" for key in ignored}
    record = parse_message(message(header, {**lines, **extra})).records[0]
    assert not set(ignored) & set(record)


# --------------------------------------------------------------------------- nulls and coercion


@pytest.mark.parametrize("null", ["", "none", "None", "NONE", "null", "NULL", "nUlL"])
def test_null_spellings(null):
    record = parse_message(message(JOB_V03, with_(JOB_LINES, SubmitHost=null, Processors=null,
                                                  MemoryReal=null))).records[0]
    assert record["SubmitHost"] == "None"
    assert record["Processors"] is None and record["MemoryReal"] is None


def test_missing_strings_are_the_string_none():
    lines = {k: JOB_LINES[k] for k in ("Site", "LocalJobId", "WallDuration", "CpuDuration", "StartTime",
                                       "EndTime", "ServiceLevelType", "ServiceLevel")}
    record = parse_message(message(JOB_V03, lines)).records[0]
    for field in FIELDS[JOB]:
        assert field.name in record
        if field.kind == "s" and field.name not in lines:
            assert record[field.name] == "None"
        if field.kind != "s" and field.name not in lines:
            assert record[field.name] is None


@pytest.mark.parametrize("field, value", [("Site", "NULL"), ("Site", ""), ("LocalJobId", "none")])
def test_null_mandatory_field(field, value):
    reason = reject(message(JOB_V03, with_(JOB_LINES, **{field: value})))
    assert reason == f"record 1: field {field}: mandatory field is null ({value!r})"


@pytest.mark.parametrize("field", ["Site", "LocalJobId", "WallDuration", "CpuDuration", "StartTime",
                                   "EndTime"])
def test_missing_mandatory_job_field(field):
    lines = with_(JOB_LINES, **{field: None})
    assert reject(message(JOB_V03, JOB_LINES, lines)) \
        == f"record 2: field {field}: mandatory field is missing"


@pytest.mark.parametrize("value", ["10.5", "ten", "1e3", "0x10"])
def test_invalid_int(value):
    reason = reject(message(JOB_V03, with_(JOB_LINES, WallDuration=value)))
    assert reason == f"record 1: field WallDuration: Invalid int value {value!r}"
    assert "Invalid int value" in reason


@pytest.mark.parametrize("value", ["fast", "nan", "inf", "-inf"])
def test_invalid_float(value):
    reason = reject(message(JOB_V03, with_(JOB_LINES, ServiceLevel=value)))
    assert reason.startswith("record 1: field ServiceLevel: ")
    assert repr(value) in reason or "finite" in reason


@pytest.mark.parametrize("value, expected", [
    ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ("1600000000", datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)),
    ("2020-01-01T00:00:00Z", datetime(2020, 1, 1, tzinfo=UTC)),
    ("2019-12-31T23:59:59Z", datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_datetime_forms(value, expected):
    record = parse_message(message(JOB_V03, with_(JOB_LINES, StartTime=value, EndTime=value))).records[0]
    assert record["StartTime"] == expected and record["StartTime"].tzinfo is not None


@pytest.mark.parametrize("value", ["1600000000.5", "2020-01-01T00:00:00.5Z", "2020-01-01T00:00:00+01:00",
                                   "2020-01-01 00:00:00", "2020-13-01T00:00:00Z", "99999999999999999",
                                   "yesterday"])
def test_rejected_datetimes(value):
    reason = reject(message(JOB_V03, with_(JOB_LINES, StartTime=value, EndTime="1600003600")))
    assert reason.startswith("record 1: field StartTime: ")


def test_iso_datetimes_and_months_are_utc_whatever_the_host_zone():
    """Run in a child with TZ=America/New_York: midnight New Year UTC is still that instant and month."""
    code = textwrap.dedent(f"""
        import time
        time.tzset()
        from apel.records import parse_message
        summary = parse_message({message(SUMMARY_V02, with_(SUMMARY_LINES, Month="12", Year="2019",
                                EarliestEndTime="2019-12-01T00:00:00Z",
                                LatestEndTime="2020-01-01T00:00:00Z"))!r}).records[0]
        job = parse_message({message(JOB_V03, with_(JOB_LINES, StartTime="2019-12-31T23:30:00Z",
                            EndTime="2020-01-01T00:00:00Z"))!r}).records[0]
        print(job["EndTime"].isoformat(), int(job["EndTime"].timestamp()), job["StartTime"].isoformat(),
              summary["LatestEndTime"].isoformat(), time.strftime("%Z"))
    """)
    env = dict(os.environ, TZ="America/New_York")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    end, end_epoch, start, latest, zone = out.stdout.split()
    assert zone in ("EST", "EDT")
    assert end == "2020-01-01T00:00:00+00:00" and int(end_epoch) == 1577836800
    assert start == "2019-12-31T23:30:00+00:00"
    assert latest == "2020-01-01T00:00:00+00:00"


def test_summary_month_boundaries_under_non_utc_zone(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        lines = with_(SUMMARY_LINES, Month="1", Year="2020", EarliestEndTime="2020-01-01T00:00:00Z",
                      LatestEndTime="2020-02-01T00:00:00Z")
        assert parse_message(message(SUMMARY_V02, lines)).records[0]["Month"] == 1
        early = with_(lines, EarliestEndTime="2019-12-31T23:59:59Z")
        assert "EarliestEndTime" in reject(message(SUMMARY_V02, early))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# --------------------------------------------------------------------------- FQAN


@pytest.mark.parametrize("fqan, expected", [
    ("/atlas/Role=production/Capability=NULL;/atlas/Role=NULL", ("atlas", "/atlas", "Role=production")),
    ("/atlas/somethingelse/role=doer", ("atlas", "/atlas/somethingelse", "role=doer")),
    ("/wlcg", ("wlcg", "/wlcg", "None")),
    ("the/the/the", ("the/the/the", "None", "None")),
    ("/atlas/Role=NULL/Capability=NULL", ("atlas", "/atlas", "Role=NULL")),
    ("/atlas/uk/Role=NULL", ("atlas", "/atlas/uk", "Role=NULL")),
    (None, ("None", "None", "None")),
    ("NULL", ("None", "None", "None")),
])
def test_parse_fqan(fqan, expected):
    assert parse_fqan(fqan) == expected


def test_job_fqan_overwrites_vo_fields_only_when_present():
    lines = with_(JOB_LINES, VO="cms", VOGroup="/cms", VORole="Role=x")
    record = parse_message(message(JOB_V03, lines)).records[0]
    assert (record["VO"], record["VOGroup"], record["VORole"]) == ("atlas", "/atlas", "Role=production")
    for fqan in (None, "None"):
        record = parse_message(message(JOB_V03, with_(lines, FQAN=fqan))).records[0]
        assert (record["VO"], record["VOGroup"], record["VORole"]) == ("cms", "/cms", "Role=x")
        assert record["FQAN"] == "None"


def test_cloud_vo_fields_always_come_from_fqan():
    record = parse_message(message(CLOUD_V04, with_(CLOUD_LINES, VO="ignored"))).records[0]
    assert (record["VO"], record["VOGroup"], record["VORole"]) == ("fedcloud", "/fedcloud", "Role=NULL")
    record = parse_message(message(CLOUD_V04, with_(CLOUD_LINES, FQAN=None, VO="ignored"))).records[0]
    assert (record["VO"], record["VOGroup"], record["VORole"]) == ("None", "None", "None")


# --------------------------------------------------------------------------- job records


def test_job_v03_parsed_values():
    record = parse_message(message(JOB_V03, with_(JOB_LINES, ServiceLevelType="Si2K",
                                                  ServiceLevel="1000"))).records[0]
    assert record == {
        "Site": "RAL-LCG2", "SubmitHost": "ce01.example.org:8443/cream-pbs-atlas",
        "MachineName": "wn1.example.org", "Queue": "atlas", "LocalJobId": "31564872",
    "LocalUserId": "atlasprd019",
        "GlobalUserName": "/C=UK/O=eScience/CN=some user", "FQAN": "/atlas/Role=production/Capability=NULL",
        "VO": "atlas", "VOGroup": "/atlas", "VORole": "Role=production", "WallDuration": 234256,
        "CpuDuration": 2345, "Processors": 2, "NodeCount": 1, "StartTime": epoch(1600000000),
        "EndTime": epoch(1600003600), "InfrastructureDescription": "APEL-CREAM-PBS",
        "InfrastructureType": "grid",
        "MemoryReal": 1000, "MemoryVirtual": 2000, "ServiceLevelType": "Si2K", "ServiceLevel": 1000.0,
    }
    assert list(record) == [field.name for field in FIELDS[JOB]]


@pytest.mark.parametrize("level, expected", [
    ("{HEPscore23: 15.3, hepspec: 11.4}", ("hepscore23", 15.3)),
    ("{hepspec: 11.4, HEPscore23: 15.3}", ("hepscore23", 15.3)),
    ("{si2k: 2500, HEPSPEC: 10}", ("hepspec", 10.0)),
    ("{SI2K: 2500}", ("si2k", 2500.0)),
    ("{ si2k : 2500 , foo: 1 }", ("si2k", 2500.0)),
])
def test_job_v04_dict_priority_and_lowercase(level, expected):
    lines = with_(JOB_LINES, ServiceLevelType=None, ServiceLevel=level)
    record = parse_message(message(JOB_V04, lines)).records[0]
    assert (record["ServiceLevelType"], record["ServiceLevel"]) == expected


@pytest.mark.parametrize("level, why", [
    ("{foo: 1}", "No valid benchmark type found"),
    ("{}", "No valid benchmark type found"),
    ("{hepspec: 1, HEPSPEC: 2}", "duplicate benchmark key 'hepspec'"),
    ("{hepspec: 1: 2}", "is not 'key: value'"),
    ("{hepspec: fast}", "Invalid float value 'fast'"),
    ("10.5", "is not a benchmark dict"),
])
def test_job_v04_bad_dicts(level, why):
    reason = reject(message(JOB_V04, with_(JOB_LINES, ServiceLevelType=None, ServiceLevel=level)))
    assert reason.startswith("record 1: field ServiceLevel: ") and why in reason


def test_job_v04_without_service_level_is_rejected_clearly():
    """Deliberate difference: the existing loader died on this (server.md §11 a)."""
    reason = reject(message(JOB_V04, with_(JOB_LINES, ServiceLevelType=None, ServiceLevel=None)))
    assert reason == "record 1: field ServiceLevel: mandatory field is missing"


def test_job_v04_service_level_type_line_must_agree():
    lines = with_(JOB_LINES, ServiceLevelType="HEPSPEC", ServiceLevel="{hepspec: 10}")
    assert parse_message(message(JOB_V04, lines)).records[0]["ServiceLevelType"] == "hepspec"
    reason = reject(message(JOB_V04, with_(lines, ServiceLevelType="si2k")))
    assert reason.startswith("record 1: field ServiceLevelType: value 'si2k' contradicts the benchmark")


@pytest.mark.parametrize("header", ["APEL-individual-job-message: v0.1", JOB_V03])
def test_job_without_benchmark_names_the_missing_fields(header):
    """Deliberate difference: not `ScalingFactorUnit custom not valid` at load time (server.md §11 c)."""
    reason = reject(message(header, JOB_LINES, with_(JOB_LINES, ServiceLevelType=None, ServiceLevel=None)))
    assert reason.startswith("record 2: fields ServiceLevelType and ServiceLevel are missing")


def test_job_benchmark_half_pairs():
    reason = reject(message(JOB_V03, with_(JOB_LINES, ServiceLevel=None)))
    assert reason.startswith("record 1: field ServiceLevel: Unit but not value supplied for ScalingFactor")
    reason = reject(message(JOB_V03, with_(JOB_LINES, ServiceLevelType="None")))
    assert reason.startswith("record 1: field ServiceLevelType: "
                             "Unit but not value supplied for ScalingFactor")


def test_job_benchmark_type_checked_case_insensitively_and_kept_as_sent():
    for level_type in ("si2k", "SI2K", "hepspec", "HEPscore23", "hepSCORE23"):
        record = parse_message(message(JOB_V03, with_(JOB_LINES, ServiceLevelType=level_type))).records[0]
        assert record["ServiceLevelType"] == level_type
    reason = reject(message(JOB_V03, with_(JOB_LINES, ServiceLevelType="custom")))
    assert reason.startswith("record 1: field ServiceLevelType: value 'custom' is not a valid benchmark type")


def test_job_end_before_start():
    reason = reject(message(JOB_V03, with_(JOB_LINES, StartTime="1600003601", EndTime="1600003600")))
    assert reason == ("record 1: field EndTime: value '2020-09-13T13:26:40Z' is before "
                      "StartTime '2020-09-13T13:26:41Z'")


def test_job_end_time_at_most_two_days_ahead_in_utc():
    now = datetime.now(UTC)
    ok = int((now + timedelta(days=2) - timedelta(minutes=5)).timestamp())
    bad = int((now + timedelta(days=2) + timedelta(minutes=5)).timestamp())
    assert parse_message(message(JOB_V03, with_(JOB_LINES, EndTime=str(ok)))).records
    reason = reject(message(JOB_V03, with_(JOB_LINES, EndTime=str(bad))))
    assert reason.startswith("record 1: field EndTime: value") and "more than 2 days in the future" in reason


@pytest.mark.parametrize("field, value, why", [
    ("WallDuration", "-1", "below the minimum 0"),
    ("CpuDuration", "-5", "below the minimum 0"),
    ("WallDuration", str(2**63), "above the maximum"),
    ("MemoryReal", "-1", "below the minimum 0"),
    ("MemoryVirtual", str(2**64), "above the maximum"),
    ("Processors", str(2**32), "above the maximum 4294967295"),
    ("NodeCount", "-1", "below the minimum 0"),
    ("ServiceLevel", "10000000", "above the maximum 9999999.999"),
    ("ServiceLevel", "-0.5", "below the minimum 0.0"),
])
def test_job_ranges_are_checked_not_clamped(field, value, why):
    """Deliberate difference: nothing is found invalid (or clamped) by the database later."""
    reason = reject(message(JOB_V03, with_(JOB_LINES, **{field: value})))
    assert reason.startswith(f"record 1: field {field}: ") and why in reason


def test_job_large_values_kept_exactly():
    lines = with_(JOB_LINES, WallDuration=str(2**63 - 1), CpuDuration=str(2**31), Processors=str(2**32 - 1),
                  ServiceLevel="9999999.999")
    record = parse_message(message(JOB_V03, lines)).records[0]
    assert record["WallDuration"] == 2**63 - 1 and record["CpuDuration"] == 2**31
    assert record["Processors"] == 2**32 - 1 and record["ServiceLevel"] == 9999999.999


def test_string_length_limits():
    reason = reject(message(JOB_V03, with_(JOB_LINES, InfrastructureType="x" * 21)))
    assert reason == ("record 1: field InfrastructureType: "
                      "value of 21 characters is longer than the maximum 20")
    assert parse_message(message(JOB_V03, with_(JOB_LINES, Queue="q" * 255))).records


def test_unicode_values():
    record = parse_message(message(JOB_V03, with_(JOB_LINES, GlobalUserName="/C=DE/CN=Jürgen Müller ☃",
                                                  Queue="naïve"))).records[0]
    assert record["GlobalUserName"] == "/C=DE/CN=Jürgen Müller ☃" and record["Queue"] == "naïve"


# --------------------------------------------------------------------------- summaries


def test_summary_v02_parsed_values():
    record = parse_message(message(SUMMARY_V02, SUMMARY_LINES)).records[0]
    assert record == {
        "Site": "RAL-LCG2", "Month": 3, "Year": 2020, "GlobalUserName": "/C=UK/CN=user", "VO": "atlas",
        "VOGroup": "/atlas", "VORole": "Role=production", "SubmitHost": "ce01.example.org",
        "InfrastructureType": "grid", "InfrastructureDescription": "None", "ServiceLevelType": "HEPSPEC",
        "ServiceLevel": 10.0, "NodeCount": 1, "Processors": 8, "EarliestEndTime": epoch(1583020800),
        "LatestEndTime": epoch(1585699199), "WallDuration": 1000, "CpuDuration": 900, "NumberOfJobs": 7,
    }


def test_summary_service_level_type_not_validated():
    record = parse_message(message(SUMMARY_V02, with_(SUMMARY_LINES, ServiceLevelType=None))).records[0]
    assert record["ServiceLevelType"] == "None"
    record = parse_message(message(SUMMARY_V02, with_(SUMMARY_LINES, ServiceLevelType="custom"))).records[0]
    assert record["ServiceLevelType"] == "custom"


@pytest.mark.parametrize("field", ["NodeCount", "Processors", "ServiceLevel"])
def test_summary_without_not_null_columns_is_rejected_clearly(field):
    """Deliberate difference: the existing server only failed with MySQL error 1048 (server.md §11 e)."""
    reason = reject(message(SUMMARY_V02, with_(SUMMARY_LINES, **{field: None})))
    assert reason == f"record 1: field {field}: mandatory field is missing"


@pytest.mark.parametrize("header, lines", [(SUMMARY_V02, SUMMARY_LINES), (NORMALISED_V03, NORMALISED_LINES)])
@pytest.mark.parametrize("month, year", [("0", "2020"), ("13", "2020"), ("3", "1969"), ("3", "10000")])
def test_summary_month_year(header, lines, month, year):
    reason = reject(message(header, with_(lines, Month=month, Year=year)))
    assert "Invalid values for month and/or year" in reason
    assert reason.startswith("record 1: field Month" if month in ("0", "13") else "record 1: field Year")


@pytest.mark.parametrize("header, lines", [(SUMMARY_V02, SUMMARY_LINES), (NORMALISED_V03, NORMALISED_LINES)])
def test_summary_month_in_future(header, lines):
    nxt = datetime.now(UTC).replace(day=1) + timedelta(days=32)
    reason = reject(message(header, with_(lines, Month=str(nxt.month), Year=str(nxt.year),
                                          EarliestEndTime=None, LatestEndTime=None)))
    assert reason.startswith(f"record 1: field Month: {nxt.year:04d}-{nxt.month:02d} is in the future")


@pytest.mark.parametrize("header, lines", [(SUMMARY_V02, SUMMARY_LINES), (NORMALISED_V03, NORMALISED_LINES)])
@pytest.mark.parametrize("field", ["WallDuration", "CpuDuration"])
def test_summary_negative_durations(header, lines, field):
    reason = reject(message(header, with_(lines, **{field: "-1"})))
    assert reason.startswith(f"record 1: field {field}: ") and "Negative WallDuration" in reason


@pytest.mark.parametrize("field", ["NormalisedWallDuration", "NormalisedCpuDuration"])
def test_normalised_negative_durations(field):
    reason = reject(message(NORMALISED_V03, with_(NORMALISED_LINES, **{field: "-1"})))
    assert reason.startswith(f"record 1: field {field}: Negative {field}")


def test_summary_negative_number_of_jobs_is_rejected():
    """Deliberate difference: the unsigned column would refuse it in strict mode."""
    reason = reject(message(SUMMARY_V02, with_(SUMMARY_LINES, NumberOfJobs="-1")))
    assert reason.startswith("record 1: field NumberOfJobs: value -1 is below the minimum 0")


@pytest.mark.parametrize("earliest, latest, ok", [
    ("2020-03-01T00:00:00Z", "2020-04-01T00:00:00Z", True),  # both ends inclusive
    ("2020-02-29T23:59:59Z", "2020-03-15T00:00:00Z", False),
    ("2020-03-15T00:00:00Z", "2020-04-01T00:00:01Z", False),
    ("2020-03-20T00:00:00Z", "2020-03-10T00:00:00Z", False),
    ("2019-01-01T00:00:00Z", None, True),  # only one given: not checked
])
def test_summary_end_times_within_month(earliest, latest, ok):
    lines = with_(SUMMARY_LINES, EarliestEndTime=earliest, LatestEndTime=latest)
    if ok:
        assert parse_message(message(SUMMARY_V02, lines)).records
    else:
        reason = reject(message(SUMMARY_V02, lines))
        assert "EndTime" in reason and ("not within the stated month" in reason or "is before" in reason)


def test_summary_v04_dict():
    lines = with_(SUMMARY_LINES, ServiceLevelType=None, ServiceLevel="{hepspec: 10, HEPscore23: 12.5}")
    record = parse_message(message(SUMMARY_V04, lines)).records[0]
    assert (record["ServiceLevelType"], record["ServiceLevel"]) == ("hepscore23", 12.5)
    reason = reject(message(SUMMARY_V04, with_(lines, ServiceLevel=None)))
    assert reason == "record 1: field ServiceLevel: mandatory field is missing"


def test_normalised_v03_values_and_service_level_type_key():
    record = parse_message(message(NORMALISED_V03, NORMALISED_LINES)).records[0]
    assert record["Infrastructure"] == "grid" and record["ServiceLevelType"] == "None"
    assert record["NormalisedWallDuration"] == 10000 and record["EarliestEndTime"] is None
    lines = with_(NORMALISED_LINES, ServiceLevelType="HEPSPEC")
    record = parse_message(message(NORMALISED_V03, lines)).records[0]
    assert record["ServiceLevelType"] == "HEPSPEC"
    assert reject(message(NORMALISED_V03, with_(NORMALISED_LINES, InfrastructureType="grid"))) \
        == "record 1: Unknown field: InfrastructureType"


def test_normalised_v04_dicts_truncate_and_must_agree():
    lines = with_(NORMALISED_LINES, NormalisedWallDuration="{hepspec: 519728.9, HEPscore23: 708720.7}",
                  NormalisedCpuDuration="{HEPscore23: 10.7}")
    record = parse_message(message(NORMALISED_V04, lines)).records[0]
    assert record["ServiceLevelType"] == "hepscore23"
    assert record["NormalisedWallDuration"] == 708720 and record["NormalisedCpuDuration"] == 10
    mixed = with_(lines, NormalisedCpuDuration="{hepspec: 10.7}")
    reason = reject(message(NORMALISED_V04, mixed))
    assert reason.startswith("record 1: field NormalisedCpuDuration: Mixture of benchmark types detected")
    negative = with_(lines, NormalisedCpuDuration="{hepscore23: -3}")
    assert "Negative NormalisedCpuDuration" in reject(message(NORMALISED_V04, negative))
    scalar = with_(lines, NormalisedCpuDuration="10")
    assert "is not a benchmark dict" in reject(message(NORMALISED_V04, scalar))


# --------------------------------------------------------------------------- sync, cloud, cloud summary


def test_sync_values_and_sane_months():
    record = parse_message(message(SYNC_V01, SYNC_LINES)).records[0]
    assert record == {"Site": "RAL-LCG2", "SubmitHost": "ce01.example.org", "NumberOfJobs": 42, "Month": 3,
                      "Year": 2020}
    # Deliberate difference: Month 13 would be stored by the existing server.
    assert "Invalid values for month and/or year" in reject(message(SYNC_V01, with_(SYNC_LINES, Month="13")))
    assert reject(message(SYNC_V01, with_(SYNC_LINES, NumberOfJobs=None))) \
        == "record 1: field NumberOfJobs: mandatory field is missing"


def test_cloud_values():
    record = parse_message(message(CLOUD_V04, with_(CLOUD_LINES, RecordCreateTime="1600090000"))).records[0]
    assert record["RecordCreateTime"] == epoch(1600090000)
    assert record["CpuCount"] == 2.0 and record["Benchmark"] == 9.5 and record["StorageRecordId"] == "None"
    assert record["CloudType"] == "caso/5.2.1 (OpenStack)"
    assert list(record) == [field.name for field in FIELDS[CLOUD]]


def test_cloud_running_vm_and_no_time_order_check():
    record = parse_message(message(CLOUD_V04, with_(CLOUD_LINES, EndTime="0"))).records[0]
    assert record["EndTime"] == epoch(0) and record["StartTime"] == epoch(1600000000)


def test_cloud_mandatory_and_ranges():
    assert reject(message(CLOUD_V04, with_(CLOUD_LINES, VMUUID=None))) \
        == "record 1: field VMUUID: mandatory field is missing"
    assert "below the minimum" in reject(message(CLOUD_V04, with_(CLOUD_LINES, CpuCount="-1")))
    assert "Invalid int value" in reject(message(CLOUD_V04, with_(CLOUD_LINES, Memory="4.5")))


def test_cloud_summary_values():
    record = parse_message(message(CLOUD_SUMMARY_V04, CLOUD_SUMMARY_LINES)).records[0]
    assert record["NumberOfVMs"] == 3 and record["VO"] == "fedcloud" and record["CpuCount"] == 2.0
    assert record["EarliestStartTime"] == epoch(1583020800)
    assert reject(message(CLOUD_SUMMARY_V04, with_(CLOUD_SUMMARY_LINES, NumberOfVMs=None))) \
        == "record 1: field NumberOfVMs: mandatory field is missing"


def test_whole_message_rejected_by_a_later_record():
    text = message(JOB_V03, JOB_LINES, JOB_LINES, with_(JOB_LINES, ServiceLevel=None, ServiceLevelType=None))
    assert reject(text).startswith("record 3: ")


def test_field_lists_describe_message_order():
    names = [field.name for field in FIELDS[JOB]]
    assert names[:5] == ["Site", "SubmitHost", "MachineName", "Queue", "LocalJobId"]
    assert names[-2:] == ["ServiceLevelType", "ServiceLevel"]
    mandatory = {field.name for field in FIELDS[SUMMARY] if field.mandatory}
    assert {"NodeCount", "Processors", "ServiceLevel", "Site", "Month", "Year"} <= mandatory
    assert [f.name for f in FIELDS[CLOUD] if not f.in_message] == ["VO", "VOGroup", "VORole"]

"""The real ``apeldbunloader`` console script against real MariaDB and SQLite.

Records are loaded the way the loader loads them (parsed messages through the
backend), the unloader runs as a subprocess with its configs in tmp_path, and its
output is read from the dirq ``QueueSimple`` at ``<dir_location>/outgoing``. Expected
message texts are written out by hand from messages.md §7.1.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess

import pytest
from unloader_support import UNLOADER, Env, db_settings

from apel.records import JOB, parse_message, render_message
from apel.samples import job_records

UTC = dt.timezone.utc

pytestmark = pytest.mark.timeout(120)

# -- the fixed data set ---------------------------------------------------------------------

JOBS = """APEL-individual-job-message: v0.3
Site: RAL-LCG2
SubmitHost: ce01.example.org:8443/cream-pbs-grid
MachineName: wn001.example.org
Queue: grid
LocalJobId: 12345.batch
LocalUserId: atlas001
GlobalUserName: /C=UK/O=eScience/CN=Some User
FQAN: /atlas/Role=production/Capability=NULL
WallDuration: 3600
CpuDuration: 3000
Processors: 8
NodeCount: 1
StartTime: 1706738400
EndTime: 1706743800
InfrastructureDescription: APEL-CREAM-PBS
InfrastructureType: grid
MemoryReal: 1000
MemoryVirtual: 2000
ServiceLevelType: HEPSPEC
ServiceLevel: 10.5
%%
Site: RAL-LCG2
LocalJobId: b-2
VO: cms
WallDuration: 100
CpuDuration: 50
StartTime: 1707552000
EndTime: 1707555600
InfrastructureType: local
ServiceLevelType: si2k
ServiceLevel: 2500
%%
"""

JOB_A = """APEL-individual-job-message: v0.3
Site: RAL-LCG2
SubmitHost: ce01.example.org:8443/cream-pbs-grid
MachineName: wn001.example.org
Queue: grid
LocalJobId: 12345.batch
LocalUserId: atlas001
GlobalUserName: /C=UK/O=eScience/CN=Some User
FQAN: /atlas/Role=production/Capability=NULL
VO: atlas
VOGroup: /atlas
VORole: Role=production
WallDuration: 3600
CpuDuration: 3000
Processors: 8
NodeCount: 1
StartTime: 1706738400
EndTime: 1706743800
InfrastructureDescription: APEL-CREAM-PBS
InfrastructureType: grid
MemoryReal: 1000
MemoryVirtual: 2000
ServiceLevelType: HEPSPEC
ServiceLevel: 10.5
%%
"""

JOB_B = """APEL-individual-job-message: v0.3
Site: RAL-LCG2
SubmitHost: None
MachineName: None
Queue: None
LocalJobId: b-2
LocalUserId: None
GlobalUserName: None
FQAN: None
VO: cms
VOGroup: None
VORole: None
WallDuration: 100
CpuDuration: 50
Processors: 0
NodeCount: 0
StartTime: 1707552000
EndTime: 1707555600
InfrastructureDescription: None
InfrastructureType: local
ServiceLevelType: si2k
ServiceLevel: 2500.0
%%
"""

SUMMARIES = """APEL-summary-job-message: v0.2
Site: RAL-LCG2
Month: 1
Year: 2024
GlobalUserName: /C=UK/O=eScience/CN=Some User
VO: atlas
VOGroup: /atlas
VORole: Role=production
SubmitHost: ce01.example.org:8443/cream-pbs-grid
InfrastructureType: grid
InfrastructureDescription: APEL-CREAM-PBS
ServiceLevelType: HEPSPEC
ServiceLevel: 10.0
NodeCount: 1
Processors: 8
EarliestEndTime: 1704412800
LatestEndTime: 1705708800
WallDuration: 100000
CpuDuration: 90000
NumberOfJobs: 10
%%
Site: OTHER-SITE
Month: 3
Year: 2024
VO: cms
InfrastructureType: local
ServiceLevelType: HEPscore23
ServiceLevel: 12.25
NodeCount: 1
Processors: 1
WallDuration: 500
CpuDuration: 400
NumberOfJobs: 2
%%
"""

SUMMARY_JAN = """APEL-summary-job-message: v0.2
Site: RAL-LCG2
Month: 1
Year: 2024
GlobalUserName: /C=UK/O=eScience/CN=Some User
VO: atlas
VOGroup: /atlas
VORole: Role=production
SubmitHost: ce01.example.org:8443/cream-pbs-grid
InfrastructureType: grid
ServiceLevelType: HEPSPEC
ServiceLevel: 10.0
NodeCount: 1
Processors: 8
EarliestEndTime: 1704412800
LatestEndTime: 1705708800
WallDuration: 100000
CpuDuration: 90000
NumberOfJobs: 10
%%
"""

SUMMARY_MAR = """APEL-summary-job-message: v0.2
Site: OTHER-SITE
Month: 3
Year: 2024
GlobalUserName: None
VO: cms
VOGroup: None
VORole: None
SubmitHost: None
InfrastructureType: local
ServiceLevelType: HEPscore23
ServiceLevel: 12.25
NodeCount: 1
Processors: 1
WallDuration: 500
CpuDuration: 400
NumberOfJobs: 2
%%
"""

NORMALISED = """APEL-summary-job-message: v0.3
Site: RAL-LCG2
Month: 1
Year: 2024
VO: atlas
Infrastructure: grid
InfrastructureDescription: APEL-CREAM-PBS
NodeCount: 1
Processors: 8
EarliestEndTime: 1704412800
LatestEndTime: 1705708800
WallDuration: 100000
CpuDuration: 90000
NormalisedWallDuration: 1000000
NormalisedCpuDuration: 900000
NumberOfJobs: 10
%%
Site: RAL-LCG2
Month: 1
Year: 2024
VO: atlas
Infrastructure: local
NodeCount: 1
Processors: 1
WallDuration: 10
CpuDuration: 9
NormalisedWallDuration: 100
NormalisedCpuDuration: 90
NumberOfJobs: 1
%%
"""

NORMALISED_GRID_DICT = """APEL-normalised-summary-message: v0.4
Site: RAL-LCG2
Month: 1
Year: 2024
GlobalUserName: None
VO: atlas
VOGroup: None
VORole: None
SubmitHost: None
Infrastructure: grid
NodeCount: 1
Processors: 8
EarliestEndTime: 1704412800
LatestEndTime: 1705708800
WallDuration: 100000
CpuDuration: 90000
NormalisedWallDuration: {HEPSPEC: 1000000}
NormalisedCpuDuration: {HEPSPEC: 900000}
NumberOfJobs: 10
%%
"""

SYNC = """APEL-sync-message: v0.1
Site: RAL-LCG2
SubmitHost: ce01.example.org:8443/cream-pbs-grid
NumberOfJobs: 42
Month: 1
Year: 2024
%%
"""

CLOUD = """APEL-cloud-message: v0.4
RecordCreateTime: 1706743800
VMUUID: vm-0001
SiteName: CLOUD-SITE
CloudComputeService: cloud.example.org
MachineName: vm-1
LocalUserId: u0001
LocalGroupId: g001
GlobalUserName: /C=UK/CN=Cloud User
FQAN: /fedcloud.egi.eu/Role=NULL/Capability=NULL
Status: started
StartTime: 1706738400
SuspendDuration: 0
WallDuration: 5400
CpuDuration: 2700
CpuCount: 0.5
NetworkType: public
NetworkInbound: 1
NetworkOutbound: 2
PublicIPCount: 1
Memory: 4
Disk: 20
BenchmarkType: HEPSPEC
Benchmark: 10.0
ImageId: image-1
CloudType: caso/5.2.1 (OpenStack)
%%
"""

CLOUD_OUT = CLOUD.replace("CpuCount: 0.5", "CpuCount: 1").replace(
    "ImageId: image-1", "StorageRecordId: None\nImageId: image-1")

CLOUD_SUMMARY = """APEL-cloud-summary-message: v0.4
SiteName: CLOUD-SITE
CloudComputeService: cloud.example.org
Month: 1
Year: 2024
GlobalUserName: /C=UK/CN=Cloud User
VO: fedcloud.egi.eu
VOGroup: /fedcloud.egi.eu
VORole: Role=NULL
Status: started
CloudType: caso/5.2.1 (OpenStack)
ImageId: image-1
EarliestStartTime: 1706738400
LatestStartTime: 1706738400
WallDuration: 5400
CpuDuration: 2700
CpuCount: 2.0
NetworkInbound: 1
NetworkOutbound: 2
Memory: 4
Disk: 20
BenchmarkType: HEPSPEC
Benchmark: 10.0
NumberOfVMs: 1
%%
"""

STAR = """<?xml version="1.0" encoding="UTF-8"?>
<sr:StorageUsageRecords xmlns:sr="http://eu-emi.eu/namespaces/2011/02/storagerecord">
  <sr:StorageUsageRecord>
    <sr:RecordIdentity sr:createTime="2016-06-09T02:42:15Z" sr:recordId="c698f1a4-dcache-1"/>
    <sr:StorageSystem>dcache.example.org</sr:StorageSystem>
    <sr:Site>RAL-LCG2</sr:Site>
    <sr:StorageShare>atlas-disk</sr:StorageShare>
    <sr:FileCount>42</sr:FileCount>
    <sr:SubjectIdentity>
      <sr:LocalUser>atlas001</sr:LocalUser>
      <sr:Group>atlas</sr:Group>
      <sr:GroupAttribute sr:attributeType="role">production</sr:GroupAttribute>
      <sr:GroupAttribute sr:attributeType="authority">/O=Grid/CN=voms.example.org</sr:GroupAttribute>
    </sr:SubjectIdentity>
    <sr:StartTime>2016-06-08T02:42:15Z</sr:StartTime>
    <sr:EndTime>2016-06-09T02:42:15Z</sr:EndTime>
    <sr:ResourceCapacityUsed>14728</sr:ResourceCapacityUsed>
  </sr:StorageUsageRecord>
</sr:StorageUsageRecords>"""


@pytest.fixture(params=[pytest.param("mysql", marks=pytest.mark.services), "sqlite"])
def env(request, tmp_path):
    environment = Env(tmp_path, db_settings(request.param, request, tmp_path))
    yield environment
    environment.close()


@pytest.fixture
def sqlite_env(tmp_path):
    environment = Env(tmp_path, db_settings("sqlite", None, tmp_path))
    yield environment
    environment.close()


def records_of(text: str) -> list[str]:
    """The record chunks of an APEL text message (header dropped), for order-free checks."""
    return [chunk.strip() for chunk in text.split("\n", 1)[1].split("%%") if chunk.strip()]


def header_of(text: str) -> str:
    return text.split("\n", 1)[0]


# -- exact layout ---------------------------------------------------------------------------


def test_job_records_exact_layout(env):
    env.load(JOBS)
    env.unload(table_name="VJobRecords", local_jobs="true", records_per_message=1, interval="all")
    assert sorted(env.messages()) == sorted([JOB_A, JOB_B])


def test_job_records_dict_mode_layout(env):
    env.load(JOBS)
    env.unload(table_name="VJobRecords", local_jobs="true", records_per_message=1, interval="all",
               dict_benchmark_type="true")
    expected_a = JOB_A.replace("v0.3", "v0.4").replace("ServiceLevelType: HEPSPEC\nServiceLevel: 10.5",
                                                        "ServiceLevel: {HEPSPEC: 10.5}")
    expected_b = JOB_B.replace("v0.3", "v0.4").replace("ServiceLevelType: si2k\nServiceLevel: 2500.0",
                                                        "ServiceLevel: {si2k: 2500.0}")
    assert sorted(env.messages()) == sorted([expected_a, expected_b])


@pytest.mark.parametrize("view", ["VSummaries", "VSuperSummaries"])
def test_summary_views_exact_layout_and_infrastructure_description_option(env, view):
    env.load(SUMMARIES)
    env.fill_hss_from_summaries()
    env.unload(table_name=view, local_jobs="true", records_per_message=1, interval="all")
    assert sorted(env.messages()) == sorted([SUMMARY_JAN, SUMMARY_MAR])
    env.unload(table_name=view, local_jobs="true", interval="all", include_infrastructure_description="true")
    (text,) = env.messages()
    assert "InfrastructureType: grid\nInfrastructureDescription: APEL-CREAM-PBS\nServiceLevelType" in text
    assert "InfrastructureDescription: None\n" in text  # the summary sent without one
    env.unload(table_name=view, local_jobs="true", interval="all", dict_benchmark_type="true")
    (text,) = env.messages()
    assert header_of(text) == "APEL-summary-job-message: v0.4"
    assert "ServiceLevelType" not in text
    assert "VORole: Role=production\nSubmitHost" in text
    assert "ServiceLevel: {HEPSPEC: 10.0}\nNodeCount: 1" in text
    assert "ServiceLevel: {HEPscore23: 12.25}\n" in text


def test_normalised_views_layout_dict_mode_hepspec_when_type_null(env):
    env.load(NORMALISED)
    env.unload(table_name="VNormalisedSummaries", local_jobs="false", interval="all")
    (text,) = env.messages()
    assert text == NORMALISED_GRID_DICT.replace("APEL-normalised-summary-message: v0.4",
                                                "APEL-summary-job-message: v0.3").replace(
        "{HEPSPEC: 1000000}", "1000000").replace("{HEPSPEC: 900000}", "900000")
    env.unload(table_name="VNormalisedSummaries", local_jobs="false", interval="all",
               dict_benchmark_type="true")
    assert env.messages() == [NORMALISED_GRID_DICT]


def test_sync_cloud_and_cloud_summary_layout_and_decimal_cpu_count(env):
    env.load(SYNC)
    env.load(CLOUD)
    env.load(CLOUD_SUMMARY)
    env.unload(table_name="VSyncRecords", local_jobs="true", interval="all")
    assert env.messages() == [SYNC]
    env.unload(table_name="VCloudRecords", interval="all")
    assert env.messages() == [CLOUD_OUT]
    env.unload(table_name="VCloudRecords", interval="all", decimal_cpu_count="true")
    assert env.messages() == [CLOUD_OUT.replace("CpuCount: 1\n", "CpuCount: 0.5\n")]
    env.unload(table_name="VCloudSummaries", interval="all")
    assert env.messages() == [CLOUD_SUMMARY]


def test_car_output_with_null_machine_name_and_withheld_dns(env):
    env.load(JOBS)
    env.unload(table_name="VJobRecords", local_jobs="true", interval="all", send_ur="true",
               withhold_dns="true")
    (text,) = env.messages()
    assert text.startswith('<?xml version="1.0" ?>\n<urf:UsageRecords ')
    assert 'urf:recordId="None b-2 2024-02-10 09:00:00"' in text
    assert "Some User" not in text
    parsed = parse_message(text)
    assert parsed.record_type == JOB
    by_id = {r["LocalJobId"]: r for r in parsed.records}
    assert by_id["b-2"]["MachineName"] == "None"
    assert by_id["12345.batch"]["MachineName"] == "wn001.example.org"
    assert by_id["12345.batch"]["GlobalUserName"] == "withheld"
    assert by_id["12345.batch"]["ServiceLevel"] == 10.5


def test_star_output_with_group_attributes_parses_back(env):
    env.load(STAR)
    env.unload(table_name="VStarRecords", interval="all", send_ur="true")
    (text,) = env.messages()
    assert text.startswith('<?xml version="1.0" ?>\n<sr:StorageUsageRecords ')
    parsed, original = parse_message(text), parse_message(STAR)
    assert parsed.records == original.records
    assert parsed.group_attributes == original.group_attributes


# -- records_per_message --------------------------------------------------------------------


def test_records_per_message_splits(env):
    env.load(render_message(JOB, list(job_records(5, seed=11))))
    env.unload(table_name="VJobRecords", local_jobs="true", interval="all", records_per_message=2)
    texts = env.messages()
    assert sorted(len(records_of(t)) for t in texts) == [1, 2, 2]
    assert all(t.endswith("%%\n") for t in texts)
    assert "5 records in 3 messages from VJobRecords to " in env.log()


@pytest.mark.parametrize("value, sizes, warned", [
    ("0", [1] * 3, True), ("-5", [1] * 3, True), ("", [3], False), (None, [3], False),
    ("abc", [3], True), ("2.5", [3], True), ("7500", [3], True),
])
def test_records_per_message_clamping_small(sqlite_env, value, sizes, warned):
    sqlite_env.load(render_message(JOB, list(job_records(3, seed=12))))
    sqlite_env.unload(table_name="VJobRecords", local_jobs="true", interval="all", records_per_message=value)
    assert sorted(len(records_of(t)) for t in sqlite_env.messages()) == sizes
    assert ("WARNING - records_per_message" in sqlite_env.log()) == warned


@pytest.mark.timeout(180)
def test_records_per_message_clamped_to_5000_and_bad_value_is_1000(sqlite_env):
    sqlite_env.load(render_message(JOB, list(job_records(5001, seed=13))))
    sqlite_env.unload(table_name="VJobRecords", local_jobs="true", interval="all", records_per_message=7500)
    assert sorted(len(records_of(t)) for t in sqlite_env.messages()) == [1, 5000]
    sqlite_env.unload(table_name="VJobRecords", local_jobs="true", interval="all", records_per_message="x")
    assert sorted(len(records_of(t)) for t in sqlite_env.messages()) == [1] + [1000] * 5


# -- modes ----------------------------------------------------------------------------------


def _job_ids(texts: list[str]) -> list[str]:
    return sorted(r["LocalJobId"] for t in texts for r in parse_message(t).records)


def test_latest_mode_uses_and_always_advances_last_updated(env):
    env.load(JOBS)
    assert env.last_sent() is None
    before = dt.datetime.now(UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(seconds=2)
    env.unload(table_name="VJobRecords", local_jobs="true")  # latest is the default
    assert _job_ids(env.messages()) == ["12345.batch", "b-2"]  # never sent: everything
    first = env.last_sent()
    assert first is not None and first >= before
    # Everything older than the watermark: nothing to send, but LastUpdated still moves.
    env.sql("UPDATE JobRecords SET UpdateTime = '2020-01-01 00:00:00'")
    env.set_last_sent("2021-01-01 00:00:00")
    env.unload(table_name="VJobRecords", local_jobs="true", interval="latest")
    assert env.messages() == []
    assert env.last_sent() >= first
    assert "0 records in 0 messages from VJobRecords" in env.log()
    # Only the row updated after the watermark is sent.
    env.set_last_sent("2021-01-01 00:00:00")
    env.sql("UPDATE JobRecords SET UpdateTime = '2022-01-01 00:00:00' WHERE LocalJobId = 'b-2'")
    env.unload(table_name="VJobRecords", local_jobs="true", interval="latest")
    assert _job_ids(env.messages()) == ["b-2"]


def test_latest_does_not_advance_last_updated_when_writing_fails(env):
    env.load(JOBS)
    env.set_last_sent("2000-01-01 00:00:00")
    env.dir_location.mkdir()
    env.outgoing.write_text("not a directory")
    proc = env.unload(table_name="VJobRecords", local_jobs="true", check=False)
    assert proc.returncode == 1
    assert env.last_sent() == dt.datetime(2000, 1, 1)


@pytest.mark.parametrize("interval, extra", [("all", {}), ("gap", {"gap_start": "2024-01-01",
                                                                  "gap_end": "2024-12-31"})])
def test_all_and_gap_leave_last_updated_alone(env, interval, extra):
    env.load(JOBS)
    env.unload(table_name="VJobRecords", local_jobs="true", interval=interval, **extra)
    assert _job_ids(env.messages()) == ["12345.batch", "b-2"]
    assert env.last_sent() is None


@pytest.mark.parametrize("dict_mode", ["false", "true"])
def test_gap_for_job_records_by_end_time_also_in_dict_mode(env, dict_mode):
    env.load(JOBS)
    for start, end, expected in (
        ("2024-01-31", "2024-01-31", ["12345.batch"]),  # EndTime 23:30 on the 31st
        ("2024-02-01", "2024-02-29", ["b-2"]),
        ("2024-02-11", "2024-03-01", []),
    ):
        env.unload(table_name="VJobRecords", local_jobs="true", interval="gap", gap_start=start, gap_end=end,
                   dict_benchmark_type=dict_mode)
        assert _job_ids(env.messages()) == expected, (start, end)


def test_gap_end_time_boundaries(sqlite_env):
    """EndTime > gap_start 00:00 and EndTime <= (gap_end + 1 day) 00:00, as before."""
    text = JOBS.split("%%")[0] + "%%\n"
    for job_id, end in (("at-start", 1704067200), ("after-end", 1706745600 + 1), ("at-end", 1706745600)):
        start = end - 60
        sqlite_env.load(text.replace("12345.batch", job_id).replace("1706738400", str(start))
                        .replace("1706743800", str(end)))
    sqlite_env.unload(table_name="VJobRecords", local_jobs="true", interval="gap", gap_start="2024-01-01",
                      gap_end="2024-01-31")
    assert _job_ids(sqlite_env.messages()) == ["at-end"]


@pytest.mark.parametrize("view", ["VSummaries", "VSuperSummaries", "VNormalisedSuperSummaries"])
def test_gap_for_summaries_by_month_range(env, view):
    env.load(SUMMARIES)
    env.fill_hss_from_summaries()
    env.unload(table_name=view, local_jobs="true", interval="gap", gap_start="2024-01-20",
               gap_end="2024-02-03")
    (text,) = env.messages()
    assert [r["Site"] for r in parse_message(text).records] == ["RAL-LCG2"]
    env.unload(table_name=view, local_jobs="true", interval="gap", gap_start="2023-12-31",
               gap_end="2024-03-01")
    (text,) = env.messages()
    assert len(parse_message(text).records) == 2
    assert env.last_sent() is None


def _month_start(months_back: int) -> dt.datetime:
    now = dt.datetime.now(UTC)
    index = now.year * 12 + now.month - 1 - months_back
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _summary(site: str, month: dt.datetime, earliest: dt.datetime) -> str:
    return (f"APEL-summary-job-message: v0.2\nSite: {site}\nMonth: {month.month}\nYear: {month.year}\n"
            f"VO: atlas\nInfrastructureType: grid\nServiceLevelType: HEPSPEC\nServiceLevel: 10\n"
            f"NodeCount: 1\nProcessors: 1\nEarliestEndTime: {int(earliest.timestamp())}\n"
            f"LatestEndTime: {int(earliest.timestamp())}\nWallDuration: 10\nCpuDuration: 5\n"
            f"NumberOfJobs: 1\n%%\n")


@pytest.mark.parametrize("view", ["VSuperSummaries", "VNormalisedSuperSummaries"])
def test_latest_super_summaries_send_the_current_and_previous_month(env, view):
    previous = _month_start(1)
    env.load(_summary("CURRENT", _month_start(0), _month_start(0)))
    env.load(_summary("PREVIOUS-FIRST-SECOND", previous, previous))
    env.load(_summary("TWO-BACK-LAST-SECOND", _month_start(2), previous - dt.timedelta(seconds=1)))
    env.load(_summary("THREE-BACK", _month_start(3), _month_start(3)))
    env.fill_hss_from_summaries()
    env.set_last_sent("2037-01-01 00:00:00")  # ignored for super summaries, and left alone
    env.unload(table_name=view, local_jobs="true")
    sites = sorted(r["Site"] for t in env.messages() for r in parse_message(t).records)
    assert sites == ["CURRENT", "PREVIOUS-FIRST-SECOND"]
    assert env.last_sent() == dt.datetime(2037, 1, 1)


# -- filters --------------------------------------------------------------------------------


def test_vo_and_local_jobs_filters_on_job_records(env):
    env.load(JOBS)
    for options, expected in (
        ({"include_vos": "atlas"}, ["12345.batch"]),
        ({"exclude_vos": "atlas"}, ["b-2"]),
        ({"include_vos": "cms, dteam", "exclude_vos": "cms"}, ["b-2"]),  # include wins
        ({"local_jobs": "false"}, ["12345.batch"]),
        ({"local_jobs": None}, ["12345.batch"]),  # missing means false, as before
        ({"include_vos": "cms", "local_jobs": "false"}, []),
    ):
        env.unload(table_name="VJobRecords", interval="all", **{"local_jobs": "true", **options})
        assert _job_ids(env.messages()) == expected, options


@pytest.mark.parametrize("view", ["VNormalisedSummaries", "VNormalisedSuperSummaries"])
def test_local_jobs_false_uses_infrastructure_on_normalised_views(env, view):
    """Defect f: the existing unloader failed with Unknown column 'InfrastructureType'."""
    env.load(NORMALISED)
    env.sql("INSERT INTO HybridSuperSummaries (SiteID, Month, Year, GlobalUserNameID, VOID, VOGroupID,"
            " VORoleID, SubmitHostID, Infrastructure, InfrastructureDescription, ServiceLevelType,"
            " ServiceLevel, NodeCount, Processors, EarliestEndTime, LatestEndTime, WallDuration,"
            " CpuDuration, NormalisedWallDuration, NormalisedCpuDuration, NumberOfJobs)"
            " SELECT SiteID, Month, Year, GlobalUserNameID, VOID, VOGroupID, VORoleID, SubmitHostID,"
            " Infrastructure, InfrastructureDescription, ServiceLevelType, 0, NodeCount, Processors,"
            " EarliestEndTime, LatestEndTime, WallDuration, CpuDuration, NormalisedWallDuration,"
            " NormalisedCpuDuration, NumberOfJobs FROM NormalisedSummaries")
    env.unload(table_name=view, interval="all", local_jobs="false", include_vos="atlas")
    (text,) = env.messages()
    assert [r["Infrastructure"] for r in parse_message(text).records] == ["grid"]


def test_filters_on_summary_views(env):
    env.load(SUMMARIES)
    env.unload(table_name="VSummaries", interval="all", local_jobs="false")
    assert [r["Site"] for t in env.messages() for r in parse_message(t).records] == ["RAL-LCG2"]
    env.unload(table_name="VSummaries", interval="all", local_jobs="true", exclude_vos="atlas")
    assert [r["Site"] for t in env.messages() for r in parse_message(t).records] == ["OTHER-SITE"]


def test_sync_records_refuse_filters_they_cannot_apply_but_unload_without(env):
    env.load(SYNC)
    for options in ({"local_jobs": "false"}, {"local_jobs": "true", "include_vos": "atlas"},
                    {"local_jobs": "true", "exclude_vos": "atlas"}):
        proc = env.unload(table_name="VSyncRecords", interval="all", check=False, **options)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "VSyncRecords" in proc.stderr
        assert env.messages() == []
    env.unload(table_name="VSyncRecords", interval="all", local_jobs="true", withhold_dns="true")
    assert env.messages() == [SYNC]


def test_cloud_views_ignore_vo_filters_with_a_warning(sqlite_env):
    sqlite_env.load(CLOUD)
    sqlite_env.unload(table_name="VCloudRecords", interval="all", include_vos="atlas", local_jobs="false")
    assert len(sqlite_env.messages()) == 1
    assert "do not apply to VCloudRecords" in sqlite_env.log()


def test_withhold_dns_for_jobs_and_cloud(env):
    env.load(JOBS)
    env.load(CLOUD)
    env.unload(table_name="VJobRecords", interval="all", local_jobs="true", withhold_dns="true")
    texts = env.messages()
    names = {r["GlobalUserName"] for t in texts for r in parse_message(t).records}
    assert names == {"withheld"}
    env.unload(table_name="VCloudRecords", interval="all", withhold_dns="true")
    (text,) = env.messages()
    assert "GlobalUserName: withheld\n" in text and "Cloud User" not in text


# -- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize("options, needle", [
    ({"table_name": "VSummaries", "withhold_dns": "true"}, "Cannot withhold DNs for SummaryRecord"),
    ({"table_name": "VNormalisedSuperSummaries", "withhold_dns": "true"}, "Cannot withhold DNs"),
    ({"table_name": "VCloudSummaries", "withhold_dns": "true"}, "Cannot withhold DNs"),
    ({"table_name": "VStarRecords", "send_ur": "true", "withhold_dns": "true"}, "Cannot withhold DNs"),
    ({"table_name": "VStarRecords"}, "Cannot unload StorageRecords in APEL format"),
    ({"table_name": "VStarRecords", "send_ur": "true", "dict_benchmark_type": "true"}, "dict_benchmark_type"),
    ({"table_name": "VSyncRecords", "local_jobs": "true", "dict_benchmark_type": "true"}, "dict_benchmark"),
    ({"table_name": "VCloudRecords", "dict_benchmark_type": "true"}, "dict_benchmark"),
    ({"table_name": "VCloudSummaries", "dict_benchmark_type": "true"}, "dict_benchmark"),
    ({"table_name": "VSummaries", "send_ur": "true"}, "send_ur"),
    ({"table_name": "VJobRecords2"}, "[unloader] table_name: 'VJobRecords2' is not one of VJobRecords"),
    ({"table_name": None}, "table_name: missing option"),
    ({"table_name": "VJobRecords", "interval": "sometimes"}, "interval"),
    ({"table_name": "VJobRecords", "interval": "gap", "gap_start": "2024-01-01"}, "gap_end"),
    ({"table_name": "VJobRecords", "interval": "gap", "gap_start": "2024-13-01", "gap_end": "2024-12-01"},
     "gap_start"),
    ({"table_name": "VJobRecords", "interval": "gap", "gap_start": "2024-02-01", "gap_end": "2024-01-01"},
     "after gap_end"),
    ({"table_name": "VCloudRecords", "interval": "gap", "gap_start": "2024-01-01", "gap_end": "2024-01-02"},
     "Can only gap publish"),
    ({"table_name": "VJobRecords", "withhold_dns": "maybe"}, "withhold_dns"),
])
def test_configuration_errors_are_one_line_exit_1_and_write_nothing(sqlite_env, options, needle):
    sqlite_env.load(JOBS)
    proc = sqlite_env.unload(check=False, **options)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not sqlite_env.outgoing.exists()
    assert sqlite_env.last_sent() is None


def test_unreachable_database_is_one_line_exit_1(tmp_path):
    db_cfg = tmp_path / "db.cfg"
    db_cfg.write_text("[db]\nbackend = mysql\nhostname = 127.0.0.1\nport = 1\nname = apel\nusername = x\n"
                      "connect_timeout = 2\n")
    cfg = tmp_path / "unloader.cfg"
    cfg.write_text(f"[unloader]\ndir_location = {tmp_path}\ntable_name = VJobRecords\n"
                   f"[logging]\nlogfile = {tmp_path / 'u.log'}\nconsole = false\n")
    proc = subprocess.run([UNLOADER, "-d", str(db_cfg), "-c", str(cfg)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "unavailable" in proc.stderr


def test_version_and_defaults():
    proc = subprocess.run([UNLOADER, "-v"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("APEL ")
    proc = subprocess.run([UNLOADER, "--help"], capture_output=True, text=True, timeout=30)
    assert "/etc/apel/unloader.cfg" in proc.stdout and "/etc/apel/db.cfg" in proc.stdout


# -- dry run, queue permissions -------------------------------------------------------------


def test_dry_run_prints_counts_per_site_and_month_and_writes_nothing(env):
    env.load(JOBS)
    env.load(SUMMARIES)
    proc = env.unload("--dry-run", table_name="VJobRecords", local_jobs="true", records_per_message=1)
    assert "VJobRecords, interval latest: 2 records in 2 messages would be written" in proc.stdout
    assert "RAL-LCG2  2024-01        1" in proc.stdout
    assert "RAL-LCG2  2024-02        1" in proc.stdout
    assert not env.outgoing.exists()
    assert env.last_sent() is None
    proc = env.unload("--dry-run", table_name="VSummaries", local_jobs="true", interval="all")
    assert "2 records in 1 messages" in proc.stdout
    assert "OTHER-SITE  2024-03        1" in proc.stdout
    assert not env.outgoing.exists()


def test_outgoing_queue_is_private_and_readable_by_the_sender(sqlite_env):
    sqlite_env.load(JOBS)
    sqlite_env.unload(table_name="VJobRecords", local_jobs="true", interval="all")
    assert stat.S_IMODE(os.stat(sqlite_env.outgoing).st_mode) == 0o700
    files = [os.path.join(d, f) for d, _, fs in os.walk(sqlite_env.outgoing) for f in fs]
    assert files and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    from ssm.dirqueue import open_outgoing

    queue = open_outgoing(str(sqlite_env.outgoing))
    (name,) = queue.names()
    assert queue.lock(name)
    assert queue.get(name).decode().startswith("APEL-individual-job-message: v0.3\n")


def test_backend_iter_query_streams_in_batches(env):
    env.load(render_message(JOB, list(job_records(25, seed=14))))
    batches = list(env.db.iter_query("SELECT LocalJobId, EndTime, ServiceLevel FROM VJobRecords", (), 10))
    assert [len(b) for b in batches] == [10, 10, 5]
    _, end, level = batches[0][0]
    assert isinstance(end, dt.datetime) and level is not None
    assert env.db.query("SELECT COUNT(*) FROM VJobRecords") == [(25,)]  # the connection is usable after

"""apelsummariser against real MariaDB and SQLite: hand-computed results, cloud deltas,
stale clean-up, identical backends, and the real console script (pidfile, errors).

The ``backend`` fixture runs a test twice: on a fresh MariaDB database (strict
sql_mode) and on a fresh SQLite file. Records go in through ``load_message``, as the
loader writes them, so the summariser's bookkeeping is the loader's.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from apel.db.backend import load_backend
from apel.db.mysql_backend import apply_schema
from apel.records.model import CLOUD, CLOUD_SUMMARY, JOB, NORMALISED_SUMMARY, SUMMARY, ParsedMessage
from apel.services.summariser import Summariser, SummariserSettings, month_before

UTC = dt.timezone.utc
PUBLISHER = "/C=UK/O=eScience/CN=publisher.example.org"
USER = "/C=UK/O=eScience/CN=Some User"
SUMMARISER = str(Path(sys.executable).with_name("apelsummariser"))

pytestmark = pytest.mark.timeout(120)


# -- fixtures and helpers -------------------------------------------------------------------


def mysql_settings(args: dict) -> dict:
    return {
        "backend": "mysql", "hostname": args["host"], "port": str(args["port"]),
        "name": args["database"], "username": args["user"], "password": args["password"],
    }


def settings_for(kind: str, request, tmp_path) -> dict:
    if kind == "mysql":
        args = request.getfixturevalue("mysql_database")
        apply_schema(args)
        return mysql_settings(args)
    return {"backend": "sqlite", "name": str(tmp_path / "db" / "apel.sqlite3")}


def open_backend(settings: dict):
    db = load_backend(settings["backend"])(settings)
    db.connect()
    return db


@pytest.fixture(params=[pytest.param("mysql", marks=pytest.mark.services), "sqlite"])
def backend(request, tmp_path):
    db = open_backend(settings_for(request.param, request, tmp_path))
    yield db
    db.close()


def when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def job(local_id: str, end: str, level_type: str, level: float, wall: int, cpu: int, **extra) -> dict:
    record = {
        "Site": "SITE-A", "SubmitHost": "ce.site-a.example.org:8443/cream-pbs-grid",
        "MachineName": "wn01.site-a.example.org", "Queue": "grid", "LocalJobId": local_id,
        "LocalUserId": "atlas001", "GlobalUserName": USER,
        "FQAN": "/atlas/Role=production/Capability=NULL", "VO": "atlas", "VOGroup": "/atlas",
        "VORole": "Role=production", "WallDuration": wall, "CpuDuration": cpu,
        "Processors": 1, "NodeCount": 1, "StartTime": when(end) - dt.timedelta(seconds=min(wall, 86400)),
        "EndTime": when(end), "InfrastructureDescription": "APEL-CREAM-PBS",
        "InfrastructureType": "grid", "MemoryReal": None, "MemoryVirtual": None,
        "ServiceLevelType": level_type, "ServiceLevel": level,
    }
    record.update(extra)
    return record


def summary(site: str, year: int, month: int, level_type: str, level: float, wall: int, cpu: int,
            jobs: int, **extra) -> dict:
    record = {
        "Site": site, "Month": month, "Year": year, "GlobalUserName": USER, "VO": "atlas",
        "VOGroup": "/atlas", "VORole": "Role=production",
        "SubmitHost": "ce.site-a.example.org:8443/cream-pbs-grid", "InfrastructureType": "grid",
        "InfrastructureDescription": "APEL-CREAM-PBS", "ServiceLevelType": level_type,
        "ServiceLevel": level, "NodeCount": 1, "Processors": 1,
        "EarliestEndTime": dt.datetime(year, month, 2, tzinfo=UTC),
        "LatestEndTime": dt.datetime(year, month, 27, tzinfo=UTC),
        "WallDuration": wall, "CpuDuration": cpu, "NumberOfJobs": jobs,
    }
    record.update(extra)
    return record


def normalised(site: str, year: int, month: int, level_type: str, wall: int, normalised_wall: int,
               jobs: int) -> dict:
    record = summary(site, year, month, level_type, 0, wall, wall, jobs)
    for name in ("ServiceLevel", "InfrastructureType"):
        del record[name]
    record.update(Infrastructure="grid", NormalisedWallDuration=normalised_wall,
                  NormalisedCpuDuration=normalised_wall)
    return record


def load(db, record_type: str, records: list) -> None:
    db.load_message(ParsedMessage(record_type, "test", list(records)), PUBLISHER)


def summarise(db, **settings) -> Any:
    return Summariser(db, SummariserSettings(**settings)).run()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.001")))
    if isinstance(value, float):
        return str(Decimal(repr(value)).quantize(Decimal("0.001")))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, str) and len(value) == 19 and value[4] == "-" and value[10] == " ":
        return value  # a SQLite datetime the backend did not convert
    return value


HSS_COLUMNS = (
    "Site", "Year", "Month", "GlobalUserName", "VO", "VOGroup", "VORole", "SubmitHost",
    "Infrastructure", "InfrastructureDescription", "ServiceLevelType", "ServiceLevel", "NodeCount",
    "Processors", "EarliestEndTime", "LatestEndTime", "WallDuration", "CpuDuration",
    "NormalisedWallDuration", "NormalisedCpuDuration", "NumberOfJobs",
)


def hss(db) -> list[dict]:
    """Every HSS row with names instead of ids, sorted: comparable across backends."""
    rows = db.query(
        "SELECT site.name, h.Year, h.Month, dn.name, vo.name, vog.name, vor.name, sh.name,"
        " h.Infrastructure, h.InfrastructureDescription, h.ServiceLevelType, h.ServiceLevel,"
        " h.NodeCount, h.Processors, h.EarliestEndTime, h.LatestEndTime, h.WallDuration,"
        " h.CpuDuration, h.NormalisedWallDuration, h.NormalisedCpuDuration, h.NumberOfJobs"
        " FROM HybridSuperSummaries h JOIN Sites site ON site.id = h.SiteID"
        " JOIN DNs dn ON dn.id = h.GlobalUserNameID JOIN VOs vo ON vo.id = h.VOID"
        " JOIN VOGroups vog ON vog.id = h.VOGroupID JOIN VORoles vor ON vor.id = h.VORoleID"
        " JOIN SubmitHosts sh ON sh.id = h.SubmitHostID"
    )
    out = [dict(zip(HSS_COLUMNS, (_plain(v) for v in row))) for row in rows]
    return sorted(out, key=lambda r: repr(sorted(r.items())))


CLOUD_COLUMNS = (
    "Site", "CloudComputeService", "Year", "Month", "GlobalUserName", "VO", "Status", "CloudType",
    "ImageId", "EarliestStartTime", "LatestStartTime", "WallDuration", "CpuDuration", "CpuCount",
    "NetworkInbound", "NetworkOutbound", "Memory", "Disk", "BenchmarkType", "Benchmark",
    "NumberOfVMs", "PublisherDNID",
)


def cloud_summaries(db) -> list[dict]:
    rows = db.query(
        "SELECT site.name, ccs.name, c.Year, c.Month, dn.name, vo.name, c.Status, c.CloudType,"
        " c.ImageId, c.EarliestStartTime, c.LatestStartTime, c.WallDuration, c.CpuDuration,"
        " c.CpuCount, c.NetworkInbound, c.NetworkOutbound, c.Memory, c.Disk, c.BenchmarkType,"
        " c.Benchmark, c.NumberOfVMs, c.PublisherDNID"
        " FROM CloudSummaries c JOIN Sites site ON site.id = c.SiteID"
        " JOIN CloudComputeServices ccs ON ccs.id = c.CloudComputeServiceID"
        " JOIN DNs dn ON dn.id = c.GlobalUserNameID JOIN VOs vo ON vo.id = c.VOID"
    )
    out = [dict(zip(CLOUD_COLUMNS, (_plain(v) for v in row))) for row in rows]
    return sorted(out, key=lambda r: repr(sorted(r.items())))


def find(rows: list[dict], **match) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} rows match {match}: {rows}"
    return found[0]


# -- the fixed job data set -------------------------------------------------------------------

FIXED_JOBS = [
    # si2k, three spellings merge into one group; f = 1001 / 250 = 4.004
    job("j1", "2024-01-10 10:00:00", "si2k", 1001, 125, 100),
    job("j2", "2024-01-20 12:00:00", "SI2K", 1001, 250, 1),
    job("j3", "2024-01-31 23:59:59", "Si2K", 1001, 0, 0),
    # HEPSPEC and hepspec merge; f = 10.5; the second job ends in January in UTC
    job("j4", "2024-01-15 08:00:00", "HEPSPEC", 10.5, 201, 3),
    job("j5", "2024-02-01 00:30:00+01:00", "hepspec", 10.5, 100, 100),
    # HEPscore23 is not divided by 250 (apel#397)
    job("j6", "2024-02-10 00:00:00", "HEPscore23", 12.345, 1000, 999),
    job("j7", "2024-02-11 00:00:00", "HEPscore23", 12.345, 1000, 999, Processors=8),
    # precedence keys at SITE-P, March: SL 10 (job < summary), SL 0 (job < summary < normalised)
    job("p1", "2024-03-05 00:00:00", "HEPSPEC", 10, 10, 10, Site="SITE-P"),
    job("p2", "2024-03-06 00:00:00", "HEPSPEC", 0, 10, 10, Site="SITE-P"),
]
FIXED_SUMMARIES = [
    summary("SITE-S", 2024, 3, "si2k", 2000.5, 1000, 333, 7),  # f = 8.002, per row
    summary("SITE-P", 2024, 3, "HEPSPEC", 10, 20, 20, 2),
    summary("SITE-P", 2024, 3, "HEPSPEC", 0, 20, 20, 2),
]
FIXED_NORMALISED = [normalised("SITE-P", 2024, 3, "HEPSPEC", 30, 300, 3)]


def load_fixed(db) -> None:
    # the most important source first: precedence must not depend on load order
    load(db, NORMALISED_SUMMARY, FIXED_NORMALISED)
    load(db, SUMMARY, FIXED_SUMMARIES)
    load(db, JOB, FIXED_JOBS)


def check_fixed(rows: list[dict]) -> None:
    assert len(rows) == 7
    si2k = find(rows, Site="SITE-A", Month=1, ServiceLevel="1001.000")
    assert si2k["ServiceLevelType"] == "SI2K"  # binary-smallest spelling of the merged group
    assert (si2k["WallDuration"], si2k["CpuDuration"], si2k["NumberOfJobs"]) == (375, 101, 3)
    # 375 × 4.004 = 1501.5 → 1502 (half away from zero); 101 × 4.004 = 404.404 → 404
    assert (si2k["NormalisedWallDuration"], si2k["NormalisedCpuDuration"]) == (1502, 404)
    assert si2k["EarliestEndTime"] == "2024-01-10 10:00:00"
    assert si2k["LatestEndTime"] == "2024-01-31 23:59:59"
    assert (si2k["Year"], si2k["Infrastructure"], si2k["InfrastructureDescription"]) == (
        2024, "grid", "APEL-CREAM-PBS")

    hepspec = find(rows, Site="SITE-A", Month=1, ServiceLevel="10.500")
    assert hepspec["ServiceLevelType"] == "HEPSPEC"
    assert (hepspec["WallDuration"], hepspec["CpuDuration"], hepspec["NumberOfJobs"]) == (301, 103, 2)
    # 301 × 10.5 = 3160.5 → 3161; 103 × 10.5 = 1081.5 → 1082
    assert (hepspec["NormalisedWallDuration"], hepspec["NormalisedCpuDuration"]) == (3161, 1082)
    assert hepspec["LatestEndTime"] == "2024-01-31 23:30:00"  # 00:30+01:00 is January in UTC

    score = find(rows, Site="SITE-A", Month=2, Processors=1)
    assert score["ServiceLevelType"] == "HEPscore23"
    # 1000 × 12.345 = 12345; 999 × 12.345 = 12332.655 → 12333
    assert (score["NormalisedWallDuration"], score["NormalisedCpuDuration"], score["NumberOfJobs"]) == (
        12345, 12333, 1)
    assert find(rows, Site="SITE-A", Month=2, Processors=8)["NumberOfJobs"] == 1

    per_row = find(rows, Site="SITE-S")
    # 1000 × 8.002 = 8002; 333 × 8.002 = 2664.666 → 2665
    assert (per_row["NormalisedWallDuration"], per_row["NormalisedCpuDuration"]) == (8002, 2665)
    assert (per_row["NumberOfJobs"], per_row["EarliestEndTime"]) == (7, "2024-03-02 00:00:00")

    job_then_summary = find(rows, Site="SITE-P", ServiceLevel="10.000")
    assert (job_then_summary["WallDuration"], job_then_summary["NormalisedWallDuration"],
            job_then_summary["NumberOfJobs"]) == (20, 200, 2)
    all_three = find(rows, Site="SITE-P", ServiceLevel="0.000")
    assert (all_three["WallDuration"], all_three["NormalisedWallDuration"], all_three["NumberOfJobs"]) == (
        30, 300, 3)


# -- job summarisation ------------------------------------------------------------------------


def test_fixed_data_set_gives_the_hand_computed_summaries(backend):
    load_fixed(backend)
    report = summarise(backend)
    assert report.mode == "full"  # the first run on a database is a full one
    check_fixed(hss(backend))
    assert backend.query("SELECT COUNT(*) FROM PendingSummaryKeys") == [(0,)]


def test_fixed_data_set_summarised_incrementally_in_pieces(backend):
    summarise(backend)  # an empty database: records the baseline
    load(backend, NORMALISED_SUMMARY, FIXED_NORMALISED)
    assert summarise(backend).mode == "incremental"
    load(backend, JOB, FIXED_JOBS[:5])
    summarise(backend)
    load(backend, SUMMARY, FIXED_SUMMARIES)
    load(backend, JOB, FIXED_JOBS[5:])
    report = summarise(backend)
    assert report.mode == "incremental" and report.keys == 5  # p1, p2 share the summaries' keys
    check_fixed(hss(backend))
    summarise(backend, full=True)
    check_fixed(hss(backend))


def test_incremental_run_in_small_chunks(backend, monkeypatch):
    """Pending entries are read and recomputed in chunks; a key met in several chunks is
    recomputed each time, with the same result."""
    from apel.services import summariser

    monkeypatch.setattr(summariser, "KEYS_PER_TRANSACTION", 2)
    summarise(backend)
    load_fixed(backend)
    load(backend, JOB, FIXED_JOBS[:3])  # the same keys pending twice
    report = summarise(backend)
    # 1 + 3 + 9 keys of the first loads; the reload adds its 3 keys again (the replaced
    # jobs had the same keys, so they add nothing of their own)
    assert report.mode == "incremental" and report.pending_cleared == 16
    check_fixed(hss(backend))
    assert backend.query("SELECT COUNT(*) FROM PendingSummaryKeys") == [(0,)]


def test_rounding_is_exact_decimal_half_away_from_zero(backend):
    load(backend, JOB, [
        job("r1", "2024-05-01 00:00:00", "HEPSPEC", 10.5, 201, 201, Site="ROUND"),  # 2110.5
        job("r2", "2024-05-01 00:00:00", "HEPSPEC", 2.675, 2, 1, Site="ROUND"),  # 5.35, 2.675
        job("r3", "2024-05-01 00:00:00", "si2k", 0.125, 2, 4, Site="ROUND"),  # 0.001, 0.002
        job("r4", "2024-05-01 00:00:00", "HEPSPEC", 9999999.999, 2**36, 3, Site="ROUND"),
    ])
    summarise(backend)
    rows = hss(backend)
    assert find(rows, ServiceLevel="10.500")["NormalisedWallDuration"] == 2111
    assert (find(rows, ServiceLevel="2.675")["NormalisedWallDuration"],
            find(rows, ServiceLevel="2.675")["NormalisedCpuDuration"]) == (5, 3)
    assert find(rows, ServiceLevel="0.125")["NormalisedCpuDuration"] == 0
    big = find(rows, ServiceLevel="9999999.999")
    assert big["NormalisedWallDuration"] == (2**36 * 9999999999 + 500) // 1000  # exact, no float
    assert big["NormalisedCpuDuration"] == 30000000  # 29999999.997


def test_republished_job_with_another_service_level_keeps_the_old_row_stale(backend):
    """HSS is never deleted from (database.md §7.4), in full and incremental runs alike;
    a group that keeps some jobs is recomputed without the one that moved."""
    load(backend, JOB, [job("a", "2024-06-01 00:00:00", "HEPSPEC", 10, 100, 100, Site="STALE"),
                        job("b", "2024-06-02 00:00:00", "HEPSPEC", 10, 50, 50, Site="STALE"),
                        job("c", "2024-06-03 00:00:00", "HEPSPEC", 12, 70, 70, Site="STALE")])
    summarise(backend)
    # b moves from SL 10 to SL 11; c, alone in its group, moves from SL 12 to SL 11 too
    load(backend, JOB, [job("b", "2024-06-02 00:00:00", "HEPSPEC", 11, 50, 50, Site="STALE"),
                        job("c", "2024-06-03 00:00:00", "HEPSPEC", 11, 70, 70, Site="STALE")])
    assert summarise(backend).mode == "incremental"
    incremental = hss(backend)
    assert find(incremental, ServiceLevel="10.000")["NumberOfJobs"] == 1  # recomputed without b
    assert find(incremental, ServiceLevel="11.000")["WallDuration"] == 120
    assert find(incremental, ServiceLevel="12.000")["WallDuration"] == 70  # stale, kept
    summarise(backend, full=True)
    assert hss(backend) == incremental


def test_nothing_loaded_means_nothing_recomputed(backend):
    load_fixed(backend)
    summarise(backend)
    report = summarise(backend)
    assert (report.mode, report.keys, report.rows) == ("incremental", 0, 0)
    check_fixed(hss(backend))


# -- cloud ------------------------------------------------------------------------------------


def vm(uuid: str, status: str, wall: int, cpu: int, created: Any = None, start: str = "2024-01-10 00:00:00",
       end: Any = None, **extra) -> dict:
    record = {
        "VMUUID": uuid, "SiteName": "CLOUD-A", "CloudComputeService": "cloud.example.org",
        "MachineName": f"{uuid}-host", "LocalUserId": "u1", "LocalGroupId": "g1",
        "GlobalUserName": USER, "FQAN": "/fedcloud.egi.eu/Role=NULL/Capability=NULL",
        "VO": "fedcloud.egi.eu", "VOGroup": "/fedcloud.egi.eu", "VORole": "Role=NULL",
        "Status": status, "StartTime": when(start), "EndTime": when(end) if end else None,
        "RecordCreateTime": when(created) if created else None, "SuspendDuration": None,
        "WallDuration": wall, "CpuDuration": cpu, "CpuCount": 2.0, "NetworkType": "None",
        "NetworkInbound": None, "NetworkOutbound": None, "PublicIPCount": 1, "Memory": 4,
        "Disk": 20, "BenchmarkType": "HEPSPEC", "Benchmark": 10.0, "StorageRecordId": "None",
        "ImageId": "img-1", "CloudType": "OpenStack",
    }
    record.update(extra)
    return record


CLOUD_VMS = [
    # the spec's example: Jan 2000, Feb 5000, completed in Mar 6000 -> 2000 / 3000 / 1000
    vm("vm-1", "started", 2000, 1000, "2024-01-31 12:00:00", NetworkInbound=10, NetworkOutbound=5),
    vm("vm-1", "started", 5000, 2500, "2024-02-28 12:00:00", NetworkInbound=30, NetworkOutbound=6),
    vm("vm-1", "completed", 6000, 2600, None, end="2024-03-02 00:00:00", NetworkInbound=40,
       NetworkOutbound=6),
    # no RecordCreateTime: StartTime + SuspendDuration + WallDuration = 2024-02-02 01:00
    vm("vm-2", "started", 3 * 86400, 100, None, start="2024-01-30 00:00:00", SuspendDuration=3600,
       ImageId="img-2"),
    # completed without EndTime: month 0, never anyone's previous record
    vm("vm-3", "started", 100, 10, "2024-01-15 00:00:00", ImageId="img-3"),
    vm("vm-3", "completed", 500, 50, None, ImageId="img-3"),
]


def check_cloud(rows: list[dict]) -> None:
    vm1 = [r for r in rows if r["ImageId"] == "img-1"]
    by_month = {r["Month"]: r for r in vm1}
    assert sorted(by_month) == [1, 2, 3]
    assert [by_month[m]["WallDuration"] for m in (1, 2, 3)] == [2000, 3000, 1000]
    assert [by_month[m]["CpuDuration"] for m in (1, 2, 3)] == [1000, 1500, 100]
    assert [by_month[m]["NetworkInbound"] for m in (1, 2, 3)] == [10, 20, 10]
    assert [by_month[m]["NetworkOutbound"] for m in (1, 2, 3)] == [5, 1, 0]
    assert [by_month[m]["Status"] for m in (1, 2, 3)] == ["started", "started", "completed"]
    assert all((r["Memory"], r["Disk"], r["NumberOfVMs"]) == (4, 20, 1) for r in vm1)
    assert all(r["PublisherDNID"] == "summariser" for r in rows)
    assert by_month[1]["EarliestStartTime"] == "2024-01-10 00:00:00"
    assert (by_month[1]["CpuCount"], by_month[1]["Benchmark"]) == ("2.000", "10.000")

    vm2 = find(rows, ImageId="img-2")
    assert (vm2["Year"], vm2["Month"], vm2["WallDuration"]) == (2024, 2, 3 * 86400)
    assert vm2["NetworkInbound"] is None  # a null "this" stays null

    vm3 = sorted((r for r in rows if r["ImageId"] == "img-3"), key=lambda r: r["Month"])
    assert [(r["Year"], r["Month"], r["WallDuration"]) for r in vm3] == [(0, 0, 500), (2024, 1, 100)]


def test_cloud_vms_spanning_months_give_deltas(backend):
    load(backend, CLOUD, CLOUD_VMS)
    summarise(backend, kind="cloud")
    check_cloud(cloud_summaries(backend))


def test_cloud_incremental_recomputes_later_months_of_the_same_vm(backend):
    summarise(backend, kind="cloud")
    load(backend, CLOUD, CLOUD_VMS[2:])  # March first: its delta is 6000 for now
    summarise(backend, kind="cloud")
    assert find(cloud_summaries(backend), ImageId="img-1")["WallDuration"] == 6000
    load(backend, CLOUD, CLOUD_VMS[:2])  # January and February arrive late
    report = summarise(backend, kind="cloud")
    assert report.mode == "incremental"
    check_cloud(cloud_summaries(backend))


def test_cloud_last_received_record_of_a_month_wins_even_if_older(backend):
    load(backend, CLOUD, CLOUD_VMS[:3])
    # an older February measurement (wall 4000), received later, replaces the stored one
    load(backend, CLOUD, [vm("vm-1", "started", 4000, 2000, "2024-02-20 00:00:00")])
    summarise(backend, kind="cloud")
    rows = cloud_summaries(backend)
    assert [find(rows, Month=m)["WallDuration"] for m in (1, 2, 3)] == [2000, 2000, 2000]


def test_stale_cloud_summaries_are_deleted_with_year_and_month_as_a_pair(backend):
    """Threshold December of last year: December and the January after it are deleted
    (the old Month >= 12 AND Year >= y test skipped January), November stays, and rows
    the run refreshed stay."""
    today = dt.datetime.now(UTC).date()
    days = (today - dt.date(today.year - 1, 12, 15)).days
    last_year = today.year - 1

    def cloud_summary(year: int, month: int, image: str) -> dict:
        return {
            "SiteName": "CLOUD-A", "CloudComputeService": "cloud.example.org", "Month": month,
            "Year": year, "GlobalUserName": USER, "VO": "fedcloud.egi.eu", "VOGroup": "/fedcloud.egi.eu",
            "VORole": "Role=NULL", "Status": "started", "CloudType": "OpenStack", "ImageId": image,
            "EarliestStartTime": None, "LatestStartTime": None, "WallDuration": 1, "CpuDuration": 1,
            "CpuCount": 1.0, "NetworkInbound": None, "NetworkOutbound": None, "Memory": None,
            "Disk": None, "BenchmarkType": "HEPSPEC", "Benchmark": 10.0, "NumberOfVMs": 1,
        }

    load(backend, CLOUD_SUMMARY, [cloud_summary(last_year, 11, "nov"), cloud_summary(last_year, 12, "dec"),
                                  cloud_summary(today.year, 1, "jan")])
    # a VM measured in January of this year: its summary is refreshed by the run
    load(backend, CLOUD, [vm("vm-9", "started", 100, 10, f"{today.year}-01-20 00:00:00",
                             start=f"{today.year}-01-01 00:00:00", ImageId="fresh")])
    with backend.transaction() as tx:  # everything loaded "long ago"
        tx.execute("UPDATE CloudSummaries SET UpdateTime = '2001-01-01 00:00:00'")
    report = summarise(backend, kind="cloud", stale_window_days=days)
    assert report.stale_deleted == 2
    assert sorted(r["ImageId"] for r in cloud_summaries(backend)) == ["fresh", "nov"]


def test_incremental_cloud_run_with_clean_up_refreshes_the_whole_window(backend):
    """The clean-up deletes what the run did not refresh, so an incremental run must
    refresh every site-month of the window, or it would delete good summaries."""
    today = dt.datetime.now(UTC)
    this_month = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    load(backend, CLOUD, [vm("vm-now", "started", 100, 10, this_month.isoformat(),
                             start=this_month.isoformat(), ImageId="now")])
    summarise(backend, kind="cloud")
    with backend.transaction() as tx:
        tx.execute("UPDATE CloudSummaries SET UpdateTime = '2001-01-01 00:00:00'")
    report = summarise(backend, kind="cloud", stale_window_days=0)
    assert report.mode == "incremental" and report.stale_deleted == 0
    assert [r["ImageId"] for r in cloud_summaries(backend)] == ["now"]


def test_month_before_crosses_year_ends():
    assert month_before(dt.datetime(2026, 1, 5), 10) == (2025, 12)
    assert month_before(dt.datetime(2026, 3, 1), 1) == (2026, 2)
    assert month_before(dt.datetime(2024, 3, 1), 0) == (2024, 3)


# -- both backends agree ---------------------------------------------------------------------


def test_mariadb_and_sqlite_give_identical_summaries(mysql_database, tmp_path):
    from apel import samples

    apply_schema(mysql_database)
    now = dt.datetime(2025, 1, 20, tzinfo=UTC)  # the sample months cross a year end
    jobs = list(samples.job_records(2000, seed=11, now=now))
    summaries = list(samples.summary_records(100, seed=12, now=now))
    vms = list(samples.cloud_records(300, seed=13, now=now))
    results = []
    for settings in (mysql_settings(mysql_database), {"backend": "sqlite", "name": str(tmp_path / "a.db")}):
        db = open_backend(settings)
        try:
            load_fixed(db)
            load(db, CLOUD, CLOUD_VMS)
            for start in range(0, len(jobs), 500):
                load(db, JOB, jobs[start:start + 500])
            load(db, SUMMARY, summaries)
            load(db, CLOUD, vms)
            summarise(db)
            summarise(db, kind="cloud")
            results.append((hss(db), cloud_summaries(db)))
        finally:
            db.close()
    (my_hss, my_cloud), (lite_hss, lite_cloud) = results
    assert len(my_hss) > 1000 and len(my_cloud) > 300  # a rich data set: many keys merge or not
    assert my_hss == lite_hss
    assert my_cloud == lite_cloud
    check_fixed([r for r in my_hss if r["Site"] in ("SITE-A", "SITE-S", "SITE-P")])


# -- the console script -----------------------------------------------------------------------


class Setup:
    """Config files for one apelsummariser run on a SQLite database in ``root``."""

    def __init__(self, root: Path, db_type: str = "cpu", db_section: str = "") -> None:
        self.root = root
        self.pidfile = root / "run" / "summariser.pid"
        self.log = root / "summariser.log"
        self.database = root / "apel.sqlite3"
        self.db_cfg = root / "db.cfg"
        self.cfg = root / "summariser.cfg"
        default = f"[db]\nbackend = sqlite\nname = {self.database}\ntype = {db_type}\n"
        self.db_cfg.write_text(db_section or default)
        self.cfg.write_text(
            f"[summariser]\npidfile = {self.pidfile}\n"
            f"[logging]\nlogfile = {self.log}\nlevel = INFO\nconsole = false\n"
        )

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SUMMARISER, "-d", str(self.db_cfg), "-c", str(self.cfg), *extra],
            capture_output=True, text=True, timeout=60, check=False,
        )


def test_console_script_summarises_incrementally_then_fully(tmp_path):
    setup = Setup(tmp_path)
    db = open_backend({"backend": "sqlite", "name": str(setup.database)})
    load_fixed(db)
    first = setup.run()
    assert (first.returncode, first.stderr) == (0, "")
    check_fixed(hss(db))
    load(db, JOB, [job("late", "2024-01-12 00:00:00", "si2k", 1001, 1, 1)])
    second = setup.run()
    third = setup.run("--full")
    assert second.returncode == third.returncode == 0
    log = setup.log.read_text()
    assert "Summarising cpu records (full, no earlier run recorded in this database)" in log
    assert "Summarised cpu (incremental): 1 site-months, 1 keys" in log
    assert "Summarising cpu records (full)" in log
    assert find(hss(db), Site="SITE-A", Month=1, ServiceLevel="1001.000")["NumberOfJobs"] == 4
    assert not setup.pidfile.exists()
    db.close()


def test_console_script_cloud_type(tmp_path):
    setup = Setup(tmp_path, db_type="CLOUD")
    db = open_backend({"backend": "sqlite", "name": str(setup.database)})
    load(db, CLOUD, CLOUD_VMS)
    result = setup.run()
    assert result.returncode == 0, result.stderr
    check_cloud(cloud_summaries(db))
    db.close()


def test_live_pidfile_refuses_the_run(tmp_path):
    setup = Setup(tmp_path)
    setup.pidfile.parent.mkdir()
    setup.pidfile.write_text(f"{os.getpid()}\n")  # this test process is alive
    result = setup.run()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "already running" in result.stderr and str(os.getpid()) in result.stderr
    assert setup.pidfile.read_text() == f"{os.getpid()}\n"  # not ours to remove


def test_stale_pidfile_is_replaced_and_removed_afterwards(tmp_path):
    setup = Setup(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    setup.pidfile.parent.mkdir()
    setup.pidfile.write_text(f"{dead.pid}\n")
    result = setup.run()
    assert result.returncode == 0, result.stderr
    assert not setup.pidfile.exists()


def test_database_down_exits_1_with_one_line_and_removes_the_pidfile(tmp_path, unused_port):
    setup = Setup(tmp_path, db_section=(
        f"[db]\nbackend = mysql\nhostname = 127.0.0.1\nport = {unused_port}\nname = apel\n"
        "username = apel\npassword = secret\nconnect_timeout = 2\n"))
    result = setup.run()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "summarising failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not setup.pidfile.exists()  # apel#418
    assert "summarising failed" in setup.log.read_text()


@pytest.mark.parametrize("problem, db_section, expected", [
    ("unknown type", "[db]\nbackend = sqlite\nname = {db}\ntype = storage\n",
     "[db] type: 'storage' is not one of"),
    ("no [db]", "[database]\nname = x\n", "[db]: missing section"),
    ("unknown backend", "[db]\nbackend = oracle\n", "unknown database backend 'oracle'"),
])
def test_configuration_errors_exit_1_with_one_line(tmp_path, problem, db_section, expected):
    setup = Setup(tmp_path, db_section=db_section.format(db=tmp_path / "x.db"))
    result = setup.run()
    assert result.returncode == 1, problem
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert not setup.pidfile.exists()


def test_missing_config_file_and_bad_window(tmp_path):
    setup = Setup(tmp_path)
    missing = subprocess.run([SUMMARISER, "-d", str(setup.db_cfg), "-c", str(tmp_path / "nope.cfg")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1 and "config file not found" in missing.stderr
    assert missing.stderr.count("\n") == 1
    setup.cfg.write_text(f"[summariser]\npidfile = {setup.pidfile}\ndelete_stale_summaries = true\n"
                         "stale_summary_window_days = soon\n")
    bad = setup.run()
    assert bad.returncode == 1
    assert "stale_summary_window_days: 'soon' is not an integer; allowed: 0 to 3650 days" in bad.stderr


def test_version():
    result = subprocess.run([SUMMARISER, "-v"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.startswith("APEL ")


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_long_runs_log_progress(tmp_path, caplog):
    db = open_backend({"backend": "sqlite", "name": str(tmp_path / "p.db")})
    load_fixed(db)
    ticks = iter(range(0, 10**6, 40))  # every clock reading is 40 s later
    with caplog.at_level("INFO", logger="apel.summariser"):
        Summariser(db, SummariserSettings(), clock=lambda: float(next(ticks))).run()
    progress = [r.getMessage() for r in caplog.records if "elapsed" in r.getMessage()]
    assert progress[0].startswith("cpu full: 1/4 site-months, ")
    assert progress[-1].startswith("cpu full: 4/4 site-months, ") and "s elapsed" in progress[-1]
    db.close()


def test_the_shipped_summariser_cfg_reads(tmp_path):
    from apel_bin.apelsummariser import read_summariser_settings

    from acctbase.config import ConfigFile

    shipped = Path(__file__).resolve().parent.parent / "conf" / "summariser.cfg"
    db_cfg = tmp_path / "db.cfg"
    db_cfg.write_text("[db]\nbackend = sqlite\nname = x\n")
    settings, pidfile = read_summariser_settings(ConfigFile(str(shipped)), ConfigFile(str(db_cfg)), False)
    assert (settings.kind, settings.stale_window_days) == ("cpu", None)
    assert pidfile == "/var/run/apel/summariser.pid"
    enabled = tmp_path / "summariser.cfg"
    enabled.write_text(shipped.read_text().replace("#delete_stale_summaries", "delete_stale_summaries")
                       .replace("#stale_summary_window_days", "stale_summary_window_days"))
    settings, _ = read_summariser_settings(ConfigFile(str(enabled)), ConfigFile(str(db_cfg)), True)
    assert (settings.stale_window_days, settings.full) == (7, True)

"""Incremental summarisation leaves exactly what a full one leaves.

Two databases receive the same random sequence of loads, reloads (jobs moving between
groups, VMs changing site, month or status, case variants of keys) and summariser runs;
one is always summarised incrementally, the other always with ``--full``. After every
run, HybridSuperSummaries and CloudSummaries must be identical, stale rows included.
Hypothesis drives SQLite (fast, in-process); a fixed sequence of sample data and
reloads checks the same on MariaDB.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apel import samples
from apel.db.backend import load_backend
from apel.db.mysql_backend import apply_schema
from apel.records.model import CLOUD, JOB, NORMALISED_SUMMARY, SUMMARY, ParsedMessage
from apel.services.summariser import Summariser, SummariserSettings

UTC = dt.timezone.utc
PUBLISHER = "/CN=publisher.example.org"
SITES = ("P-1", "p-1 ", "P-2")  # the first two are one site (case, trailing space)
MONTHS = ((2024, 12), (2025, 1))
TYPES = ("HEPSPEC", "hepspec", "si2k", "SI2K", "HEPscore23")
LEVELS = (10.5, 2000.5, 0.0, 12.345)
VOS = ("atlas", "cms")

HSS_ORDER = (
    "SiteID, Month, Year, GlobalUserNameID, VOID, VORoleID, VOGroupID, SubmitHostID,"
    " Infrastructure, ServiceLevelType, ServiceLevel, NodeCount, Processors"
)
HSS_SELECT = (
    f"SELECT {HSS_ORDER}, InfrastructureDescription, EarliestEndTime, LatestEndTime, WallDuration,"  # noqa: S608
    f" CpuDuration, NormalisedWallDuration, NormalisedCpuDuration, NumberOfJobs"
    f" FROM HybridSuperSummaries ORDER BY {HSS_ORDER}"
)
CLOUD_ORDER = (
    "SiteID, CloudComputeServiceID, Month, Year, GlobalUserNameID, VOID, VOGroupID, VORoleID,"
    " Status, ImageId, CpuCount, BenchmarkType, Benchmark"
)
CLOUD_SELECT = (
    f"SELECT {CLOUD_ORDER}, CloudType, EarliestStartTime, LatestStartTime, WallDuration,"  # noqa: S608
    f" CpuDuration, NetworkInbound, NetworkOutbound, Memory, Disk, NumberOfVMs, PublisherDNID"
    f" FROM CloudSummaries ORDER BY {CLOUD_ORDER}"
)


def _base(site: str, vo: str) -> dict:
    return {
        "Site": site, "GlobalUserName": f"/CN={vo} user", "VO": vo, "VOGroup": f"/{vo}",
        "VORole": "Role=NULL", "SubmitHost": "ce.example.org:9619/ce-condor",
    }


def job(jid: int, upper: bool, site: str, month: tuple, level_type: str, level: float, vo: str,
        wall: int) -> dict:
    year, mon = month
    end = dt.datetime(year, mon, 1 + jid, 12, tzinfo=UTC)
    record = _base(site, vo)
    record.update({
        "MachineName": "wn", "Queue": "q", "LocalJobId": f"{'J' if upper else 'j'}{jid}",
        "LocalUserId": "u", "FQAN": f"/{vo}/Role=NULL/Capability=NULL", "WallDuration": wall,
        "CpuDuration": wall // 2, "Processors": 1, "NodeCount": 1,
        "StartTime": end - dt.timedelta(seconds=wall), "EndTime": end,
        "InfrastructureDescription": f"desc-{jid % 2}", "InfrastructureType": "grid",
        "MemoryReal": None, "MemoryVirtual": None, "ServiceLevelType": level_type, "ServiceLevel": level,
    })
    return record


def summary(site: str, month: tuple, level_type: str, level: float, vo: str, wall: int, jobs: int) -> dict:
    year, mon = month
    record = _base(site, vo)
    record.update({
        "Month": mon, "Year": year, "InfrastructureType": "grid", "InfrastructureDescription": "sum",
        "ServiceLevelType": level_type, "ServiceLevel": level, "NodeCount": 1, "Processors": 1,
        "EarliestEndTime": dt.datetime(year, mon, 2, tzinfo=UTC),
        "LatestEndTime": dt.datetime(year, mon, 20, tzinfo=UTC),
        "WallDuration": wall, "CpuDuration": wall, "NumberOfJobs": jobs,
    })
    return record


def normalised(site: str, month: tuple, level_type: str, vo: str, wall: int, jobs: int) -> dict:
    record = summary(site, month, level_type, 0.0, vo, wall, jobs)
    del record["ServiceLevel"], record["InfrastructureType"]
    record.update(Infrastructure="grid", NormalisedWallDuration=wall * 10, NormalisedCpuDuration=wall * 10)
    return record


def vm(number: int, site: str, month: tuple, day: int, wall: int, completed: bool) -> dict:
    year, mon = month
    measured = dt.datetime(year, mon, day, tzinfo=UTC)
    record = {
        "VMUUID": f"vm-{number}", "SiteName": site, "CloudComputeService": "cloud.example.org",
        "MachineName": "m", "LocalUserId": "u", "LocalGroupId": "g", "GlobalUserName": "/CN=cloud user",
        "FQAN": "/fedcloud/Role=NULL/Capability=NULL", "VO": "fedcloud", "VOGroup": "/fedcloud",
        "VORole": "Role=NULL", "Status": "completed" if completed else "started",
        "StartTime": dt.datetime(2024, 11, 1, tzinfo=UTC), "EndTime": measured if completed else None,
        "RecordCreateTime": None if completed else measured, "SuspendDuration": 0,
        "WallDuration": wall, "CpuDuration": wall // 3, "CpuCount": 2.0, "NetworkType": "None",
        "NetworkInbound": wall // 7, "NetworkOutbound": None, "PublicIPCount": 1, "Memory": 4,
        "Disk": 20, "BenchmarkType": "HEPSPEC", "Benchmark": 10.0, "StorageRecordId": "None",
        "ImageId": f"img-{number % 2}", "CloudType": "OpenStack",
    }
    return record


sites, months, vos = st.sampled_from(SITES), st.sampled_from(MONTHS), st.sampled_from(VOS)
job_messages = st.lists(
    st.builds(job, st.integers(0, 4), st.booleans(), sites, months, st.sampled_from(TYPES),
              st.sampled_from(LEVELS), vos, st.integers(0, 5000)),
    min_size=1, max_size=6,
).map(lambda records: (JOB, records))
summary_messages = st.lists(
    st.builds(summary, sites, months, st.sampled_from(TYPES), st.sampled_from(LEVELS), vos,
              st.integers(0, 9000), st.integers(1, 50)),
    min_size=1, max_size=3,
).map(lambda records: (SUMMARY, records))
normalised_messages = st.lists(
    st.builds(normalised, sites, months, st.sampled_from(TYPES), vos, st.integers(0, 9000),
              st.integers(1, 50)),
    min_size=1, max_size=2,
).map(lambda records: (NORMALISED_SUMMARY, records))
cloud_messages = st.lists(
    st.builds(vm, st.integers(0, 3), sites, months, st.integers(1, 28), st.integers(0, 100000),
              st.booleans()),
    min_size=1, max_size=4,
).map(lambda records: (CLOUD, records))
RUN = ("run", [])
operations = st.lists(
    st.one_of(job_messages, job_messages, summary_messages, normalised_messages, cloud_messages,
              st.just(RUN)),
    min_size=1, max_size=12,
)


def tables(db) -> tuple[list, list]:
    return db.query(HSS_SELECT), db.query(CLOUD_SELECT)


def replay(incremental, full, sequence) -> int:
    """Apply ``sequence`` to both databases; compare after every run. Returns the runs."""
    runs = 0
    for record_type, records in [*sequence, RUN]:
        if record_type != "run":
            for db in (incremental, full):
                db.load_message(ParsedMessage(record_type, "test", list(records)), PUBLISHER)
            continue
        runs += 1
        for kind in ("cpu", "cloud"):
            Summariser(incremental, SummariserSettings(kind=kind)).run()
            Summariser(full, SummariserSettings(kind=kind, full=True)).run()
        assert tables(incremental) == tables(full), f"after run {runs}"
    return runs


@pytest.mark.timeout(150)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=operations)
def test_incremental_equals_full_on_sqlite(sequence):
    with tempfile.TemporaryDirectory() as directory:
        dbs = [load_backend("sqlite")({"name": str(Path(directory) / f"{name}.db")}) for name in ("i", "f")]
        for db in dbs:
            db.connect()
        try:
            replay(dbs[0], dbs[1], sequence)
        finally:
            for db in dbs:
                db.close()


def test_incremental_equals_full_on_mariadb(mariadb):
    """A fixed sequence on MariaDB: sample jobs, summaries and VMs, then reloads that move
    jobs between groups and VMs between sites, with runs in between."""
    now = dt.datetime(2025, 1, 20, tzinfo=UTC)
    jobs = list(samples.job_records(1500, seed=21, now=now))
    moved = [dict(r, ServiceLevel=r["ServiceLevel"] + 1, VO="cms") for r in jobs[:200:3]]
    recased = [dict(r, LocalJobId=r["LocalJobId"].upper(), ServiceLevelType=r["ServiceLevelType"].lower())
               for r in jobs[1:300:5]]
    vms = list(samples.cloud_records(200, seed=22, now=now))
    revms = [dict(r, SiteName="IFCA-LCG2", WallDuration=r["WallDuration"] // 2) for r in vms[::4]]
    sequence = [
        (JOB, jobs[:500]), RUN,
        (JOB, jobs[500:]), (SUMMARY, list(samples.summary_records(60, seed=23, now=now))),
        (CLOUD, vms[:120]), RUN,
        (JOB, moved), (JOB, recased), (CLOUD, vms[120:]), RUN,
        (CLOUD, revms), (NORMALISED_SUMMARY, [normalised("CERN-PROD", (2024, 12), "HEPscore23", "atlas",
                                                          100, 3)]),
        (SUMMARY, [summary("UKI-SCOTGRID-GLASGOW", (2025, 1), "HEPSPEC", 12.5, "atlas", 10, 1)]),
    ]
    dbs = []
    for name in ("apel_incremental", "apel_full"):
        args = mariadb.connect_args(mariadb.create_database(name))
        apply_schema(args)
        db = load_backend("mysql")({
            "hostname": args["host"], "port": str(args["port"]), "name": args["database"],
            "username": args["user"], "password": args["password"],
        })
        db.connect()
        dbs.append(db)
    try:
        assert replay(dbs[0], dbs[1], sequence) == 4
        hss, cloud = tables(dbs[0])
        assert len(hss) > 1000 and len(cloud) > 150
    finally:
        for db in dbs:
            db.close()

"""Incremental summarisation leaves exactly what a full one leaves.

Two databases receive the same random sequence of loads, reloads (jobs moving between
groups, VMs changing site, month or status, case variants of keys) and summariser runs;
one is summarised incrementally (now and then with ``--full``), the other always with
``--full``. After every run, HybridSuperSummaries and CloudSummaries must be identical,
stale rows included. Hypothesis drives SQLite and MariaDB; on MariaDB, job messages that
replace nothing reach the summariser as deltas (``apel.db.pending``), so the property
covers adding deltas next to recomputing, stale keys and summaries taking precedence.
Further MariaDB tests: the loader's choice between delta and recompute entries, a delta
run that never reads the touched keys' other jobs, and loads committing during a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apel import samples
from apel.db import pending
from apel.db.backend import load_backend
from apel.db.mysql_backend import MySQLBackend, apply_schema
from apel.db.mysql_dialect import MySQLDialect
from apel.records.model import CLOUD, JOB, NORMALISED_SUMMARY, SUMMARY, ParsedMessage
from apel.services import summary_sql
from apel.services.summariser import RunReport, Summariser, SummariserSettings

UTC = dt.timezone.utc
PUBLISHER = "/CN=publisher.example.org"
SITES = ("P-1", "p-1 ", "P-2")  # the first two are one site (case, trailing space)
MONTHS = ((2024, 12), (2025, 1))
TYPES = ("HEPSPEC", "hepspec", "si2k", "SI2K", "HEPscore23")
LEVELS = (10.5, 2000.5, 0.0, 12.345)
VOS = ("atlas", "cms")
INFRASTRUCTURES = ("grid", "Grid", "grid ")  # one key under the collation
DESCRIPTIONS = ("desc-0", "Desc-0", "desc-1")

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
        wall: int, infrastructure: str = "grid", description: str = "") -> dict:
    year, mon = month
    end = dt.datetime(year, mon, 1 + jid % 28, 12, tzinfo=UTC)
    record = _base(site, vo)
    record.update({
        "MachineName": "wn", "Queue": "q", "LocalJobId": f"{'J' if upper else 'j'}{jid}",
        "LocalUserId": "u", "FQAN": f"/{vo}/Role=NULL/Capability=NULL", "WallDuration": wall,
        "CpuDuration": wall // 2, "Processors": 1, "NodeCount": 1,
        "StartTime": end - dt.timedelta(seconds=wall), "EndTime": end,
        "InfrastructureDescription": description or f"desc-{jid % 2}", "InfrastructureType": infrastructure,
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
# Most records fall on four HSS keys (so that new jobs meet stored groups, summaries meet
# job groups, and jobs moving between them leave stale rows), in several spellings each.
COMMON_KEYS = (
    (("P-1", "p-1 "), MONTHS[0], ("HEPSPEC", "hepspec"), 10.5, "atlas"),
    (("P-1", "p-1 "), MONTHS[0], ("si2k", "SI2K"), 2000.5, "atlas"),
    (("P-2",), MONTHS[1], ("HEPscore23",), 12.345, "cms"),
    (("P-1",), MONTHS[1], ("HEPSPEC", "hepspec"), 0.0, "cms"),
)


@st.composite
def common_key(draw) -> tuple:
    site_spellings, month, type_spellings, level, vo = draw(st.sampled_from(COMMON_KEYS))
    return draw(st.sampled_from(site_spellings)), month, draw(st.sampled_from(type_spellings)), level, vo


# (site, month, ServiceLevelType, ServiceLevel, VO)
keys = st.one_of(common_key(), common_key(), st.tuples(sites, months, st.sampled_from(TYPES),
                                                       st.sampled_from(LEVELS), vos))


def job_at(jid: int, upper: bool, key: tuple, wall: int, infrastructure: str, description: str) -> dict:
    site, month, level_type, level, vo = key
    return job(jid, upper, site, month, level_type, level, vo, wall, infrastructure, description)


# job ids: a few that recur (reloads: jobs moving between keys, duplicates within a
# message) and many that do not (new jobs: deltas on MariaDB)
job_ids = st.one_of(st.integers(0, 3), st.integers(4, 10**6), st.integers(4, 10**6))
job_messages = st.lists(
    st.builds(job_at, job_ids, st.booleans(), keys, st.integers(0, 5000), st.sampled_from(INFRASTRUCTURES),
              st.sampled_from(DESCRIPTIONS)),
    min_size=1, max_size=6,
).map(lambda records: (JOB, records))
summary_messages = st.lists(
    st.builds(lambda key, wall, jobs: summary(*key, wall, jobs), keys, st.integers(0, 9000),
              st.integers(1, 50)),
    min_size=1, max_size=3,
).map(lambda records: (SUMMARY, records))
normalised_messages = st.lists(
    st.builds(lambda key, wall, jobs: normalised(key[0], key[1], key[2], key[4], wall, jobs), keys,
              st.integers(0, 9000), st.integers(1, 50)),
    min_size=1, max_size=2,
).map(lambda records: (NORMALISED_SUMMARY, records))
cloud_messages = st.lists(
    st.builds(vm, st.integers(0, 3), sites, months, st.integers(1, 28), st.integers(0, 100000),
              st.booleans()),
    min_size=1, max_size=4,
).map(lambda records: (CLOUD, records))
RUN = ("run", [])
FULL_RUN = ("full", [])  # the incremental database is summarised with --full this time
operations = st.lists(
    st.one_of(job_messages, job_messages, job_messages, summary_messages, normalised_messages,
              cloud_messages, st.just(RUN), st.just(RUN), st.just(RUN), st.just(FULL_RUN)),
    min_size=2, max_size=16,
)
# What every sequence starts with: one job of each common key, summarised (a full run).
BASELINE = [(JOB, [job_at(jid, False, (sites_[0], month, types_[0], level, vo), 100 + jid, "grid", "")
                   for jid, (sites_, month, types_, level, vo) in enumerate(COMMON_KEYS)]), RUN]


def tables(db) -> tuple[list, list]:
    return db.query(HSS_SELECT), db.query(CLOUD_SELECT)


def replay(incremental, full, sequence) -> list[RunReport]:
    """Apply ``sequence`` to both databases; compare after every run. Returns the cpu
    reports of the incremental database."""
    reports = []
    for record_type, records in [*sequence, RUN]:
        if record_type not in ("run", "full"):
            for db in (incremental, full):
                db.load_message(ParsedMessage(record_type, "test", list(records)), PUBLISHER)
            continue
        for kind in ("cpu", "cloud"):
            report = Summariser(incremental, SummariserSettings(kind=kind, full=record_type == "full")).run()
            if kind == "cpu":
                reports.append(report)
            Summariser(full, SummariserSettings(kind=kind, full=True)).run()
        assert tables(incremental) == tables(full), f"after run {len(reports)}"
    return reports


# One of each case the delta path must get right, in one sequence (an explicit example
# of the MariaDB property, and the sequence of test_each_delta_case_on_mariadb). Keys:
# A = (P-1, Dec, HEPSPEC 10.5, atlas), B = (P-1, Dec, si2k 1001, atlas),
# C = (P-2, Jan, HEPscore23 12.345, cms).
DEC, JAN = MONTHS


def _a(jid: int, wall: int, **extra) -> dict:
    return job(jid, False, "P-1", DEC, "HEPSPEC", 10.5, "atlas", wall, **extra)


def _b(jid: int, wall: int, level: float = 1001, level_type: str = "si2k", **extra) -> dict:
    return job(jid, False, "P-1", DEC, level_type, level, "atlas", wall, **extra)


def _c(jid: int, wall: int) -> dict:
    return job(jid, False, "P-2", JAN, "HEPscore23", 12.345, "cms", wall)


SCENARIO = [
    (JOB, [_a(0, 100), _a(1, 101), _b(2, 125), _b(3, 7)]), RUN,  # the first run is a full one
    # new jobs at existing keys, in other spellings (site, type, infrastructure, description),
    # and a new key: deltas only
    (JOB, [job(4, False, "p-1 ", DEC, "hepspec", 10.5, "atlas", 201, "Grid", "Desc-0"),
           _b(5, 250, level_type="SI2K", infrastructure="grid "), _c(6, 999)]), RUN,
    # every job of B moves away (another ServiceLevel): B keeps a stale row
    (JOB, [_b(2, 125, level=2000.5), _b(3, 7, level=2000.5), _b(5, 250, level=2000.5)]), RUN,
    (JOB, [_b(7, 40)]), RUN,  # a new job at the stale key B: recomputed, not added
    (JOB, [_b(7, 40, level=12.345)]), FULL_RUN,  # B stale again, recorded by a full run
    (JOB, [_b(8, 41)]), RUN,  # ... and recomputed again
    (JOB, [_a(9, 3)]), (SUMMARY, [summary("P-1", DEC, "HEPSPEC", 10.5, "atlas", 9000, 30)]),
    RUN,  # a summary arrives at a key with a job delta: the summary wins
    (JOB, [_a(10, 5)]), RUN,  # a new job at the summary's key: recomputed, not added
    (JOB, [_c(11, 13), _c(11, 13)]), RUN,  # a job twice in a message (REPLACE counts it once)
    (JOB, [_c(12, 1), _c(12, 2)]), RUN,  # twice, with other values
    (JOB, [_c(13, 1)]), RUN,  # a delta again
    (JOB, [_c(14, 5)]), (JOB, [_c(14, 5)]), RUN,  # the same message twice, usually in one second
]
# (keys, keys from deltas) of the incremental runs of SCENARIO (the first and the fifth
# are full runs), and the run replay adds at the end
SCENARIO_KEYS = [(0, 0), (3, 3), (2, 0), (1, 0), (0, 0), (1, 0), (1, 0), (1, 0), (1, 0), (1, 0),
                 (1, 1), (1, 0), (0, 0)]


@pytest.mark.timeout(150)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=operations)
def test_incremental_equals_full_on_sqlite(sequence):
    with tempfile.TemporaryDirectory() as directory:
        dbs = [load_backend("sqlite")({"name": str(Path(directory) / f"{name}.db")}) for name in ("i", "f")]
        for db in dbs:
            db.connect()
        try:
            replay(dbs[0], dbs[1], BASELINE + sequence)
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
    dbs = [mysql_backend(mariadb, name) for name in ("apel_incremental", "apel_full")]
    try:
        reports = replay(dbs[0], dbs[1], sequence)
        assert len(reports) == 4
        assert reports[1].delta_keys > 500  # the second load's jobs were new: added as deltas
        hss, cloud = tables(dbs[0])
        assert len(hss) > 1000 and len(cloud) > 150
    finally:
        for db in dbs:
            db.close()


# -- MariaDB: deltas ------------------------------------------------------------------------


def mysql_backend(mariadb, name: str, fresh: bool = True):
    """A connected MySQL backend on database ``name`` (created empty, with the schema)."""
    args = mariadb.connect_args(mariadb.create_database(name) if fresh else name)
    if fresh:
        apply_schema(args)
    db = load_backend("mysql")({
        "hostname": args["host"], "port": str(args["port"]), "name": args["database"],
        "username": args["user"], "password": args["password"],
    })
    db.connect()
    return db


# Everything but the lookup tables, whose ids the backends cache (and which both databases
# fill in the same order, so ids stay comparable between them).
DATA_TABLES = (
    "JobRecords", "Summaries", "NormalisedSummaries", "HybridSuperSummaries", "CloudRecords",
    "CloudSummaries", "PendingSummaryKeys", "PendingCloudMonths", "StaleSummaryKeys", "LastUpdated",
)


@pytest.fixture(scope="module")
def mariadb_pair(mariadb):
    dbs = [mysql_backend(mariadb, name) for name in ("apel_property_i", "apel_property_f")]
    yield dbs
    for db in dbs:
        db.close()


@pytest.mark.timeout(600)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=operations)
@example(sequence=SCENARIO)
def test_incremental_equals_full_on_mariadb_property(mariadb_pair, sequence):
    for db in mariadb_pair:
        for table in DATA_TABLES:
            db.query(f"DELETE FROM {table}")  # noqa: S608 - fixed names
    if sequence is SCENARIO:
        assert [(r.keys, r.delta_keys) for r in replay(*mariadb_pair, sequence)] == SCENARIO_KEYS
    else:
        replay(*mariadb_pair, BASELINE + sequence)


def test_each_delta_case_on_mariadb(mariadb):
    """SCENARIO step by step: which keys were added from deltas and which recomputed,
    and the same tables as --full after every run."""
    dbs = [mysql_backend(mariadb, name) for name in ("apel_scenario_i", "apel_scenario_f")]
    try:
        reports = replay(*dbs, SCENARIO)
        assert [(r.keys, r.delta_keys) for r in reports] == SCENARIO_KEYS
        assert [r.mode for r in reports].count("full") == 2
        assert dbs[0].query("SELECT COUNT(*) FROM PendingSummaryKeys") == [(0,)]
        # B was stale twice, and has a job again: recorded, then no longer
        assert dbs[0].query("SELECT COUNT(*) FROM StaleSummaryKeys") == [(0,)]
    finally:
        for db in dbs:
            db.close()


def test_a_site_month_s_entries_are_never_split_between_transactions(mariadb, monkeypatch):
    """With one pending entry per transaction, a transaction still takes all entries of
    its site-month: the recomputation of A (a job moved away) counts the job added at A
    later, so it must take A's delta entry along, not leave it for another transaction."""
    from apel.services import summariser

    monkeypatch.setattr(summariser, "KEYS_PER_TRANSACTION", 1)
    dbs = [mysql_backend(mariadb, name) for name in ("apel_chunks_i", "apel_chunks_f")]
    try:
        sequence = [(JOB, [_a(0, 100), _a(1, 101), _c(2, 10)]), RUN,
                    (JOB, [_b(1, 101)]), (JOB, [_a(3, 50)]), (JOB, [_c(4, 20)])]
        reports = replay(*dbs, sequence)
        # B and A (recomputed), then C (added): 4 entries in two transactions
        assert (reports[1].keys, reports[1].delta_keys, reports[1].pending_cleared) == (3, 1, 4)
        assert hss_row(dbs[0], "10.500")["NumberOfJobs"] == 2
    finally:
        for db in dbs:
            db.close()


def pending_entries(db) -> list[tuple]:
    """(ServiceLevel, delta columns) of every pending entry, sorted."""
    found = db.query(
        f"SELECT ServiceLevel, {', '.join(pending.DELTA_COLUMNS)} FROM PendingSummaryKeys"  # noqa: S608
    )
    return sorted((str(Decimal(str(row[0])).quantize(Decimal("0.001"))), *row[1:]) for row in found)


@pytest.mark.parametrize("backend_name", ["mysql", "sqlite"])
def test_the_loader_records_deltas_only_for_jobs_that_replaced_nothing(backend_name, mariadb, tmp_path):
    if backend_name == "mysql":
        db = mysql_backend(mariadb, "apel_entries")
        # one statement time for the whole session: a reload writes identical rows
        db.query("SET timestamp = 1750000000")
    else:
        db = load_backend("sqlite")({"name": str(tmp_path / "entries.db")})
        db.connect()

    def load(records: list) -> list[tuple]:
        db.query("DELETE FROM PendingSummaryKeys")
        db.load_message(ParsedMessage(JOB, "test", records), PUBLISHER)
        return pending_entries(db)

    def recompute(*levels: str) -> list[tuple]:
        return sorted((level, None, None, None, None, None, None) for level in levels)

    try:
        first = [_a(0, 100, description="desc-1"), _a(1, 101, description="Desc-0"), _b(2, 125)]
        found = load(first)
        if backend_name == "sqlite":  # always recompute entries
            assert found == recompute("10.500", "1001.000")
            return
        end = dt.datetime(2024, 12, 1, 12)
        assert found == [
            ("10.500", "Desc-0", end, end + dt.timedelta(days=1), 201, 100, 2),
            ("1001.000", "desc-0", end + dt.timedelta(days=2), end + dt.timedelta(days=2), 125, 62, 1),
        ]
        # the same jobs again, identical to the stored rows (REPLACE counts each once)
        assert load(first) == recompute("10.500", "1001.000")
        # a job twice in one message, identical: also counted once by REPLACE
        assert load([_a(5, 7), _a(5, 7)]) == recompute("10.500")
        assert load([_a(6, 7), _a(6, 8)]) == recompute("10.500")  # counted twice
        assert load([_a(7, 1)]) == [("10.500", "desc-1", end + dt.timedelta(days=7),
                                     end + dt.timedelta(days=7), 1, 0, 1)]
        # a job moving to another key: both keys recomputed
        assert load([_b(7, 1)]) == recompute("10.500", "1001.000")
        # sums beyond BIGINT UNSIGNED: recompute entries, the load goes through
        huge = [dict(_b(jid, 0), WallDuration=2**63 - 1) for jid in (20, 21, 22)]  # each storable
        assert load(huge) == recompute("1001.000")
    finally:
        db.close()


def hss_row(db, level: str) -> dict:
    """The HSS row (at most one in these tests) with this ServiceLevel, by column name."""
    names = ("Infrastructure", "InfrastructureDescription", "ServiceLevelType", "EarliestEndTime",
             "LatestEndTime", "WallDuration", "CpuDuration", "NormalisedWallDuration",
             "NormalisedCpuDuration", "NumberOfJobs")
    (row,) = db.query(f"SELECT {', '.join(names)} FROM HybridSuperSummaries"  # noqa: S608
                      " WHERE ServiceLevel = %s", [level])
    return dict(zip(names, row))


def test_a_delta_run_reads_no_stored_job_of_the_keys_it_adds_to(mariadb):
    """The stored jobs are changed behind the summariser's back (no bookkeeping): a run that
    adds deltas does not see it, a recomputation does. The normalised durations come from
    the new sums (ON DUPLICATE KEY UPDATE assigns left to right on MariaDB)."""
    db = mysql_backend(mariadb, "apel_blind")
    try:
        db.load_message(ParsedMessage(JOB, "test", [_a(0, 100), _b(1, 125)]), PUBLISHER)
        Summariser(db, SummariserSettings()).run()
        db.query("UPDATE JobRecords SET WallDuration = WallDuration + 1000000")
        new = [job(2, False, "p-1 ", DEC, "hepspec", 10.5, "atlas", 101, "Grid", "Desc-0"),
               _b(3, 250, level_type="SI2K", infrastructure="grid ")]
        db.load_message(ParsedMessage(JOB, "test", new), PUBLISHER)
        report = Summariser(db, SummariserSettings()).run()
        assert (report.keys, report.delta_keys) == (2, 2)
        hepspec = hss_row(db, "10.500")
        # 201 × 10.5 = 2110.5 → 2111; from the old sum it would be 100 × 10.5 = 1050
        assert (hepspec["WallDuration"], hepspec["NormalisedWallDuration"], hepspec["NumberOfJobs"]) == (
            201, 2111, 2)
        # CpuDuration 50 + 50 = 100 → 1050
        assert (hepspec["CpuDuration"], hepspec["NormalisedCpuDuration"]) == (100, 1050)
        # the binary-smallest spellings: "Grid" < "grid", "Desc-0" < "desc-0"
        assert (hepspec["Infrastructure"], hepspec["InfrastructureDescription"]) == ("Grid", "Desc-0")
        assert (hepspec["EarliestEndTime"], hepspec["LatestEndTime"]) == (
            dt.datetime(2024, 12, 1, 12), dt.datetime(2024, 12, 3, 12))
        si2k = hss_row(db, "1001.000")
        # 375 × 1001 / 250 = 1501.5 → 1502 (si2k in any letter case; from 125 alone: 501)
        assert (si2k["ServiceLevelType"], si2k["Infrastructure"]) == ("SI2K", "grid")
        assert (si2k["WallDuration"], si2k["NormalisedWallDuration"]) == (375, 1502)
        Summariser(db, SummariserSettings(full=True)).run()
        assert hss_row(db, "10.500")["WallDuration"] == 1000201  # a recomputation reads the change
    finally:
        db.close()


# -- MariaDB: loads committing while the summariser runs ---------------------------------------


class _Hooked:
    """A transaction that calls ``action`` once, just before ``statement`` runs."""

    def __init__(self, tx, statement: str, action, fired: list) -> None:
        self._tx, self._statement, self._action, self._fired = tx, statement, action, fired

    def execute(self, sql: str, params=()) -> int:
        if sql == self._statement and not self._fired:
            self._fired.append(True)
            self._action()
        return self._tx.execute(sql, params)

    def executemany(self, sql: str, rows) -> int:
        return self._tx.executemany(sql, rows)

    def query(self, sql: str, params=()) -> list:
        return self._tx.query(sql, params)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("isolation", "gate"), [("REPEATABLE READ", True), ("READ COMMITTED", True),
                                                 ("READ COMMITTED", False)],
                         ids=["repeatable-read", "read-committed", "read-committed-no-gate"])
@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_a_load_committing_during_a_run_is_counted_once(mariadb, monkeypatch, mode, isolation, gate):
    """Another loader commits new jobs at a key the run is recomputing: incremental, after
    the run read its pending entries and before it recomputes; full, after the run
    recomputed the site-month and before it deletes the site-month's entries. The gate
    holds the load back until the run's transaction has committed, so its jobs are added
    by the next run, whatever the isolation level. Without the gate (the check that this
    test can fail) and in READ COMMITTED, where the summariser's reads take no locks that
    would hold the load back too, the load commits in between: the incremental run counts
    its jobs in the recomputation and leaves its delta entry for the next run, which adds
    them again; the full run deletes its entry with the others, so they are never counted."""
    name = f"apel_race_{mode}_{isolation.split()[0].lower()}_{gate}"
    db = mysql_backend(mariadb, name)
    other = mysql_backend(mariadb, name, fresh=False)
    db.query(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
    if not gate:
        monkeypatch.setattr(MySQLDialect, "gate_exclusive", "SELECT 1")
    try:
        db.load_message(ParsedMessage(JOB, "test", [_a(0, 100), _a(1, 101), _b(2, 125)]), PUBLISHER)
        Summariser(db, SummariserSettings()).run()
        # job 1 moves from A to B: both keys are recomputed by the next incremental run
        db.load_message(ParsedMessage(JOB, "test", [_b(1, 101)]), PUBLISHER)
        statements = summary_sql.cpu_statements(MySQLBackend.dialect)
        hooked = statements.delete_pending_site_month if mode == "full" else statements.jobs_keys
        late = threading.Thread(target=other.load_message,
                                args=(ParsedMessage(JOB, "test", [_b(3, 1000), _b(4, 2000)]), PUBLISHER))
        finished: list[bool] = []

        def load_meanwhile() -> None:
            late.start()
            late.join(timeout=3)
            finished.append(not late.is_alive())

        original = db.transaction
        fired: list = []

        @contextlib.contextmanager
        def transaction():
            with original() as tx:
                yield _Hooked(tx, hooked, load_meanwhile, fired)

        monkeypatch.setattr(db, "transaction", transaction)
        Summariser(db, SummariserSettings(full=mode == "full")).run()
        monkeypatch.setattr(db, "transaction", original)
        late.join(timeout=60)
        assert fired and not late.is_alive()
        assert finished == [not gate]  # the gate kept the load waiting
        Summariser(db, SummariserSettings()).run()
        incremental = tables(db)
        Summariser(db, SummariserSettings(full=True)).run()
        assert (incremental == tables(db)) is gate
        assert hss_row(db, "1001.000")["NumberOfJobs"] == 4
    finally:
        other.close()
        db.close()

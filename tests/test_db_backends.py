"""Both storage backends against real databases (MariaDB and SQLite), record type by type.

Every test runs twice through the ``backend`` fixture: once on a fresh MariaDB database
(strict sql_mode server-wide) and once on a fresh SQLite file. Backends are found
through the ``apel.backends`` entry points, as the loader finds them. Rows are checked
through the views, i.e. as the unloader will read them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import threading
import time
from decimal import Decimal

import pymysql
import pytest

from apel.db import tables
from apel.db.backend import DatabaseUnavailable, StorageError, available_backends, load_backend
from apel.db.mysql_backend import apply_schema
from apel.records.model import ParsedMessage

UTC = dt.timezone.utc
PUBLISHER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=publisher.example.org"


def settings_for(kind: str, request, tmp_path) -> dict:
    if kind.startswith("mysql"):
        args = request.getfixturevalue("mysql_database")
        apply_schema(args)
        return {
            "backend": "mysql", "hostname": args["host"], "port": str(args["port"]),
            "name": args["database"], "username": args["user"], "password": args["password"],
            # "mysql-values": the multi-row REPLACE path used when LOAD DATA LOCAL is refused
            "local_infile": "no" if kind == "mysql-values" else "yes",
        }
    return {"backend": "sqlite", "name": str(tmp_path / "db" / "apel.sqlite3"), "timeout": "0.5"}


def _connected(kind: str, request, tmp_path):
    settings = settings_for(kind, request, tmp_path)
    db = load_backend(settings["backend"])(settings)
    db.connect()
    return db


@pytest.fixture(params=[pytest.param("mysql", marks=pytest.mark.services), "sqlite"])
def backend(request, tmp_path):
    db = _connected(request.param, request, tmp_path)
    yield db
    db.close()


@pytest.fixture(params=[
    pytest.param("mysql", marks=pytest.mark.services),
    pytest.param("mysql-values", marks=pytest.mark.services),
    "sqlite",
])
def writer(request, tmp_path):
    """Like ``backend``, plus MySQL without LOAD DATA LOCAL: for the tests of how values
    are written (both MySQL write paths must store exactly the same)."""
    db = _connected(request.param, request, tmp_path)
    yield db
    db.close()


def job(**overrides) -> dict:
    record = {
        "Site": "RAL-LCG2", "SubmitHost": "ce01.example.org:8443/cream-pbs-grid",
        "MachineName": "wn001.example.org", "Queue": "grid", "LocalJobId": "12345.batch",
        "LocalUserId": "atlas001", "GlobalUserName": "/C=UK/O=eScience/CN=Some User",
        "FQAN": "/atlas/Role=production/Capability=NULL", "VO": "atlas", "VOGroup": "/atlas",
        "VORole": "Role=production", "WallDuration": 3600, "CpuDuration": 3000,
        "Processors": 8, "NodeCount": 1,
        "StartTime": dt.datetime(2024, 1, 31, 22, 0, tzinfo=UTC),
        "EndTime": dt.datetime(2024, 1, 31, 23, 30, tzinfo=UTC),
        "InfrastructureDescription": "APEL-CREAM-PBS", "InfrastructureType": "grid",
        "MemoryReal": 1000, "MemoryVirtual": 2000, "ServiceLevelType": "HEPSPEC",
        "ServiceLevel": 10.5,
    }
    record.update(overrides)
    return record


def message(record_type: str, records: list, group_attributes: list = ()) -> ParsedMessage:
    return ParsedMessage(record_type, "test", list(records), list(group_attributes))


def view(db, name: str, order: str = "") -> list[dict]:
    cols_rows = db.query(f"SELECT * FROM {name} {order}")  # noqa: S608
    names = [c[0] for c in _description(db, name)]
    return [dict(zip(names, row)) for row in cols_rows]


def _description(db, name: str):
    # column names through the DB-API cursor of either backend
    if db.name == "mysql":
        conn = db._connection()
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {name} LIMIT 0")  # noqa: S608
            return cur.description
    cur = db._connection().execute(f"SELECT * FROM {name} LIMIT 0")  # noqa: S608
    return cur.description


def count(db, table: str) -> int:
    return db.query(f"SELECT COUNT(*) FROM {table}")[0][0]  # noqa: S608


# -- discovery and schema ----------------------------------------------------------------


def test_builtin_backends_are_registered_as_entry_points():
    found = available_backends()
    assert {"mysql", "sqlite"} <= set(found)
    assert found["mysql"].value == "apel.db.mysql_backend:MySQLBackend"
    assert load_backend("sqlite").name == "sqlite"
    with pytest.raises(KeyError, match="known: .*mysql.*sqlite"):
        load_backend("oracle")


def test_schema_loads_under_strict_modes_and_every_view_answers(backend):
    if backend.name == "mysql":
        assert "ONLY_FULL_GROUP_BY" in backend.query("SELECT @@SESSION.sql_mode")[0][0]
        assert "NO_ZERO_DATE" in backend.query("SELECT @@GLOBAL.sql_mode")[0][0]
        backend.create_schema()  # applying it again is harmless
    for name in tables.VIEWS:
        assert view(backend, name) == []


# -- job records ------------------------------------------------------------------------


def test_job_record_round_trips_through_the_view(writer):
    assert writer.load_message(message("job", [job()]), PUBLISHER) == 1
    (row,) = view(writer, "VJobRecords")
    assert isinstance(row.pop("UpdateTime"), dt.datetime)
    expected = job()
    expected["StartTime"] = dt.datetime(2024, 1, 31, 22, 0)
    expected["EndTime"] = dt.datetime(2024, 1, 31, 23, 30)
    expected["ServiceLevel"] = Decimal("10.500")
    assert row == expected
    stored = writer.query("SELECT EndYear, EndMonth FROM JobRecords")
    assert stored == [(2024, 1)]
    dn = writer.query("SELECT d.name FROM JobRecords j JOIN DNs d ON d.id = j.PublisherDNID")
    assert dn == [(PUBLISHER,)]


def test_job_end_month_is_taken_in_utc(backend):
    plus_two = dt.timezone(dt.timedelta(hours=2))
    # 2024-02-01 01:30 at +02:00 is 2024-01-31 23:30 UTC: January
    end = dt.datetime(2024, 2, 1, 1, 30, tzinfo=plus_two)
    backend.load_message(message("job", [job(EndTime=end, StartTime=end)]), PUBLISHER)
    assert backend.query("SELECT EndYear, EndMonth, EndTime FROM JobRecords") == [
        (2024, 1, dt.datetime(2024, 1, 31, 23, 30))
    ]


def test_null_strings_are_stored_as_None_and_null_counts_as_zero(writer):
    record = job(SubmitHost="None", MachineName="None", Queue="None", GlobalUserName="None",
                 FQAN="None", VOGroup="None", VORole="None", InfrastructureDescription="None",
                 Processors=None, NodeCount=None, MemoryReal=None, MemoryVirtual=None)
    writer.load_message(message("job", [record]), PUBLISHER)
    (row,) = view(writer, "VJobRecords")
    assert row["SubmitHost"] == row["Queue"] == row["VOGroup"] == "None"
    assert (row["Processors"], row["NodeCount"]) == (0, 0)
    assert row["MemoryReal"] is None and row["MemoryVirtual"] is None
    assert writer.query("SELECT COUNT(*) FROM SubmitHosts WHERE name = 'None'") == [(1,)]


def test_durations_above_2_31_are_stored_exactly(writer):
    big = 2**40 + 7
    writer.load_message(message("job", [job(WallDuration=big, CpuDuration=2**31, MemoryReal=2**62)]),
                         PUBLISHER)
    assert writer.query("SELECT WallDuration, CpuDuration, MemoryReal FROM VJobRecords") == [
        (big, 2**31, 2**62)
    ]


def test_service_level_is_rounded_half_away_from_zero_to_3_decimals(backend):
    records = [job(LocalJobId="a", ServiceLevel=2.0005), job(LocalJobId="b", ServiceLevel=10.12345),
               job(LocalJobId="c", ServiceLevel=9999999.999)]
    backend.load_message(message("job", records), PUBLISHER)
    got = backend.query("SELECT LocalJobId, ServiceLevel FROM VJobRecords ORDER BY LocalJobId")
    assert got == [("a", Decimal("2.001")), ("b", Decimal("10.123")), ("c", Decimal("9999999.999"))]


def test_duplicate_jobs_replace_case_and_trailing_space_insensitively(writer):
    writer.load_message(message("job", [job(LocalJobId="abc", WallDuration=1)]), PUBLISHER)
    writer.load_message(message("job", [job(LocalJobId="ABC ", WallDuration=2)]), PUBLISHER)
    assert writer.query("SELECT LocalJobId, WallDuration FROM JobRecords") == [("ABC ", 2)]
    # another EndTime or another site is another job
    writer.load_message(message("job", [job(LocalJobId="abc", EndTime=job()["EndTime"]
                                             + dt.timedelta(seconds=1))]), PUBLISHER)
    writer.load_message(message("job", [job(LocalJobId="abc", Site="OTHER")]), PUBLISHER)
    assert count(writer, "JobRecords") == 3


def test_pending_keys_once_per_message_plus_the_keys_replaced_jobs_leave(writer):
    """The summariser's bookkeeping: each distinct HSS key of a message once; a reload
    adds the old key of a job only where the job moved to another group."""
    def keys() -> list[tuple]:
        found = writer.query("SELECT ServiceLevelType, ServiceLevel, NodeCount FROM PendingSummaryKeys")
        return sorted((t, float(level), nodes) for t, level, nodes in found)

    jobs = [job(LocalJobId=f"j{n}") for n in range(5)] + [job(LocalJobId="k", ServiceLevel=12)]
    writer.load_message(message("job", jobs), PUBLISHER)
    assert keys() == [("HEPSPEC", 10.5, 1), ("HEPSPEC", 12.0, 1)]
    writer.query("DELETE FROM PendingSummaryKeys")
    writer.load_message(message("job", jobs), PUBLISHER)  # the same jobs again
    assert keys() == [("HEPSPEC", 10.5, 1), ("HEPSPEC", 12.0, 1)]
    writer.query("DELETE FROM PendingSummaryKeys")
    moved = [job(LocalJobId="J0 ", NodeCount=2), job(LocalJobId="new", NodeCount=3)]
    writer.load_message(message("job", moved), PUBLISHER)
    assert keys() == [("HEPSPEC", 10.5, 1), ("HEPSPEC", 10.5, 2), ("HEPSPEC", 10.5, 3)]
    writer.query("DELETE FROM PendingSummaryKeys")
    # MySQL now reads the stored keys first (the last message replaced jobs)
    back = [job(LocalJobId="j0"), job(LocalJobId="new", NodeCount=3, WallDuration=1)]
    writer.load_message(message("job", back), PUBLISHER)
    assert keys() == [("HEPSPEC", 10.5, 1), ("HEPSPEC", 10.5, 2), ("HEPSPEC", 10.5, 3)]
    assert count(writer, "JobRecords") == 7
    assert writer.query("SELECT NodeCount, WallDuration FROM JobRecords WHERE LocalJobId IN ('j0', 'new')"
                        " ORDER BY NodeCount") == [(1, 3600), (3, 1)]


def test_every_key_a_replaced_job_leaves_is_recorded_in_large_messages(backend):
    """More replaced jobs than one locking read covers, each with its own key and long
    text in the key (MySQL reads the stored keys as one text per 1,000 jobs)."""
    level_type = "HEPscore23-" + "x" * 39  # 50 characters, the column's maximum
    jobs = [job(LocalJobId=f"big{n}", ServiceLevelType=level_type, ServiceLevel=n / 1000,
                Site=f"SITE-{n % 3}") for n in range(1500)]
    backend.load_message(message("job", jobs), PUBLISHER)
    backend.query("DELETE FROM PendingSummaryKeys")
    moved = [{**record, "NodeCount": 2} for record in jobs]
    backend.load_message(message("job", moved), PUBLISHER)
    found = backend.query("SELECT NodeCount, COUNT(*), COUNT(DISTINCT ServiceLevel), MIN(ServiceLevelType)"
                          " FROM PendingSummaryKeys GROUP BY NodeCount ORDER BY NodeCount")
    assert found == [(1, 1500, 1500, level_type), (2, 1500, 1500, level_type)]
    if backend.name == "mysql":
        from apel.db import pending

        (limit,), = backend.query("SELECT @@SESSION.group_concat_max_len")
        assert limit >= pending.IDS_PER_READ * 1000


def test_duplicate_within_one_message_the_later_record_wins(writer):
    records = [job(WallDuration=1), job(WallDuration=2), job(LocalJobId="12345.BATCH", WallDuration=3)]
    assert writer.load_message(message("job", records), PUBLISHER) == 3
    assert writer.query("SELECT LocalJobId, WallDuration FROM JobRecords") == [("12345.BATCH", 3)]


def test_lookups_keep_the_first_spelling(backend):
    backend.load_message(message("job", [job(Site="RAL-LCG2", LocalJobId="1")]), PUBLISHER)
    backend.load_message(message("job", [job(Site="ral-lcg2 ", LocalJobId="2"),
                                          job(Site="Ral-Lcg2", LocalJobId="3")]), PUBLISHER)
    assert backend.query("SELECT id, name FROM Sites") == [(1, "RAL-LCG2")]
    assert backend.query("SELECT DISTINCT Site FROM VJobRecords") == [("RAL-LCG2",)]
    # first spelling within one message, too
    backend.load_message(message("job", [job(VO="NewVo", LocalJobId="4"),
                                          job(VO="NEWVO ", LocalJobId="5")]), PUBLISHER)
    assert backend.query("SELECT name FROM VOs WHERE name = 'newvo'") == [("NewVo",)]


def test_a_refused_record_rejects_the_whole_message(backend):
    records = [job(LocalJobId=str(i), Site=f"NEW-SITE-{i}") for i in range(5)]
    records.append(job(LocalJobId="bad", WallDuration=-1))
    with pytest.raises(StorageError, match=r"job record 6: WallDuration -1 is negative"):
        backend.load_message(message("job", records), PUBLISHER)
    assert count(backend, "JobRecords") == 0 and count(backend, "Sites") == 0


def test_values_the_columns_cannot_hold_are_refused_with_a_reason(backend):
    cases = [
        (job(LocalJobId="x" * 256), r"LocalJobId 256 characters, the column holds at most 255"),
        (job(Site="s" * 300), r"Site 300 characters"),
        (job(InfrastructureType="g" * 21), r"InfrastructureType 21 characters"),
        (job(ServiceLevel=10_000_000.0), r"ServiceLevel .* outside the column's range"),
        (job(WallDuration=2**63), r"WallDuration .* exceeds"),
        (job(Processors=2**32), r"Processors .* exceeds"),
        (job(EndTime=dt.datetime(999, 1, 1, tzinfo=UTC)), r"EndTime .* storable range"),
        (job(ServiceLevel=None), r"ServiceLevel is missing"),
    ]
    for record, reason in cases:
        with pytest.raises(StorageError, match=reason):
            backend.load_message(message("job", [record]), PUBLISHER)
    assert count(backend, "JobRecords") == 0


def test_a_database_error_mid_message_rolls_back_everything(backend):
    # a trigger makes the database itself refuse the third record, after the lookups
    # and the first rows of the same message have been written
    if backend.name == "mysql":
        backend.query(
            "CREATE TRIGGER refuse BEFORE INSERT ON JobRecords FOR EACH ROW"
            " BEGIN IF NEW.LocalJobId = 'poison' THEN"
            " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison record'; END IF; END"
        )
    else:
        backend.query(
            "CREATE TRIGGER refuse BEFORE INSERT ON JobRecords WHEN NEW.LocalJobId = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poison record'); END"
        )
    records = [job(LocalJobId="ok1", Site="FRESH"), job(LocalJobId="ok2"), job(LocalJobId="poison")]
    with pytest.raises(StorageError, match="poison record"):
        backend.load_message(message("job", records), PUBLISHER)
    assert count(backend, "JobRecords") == 0
    assert count(backend, "Sites") == 0 and count(backend, "DNs") == 0
    # the backend is usable afterwards
    assert backend.load_message(message("job", [job()]), PUBLISHER) == 1


def test_empty_message_writes_nothing(backend):
    assert backend.load_message(message("job", []), PUBLISHER) == 0
    assert count(backend, "DNs") == 0


def test_many_records_in_one_message(backend):
    records = [job(LocalJobId=f"{i}.batch", Site=f"SITE-{i % 7}", GlobalUserName=f"/CN=user {i % 50}")
               for i in range(2500)]
    assert backend.load_message(message("job", records), PUBLISHER) == 2500
    assert count(backend, "JobRecords") == 2500
    assert count(backend, "Sites") == 7 and count(backend, "DNs") == 51
    got = backend.query("SELECT COUNT(*) FROM VJobRecords WHERE Site = 'site-3'")
    assert got == [(len(range(3, 2500, 7)),)]


def test_text_with_special_characters_round_trips_exactly(writer):
    odd = ["tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "\\", "", "quote'\"`",
           "caf\u00e9 \U0001F600", "NULL", "nul\x00byte"]
    records = [job(LocalJobId=f"job-{i}", LocalUserId=text, FQAN=text, Queue=text or "q",
                   InfrastructureDescription=text) for i, text in enumerate(odd)]
    writer.load_message(message("job", records), PUBLISHER)
    got = writer.query("SELECT LocalJobId, LocalUserId, FQAN, Queue, InfrastructureDescription"
                        " FROM VJobRecords")
    expected = {f"job-{i}": (text, text, text or "q", text) for i, text in enumerate(odd)}
    assert {row[0]: row[1:] for row in got} == expected


def test_text_that_is_not_unicode_is_refused(writer):
    with pytest.raises(StorageError, match="Unicode|surrogate|encode"):
        writer.load_message(message("job", [job(LocalUserId="bad\udcff")]), PUBLISHER)
    assert count(writer, "JobRecords") == 0


def test_transaction_helper_commits_or_rolls_back(backend):
    mark = backend.placeholder
    with backend.transaction() as tx:
        tx.execute(f"INSERT INTO LastUpdated (Type) VALUES ({mark})", ("sent",))  # noqa: S608
        assert tx.query("SELECT Type FROM LastUpdated") == [("sent",)]
    with pytest.raises(RuntimeError):
        with backend.transaction() as tx:
            tx.execute(f"DELETE FROM LastUpdated WHERE Type = {mark}", ("sent",))  # noqa: S608
            raise RuntimeError("changed my mind")
    (row,) = backend.query("SELECT Type, UpdateTime FROM LastUpdated")
    assert row[0] == "sent" and isinstance(row[1], dt.datetime)
    # UpdateTime is UTC on both backends
    assert abs(row[1] - dt.datetime.now(UTC).replace(tzinfo=None)) < dt.timedelta(minutes=5)


def test_concurrent_loaders_do_not_duplicate_lookup_rows(backend, request, tmp_path):
    """Two loaders (threads, own connections) load messages that introduce the same new
    names at the same moment; every name must end up exactly once."""
    others = [load_backend(backend.name)(backend.settings) for _ in range(2)]
    for other in others:
        other.connect()
    errors = []
    start = threading.Barrier(len(others))

    def load(db, worker: int) -> None:
        try:
            start.wait()
            for batch in range(6):
                names = [f"site-{batch}-{i}" for i in range(25)]
                records = [job(LocalJobId=f"w{worker}-{batch}-{i}", Site=name if worker else name.upper(),
                               GlobalUserName=f"/CN=user {batch} {i}") for i, name in enumerate(names)]
                for attempt in range(20):
                    try:
                        db.load_message(message("job", records), PUBLISHER)
                        break
                    except DatabaseUnavailable:  # deadlock or busy: the loader retries
                        if attempt == 19:
                            raise
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(db, n)) for n, db in enumerate(others)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.close()
    assert errors == []
    assert count(backend, "Sites") == 6 * 25 and count(backend, "DNs") == 6 * 25 + 1
    assert count(backend, "JobRecords") == 2 * 6 * 25
    assert count(backend, "VJobRecords") == 2 * 6 * 25
    per_site = backend.query("SELECT Site, COUNT(*) FROM VJobRecords GROUP BY Site")
    assert len(per_site) == 150 and {n for _, n in per_site} == {2}


# -- summaries --------------------------------------------------------------------------


def summary(**overrides) -> dict:
    record = {
        "Site": "RAL-LCG2", "Month": 3, "Year": 2024, "GlobalUserName": "/CN=u", "VO": "atlas",
        "VOGroup": "/atlas", "VORole": "Role=production", "SubmitHost": "ce01",
        "InfrastructureType": "grid", "InfrastructureDescription": "APEL-CREAM-PBS",
        "ServiceLevelType": "HEPSPEC", "ServiceLevel": 10.0, "NodeCount": 1, "Processors": 4,
        "EarliestEndTime": dt.datetime(2024, 3, 1, tzinfo=UTC),
        "LatestEndTime": dt.datetime(2024, 3, 31, 12, tzinfo=UTC),
        "WallDuration": 2**33, "CpuDuration": 100, "NumberOfJobs": 7,
    }
    record.update(overrides)
    return record


def test_summaries_round_trip_and_replace_on_their_key(backend):
    backend.load_message(message("summary", [summary(), summary(InfrastructureType="local")]), PUBLISHER)
    backend.load_message(message("summary", [summary(NumberOfJobs=9, InfrastructureType="GRID ")]),
                         PUBLISHER)
    got = view(backend, "VSummaries", "ORDER BY NumberOfJobs")
    assert [(r["InfrastructureType"], r["NumberOfJobs"]) for r in got] == [("local", 7), ("GRID ", 9)]
    row = got[1]
    assert row["WallDuration"] == 2**33 and row["ServiceLevel"] == Decimal("10.000")
    assert row["EarliestEndTime"] == dt.datetime(2024, 3, 1)
    assert row["LatestEndTime"] == dt.datetime(2024, 3, 31, 12)
    # a different ServiceLevel is a different row
    backend.load_message(message("summary", [summary(ServiceLevel=11.0)]), PUBLISHER)
    assert count(backend, "Summaries") == 3


def test_summary_without_node_count_is_refused(backend):
    with pytest.raises(StorageError, match="NodeCount is missing"):
        backend.load_message(message("summary", [summary(NodeCount=None)]), PUBLISHER)
    with pytest.raises(StorageError, match="NumberOfJobs -1 is negative"):
        backend.load_message(message("summary", [summary(NumberOfJobs=-1)]), PUBLISHER)


def normalised(**overrides) -> dict:
    record = summary()
    for name in ("InfrastructureType", "ServiceLevel"):
        del record[name]
    record.update(Infrastructure="grid", ServiceLevelType="None", NormalisedWallDuration=5000,
                  NormalisedCpuDuration=4000)
    record.update(overrides)
    return record


def test_normalised_summaries_round_trip(backend):
    records = [normalised(NodeCount=None, Processors=None), normalised(ServiceLevelType="hepscore23")]
    backend.load_message(message("normalised_summary", records), PUBLISHER)
    got = view(backend, "VNormalisedSummaries", "ORDER BY ServiceLevelType")
    assert [(r["ServiceLevelType"], r["NodeCount"], r["Processors"]) for r in got] == [
        ("hepscore23", 1, 4), ("None", 0, 0)]
    assert got[0]["Infrastructure"] == "grid" and got[0]["NormalisedWallDuration"] == 5000
    # same key (Infrastructure differs only in case) replaces
    backend.load_message(message("normalised_summary", [normalised(ServiceLevelType="HEPscore23",
                                                                   Infrastructure="Grid",
                                                                   NumberOfJobs=99)]), PUBLISHER)
    assert count(backend, "NormalisedSummaries") == 2
    assert backend.query("SELECT NumberOfJobs FROM VNormalisedSummaries WHERE ServiceLevelType"
                         " = 'hepscore23'") == [(99,)]


def test_super_summary_views_are_deterministic(backend):
    # HSS is written by the summariser; here rows are inserted directly, then both views read
    sites = backend.query("SELECT COUNT(*) FROM Sites")[0][0]
    assert sites == 0
    backend.load_message(message("summary", [summary()]), PUBLISHER)  # creates the lookup rows
    ids = backend.query("SELECT SiteID, GlobalUserNameID, VOID, VOGroupID, VORoleID, SubmitHostID"
                        " FROM Summaries")[0]
    mark = backend.placeholder
    insert = (
        "INSERT INTO HybridSuperSummaries (SiteID, Month, Year, GlobalUserNameID, VOID, VOGroupID,"  # noqa: S608
        " VORoleID, SubmitHostID, Infrastructure, InfrastructureDescription, ServiceLevelType,"
        " ServiceLevel, NodeCount, Processors, EarliestEndTime, LatestEndTime, WallDuration,"
        " CpuDuration, NormalisedWallDuration, NormalisedCpuDuration, NumberOfJobs) VALUES ("
        + ", ".join([mark] * 21) + ")"
    )
    common = list(ids[:1]) + [3, 2024] + list(ids[1:])
    with backend.transaction() as tx:
        tx.execute(insert, common + ["grid", "desc-b", "si2k", Decimal("10"), 1, 4,
                                     dt.datetime(2024, 3, 2), dt.datetime(2024, 3, 20),
                                     100, 90, 1000, 900, 2])
        tx.execute(insert, common + ["Grid", "desc-a", "SI2K", Decimal("12"), 1, 4,
                                     dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 25),
                                     50, 40, 600, 480, 1])
    supers = view(backend, "VSuperSummaries", "ORDER BY ServiceLevel")
    assert [r["InfrastructureType"] for r in supers] == ["grid", "Grid"]
    assert "NormalisedWallDuration" not in supers[0]
    for _ in range(3):
        (row,) = view(backend, "VNormalisedSuperSummaries")
        assert "ServiceLevel" not in row
        assert row["Infrastructure"] == "Grid" and row["ServiceLevelType"] == "SI2K"  # binary-smallest
        assert row["InfrastructureDescription"] == "desc-a"
        assert (row["EarliestEndTime"], row["LatestEndTime"]) == (dt.datetime(2024, 3, 1),
                                                                  dt.datetime(2024, 3, 25))
        assert (row["WallDuration"], row["CpuDuration"], row["NumberOfJobs"]) == (150, 130, 3)
        assert (row["NormalisedWallDuration"], row["NormalisedCpuDuration"]) == (1600, 1380)
        assert isinstance(row["UpdateTime"], dt.datetime)


# -- sync -------------------------------------------------------------------------------


def test_sync_records(backend):
    records = [{"Site": "RAL-LCG2", "SubmitHost": "ce01", "NumberOfJobs": 10, "Month": 13, "Year": 2024},
               {"Site": "RAL-LCG2", "SubmitHost": "CE01 ", "NumberOfJobs": 12, "Month": 13, "Year": 2024},
               {"Site": "RAL-LCG2", "SubmitHost": "None", "NumberOfJobs": 2**40, "Month": 1, "Year": 2024}]
    assert backend.load_message(message("sync", records), PUBLISHER) == 3
    got = backend.query("SELECT Site, SubmitHost, NumberOfJobs, Month, Year FROM VSyncRecords ORDER BY Month")
    assert got == [("RAL-LCG2", "None", 2**40, 1, 2024), ("RAL-LCG2", "ce01", 12, 13, 2024)]


# -- cloud ------------------------------------------------------------------------------


def cloud(**overrides) -> dict:
    record = {
        "RecordCreateTime": None, "VMUUID": "vm-0001", "SiteName": "CLOUD-SITE",
        "CloudComputeService": "openstack", "MachineName": "vm1", "LocalUserId": "u1",
        "LocalGroupId": "g1", "GlobalUserName": "/CN=cloud user", "FQAN": "/fedcloud/Role=NULL",
        "VO": "fedcloud", "VOGroup": "/fedcloud", "VORole": "Role=NULL", "Status": "started",
        "StartTime": dt.datetime(2024, 1, 31, 20, 0, tzinfo=UTC), "EndTime": None,
        "SuspendDuration": 600, "WallDuration": 3 * 3600, "CpuDuration": 3600, "CpuCount": 2.0,
        "NetworkType": "None", "NetworkInbound": 1, "NetworkOutbound": 2, "PublicIPCount": 1,
        "Memory": 4, "Disk": 20, "BenchmarkType": "HEPSPEC", "Benchmark": 10.0,
        "StorageRecordId": "None", "ImageId": "img", "CloudType": "caso/5.2.1 (OpenStack)",
    }
    record.update(overrides)
    return record


def test_cloud_measurement_time_and_per_vm_month_key(writer):
    records = [
        # started: StartTime + Suspend + Wall = 2024-01-31 23:10 -> January
        cloud(),
        # RecordCreateTime wins for non-completed VMs -> February
        cloud(VMUUID="vm-0002", RecordCreateTime=dt.datetime(2024, 2, 3, tzinfo=UTC)),
        # completed: EndTime
        cloud(VMUUID="vm-0003", Status="completed", EndTime=dt.datetime(2024, 3, 5, tzinfo=UTC)),
        # completed without EndTime: NULL and month/year 0 (no zero date under NO_ZERO_DATE)
        cloud(VMUUID="vm-0004", Status="completed", EndTime=None),
        # no StartTime and no RecordCreateTime: unknown too
        cloud(VMUUID="vm-0005", StartTime=None, CpuCount=None, Benchmark=None),
    ]
    writer.load_message(message("cloud", records), PUBLISHER)
    got = writer.query("SELECT VMUUID, MeasurementTime, MeasurementMonth, MeasurementYear"
                        " FROM VCloudRecords ORDER BY VMUUID")
    assert got == [
        ("vm-0001", dt.datetime(2024, 1, 31, 23, 10), 1, 2024),
        ("vm-0002", dt.datetime(2024, 2, 3), 2, 2024),
        ("vm-0003", dt.datetime(2024, 3, 5), 3, 2024),
        ("vm-0004", None, 0, 0),
        ("vm-0005", None, 0, 0),
    ]
    assert writer.query("SELECT CpuCount, Benchmark FROM VCloudRecords WHERE VMUUID = 'vm-0005'") == [
        (Decimal("0.000"), Decimal("0.000"))]
    # the last received record per VM and month wins, even if it is older
    writer.load_message(message("cloud", [cloud(VMUUID="VM-0001 ", WallDuration=3600)]), PUBLISHER)
    got = writer.query("SELECT VMUUID, WallDuration FROM VCloudRecords WHERE MeasurementMonth = 1")
    assert got == [("VM-0001 ", 3600)]
    assert count(writer, "CloudRecords") == 5
    (row,) = view(writer, "VAnonCloudRecords", "WHERE MeasurementMonth = 1")
    assert "GlobalUserName" not in row and isinstance(row["GlobalUserNameID"], int)
    (full,) = view(writer, "VCloudRecords", "WHERE MeasurementMonth = 1")
    assert full["GlobalUserName"] == "/CN=cloud user" and full["CloudType"] == "caso/5.2.1 (OpenStack)"


def test_cloud_summaries(writer):
    record = {
        "SiteName": "CLOUD-SITE", "CloudComputeService": "openstack", "Month": 1, "Year": 2024,
        "GlobalUserName": "/CN=cloud user", "VO": "fedcloud", "VOGroup": "/fedcloud",
        "VORole": "Role=NULL", "Status": "completed", "CloudType": "caso", "ImageId": "img",
        "EarliestStartTime": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "LatestStartTime": dt.datetime(2024, 1, 2, tzinfo=UTC), "WallDuration": 2**35,
        "CpuDuration": 10, "CpuCount": None, "NetworkInbound": None, "NetworkOutbound": None,
        "Memory": 4, "Disk": 20, "BenchmarkType": "None", "Benchmark": None, "NumberOfVMs": 3,
    }
    writer.load_message(message("cloud_summary", [record, dict(record, NumberOfVMs=4)]), PUBLISHER)
    (row,) = view(writer, "VCloudSummaries")
    assert row["NumberOfVMs"] == 4 and row["WallDuration"] == 2**35
    assert (row["CpuCount"], row["Benchmark"]) == (Decimal("0.000"), Decimal("0.000"))
    publisher = writer.query("SELECT PublisherDNID FROM CloudSummaries")[0][0]
    assert publisher == str(writer.query("SELECT id FROM DNs WHERE name = %s".replace(
        "%s", writer.placeholder), (PUBLISHER,))[0][0])


# -- storage ----------------------------------------------------------------------------


def star(**overrides) -> dict:
    record = {
        "RecordId": "host.example.org/sr/87912469269276", "CreateTime": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "StorageSystem": "host.example.org", "Site": "SITE", "StorageShare": "pool-003",
        "StorageMedia": "disk", "StorageClass": "replicated", "FileCount": 42,
        "DirectoryPath": "/home/projectA", "LocalUser": "johndoe", "LocalGroup": "projectA",
        "UserIdentity": "/O=Grid/CN=John Doe", "Group": "binarydataproject.example.org",
        "SubGroup": "ukusers", "Role": "None",
        "StartTime": dt.datetime(2023, 12, 31, tzinfo=UTC), "EndTime": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "ResourceCapacityUsed": 2**45, "LogicalCapacityUsed": None, "ResourceCapacityAllocated": 14728,
    }
    record.update(overrides)
    return record


def test_storage_records_and_group_attributes(writer):
    attributes = [
        {"StarRecordID": "host.example.org/sr/87912469269276", "AttributeType": "authority",
         "AttributeValue": "/O=Grid/CN=Some Authority"},
        {"StarRecordID": "host.example.org/sr/87912469269276", "AttributeType": "Authority ",
         "AttributeValue": "second wins"},
    ]
    written = writer.load_message(message("storage", [star()], attributes), PUBLISHER)
    assert written == 3
    (row,) = view(writer, "VStarRecords")
    row.pop("UpdateTime")
    expected = star()
    for name in ("CreateTime", "StartTime", "EndTime"):
        expected[name] = expected[name].replace(tzinfo=None)
    assert row == expected
    assert writer.query("SELECT AttributeType, AttributeValue FROM GroupAttributes") == [
        ("Authority ", "second wins")]
    assert count(writer, "DNs") == 0  # the publisher is not stored for storage records
    writer.load_message(message("storage", [star(FileCount=43)]), PUBLISHER)
    assert writer.query("SELECT FileCount FROM StarRecords") == [(43,)]


# -- availability -------------------------------------------------------------------------


def test_mysql_server_down_is_database_unavailable(unused_port):
    db = load_backend("mysql")({"hostname": "127.0.0.1", "port": str(unused_port), "name": "apel",
                                "username": "apel", "password": "x", "connect_timeout": "2"})
    with pytest.raises(DatabaseUnavailable, match="2003"):
        db.connect()
    with pytest.raises(DatabaseUnavailable):
        db.load_message(message("job", [job()]), PUBLISHER)


def test_mysql_without_schema_says_which_file_to_load(mysql_database):
    args = mysql_database
    db = load_backend("mysql")({"hostname": args["host"], "port": str(args["port"]),
                                "name": args["database"], "username": args["user"],
                                "password": args["password"]})
    with pytest.raises(DatabaseUnavailable, match="has no JobRecords table: load schemas/mysql.sql"):
        db.connect()
    db.create_schema()
    db.connect()
    assert db.load_message(message("job", [job()]), PUBLISHER) == 1
    db.close()


@pytest.mark.services
def test_mysql_reconnects_after_losing_the_connection(request, tmp_path):
    db = load_backend("mysql")(settings_for("mysql", request, tmp_path))
    db.connect()
    conn_id = db.query("SELECT CONNECTION_ID()")[0][0]
    killer = pymysql.connect(**{**_args_of(db), "autocommit": True})
    with killer.cursor() as cur:
        cur.execute("KILL %s", (int(conn_id),))
        for _ in range(100):  # KILL is asynchronous: wait until the session is gone
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (conn_id,))
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.05)
    killer.close()
    assert db.load_message(message("job", [job()]), PUBLISHER) == 1
    assert db.query("SELECT COUNT(*) FROM JobRecords") == [(1,)]
    db.close()


@pytest.mark.services
def test_mysql_lock_wait_timeout_is_database_unavailable(request, tmp_path):
    db = load_backend("mysql")(settings_for("mysql", request, tmp_path))
    db.connect()
    db.load_message(message("job", [job()]), PUBLISHER)  # lookup rows exist
    db.query("SET SESSION innodb_lock_wait_timeout = 1")
    other = pymysql.connect(**_args_of(db))
    try:
        with other.cursor() as cur:  # another transaction holds the row of the same job
            cur.execute("SELECT * FROM JobRecords FOR UPDATE")
        with pytest.raises(DatabaseUnavailable, match="1205"):
            db.load_message(message("job", [job(WallDuration=7)]), PUBLISHER)
    finally:
        other.rollback()
        other.close()
    assert db.load_message(message("job", [job(WallDuration=7)]), PUBLISHER) == 1
    assert db.query("SELECT WallDuration FROM JobRecords") == [(7,)]
    db.close()


@pytest.mark.services
def test_mysql_deadlock_with_another_transaction_is_tried_again_at_once(request, tmp_path, caplog):
    """A real deadlock: another transaction holds the job's row, the load waits for it
    while holding the SummariserGate row in share mode, then the other asks for the gate
    FOR UPDATE. InnoDB rolls back the lighter transaction, the load (the other has written
    rows); the load is tried again and succeeds once the other has finished."""
    db = load_backend("mysql")(settings_for("mysql", request, tmp_path))
    db.connect()
    db.load_message(message("job", [job()]), PUBLISHER)
    other = pymysql.connect(**_args_of(db))
    result: dict = {}

    def load() -> None:
        try:
            result["rows"] = db.load_message(message("job", [job(WallDuration=7)]), PUBLISHER)
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    try:
        with other.cursor() as cur:
            cur.execute("CREATE TABLE Heavy (n INT PRIMARY KEY) ENGINE=InnoDB")  # commits at once
            cur.executemany("INSERT INTO Heavy VALUES (%s)", [(n,) for n in range(200)])
            cur.execute("SELECT * FROM JobRecords FOR UPDATE")
            loader = threading.Thread(target=load)
            with caplog.at_level(logging.INFO, logger="apel.db.mysql_backend"):
                loader.start()
                for _ in range(100):  # until the load waits for the job's row
                    cur.execute(
                        "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'"
                    )
                    if cur.fetchone()[0]:
                        break
                    time.sleep(0.05)
                cur.execute("SELECT id FROM SummariserGate WHERE id = 1 FOR UPDATE")
                other.commit()
                loader.join(30)
    finally:
        other.close()
    assert result.get("rows") == 1, result
    assert "deadlock" in caplog.text and "trying the message again (attempt 2 of" in caplog.text
    assert db.query("SELECT WallDuration FROM JobRecords") == [(7,)]
    db.close()


@pytest.mark.parametrize(("code", "kind"), [
    (1213, DatabaseUnavailable), (1205, DatabaseUnavailable), (2006, DatabaseUnavailable),
    (2013, DatabaseUnavailable), (1040, DatabaseUnavailable), (1146, DatabaseUnavailable),
    (1290, DatabaseUnavailable), (1048, StorageError), (1264, StorageError), (1366, StorageError),
    (1292, StorageError), (1406, StorageError), (1644, StorageError),
])
def test_mysql_error_codes_map_to_retry_or_reject(code, kind):
    from apel.db.mysql_backend import error_for

    assert isinstance(error_for(pymysql.err.OperationalError(code, "text")), kind)
    assert str(code) in str(error_for(pymysql.err.OperationalError(code, "text")))


def _args_of(db) -> dict:
    s = db.settings
    return {"host": s["hostname"], "port": int(s["port"]), "user": s["username"],
            "password": s["password"], "database": s["name"]}


def test_sqlite_locked_is_database_unavailable(tmp_path):
    path = tmp_path / "apel.sqlite3"
    db = load_backend("sqlite")({"name": str(path), "timeout": "0.2"})
    db.connect()
    other = load_backend("sqlite")({"name": str(path), "timeout": "0.2"})
    other.connect()
    with other.transaction() as tx:
        tx.execute("INSERT INTO LastUpdated (Type) VALUES (?)", ("holding the write lock",))
        with pytest.raises(DatabaseUnavailable, match="locked"):
            db.load_message(message("job", [job()]), PUBLISHER)
    assert db.load_message(message("job", [job()]), PUBLISHER) == 1
    db.close()
    other.close()


def test_sqlite_creates_a_private_file_with_the_schema(tmp_path):
    path = tmp_path / "new" / "dir" / "apel.sqlite3"
    db = load_backend("sqlite")({"name": str(path)})
    db.connect()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert db.query("PRAGMA journal_mode") == [("wal",)]
    assert db.query("SELECT Version FROM SchemaVersion") == [(1,)]
    db.close()
    db.connect()  # an existing file is opened as it is
    db.close()


def test_apply_schema_helper_for_tools(mysql_database, tmp_path):
    from apel.db.schema import apply_schema as apply_any

    apply_any("mysql", mysql_database)
    apply_any("mysql", mysql_database)
    path = tmp_path / "tool" / "apel.sqlite3"
    apply_any("sqlite", path)
    for kind, settings in (("mysql", {"hostname": mysql_database["host"],
                                      "port": str(mysql_database["port"]),
                                      "name": mysql_database["database"],
                                      "username": mysql_database["user"],
                                      "password": mysql_database["password"]}),
                           ("sqlite", {"name": str(path)})):
        db = load_backend(kind)(settings)
        db.connect()
        assert db.query("SELECT Version FROM SchemaVersion") == [(1,)]
        db.close()
    with pytest.raises(ValueError, match="no schema for 'oracle'"):
        apply_any("oracle", {})


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

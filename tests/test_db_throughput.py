"""How fast the MySQL backend loads 1,000-record job messages, against the naive way.

The naive baseline is one REPLACE statement per record (ids already resolved, one
commit), i.e. what a per-record stored-procedure call costs at best. The bulk path must
stay far ahead of it; the measured rates are printed (``pytest -s``) for the record.
Both are measured in the same test, back to back, so a busy machine slows both.
"""

from __future__ import annotations

import datetime as dt
import time

import pymysql
import pytest

from apel.db import rows
from apel.db.backend import load_backend
from apel.db.mysql_backend import apply_schema
from apel.records.model import ParsedMessage

UTC = dt.timezone.utc
MESSAGES = 10
PER_MESSAGE = 1000


def _job(n: int, site: int) -> dict:
    end = dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=37 * n)
    return {
        "Site": f"SITE-{site}", "SubmitHost": f"ce{n % 3}.site{site}.example.org:8443/cream-pbs-grid",
        "MachineName": f"wn{n % 300}.example.org", "Queue": "grid", "LocalJobId": f"{n}.batch",
        "LocalUserId": f"user{n % 50}", "GlobalUserName": f"/C=UK/O=eScience/CN=user {n % 100}",
        "FQAN": "/atlas/Role=production/Capability=NULL", "VO": "atlas", "VOGroup": "/atlas",
        "VORole": "Role=production", "WallDuration": 3600 + n % 1000, "CpuDuration": 3000 + n % 900,
        "Processors": 8, "NodeCount": 1, "StartTime": end - dt.timedelta(hours=1), "EndTime": end,
        "InfrastructureDescription": "APEL-CREAM-PBS", "InfrastructureType": "grid",
        "MemoryReal": 1_000_000, "MemoryVirtual": 2_000_000, "ServiceLevelType": "HEPSPEC",
        "ServiceLevel": 10.5,
    }


def _messages(first_site: int) -> list[ParsedMessage]:
    # as a site publishes: one site per message
    return [
        ParsedMessage("job", "APEL-individual-job-message: v0.3",
                      [_job(m * PER_MESSAGE + k, first_site + m) for k in range(PER_MESSAGE)])
        for m in range(MESSAGES)
    ]


def _settings(args: dict) -> dict:
    return {"hostname": args["host"], "port": str(args["port"]), "name": args["database"],
            "username": args["user"], "password": args["password"]}


def _baseline_rate(args: dict) -> float:
    """Records/s for one REPLACE per record, lookups resolved beforehand, one commit."""
    db = load_backend("mysql")(_settings(args))
    db.connect()
    db.load_message(ParsedMessage("job", "warm-up", [_job(0, 999)]), "/CN=publisher")  # lookup rows
    ids = dict(db.query("SELECT name, id FROM Sites"))
    db.close()
    table_rows = rows.JOB.build([_job(n, 999) for n in range(1, PER_MESSAGE + 1)], "/CN=publisher")
    for row in table_rows:
        for position, _table in rows.JOB.lookup_positions:
            row[position] = ids["SITE-999"]
    sql = "REPLACE INTO JobRecords ({}) VALUES ({})".format(  # noqa: S608 - fixed names
        ", ".join(rows.JOB.columns), ", ".join(["%s"] * len(rows.JOB.columns)))
    conn = pymysql.connect(**args)
    try:
        start = time.perf_counter()
        with conn.cursor() as cur:
            for row in table_rows:
                cur.execute(sql, row)
        conn.commit()
        return len(table_rows) / (time.perf_counter() - start)
    finally:
        conn.close()


@pytest.mark.parametrize("local_infile", ["yes", "no"])
def test_bulk_loading_is_far_faster_than_one_statement_per_record(mysql_database, local_infile):
    apply_schema(mysql_database)
    baseline = _baseline_rate(mysql_database)
    db = load_backend("mysql")({**_settings(mysql_database), "local_infile": local_infile})
    db.connect()
    messages = _messages(first_site=0)
    start = time.perf_counter()
    for msg in messages:
        assert db.load_message(msg, "/CN=publisher") == PER_MESSAGE
    rate = MESSAGES * PER_MESSAGE / (time.perf_counter() - start)
    db.close()
    print(f"\nlocal_infile={local_infile}: {rate:,.0f} records/s first load in {PER_MESSAGE}-record "
          f"messages; one statement per record: {baseline:,.0f} records/s ({rate / baseline:.1f}x)")
    # A regression guard, set well below the measured ratios (5x with LOAD DATA, 3.5x
    # with multi-row REPLACE, on 2 cores shared with other test runs) so that a busy
    # machine does not make it flaky; the printed numbers are the measurement.
    assert rate > 2 * baseline

"""Loader throughput: 100 messages x 1,000 job records into MariaDB.

Measured in one run, over the same realistic messages (``apel.samples``: varied
sites, users, VOs, FQANs, benchmarks):

- parse only: ``apel.records.parse_message`` on every body, in this process;
- first load and reload (all duplicates): the real ``apeldbloader --once`` console
  script over a dirq ``incoming`` queue filled as ssmreceive fills it (lock, get,
  parse, one transaction, remove), once with ``workers = 1`` (one process) and once
  with ``workers = 2`` (two loader processes, each its own connection), each into an
  empty database. Records/s come from the loader's own timing (its "Pass done in ..."
  or, with workers, "All 2 workers done in ..." log line; interpreter start-up
  excluded); the wall time of the whole command is shown too, and peak RSS is the
  largest loader process's;
- the server alone: the rows the loader stored, exported in 1,000-row files and
  read back with server-side ``LOAD DATA INFILE ... REPLACE`` into an empty copy of
  the schema, one transaction per file: no Python, no network, no parsing. It is
  the most MariaDB can take in with this schema (its primary key and indexes) on
  this machine, the ceiling for any loader design;
- baseline, the existing design: the same parsed messages written with one
  statement per record, ``REPLACE INTO JobRecords ... VALUES (SiteLookup(%s), ...)``
  where the lookups are stored functions that select or insert (as the existing
  schema's stored procedures do), one transaction per message, via PyMySQL.

One large message: a 50 MB CAR document (about 35,000 job records) loaded by the
real ``apeldbloader --once``, once as it is (the document parsed incrementally, each
record read and cleared as it closes) and once, as the baseline in the same run, with
the previous approach patched in (the whole document parsed into one element tree,
then read): peak RSS of each loader process and records/s (the faster of two runs).

MariaDB runs from ``apel.testkit.services.MariaDB`` in a temporary directory.

    .venv/bin/python -m benchmarks.bench_loader [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

import defusedxml.ElementTree
import pymysql
from dirq.queue import Queue

import apel.records
from apel.db.schema import schema_statements
from apel.records import parse_message, render_car, render_message
from apel.records.model import JOB, ParsedMessage
from apel.records.xml_car import CarReader
from apel.samples import job_records
from apel.testkit.services import MariaDB

LOADER = os.path.join(os.path.dirname(sys.executable), "apeldbloader")
TIME = "/usr/bin/time"  # GNU time: the loader's own peak RSS
SIGNER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=bench-sender.example.org"
PASS_LINE = re.compile(r"Pass done in ([0-9.]+) s: (\d+) messages loaded \((\d+) records")
POOL_LINE = re.compile(r"All \d+ workers done in ([0-9.]+) s: (\d+) messages loaded \((\d+) records")
LARGE_CAR_MB = 50  # the size of the one large CAR message (also in --quick: it is the point)
LOOKUP_TABLES = ("Sites", "SubmitHosts", "MachineNames", "Queues", "DNs", "VOs", "VOGroups", "VORoles")


# -- data ----------------------------------------------------------------------------


def make_messages(messages: int, per_message: int, seed: int = 42) -> list[str]:
    records = list(job_records(messages * per_message, seed=seed, months=6))
    return [
        render_message(JOB, records[index * per_message:(index + 1) * per_message])
        for index in range(messages)
    ]


# -- the loader (real console script) --------------------------------------------------


def _write_configs(base: str, server: MariaDB, database: str, workers: int = 1) -> tuple[str, str, str]:
    args = server.connect_args(database)
    db_cfg = os.path.join(base, "db.cfg")
    loader_cfg = os.path.join(base, "loader.cfg")
    logfile = os.path.join(base, "loader.log")
    with open(db_cfg, "w", encoding="utf-8") as handle:
        handle.write(
            f"[db]\nbackend = mysql\nhostname = {args['host']}\nport = {args['port']}\n"
            f"name = {database}\nusername = {args['user']}\npassword = {args['password']}\n"
        )
    with open(loader_cfg, "w", encoding="utf-8") as handle:
        handle.write(
            f"[loader]\nmsgpath = {base}/spool\npidfile = {base}/loader.pid\ninterval = 1\n"
            f"workers = {workers}\n"
            f"[logging]\nlogfile = {logfile}\nlevel = INFO\nconsole = false\n"
        )
    return db_cfg, loader_cfg, logfile


def _fill_incoming(base: str, bodies: list[str]) -> None:
    queue = Queue(os.path.join(base, "spool", "incoming"),
                  schema={"body": "string", "signer": "string", "empaid": "string?"})
    for index, body in enumerate(bodies):
        queue.add({"body": body, "signer": SIGNER, "empaid": f"bench-{index}"})


def _run_loader(base: str, db_cfg: str, loader_cfg: str, logfile: str, whole_tree: bool = False) -> dict:
    """Run ``apeldbloader --once``; its pass time (from its log), wall time and peak RSS.

    Peak RSS comes from time(1): the rusage of a child forked from this (large)
    process would count the parent's pages it shared before exec. ``whole_tree``:
    the same console script with the previous XML approach patched in (the baseline).
    """
    before = os.path.getsize(logfile) if os.path.exists(logfile) else 0
    argv = [LOADER, "-d", db_cfg, "-c", loader_cfg, "--once"]
    if whole_tree:
        argv = [sys.executable, "-c", WHOLE_TREE_LOADER, *argv[1:]]
    if os.path.exists(TIME):
        argv = [TIME, "-f", "maxrss_kb=%M", *argv]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    with open(logfile, encoding="utf-8") as handle:
        handle.seek(before)
        log = handle.read()
    if proc.returncode != 0:
        raise RuntimeError(f"apeldbloader exited {proc.returncode}: {proc.stderr}\n{log[-3000:]}")
    seconds = records = 0.0
    for match in POOL_LINE.finditer(log) if POOL_LINE.search(log) else PASS_LINE.finditer(log):
        seconds += float(match.group(1))
        records += int(match.group(3))
    found = re.search(r"maxrss_kb=(\d+)", proc.stderr)
    rss_mb = int(found.group(1)) / 1024 if found else float("nan")
    return {"seconds": seconds, "records": int(records), "wall": wall, "rss_mb": rss_mb}


# -- one large CAR message, and the previous approach to it ----------------------------

# The console script with parse_message replaced by the whole-tree parse (argv as apeldbloader's).
WHOLE_TREE_LOADER = (
    "import sys; sys.argv[0] = 'apeldbloader'; import benchmarks.bench_loader as bench; "
    "bench.use_whole_tree_parse(); from apel_bin.apeldbloader import main; main()"
)


def whole_tree_parse(body: str) -> ParsedMessage:
    """The previous approach to CAR: the whole document as one element tree, then its records.

    The same safe parser and the same record reading as now; only the incremental parse
    and the clearing of each record once read are missing.
    """
    root = defusedxml.ElementTree.fromstring(body.strip(), forbid_dtd=True)
    reader = CarReader(dt.datetime.now(dt.timezone.utc))
    for element in root.iter(CarReader.tag):
        reader.add(element)
    return reader.message(root)


def use_whole_tree_parse() -> None:
    """Make the loader (which looks ``parse_message`` up when it starts) parse CAR whole."""
    apel.records.parse_message = whole_tree_parse


def make_car_message(megabytes: float, seed: int = 11) -> tuple[str, int]:
    """One CAR document of about ``megabytes`` MB of realistic job records, and its record count."""
    probe = list(job_records(200, seed=seed))
    per_record = len(render_car(probe)) / len(probe)
    records = list(job_records(int(megabytes * 2**20 / per_record), seed=seed))
    for index, record in enumerate(records):
        record["LocalJobId"] = f"car-{index}"
    return render_car(records), len(records)


def _large_car(server: MariaDB, base: str, megabytes: float) -> list[dict]:
    """The large CAR message through the loader, incremental parse and whole tree (baseline).

    Each is run twice, in alternating order (the first big load into a fresh MariaDB is
    slower, whichever it is), and its faster run is kept.
    """
    body, count = make_car_message(megabytes)
    size = len(body.encode("utf-8")) / 2**20
    best: dict[bool, dict] = {}
    for attempt, order in enumerate(((False, True), (True, False))):
        for whole_tree in order:
            database = f"apel_car_{'tree' if whole_tree else 'stream'}_{attempt}"
            loader_dir = os.path.join(base, database)
            os.makedirs(loader_dir)
            _create_schema(server, database)
            configs = _write_configs(loader_dir, server, database)
            _fill_incoming(loader_dir, [body])
            result = _run_loader(loader_dir, *configs, whole_tree=whole_tree)
            assert result["records"] == count, result
            if whole_tree not in best or result["seconds"] < best[whole_tree]["seconds"]:
                best[whole_tree] = result
    rows = []
    for whole_tree in (False, True):
        result = best[whole_tree]
        how = "baseline: whole document as one tree" if whole_tree else "incremental parse"
        rows.append({"phase": f"one {size:.0f} MB CAR message, {how} (apeldbloader --once)", "records": count,
                     "seconds": result["seconds"], "wall": result["wall"], "rss_mb": result["rss_mb"],
                     "large_car": True, "baseline_car": whole_tree})
    return rows


# -- the baseline: one statement per record ------------------------------------------


def _create_schema(server: MariaDB, database: str) -> dict:
    server.create_database(database)
    args = server.connect_args(database)
    connection = pymysql.connect(**args)
    try:
        with connection.cursor() as cursor:
            for statement in schema_statements("mysql"):
                cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()
    return args


def _create_lookup_functions(args: dict) -> None:
    """Stored select-or-insert lookups, as the existing schema has (SiteLookup, ...)."""
    connection = pymysql.connect(**args)
    try:
        with connection.cursor() as cursor:
            for table in LOOKUP_TABLES:
                cursor.execute(LOOKUP_FUNCTION.format(table=table))
        connection.commit()
    finally:
        connection.close()


# Fixed table names only (LOOKUP_TABLES), never data.
LOOKUP_FUNCTION = (
    "CREATE FUNCTION Lookup{table}(lookup VARCHAR(255)) RETURNS INT MODIFIES SQL DATA "
    "BEGIN DECLARE result INT; "
    "SET result = (SELECT id FROM {table} WHERE name = lookup); "
    "IF result IS NULL THEN INSERT INTO {table} (name) VALUES (lookup); "
    "SET result = LAST_INSERT_ID(); END IF; RETURN result; END"
)
BASELINE_REPLACE = (
    "REPLACE INTO JobRecords (SiteID, SubmitHostID, MachineNameID, QueueID, LocalJobId, LocalUserId, "
    "GlobalUserNameID, FQAN, VOID, VOGroupID, VORoleID, WallDuration, CpuDuration, Processors, NodeCount, "
    "StartTime, EndTime, EndYear, EndMonth, InfrastructureDescription, InfrastructureType, MemoryReal, "
    "MemoryVirtual, ServiceLevelType, ServiceLevel, PublisherDNID) VALUES (LookupSites(%s), "
    "LookupSubmitHosts(%s), LookupMachineNames(%s), LookupQueues(%s), %s, %s, LookupDNs(%s), %s, "
    "LookupVOs(%s), LookupVOGroups(%s), LookupVORoles(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s, LookupDNs(%s))"
)


def _naive_utc(value: Optional[dt.datetime]) -> Optional[dt.datetime]:
    return None if value is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _baseline_params(record: dict, publisher: str) -> tuple:
    end = _naive_utc(record["EndTime"])
    return (
        record["Site"], record["SubmitHost"], record["MachineName"], record["Queue"], record["LocalJobId"],
        record["LocalUserId"], record["GlobalUserName"], record["FQAN"], record["VO"], record["VOGroup"],
        record["VORole"], record["WallDuration"], record["CpuDuration"], record["Processors"] or 0,
        record["NodeCount"] or 0, _naive_utc(record["StartTime"]), end, end.year, end.month,
        record["InfrastructureDescription"], record["InfrastructureType"], record["MemoryReal"],
        record["MemoryVirtual"], record["ServiceLevelType"], round(record["ServiceLevel"], 3), publisher,
    )


def _baseline_load(args: dict, bodies: list[str]) -> float:
    """Parse and write each message with one REPLACE per record; return the seconds."""
    connection = pymysql.connect(**args, autocommit=False)
    try:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for body in bodies:
                message: ParsedMessage = parse_message(body)
                for record in message.records:
                    cursor.execute(BASELINE_REPLACE, _baseline_params(record, SIGNER))
                connection.commit()
        return time.perf_counter() - started
    finally:
        connection.close()


# -- the run -------------------------------------------------------------------------


def run(quick: bool = False, base: Optional[str] = None) -> list[dict]:
    """Measure every phase; one dict per row of the table."""
    messages, per_message = (10, 1000) if quick else (100, 1000)
    own_base = base is None
    base = base or tempfile.mkdtemp(prefix="bench-loader-")
    server = MariaDB(os.path.join(base, "mariadb")).start()
    try:
        bodies = make_messages(messages, per_message)
        total = messages * per_message
        rows: list[dict] = []

        started = time.perf_counter()
        parsed = sum(len(parse_message(body).records) for body in bodies)
        seconds = time.perf_counter() - started
        assert parsed == total, (parsed, total)
        rows.append({"phase": "parse only (in process)", "records": total, "seconds": seconds})

        for workers, database in ((1, "apel_bench"), (2, "apel_bench_workers")):
            loader_dir = os.path.join(base, database)
            os.makedirs(loader_dir)
            _create_schema(server, database)
            configs = _write_configs(loader_dir, server, database, workers)
            command = f"apeldbloader --once, workers = {workers}"
            for phase in (f"first load ({command})", f"reload, all duplicates ({command})"):
                _fill_incoming(loader_dir, bodies)
                result = _run_loader(loader_dir, *configs)
                assert result["records"] == total, result
                rows.append({"phase": phase, "records": total, "seconds": result["seconds"],
                             "wall": result["wall"], "rss_mb": result["rss_mb"]})

        args = _create_schema(server, "apel_baseline")
        _create_lookup_functions(args)
        for phase in ("baseline first load (1 statement/record)", "baseline reload (1 statement/record)"):
            rows.append({"phase": phase, "records": total, "seconds": _baseline_load(args, bodies)})
        large_car = _large_car(server, base, LARGE_CAR_MB)
        seconds = _server_alone(server, base, total, per_message)
        rows.insert(5, {"phase": "server alone (LOAD DATA INFILE of the stored rows, no Python)",
                        "records": total, "seconds": seconds})
        _check_same_content(server)
        for row in rows:
            row["records_per_s"] = row["records"] / row["seconds"]
        baseline = {
            kind: next(r["records_per_s"] for r in rows if r["phase"].startswith(f"baseline {kind}"))
            for kind in ("first", "reload")
        }
        for row in rows:
            if not row["phase"].startswith(("baseline", "parse", "server alone")):
                kind = "reload" if "reload" in row["phase"] else "first"
                row["speedup"] = row["records_per_s"] / baseline[kind]
        for row in large_car:
            row["records_per_s"] = row["records"] / row["seconds"]
        incremental, whole = large_car
        incremental["speedup"] = incremental["records_per_s"] / whole["records_per_s"]
        incremental["rss_vs_baseline"] = incremental["rss_mb"] / whole["rss_mb"]
        return rows + large_car
    finally:
        server.stop()
        if own_base:
            shutil.rmtree(base, ignore_errors=True)


def _server_alone(server: MariaDB, base: str, total: int, per_file: int) -> float:
    """Seconds MariaDB alone takes to store the loader's rows again (see the docstring)."""
    export = os.path.join(base, "export")
    os.makedirs(export)
    args = _create_schema(server, "apel_server_alone")
    connection = pymysql.connect(**args, autocommit=False)
    columns = ", ".join((
        "SiteID", "SubmitHostID", "MachineNameID", "QueueID", "LocalJobId", "LocalUserId", "GlobalUserNameID",
        "FQAN", "VOID", "VOGroupID", "VORoleID", "WallDuration", "CpuDuration", "Processors", "NodeCount",
        "StartTime", "EndTime", "EndYear", "EndMonth", "InfrastructureDescription", "InfrastructureType",
        "MemoryReal", "MemoryVirtual", "ServiceLevelType", "ServiceLevel", "PublisherDNID",
    ))
    try:
        with connection.cursor() as cursor:
            everything = os.path.join(export, "all.tsv")
            # in the loader's order: apel.samples numbers its jobs "<seed>.<index>.<random>"
            cursor.execute(
                f"SELECT {columns} FROM apel_bench.JobRecords ORDER BY"  # noqa: S608 - fixed names
                " CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(LocalJobId, '.', 2), '.', -1) AS UNSIGNED)"
                " INTO OUTFILE %s", (everything,),
            )
            with open(everything, encoding="utf-8") as handle:
                lines = handle.readlines()  # INTO OUTFILE escapes newlines inside values
            files = []
            for start in range(0, len(lines), per_file):
                files.append(os.path.join(export, f"rows{start}.tsv"))
                with open(files[-1], "w", encoding="utf-8") as out:
                    out.writelines(lines[start:start + per_file])
            started = time.perf_counter()
            for path in files:
                cursor.execute(f"LOAD DATA INFILE %s REPLACE INTO TABLE JobRecords ({columns})", (path,))  # noqa: S608
                connection.commit()
            seconds = time.perf_counter() - started
            cursor.execute("SELECT COUNT(*) FROM JobRecords")
            (stored,) = cursor.fetchone()
        if stored != total:
            raise RuntimeError(f"server-alone load stored {stored} rows, not {total}")
        return seconds
    finally:
        connection.close()


def _check_same_content(server: MariaDB) -> None:
    """Both designs must have stored the same jobs (else the comparison is void)."""
    counts = {}
    for database in ("apel_bench", "apel_bench_workers", "apel_baseline"):
        connection = pymysql.connect(**server.connect_args(database))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*), SUM(WallDuration), SUM(ServiceLevel) FROM JobRecords")
                counts[database] = cursor.fetchone()
        finally:
            connection.close()
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"the loader and the baseline stored different data: {counts}")


def table(rows: list[dict]) -> str:
    lines = [
        "| phase | records | seconds | records/s | speed-up vs baseline | loader wall time | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        speedup = f"{row['speedup']:.1f}x" if "speedup" in row else ""
        wall = f"{row['wall']:.2f} s" if "wall" in row else ""
        rss = f"{row['rss_mb']:.0f} MB" if "rss_mb" in row else ""
        lines.append(
            f"| {row['phase']} | {row['records']:,} | {row['seconds']:.2f} | {row['records_per_s']:,.0f} "
            f"| {speedup} | {wall} | {rss} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 messages instead of 100")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    print(f"Loader, {rows[0]['records']:,} job records in messages of 1,000, "  # noqa: T201
          f"{os.cpu_count()} CPUs, MariaDB (testkit)\n")
    print(table(rows))  # noqa: T201


if __name__ == "__main__":
    main()

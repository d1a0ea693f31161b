"""Unloader throughput: 200,000 job records and their super summaries out of MariaDB.

Set-up (not timed): MariaDB from ``apel.testkit.services.MariaDB`` in a temporary
directory, the project schema, 200,000 realistic job records (``apel.samples``,
six months) loaded through the MySQL backend in messages of 5,000, then the real
``apelsummariser`` fills HybridSuperSummaries.

Timed: the real ``apeldbunloader`` console script, one run per row, ``interval = all``
into a fresh ``outgoing`` queue with 1,000 records per message. Records/s come from
the unloader's own timing (its "N records in M messages ... in X s" log line, so
interpreter start-up is excluded); the wall time of the whole command and the
process's peak RSS (``wait4``) are shown too. The RSS stays flat as the table grows
because rows are streamed through a server-side cursor.

    .venv/bin/python -m benchmarks.bench_unloader [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

from apel.db.mysql_backend import MySQLBackend, apply_schema
from apel.records.model import JOB, ParsedMessage
from apel.samples import job_records
from apel.testkit.services import MariaDB

BIN = os.path.dirname(sys.executable)
PUBLISHER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=bench-sender.example.org"
DONE_LINE = re.compile(r"(\d+) records in (\d+) messages from \S+ to \S+ in ([0-9.]+) s")
CASES = (  # label, table_name, extra unloader options
    ("VJobRecords, APEL text v0.3", "VJobRecords", {}),
    ("VJobRecords, dict mode v0.4", "VJobRecords", {"dict_benchmark_type": "true"}),
    ("VJobRecords, CAR XML (send_ur)", "VJobRecords", {"send_ur": "true"}),
    ("VSuperSummaries, summary v0.2", "VSuperSummaries", {}),
    ("VNormalisedSuperSummaries, v0.3", "VNormalisedSuperSummaries", {}),
)


def _load(settings: dict, total: int) -> None:
    backend = MySQLBackend(settings)
    backend.connect()
    try:
        batch: list[dict] = []
        for record in job_records(total, seed=42, months=6):
            batch.append(record)
            if len(batch) == 5000:
                backend.load_message(ParsedMessage(JOB, "bench", batch), PUBLISHER)
                batch = []
        if batch:
            backend.load_message(ParsedMessage(JOB, "bench", batch), PUBLISHER)
    finally:
        backend.close()


def _run(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and combined output of one console-script run."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[0]} failed: {output[-3000:]}")
    return wall, usage.ru_maxrss / 1024, output


def _configs(base: str, server: MariaDB, database: str) -> tuple[str, dict]:
    args = server.connect_args(database)
    settings = {"backend": "mysql", "hostname": args["host"], "port": str(args["port"]), "name": database,
                "username": args["user"], "password": args["password"]}
    db_cfg = os.path.join(base, "db.cfg")
    with open(db_cfg, "w", encoding="utf-8") as handle:
        handle.write("[db]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    summariser_cfg = os.path.join(base, "summariser.cfg")
    with open(summariser_cfg, "w", encoding="utf-8") as handle:
        handle.write(f"[summariser]\npidfile = {base}/summariser.pid\n"
                     f"[logging]\nlogfile = {base}/summariser.log\nconsole = false\n")
    return db_cfg, settings


def _unload(base: str, db_cfg: str, index: int, table_name: str, options: dict) -> dict:
    spool = os.path.join(base, f"spool-{index}")
    cfg = os.path.join(base, f"unloader-{index}.cfg")
    logfile = os.path.join(base, f"unloader-{index}.log")
    lines = ["[unloader]", f"dir_location = {spool}", f"table_name = {table_name}", "interval = all",
             "local_jobs = true", "records_per_message = 1000"]
    lines += [f"{key} = {value}" for key, value in options.items()]
    lines += ["[logging]", f"logfile = {logfile}", "level = INFO", "console = false"]
    with open(cfg, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    wall, rss, _ = _run([os.path.join(BIN, "apeldbunloader"), "-d", db_cfg, "-c", cfg])
    with open(logfile, encoding="utf-8") as handle:
        match = DONE_LINE.search(handle.read())
    if match is None:
        raise RuntimeError(f"no result line in {logfile}")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(spool) for f in files)
    shutil.rmtree(spool, ignore_errors=True)
    return {"records": int(match.group(1)), "messages": int(match.group(2)),
            "seconds": float(match.group(3)), "wall": wall, "rss_mb": rss, "mb_written": size / 2**20}


def run(quick: bool = False, base: Optional[str] = None) -> list[dict]:
    """Load, summarise, then time one unloader run per case; one dict per table row."""
    total = 20_000 if quick else 200_000
    own_base = base is None
    base = base or tempfile.mkdtemp(prefix="bench-unloader-")
    server = MariaDB(os.path.join(base, "mariadb")).start()
    try:
        server.create_database("apel_bench")
        apply_schema(server.connect_args("apel_bench"))
        db_cfg, settings = _configs(base, server, "apel_bench")
        _load(settings, total)
        _run([os.path.join(BIN, "apelsummariser"), "-d", db_cfg, "-c", os.path.join(base, "summariser.cfg")])
        rows = []
        for index, (label, table_name, options) in enumerate(CASES):
            row = {"case": label, **_unload(base, db_cfg, index, table_name, options)}
            row["records_per_s"] = row["records"] / row["seconds"] if row["seconds"] else 0.0
            rows.append(row)
        if rows[0]["records"] != total:
            raise RuntimeError(f"unloaded {rows[0]['records']} of {total} job records")
        return rows
    finally:
        server.stop()
        if own_base:
            shutil.rmtree(base, ignore_errors=True)


def table(rows: list[dict]) -> str:
    lines = [
        "| view and format | records | messages | seconds | records/s | MB written | wall time | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['records']:,} | {row['messages']:,} | {row['seconds']:.2f} "
            f"| {row['records_per_s']:,.0f} | {row['mb_written']:.1f} | {row['wall']:.2f} s "
            f"| {row['rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 job records instead of 200,000")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    print(f"Unloader, {rows[0]['records']:,} job records (interval = all, 1,000 records per message), "  # noqa: T201
          f"{os.cpu_count()} CPUs, MariaDB (testkit)\n")
    print(table(rows))  # noqa: T201


if __name__ == "__main__":
    main()

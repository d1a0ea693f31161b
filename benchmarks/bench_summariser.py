"""Summariser: a full summarise of 1,000,000 job records in MariaDB, then an incremental
summarise after one new 1,000-record message.

Steps, on one MariaDB from ``apel.testkit.services.MariaDB`` in a temporary directory:

1. load: N realistic job records (``apel.samples.job_records``: 6 sites, 7 VOs, users,
   HEPSPEC/HEPscore23/si2k in the senders' letter case, 12 months) through the MySQL
   backend's ``load_message``, in 1,000-record messages, exactly as ``apeldbloader``
   writes them (one transaction per message, with the summariser's bookkeeping);
2. first run: the real ``apelsummariser`` console script on the fresh database. It is a
   full run (no earlier run recorded) that also clears N pending-key entries;
3. full: ``apelsummariser --full`` on the same data (steady state, nothing pending): the
   work the old summariser does on every run;
4. incremental: one new 1,000-record message (another seed, same sites and months) is
   loaded, then ``apelsummariser`` runs incrementally; five times, the median run is
   reported with the range. The message replaces no stored
   job, so the loader records delta entries (``apel.db.pending``): the run adds them to
   the HSS rows of the keys they touch (about 1,000 keys in 70 site-months) without
   reading those keys' other jobs, so its time follows the new records, not the
   1,000,000 stored ones. (Before delta entries it recomputed each touched key from all
   its jobs: 1.6 s against 17.1 s for --full, 11×.)

Seconds are the summariser's own timing (its "Summarised ..." log line; interpreter
start-up excluded); the command's wall time is shown as well. Peak RSS is the
summariser process's (``/usr/bin/time``), or this process's for the load. The speed-up
is full (step 3) over the median incremental run.

    .venv/bin/python -m benchmarks.bench_summariser [--records N] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

from apel.db.mysql_backend import MySQLBackend, apply_schema
from apel.records.model import JOB, ParsedMessage
from apel.samples import job_records
from apel.testkit.services import MariaDB

SUMMARISER = os.path.join(os.path.dirname(sys.executable), "apelsummariser")
PUBLISHER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=bench-sender.example.org"
PER_MESSAGE = 1000
# New messages, each followed by an incremental run: the median run is reported, since one
# run of a fraction of a second moves with what the server happens to have cached.
INCREMENTAL_ROUNDS = 5
NOW = dt.datetime(2025, 6, 20, tzinfo=dt.timezone.utc)
DONE_LINE = re.compile(r"Summarised cpu \((\w+)\): (\d+) site-months, (\d+) keys \(\d+ from job deltas\),"
                       r" (\d+) rows affected, \d+ stale deleted, (\d+) pending entries cleared, ([0-9.]+) s")


def _load(backend: MySQLBackend, records: int, seed: int) -> float:
    started = time.perf_counter()
    batch: list[dict] = []
    for record in job_records(records, seed=seed, now=NOW, months=12):
        batch.append(record)
        if len(batch) == PER_MESSAGE:
            backend.load_message(ParsedMessage(JOB, "bench", batch), PUBLISHER)
            batch = []
    if batch:
        backend.load_message(ParsedMessage(JOB, "bench", batch), PUBLISHER)
    return time.perf_counter() - started


def _summarise(workdir: str, *extra: str) -> dict:
    """Run the console script once; its own timing, wall time and peak RSS."""
    log = os.path.join(workdir, "summariser.log")
    before = os.path.getsize(log) if os.path.exists(log) else 0
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", SUMMARISER, "-d", os.path.join(workdir, "db.cfg"),
         "-c", os.path.join(workdir, "summariser.cfg"), *extra],
        capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"apelsummariser failed: {proc.stderr.strip()} (see {log})")
    with open(log, encoding="utf-8") as handle:
        handle.seek(before)
        found = DONE_LINE.search(handle.read())
    if found is None:
        raise RuntimeError(f"no 'Summarised' line in {log}")
    mode, site_months, keys, rows, cleared, seconds = found.groups()
    return {
        "mode": mode, "site_months": int(site_months), "keys": int(keys), "rows": int(rows),
        "pending_cleared": int(cleared), "seconds": float(seconds), "wall": wall,
        "rss_mb": int(proc.stderr.strip().splitlines()[-1]) / 1024,
    }


def run(quick: bool = False, records: Optional[int] = None, base: Optional[str] = None) -> list[dict]:
    """Load, summarise fully, load one message, summarise incrementally; one dict per phase."""
    total = records or (100_000 if quick else 1_000_000)
    own_base = base is None
    base = base or tempfile.mkdtemp(prefix="bench-summariser-")
    server = MariaDB(os.path.join(base, "mariadb")).start()
    try:
        args = server.connect_args(server.create_database("apel"))
        apply_schema(args)
        with open(os.path.join(base, "db.cfg"), "w", encoding="utf-8") as out:
            out.write(f"[db]\nbackend = mysql\nhostname = {args['host']}\nport = {args['port']}\n"
                      f"name = {args['database']}\nusername = {args['user']}\npassword = {args['password']}\n"
                      "type = cpu\n")
        with open(os.path.join(base, "summariser.cfg"), "w", encoding="utf-8") as out:
            out.write(f"[summariser]\npidfile = {base}/summariser.pid\nprogress_interval = 10\n"
                      f"[logging]\nlogfile = {base}/summariser.log\nlevel = INFO\nconsole = false\n")
        backend = MySQLBackend({"hostname": args["host"], "port": str(args["port"]), "name": "apel",
                                "username": args["user"], "password": args["password"]})
        backend.connect()
        try:
            load_seconds = _load(backend, total, seed=1)
            first = _summarise(base)
            full = _summarise(base, "--full")
            loads, runs = [], []
            for seed in range(2, 2 + INCREMENTAL_ROUNDS):
                loads.append(_load(backend, PER_MESSAGE, seed=seed))
                runs.append(_summarise(base))
            new_load = statistics.median(loads)
            runs.sort(key=lambda run: run["seconds"])
            incremental = dict(runs[len(runs) // 2], range=(runs[0]["seconds"], runs[-1]["seconds"]))
            (hss_rows,) = backend.query("SELECT COUNT(*) FROM HybridSuperSummaries")[0]
        finally:
            backend.close()
    finally:
        server.stop()
        if own_base:
            shutil.rmtree(base, ignore_errors=True)
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    phases = [
        {"phase": f"load ({total // PER_MESSAGE} messages × {PER_MESSAGE}, load_message)", "records": total,
         "seconds": load_seconds, "rss_mb": own_rss},
        {"phase": "first run (full: no earlier run; clears the pending keys)", "records": total, **first},
        {"phase": "full (--full)", "records": total, **full},
        {"phase": f"load 1 new message ({PER_MESSAGE} records), median of {INCREMENTAL_ROUNDS}",
         "records": PER_MESSAGE, "seconds": new_load, "rss_mb": own_rss},
        {"phase": f"incremental (after each new message), median of {INCREMENTAL_ROUNDS} runs",
         "records": PER_MESSAGE, **incremental},
    ]
    for phase in phases:
        phase["records_per_s"] = phase["records"] / phase["seconds"] if phase["seconds"] else 0.0
        phase["hss_rows"] = hss_rows
    phases[4]["speedup"] = full["seconds"] / incremental["seconds"] if incremental["seconds"] else 0.0
    return phases


def table(phases: list[dict]) -> str:
    lines = [
        "| phase | records | seconds | records/s | speed-up (full / incremental) | command wall time |"
        " site-months / keys | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in phases:
        speedup = f"{p['speedup']:.0f}×" if "speedup" in p else ""
        wall = f"{p['wall']:.2f} s" if "wall" in p else ""
        seconds = f"{p['seconds']:.3f}"
        if "range" in p:
            seconds += f" ({p['range'][0]:.3f}–{p['range'][1]:.3f})"
        scope = f"{p['site_months']} / {p['keys']}" if "site_months" in p else ""
        lines.append(
            f"| {p['phase']} | {p['records']:,} | {seconds} | {p['records_per_s']:,.0f} |"
            f" {speedup} | {wall} | {scope} | {p['rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=None, help="job records to load (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    options = parser.parse_args()
    phases = run(quick=options.quick, records=options.records)
    print(table(phases))
    print(f"\nHybridSuperSummaries rows at the end: {phases[-1]['hss_rows']:,}")


if __name__ == "__main__":
    main()

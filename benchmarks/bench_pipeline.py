"""End to end: records/s from a site's outgoing queue to summarised rows in MariaDB.

The site's ssmsend signs, encrypts and sends N messages of 1,000 job records
through ActiveMQ over TLS with client certificates; ssmreceive and apeldbloader
(two loaders on the one queue by default, as the loader supports) run as daemons at
the same time (as in production, so the stages overlap);
apelsummariser runs once everything is loaded. The clock starts when ssmsend
starts and stops when the summariser has finished. The peak RSS of each program
comes from /proc (VmHWM) just before it is stopped.

Usage: ``python benchmarks/bench_pipeline.py [--messages 200]``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

from dirq.QueueSimple import QueueSimple

from apel.records import render_message
from apel.records.model import JOB
from apel.samples import job_records
from apel.testkit.quickstart import BIN, Quickstart, _chunks

RECORDS_PER_MESSAGE = 1000


def _peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _stop(process: subprocess.Popen) -> float:
    peak = _peak_rss_mb(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return peak


def _loaded_jobs(backend) -> int:
    return int(backend.query("SELECT COUNT(*) FROM JobRecords", ())[0][0])


def run(quick: bool = False, messages: Optional[int] = None, loaders: int = 2) -> list[dict]:
    messages = messages or (40 if quick else 200)
    records = messages * RECORDS_PER_MESSAGE
    with tempfile.TemporaryDirectory(prefix="apel-pipeline-") as workdir:
        pipeline = Quickstart(workdir, use_mariadb=True, seed=7)
        pipeline.prepare()
        try:
            pipeline.start_services()
            pipeline.write_configs()
            pipeline.create_database()
            outgoing = QueueSimple(os.path.join(workdir, "site/outgoing"))
            for chunk in _chunks(job_records(records, seed=7), RECORDS_PER_MESSAGE):
                outgoing.add(render_message(JOB, chunk))
            receiver = subprocess.Popen(
                [f"{BIN}/ssmreceive", "-c", pipeline.etc("receiver.cfg"), "-d", pipeline.etc("dns"),
                 "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            loader_configs = ["loader.cfg"]
            for index in range(1, loaders):  # more loaders on the same queue, as a busy server runs
                pipeline.write_loader(f"loader{index}-", "server/spool")
                loader_configs.append(f"loader{index}-loader.cfg")
            loader_procs = [subprocess.Popen(
                [f"{BIN}/apeldbloader", "-d", pipeline.etc("db-cpu.cfg"), "-c", pipeline.etc(config),
                 "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ) for config in loader_configs]
            # The summariser has run before on a live server: this run is incremental.
            subprocess.run([f"{BIN}/apelsummariser", "-d", pipeline.etc("db-cpu.cfg"), "-c",
                            pipeline.etc("summariser.cfg")], check=True, capture_output=True)
            time.sleep(2)  # both daemons connected and idle before the clock starts
            started = time.monotonic()
            sender = subprocess.Popen([f"{BIN}/ssmsend", "-c", pipeline.etc("sender.cfg")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sender_peak = 0.0
            while sender.poll() is None:
                sender_peak = max(sender_peak, _peak_rss_mb(sender.pid))
                time.sleep(0.1)
            sent = time.monotonic() - started
            if sender.returncode != 0:
                raise RuntimeError(f"ssmsend failed; see {pipeline.logs}/ssmsend.log")
            deadline = time.monotonic() + 600
            with pipeline.backend() as backend:
                while _loaded_jobs(backend) < records:
                    if time.monotonic() > deadline:
                        raise RuntimeError("records did not all arrive in the database")
                    time.sleep(0.1)
            loaded = time.monotonic() - started
            summarise = subprocess.run(
                ["/usr/bin/time", "-f", "%M", f"{BIN}/apelsummariser", "-d", pipeline.etc("db-cpu.cfg"),
                 "-c", pipeline.etc("summariser.cfg")], capture_output=True, text=True, check=False,
            )
            total = time.monotonic() - started
            if summarise.returncode != 0:
                raise RuntimeError(f"apelsummariser failed; see {pipeline.logs}/summariser.log")
            summariser_peak = int(summarise.stderr.strip().splitlines()[-1]) / 1024
            receiver_peak = _stop(receiver)
            loader_peak = max(_stop(process) for process in loader_procs)
        finally:
            pipeline.stop_services()
    return [{
        "benchmark": "pipeline: ssmsend → ActiveMQ/TLS → ssmreceive → apeldbloader → apelsummariser",
        "messages": messages,
        "records": records,
        "loaders": loaders,
        "sent_s": round(sent, 2),
        "loaded_s": round(loaded, 2),
        "total_s": round(total, 2),
        "records_per_s": round(records / total),
        "peak_rss_mb": {
            "ssmsend": round(sender_peak, 1), "ssmreceive": round(receiver_peak, 1),
            "apeldbloader": round(loader_peak, 1), "apelsummariser": round(summariser_peak, 1),
        },
    }]


def format_table(rows: list[dict]) -> str:
    lines = [
        "| messages × records | loaders | sent (s) | loaded (s) | summarised (s) | records/s end to end | "
        "peak RSS MB (send / receive / load / summarise) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rss = row["peak_rss_mb"]
        lines.append(
            f"| {row['messages']} × {RECORDS_PER_MESSAGE} | {row['loaders']} | {row['sent_s']} | "
            f"{row['loaded_s']} | "
            f"{row['total_s']} | {row['records_per_s']:,} | {rss['ssmsend']} / {rss['ssmreceive']} / "
            f"{rss['apeldbloader']} / {rss['apelsummariser']} |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--loaders", type=int, default=2, help="apeldbloader daemons on the queue")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick, messages=None if args.quick else args.messages, loaders=args.loaders)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Records: parse+validate and render throughput of APEL text messages, one core, no I/O.

Set-up (not timed): realistic records from ``apel.samples`` (job, summary, cloud),
rendered once into messages of 1,000 records each.

Timed, per message type, each message's best of N repetitions, summed (the machine
is shared, so the best run is the one least disturbed by other work):

- parse: ``parse_message(body)`` over every message (routing, splitting, coercion,
  per-field and cross-field checks, FQAN derivation);
- render: ``render_message(record_type, records, ...)`` over every message.

Records/s come from the best wall time; the µs per record show the best wall time
and, in brackets, the best CPU time of the thread (steadier on a shared machine).

Peak RSS is the process's ``ru_maxrss`` at the end.

    .venv/bin/python -m benchmarks.bench_records [--quick]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from functools import partial
from typing import Any, Callable

from apel.records import parse_message, render_message
from apel.records.model import CLOUD, JOB, SUMMARY, Record
from apel.samples import cloud_records, job_records, summary_records

RECORDS_PER_MESSAGE = 1000
CASES = (  # label, record type, record factory, render options
    ("job v0.3", JOB, job_records, {}),
    ("job v0.4 dict", JOB, job_records, {"dict_benchmark": True}),
    ("summary v0.2", SUMMARY, summary_records, {}),
    ("cloud v0.4", CLOUD, cloud_records, {}),
)


def _chunks(records: list[Record], size: int) -> list[list[Record]]:
    return [records[start:start + size] for start in range(0, len(records), size)]


def _best_seconds(works: list[Callable[[], Any]], repeats: int) -> tuple[float, float]:
    """Summed over ``works`` (one per message), the fastest of ``repeats`` runs of each: wall
    seconds and this thread's CPU seconds.

    Timing each message on its own (tens of milliseconds) gives every one a fair chance of
    an undisturbed run on a shared machine; the collector is off, as timeit does.
    """
    wall = cpu = 0.0
    enabled = gc.isenabled()
    gc.disable()
    try:
        for work in works:
            best_wall = best_cpu = float("inf")
            for _ in range(repeats):
                started, started_cpu = time.perf_counter(), time.thread_time()
                work()
                best_cpu = min(best_cpu, time.thread_time() - started_cpu)
                best_wall = min(best_wall, time.perf_counter() - started)
            wall += best_wall
            cpu += best_cpu
    finally:
        if enabled:
            gc.enable()
    return wall, cpu


def run(quick: bool = False) -> list[dict]:
    """One row per message type: parse and render records/s (best of N), µs per record."""
    total = 2000 if quick else 20000
    repeats = 3 if quick else 9
    rows = []
    for label, record_type, factory, options in CASES:
        records = list(factory(total, seed=7))
        messages = _chunks(records, RECORDS_PER_MESSAGE)
        bodies = [render_message(record_type, chunk, **options) for chunk in messages]
        parsed = sum(len(parse_message(body).records) for body in bodies)
        if parsed != total:
            raise RuntimeError(f"{label}: parsed {parsed} records, expected {total}")
        parse_s, parse_cpu = _best_seconds([partial(parse_message, body) for body in bodies], repeats)
        render_s, render_cpu = _best_seconds(
            [partial(render_message, record_type, chunk, **options) for chunk in messages], repeats)
        rows.append({
            "case": label,
            "records": total,
            "parse_records_per_s": total / parse_s,
            "parse_us_per_record": parse_s / total * 1e6,
            "parse_cpu_us_per_record": parse_cpu / total * 1e6,
            "render_records_per_s": total / render_s,
            "render_us_per_record": render_s / total * 1e6,
            "render_cpu_us_per_record": render_cpu / total * 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| message | records | parse records/s | parse µs/record (CPU) | render records/s "
             "| render µs/record (CPU) | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['case']} | {row['records']:,} | {row['parse_records_per_s']:,.0f} "
                     f"| {row['parse_us_per_record']:.2f} ({row['parse_cpu_us_per_record']:.2f}) "
                     f"| {row['render_records_per_s']:,.0f} "
                     f"| {row['render_us_per_record']:.2f} ({row['render_cpu_us_per_record']:.2f}) "
                     f"| {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    """Print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records and repetitions")
    args = parser.parse_args()
    print(table(run(quick=args.quick)))


if __name__ == "__main__":
    main()

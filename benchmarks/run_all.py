"""Every benchmark of the project, one after the other, summarised in one table.

Each benchmark module measures our code against the existing design in the same
run (openssl subprocesses, one statement per record, one message in flight, a full
summarisation). This runner calls their ``run()`` functions, keeps each module's
own detailed table, and prints one Markdown table with the headline figures. The
whole report is also written to ``benchmarks/results/latest.md``.

Usage: ``python -m benchmarks.run_all [--quick] [--only crypto,loader,...]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

Row = dict[str, str]


def _rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def _crypto(rows: list[dict]) -> list[Row]:
    return [{
        "benchmark": "crypto", "measurement": f"{r['operation']} {r['size']}",
        "result": _rate(r["ours_ops"], "ops/s"), "baseline": _rate(r["baseline_ops"], "ops/s (openssl)"),
        "speedup": f"{r['speedup']:.1f}×", "rss": "",
    } for r in rows]


def _records(rows: list[dict]) -> list[Row]:
    out = []
    for r in rows:
        out.append({"benchmark": "records", "measurement": f"parse {r['case']}",
                    "result": _rate(r["parse_records_per_s"], "records/s"), "baseline": "", "speedup": "",
                    "rss": f"{r['peak_rss_mb']:.0f} MB"})
        out.append({"benchmark": "records", "measurement": f"render {r['case']}",
                    "result": _rate(r["render_records_per_s"], "records/s"), "baseline": "", "speedup": "",
                    "rss": ""})
    return out


def _loader(rows: list[dict]) -> list[Row]:
    baselines = {"first": "", "reload": ""}
    for r in rows:
        if r["phase"].startswith("baseline first"):
            baselines["first"] = _rate(r["records_per_s"], "records/s (1 statement/record)")
        elif r["phase"].startswith("baseline reload"):
            baselines["reload"] = _rate(r["records_per_s"], "records/s (1 statement/record)")
    whole_tree = next((r for r in rows if r.get("baseline_car")), None)
    if whole_tree is not None:
        baselines["car"] = (f"{_rate(whole_tree['records_per_s'], 'records/s')}, "
                            f"{whole_tree['rss_mb']:.0f} MB peak (whole tree)")
    out = []
    for r in rows:
        if r["phase"].startswith("baseline") or r.get("baseline_car"):
            continue
        kind = "reload" if "reload" in r["phase"] else "first" if "first" in r["phase"] else ""
        kind = "car" if r.get("large_car") else kind
        out.append({
            "benchmark": "loader (MariaDB)", "measurement": r["phase"],
            "result": _rate(r["records_per_s"], "records/s"), "baseline": baselines.get(kind, ""),
            "speedup": f"{r['speedup']:.1f}×" if "speedup" in r else "",
            "rss": f"{r['rss_mb']:.0f} MB" if "rss_mb" in r else "",
        })
    return out


def _summariser(rows: list[dict]) -> list[Row]:
    full = next((r for r in rows if r["phase"].startswith("full")), None)
    out = []
    for r in rows:
        if r["phase"].startswith(("load", "first run")):
            continue
        incremental = r["phase"].startswith("incremental")
        out.append({
            "benchmark": "summariser (MariaDB)", "measurement": f"{r['phase']}, {r['records']:,} records",
            "result": f"{r['seconds']:.3f} s",
            "baseline": f"{full['seconds']:.2f} s (full)" if incremental and full else "",
            "speedup": f"{full['seconds'] / r['seconds']:.0f}×" if incremental and full else "",
            "rss": f"{r['rss_mb']:.0f} MB" if "rss_mb" in r else "",
        })
    return out


def _unloader(rows: list[dict]) -> list[Row]:
    return [{
        "benchmark": "unloader (MariaDB)", "measurement": r["case"],
        "result": _rate(r["records"] / r["seconds"], "records/s"), "baseline": "", "speedup": "",
        "rss": f"{r['rss_mb']:.0f} MB",
    } for r in rows]


def _ssm(rows: list[dict]) -> list[Row]:
    baseline = next((r for r in rows if r["window"] == 1), None)
    compare = {id(r): baseline is not None and r is not baseline and not r["run"].startswith("transport")
               for r in rows}
    return [{
        "benchmark": "ssm end to end", "measurement": f"{r['run']} ({r['messages']} × 10 KB)",
        "result": f"{r['msg_per_s']:,.0f} msg/s",
        "baseline": f"{baseline['msg_per_s']:,.0f} msg/s (window 1)" if compare[id(r)] else "",
        "speedup": f"{r['msg_per_s'] / baseline['msg_per_s']:.1f}×" if compare[id(r)] else "",
        "rss": f"send {r['sender_rss_mb']:.0f} / receive {r['receiver_rss_mb']:.0f} MB",
    } for r in rows]


def _ssm_split(rows: list[dict]) -> list[Row]:
    ours, baseline = rows
    peak, before = ours["peak_rss_mb"], baseline["peak_rss_mb"]
    return [{
        "benchmark": "ssmsend split", "measurement":
            f"one {ours['message_mb']:.0f} MB message into {ours['parts']} parts: peak RSS (bound 300 MB)",
        "result": f"{peak:.0f} MB", "baseline": f"{before:.0f} MB (split in memory)",
        "speedup": f"{before / peak:.1f}× less", "rss": f"{peak:.0f} MB",
    }]


def _pipeline(rows: list[dict]) -> list[Row]:
    return [{
        "benchmark": "pipeline (MariaDB)", "measurement": f"{r['messages']} messages × 1,000 job records",
        "result": _rate(r["records_per_s"], "records/s"), "baseline": "", "speedup": "",
        "rss": " / ".join(f"{name} {mb:.0f}" for name, mb in r["peak_rss_mb"].items()) + " MB",
    } for r in rows]


# module name, adapter, the module's own table function name
BENCHMARKS: dict[str, tuple[str, Callable[[list[dict]], list[Row]], str]] = {
    "crypto": ("benchmarks.bench_crypto", _crypto, "format_table"),
    "records": ("benchmarks.bench_records", _records, "table"),
    "loader": ("benchmarks.bench_loader", _loader, "table"),
    "summariser": ("benchmarks.bench_summariser", _summariser, "table"),
    "unloader": ("benchmarks.bench_unloader", _unloader, "table"),
    "ssm": ("benchmarks.bench_ssm", _ssm, "table"),
    "ssm-split": ("benchmarks.bench_ssm_split", _ssm_split, "table"),
    "pipeline": ("benchmarks.bench_pipeline", _pipeline, "format_table"),
}


def _run_isolated(module_name: str, quick: bool) -> list[dict]:
    """``run()`` of a benchmark module in a fresh interpreter, so that each one's peak
    RSS (measured with getrusage) is its own and not the largest of all before it."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        code = (f"import json, sys; from {module_name} import run; "
                f"json.dump(run(quick={quick!r}), open(sys.argv[1], 'w'), default=str)")
        subprocess.run([sys.executable, "-c", code, result.name], check=True,
                       stdout=sys.stderr, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return json.load(result)


def headline_table(rows: list[Row]) -> str:
    lines = ["| benchmark | measurement | ours | baseline (same run) | speed-up | peak RSS |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['benchmark']} | {r['measurement']} | {r['result']} | {r['baseline']} | "
              f"{r['speedup']} | {r['rss']} |" for r in rows]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes in all)")
    parser.add_argument("--only", default="", help=f"comma list of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    headline: list[Row] = []
    details: list[str] = []
    for name in chosen:
        module_name, adapter, table_name = BENCHMARKS[name]
        module = importlib.import_module(module_name)
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows = _run_isolated(module_name, args.quick)
        print(f"  {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        headline += adapter(rows)
        details.append(f"### {name}\n\n{getattr(module, table_name)(rows)}\n")
    report = (f"## Benchmarks ({'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs)\n\n"
              + headline_table(headline) + "\n\n" + "\n".join(details))
    print(report)
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "latest.md"), "w", encoding="utf-8") as handle:
        handle.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

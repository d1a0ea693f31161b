"""Peak memory of ssmsend splitting one 200 MB APEL text message.

A message over ``max_message_size`` is split at record boundaries into messages
that fit. ssmsend used to read it whole, sign it whole to learn its size, split the
text in memory and sign every part before queuing any: 1.97 GB of RSS for 200 MB.
It now cuts parts while reading the file in 1 MB pieces and queues each at once.

Two rows, measured in the same run on the same message:

* **ours**: the real ``ssmsend`` sending the message to ActiveMQ (STOMP+TLS, the
  default 10 MiB limit), its peak RSS from ``wait4``; it must stay under 300 MB;
* **baseline**: the previous approach in a child process (read, decode, sign whole,
  ``split_message``, sign every part, all held until queued), its peak RSS likewise.

    .venv/bin/python -m benchmarks.bench_ssm_split [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Optional

from dirq.QueueSimple import QueueSimple

from apel.testkit.pki import TestPKI
from apel.testkit.services import ActiveMQ

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "APEL-individual-job-message: v0.3\n"
LIMIT = 10 * 1024 * 1024  # ssmsend's default max_message_size
RSS_BOUND_MB = 300


def _record(index: int) -> str:
    return (f"Site: BENCH-SITE\nSubmitHost: ce.example.org:8443/cream-pbs-long\nLocalJobId: {index:09d}\n"
            f"LocalUserId: user{index % 500:03d}\nGlobalUserName: /C=UK/O=eScience/OU=CLRC/L=RAL/CN=user "
            f"{index % 500}\nFQAN: /atlas/Role=production/Capability=NULL\nVO: atlas\nVOGroup: /atlas\n"
            f"VORole: Role=production\nWallDuration: {index % 86400}\nCpuDuration: {index % 80000}\n"
            "Processors: 1\nNodeCount: 1\nStartTime: 1700000000\nEndTime: 1700086400\n"
            "MemoryReal: 2000000\nMemoryVirtual: 4000000\n"
            "ServiceLevelType: HEPSPEC\nServiceLevel: 10.0\n%%\n")


def write_message(path: str, size: int) -> int:
    """An APEL job message of about ``size`` bytes, written without holding it in memory."""
    written = 0
    with open(path, "w", encoding="ascii") as handle:
        handle.write(HEADER)
        index = 0
        while written < size:
            batch = "".join(_record(index + i) for i in range(1000))
            handle.write(batch)
            written += len(batch)
            index += 1000
    return os.path.getsize(path)


def _wait_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int, float, float]:
    """(exit status, peak RSS in MB, seconds) of a child, from wait4."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss / 1024, time.monotonic() - started
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{proc.args[0]} did not finish in {timeout:.0f} s")


def _ours(base: str, pki: TestPKI, broker: ActiveMQ, message: str) -> dict:
    sender = pki.host("split-bench-sender")
    outgoing = os.path.join(base, "outgoing")
    queue = QueueSimple(outgoing)
    queued = os.path.join(base, "queued-copy")
    shutil.copyfile(message, queued)
    queue.add_path(queued)
    cfg = os.path.join(base, "sender.cfg")
    with open(cfg, "w", encoding="utf-8") as handle:
        handle.write(
            "[sender]\nprotocol: STOMP\n"
            f"[broker]\nhost: localhost\nport: {broker.ssl_port}\nuse_ssl: true\n"
            f"[certificates]\ncertificate: {sender.cert_path}\nkey: {sender.key_path}\ncapath: {pki.capath}\n"
            f"[messaging]\ndestination: /queue/bench.{uuid.uuid4().hex}\npath: {outgoing}\n"
            f"max_message_size: {LIMIT}\n"
            f"[logging]\nlogfile: {os.path.join(base, 'ssmsend.log')}\nlevel: INFO\nconsole: false\n")
    proc = subprocess.Popen([os.path.join(BIN, "ssmsend"), "-c", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status, rss_mb, seconds = _wait_rusage(proc, timeout=1800)
    if status != 0:
        raise RuntimeError(f"ssmsend exited {status}: {proc.stderr.read().decode() if proc.stderr else ''}")
    with open(os.path.join(base, "ssmsend.log"), encoding="utf-8") as handle:
        sent = next(int(line.split("Sent ")[1].split()[0]) for line in handle if " - Sent " in line)
    return {"case": "ssmsend: split while reading, then sign and send each part (ours)",
            "parts": sent, "seconds": round(seconds, 1), "peak_rss_mb": round(rss_mb, 1)}


def _baseline(base: str, pki: TestPKI, message: str) -> dict:
    sender = pki.host("split-bench-baseline")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_ssm_split", "--in-memory", message, sender.cert_path,
         sender.key_path],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    status, rss_mb, seconds = _wait_rusage(proc, timeout=1800)
    if status != 0:
        raise RuntimeError(f"baseline exited {status}: {proc.stderr.read().decode() if proc.stderr else ''}")
    parts = int(proc.stdout.read().decode().strip()) if proc.stdout else 0
    return {"case": "previous: read, sign whole, split in memory, sign every part (baseline)",
            "parts": parts, "seconds": round(seconds, 1), "peak_rss_mb": round(rss_mb, 1)}


def in_memory_split(message: str, cert: str, key: str) -> int:
    """What ssmsend did before (baseline, run in a child): the number of parts made."""
    from ssm.sign_ahead import sign_message
    from ssm.split import split_message

    with open(message, "rb") as handle:
        text = handle.read().decode("utf-8")
    body, _problem = sign_message(text, cert, key, None)
    size = len(body.encode("utf-8")) if body else 0
    parts = -(-size * 5 // (LIMIT * 4))
    texts = split_message(text, parts) or []
    signed = [sign_message(part, cert, key, None) for part in texts]
    assert all(len(part.encode("utf-8")) <= LIMIT for part, _ in signed if part)
    return len(signed)


def run(quick: bool = False, base: Optional[str] = None) -> list[dict]:
    """Measure both; returns one row each."""
    own_base = base is None
    base = base or tempfile.mkdtemp(prefix="bench-ssm-split-")
    size = (50 if quick else 200) * 1024 * 1024
    pki = TestPKI(os.path.join(base, "pki"))
    message = os.path.join(base, "message.txt")
    actual = write_message(message, size)
    broker = ActiveMQ(os.path.join(base, "activemq"), pki).start()
    try:
        rows = [_ours(base, pki, broker, message), _baseline(base, pki, message)]
    finally:
        broker.stop()
        if own_base:
            shutil.rmtree(base, ignore_errors=True)
    for row in rows:
        row["message_mb"] = round(actual / 1024 / 1024, 1)
    rows[0]["within_bound"] = rows[0]["peak_rss_mb"] < RSS_BOUND_MB
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| case | message (MB) | parts | seconds | peak RSS (MB) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        bound = ""
        if "within_bound" in r:
            bound = f" (bound {RSS_BOUND_MB}: {'ok' if r['within_bound'] else 'OVER'})"
        lines.append(f"| {r['case']} | {r['message_mb']} | {r['parts']} | {r['seconds']} "
                     f"| **{r['peak_rss_mb']}**{bound} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 50 MB message instead of 200 MB")
    parser.add_argument("--in-memory", nargs=3, metavar=("MESSAGE", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_memory:
        print(in_memory_split(*args.in_memory))
        return
    print(f"ssmsend splitting one large message, {os.cpu_count()} CPUs, max_message_size {LIMIT}\n")
    print(table(run(quick=args.quick)))


if __name__ == "__main__":
    main()

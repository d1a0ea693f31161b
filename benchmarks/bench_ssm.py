"""End-to-end SSM throughput: outgoing queue -> ssmsend -> ActiveMQ (TLS) -> ssmreceive -> incoming.

Runs the real console scripts against a broker started with ``apel.testkit`` (STOMP
over TLS with client certificates), with 10 KB messages. The clock starts when
ssmsend starts (the receiver is already subscribed) and stops when the last
message is fsync'd into ``incoming``. The same run measures a one-in-flight
baseline (``send_window: 1``), which is how the existing SSM sends. The broker is
first warmed up until its JIT compiler goes quiet (as in a broker in service), and
the headline row is the median of three runs, with their range.

Besides messages/s (which depends on what else the machine is doing) it reports
the CPU time each process spent per message, from ``wait4`` for ssmsend (its
signing workers included) and ssmreceive and from ``/proc`` for the broker.

A last row, *transport only*, is the ceiling any SSM built on stomp.py and this
broker has on this machine: the same STOMP+TLS connections, persistent messages,
receipts, window of 20 and client-individual acks, but one pre-signed body sent
over and over and acknowledged on arrival, with no signing, verifying or disk
writes at all (two forked processes using ``ssm.stomp_link``).

    .venv/bin/python -m benchmarks.bench_ssm [--quick]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Optional

from apel.testkit.pki import TestPKI
from apel.testkit.services import ActiveMQ
from ssm import crypto
from ssm.brokers import Broker
from ssm.dirqueue import DirqOutgoingQueue, open_incoming
from ssm.stomp_link import StompLink, TLSSettings

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGE_SIZE = 10 * 1024


def _body(index: int, size: int) -> str:
    head = f"APEL-individual-job-message: v0.3\nSite: BENCH-{index}\n"
    line = f"Record {index:06d} " + "x" * 60 + "\n"
    return (head + line * max(0, (size - len(head)) // len(line)) + "%%").rstrip()


def _cfg(path: str, sections: dict[str, dict[str, str]]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for section, values in sections.items():
            handle.write(f"[{section}]\n" + "".join(f"{k}: {v}\n" for k, v in values.items()) + "\n")
    return path


def _wait_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int, int, float]:
    """(exit status, peak RSS in KB, CPU seconds incl. its reaped children) of a child, from wait4."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"{proc.args[0]} did not finish in {timeout:.0f} s")


def _one_run(base: str, pki: TestPKI, broker: ActiveMQ, label: str, count: int, window: int,
             encrypt: bool, persistent: bool = True) -> dict:
    run_dir = os.path.join(base, f"run-{label}")
    os.makedirs(run_dir)
    sender, receiver = pki.host(f"bench-sender-{label}"), pki.host(f"bench-receiver-{label}")
    destination = f"/queue/bench.{uuid.uuid4().hex}"
    common_broker = {"host": "localhost", "port": str(broker.ssl_port), "use_ssl": "true"}
    send_cfg = _cfg(os.path.join(run_dir, "sender.cfg"), {
        "sender": {"protocol": "STOMP"},
        "broker": common_broker,
        "certificates": dict(
            {"certificate": sender.cert_path, "key": sender.key_path, "capath": pki.capath},
            **({"server_cert": receiver.cert_path} if encrypt else {}),
        ),
        "messaging": {"destination": destination, "path": os.path.join(run_dir, "outgoing"),
                      "send_window": str(window), "persistent": str(persistent).lower()},
        "logging": {"logfile": os.path.join(run_dir, "ssmsend.log"), "level": "WARN", "console": "false"},
    })
    incoming_base = os.path.join(run_dir, "spool")
    recv_cfg = _cfg(os.path.join(run_dir, "receiver.cfg"), {
        "receiver": {"protocol": "STOMP"},
        "broker": common_broker,
        "certificates": {"certificate": receiver.cert_path, "key": receiver.key_path,
                         "capath": pki.capath, "check_crls": "false"},
        "messaging": {"destination": destination, "path": incoming_base},
        "logging": {"logfile": os.path.join(run_dir, "ssmreceive.log"), "level": "WARN", "console": "false"},
        "daemon": {"pidfile": os.path.join(run_dir, "ssmreceive.pid")},
    })
    dns = os.path.join(run_dir, "dns")
    with open(dns, "w", encoding="utf-8") as handle:
        handle.write(sender.dn + "\n")
    outgoing = DirqOutgoingQueue(os.path.join(run_dir, "outgoing"))
    for index in range(count):
        outgoing.add(_body(index, MESSAGE_SIZE))
    payload = sum(len(_body(i, MESSAGE_SIZE)) for i in range(count))

    incoming = open_incoming(incoming_base)
    recv = subprocess.Popen([os.path.join(BIN, "ssmreceive"), "-c", recv_cfg, "-d", dns, "--foreground"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)  # subscribed before the clock starts
        broker_cpu = _cpu_seconds(broker.proc.pid)
        start = time.monotonic()
        send = subprocess.Popen([os.path.join(BIN, "ssmsend"), "-c", send_cfg],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        send_status, send_rss, send_cpu = _wait_rusage(send, timeout=600)
        send_done = time.monotonic() - start
        deadline = time.monotonic() + 600
        while incoming.count() < count and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        received = incoming.count()
        broker_cpu = _cpu_seconds(broker.proc.pid) - broker_cpu
    finally:
        recv.terminate()
        recv_status, recv_rss, recv_cpu = _wait_rusage(recv, timeout=60)
    return {
        "run": label, "window": window, "encrypted": encrypt, "messages": count, "received": received,
        "send_exit": send_status, "receive_exit": recv_status,
        "send_s": round(send_done, 2), "seconds": round(elapsed, 2),
        "msg_per_s": round(received / elapsed, 1), "mb_per_s": round(payload / elapsed / 1e6, 2),
        "sender_rss_mb": round(send_rss / 1024, 1), "receiver_rss_mb": round(recv_rss / 1024, 1),
        "cpu_ms_per_msg": {
            "sender": round(send_cpu * 1000 / count, 2),
            "receiver": round(recv_cpu * 1000 / count, 2),
            "broker": round(broker_cpu * 1000 / count, 2),
        },
    }


def _transport_sender(broker: Broker, tls: TLSSettings, destination: str, body: str, count: int,
                      window: int) -> None:
    """Send ``body`` ``count`` times with receipts, ``window`` in flight (forked child)."""
    free = threading.Semaphore(window)
    done = threading.Event()
    receipts = [0]

    def on_receipt(_receipt_id: str) -> None:
        receipts[0] += 1
        free.release()
        if receipts[0] == count:
            done.set()

    link = StompLink(broker, tls, on_receipt=on_receipt)
    link.connect()
    for index in range(count):
        free.acquire()
        link.send(destination, body, {"persistent": "true", "receipt": f"r{index}", "empa-id": f"r{index}"})
    done.wait(300)
    link.close()


def _transport_receiver(broker: Broker, tls: TLSSettings, destination: str, count: int,
                        ready: str) -> None:
    """Acknowledge ``count`` messages as they arrive (forked child)."""
    done = threading.Event()
    received = [0]

    def on_message(link: StompLink, headers: dict, _body: object) -> None:
        link.ack(headers["message-id"], headers["subscription"])
        received[0] += 1
        if received[0] == count:
            done.set()

    link = StompLink(broker, tls, on_message=on_message)
    link.connect()
    link.subscribe(destination, prefetch=50)
    with open(ready, "w", encoding="ascii"):
        pass
    done.wait(300)
    link.close()


def _forked(target, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - reported by the exit status
            code = 1
        os._exit(code)
    return pid


def _transport_only(base: str, pki: TestPKI, broker: ActiveMQ, count: int) -> dict:
    """The transport-only run (see the module docstring)."""
    run_dir = os.path.join(base, "run-transport")
    os.makedirs(run_dir)
    sender, receiver = pki.host("bench-transport-sender"), pki.host("bench-transport-receiver")
    where = Broker("localhost", broker.ssl_port)
    destination = f"/queue/bench.{uuid.uuid4().hex}"
    body = crypto.sign(_body(0, MESSAGE_SIZE), sender.cert_path, sender.key_path)
    ready = os.path.join(run_dir, "subscribed")
    recv = _forked(_transport_receiver, where, TLSSettings(receiver.cert_path, receiver.key_path, pki.capath),
                   destination, count, ready)
    deadline = time.monotonic() + 30
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    broker_cpu = _cpu_seconds(broker.proc.pid)
    start = time.monotonic()
    send = _forked(_transport_sender, where, TLSSettings(sender.cert_path, sender.key_path, pki.capath),
                   destination, body, count, 20)
    results = {}
    for name, pid in (("sender", send), ("receiver", recv)):
        _, status, usage = os.wait4(pid, 0)
        results[name] = (os.waitstatus_to_exitcode(status), usage)
    elapsed = time.monotonic() - start
    broker_cpu = _cpu_seconds(broker.proc.pid) - broker_cpu
    received = count if all(code == 0 for code, _ in results.values()) else 0
    return {
        "run": "transport only (no crypto, no disk)", "window": 20, "encrypted": False, "messages": count,
        "received": received, "send_exit": results["sender"][0], "receive_exit": results["receiver"][0],
        "send_s": round(elapsed, 2), "seconds": round(elapsed, 2),
        "msg_per_s": round(received / elapsed, 1), "mb_per_s": round(received * len(body) / elapsed / 1e6, 2),
        "sender_rss_mb": round(results["sender"][1].ru_maxrss / 1024, 1),
        "receiver_rss_mb": round(results["receiver"][1].ru_maxrss / 1024, 1),
        "cpu_ms_per_msg": {
            name: round((usage.ru_utime + usage.ru_stime) * 1000 / count, 2)
            for name, (_, usage) in results.items()
        } | {"broker": round(broker_cpu * 1000 / count, 2)},
    }


def _stat_cpu(stat_path: str) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (a process or a thread)."""
    with open(stat_path, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (the broker)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def _jit_seconds(pid: int) -> float:
    """CPU of the JVM's JIT compiler threads (``C1/C2 CompilerThread``) so far."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm", encoding="ascii") as handle:
                if "CompilerThre" in handle.read():
                    total += _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:  # the JVM retires idle compiler threads
            continue
    return total


def _warm_up(base: str, pki: TestPKI, broker: ActiveMQ, count: int, max_rounds: int) -> tuple[int, float]:
    """Run unreported rounds until the broker's JIT compiler has little left to do.

    A broker in service has compiled its hot paths long ago; a fresh JVM spends up
    to a millisecond of CPU per message compiling during its first ~10,000 messages,
    which on 2 shared cores would be charged to SSM. Returns (rounds, JIT CPU ms per
    message in the last round).
    """
    jit_per_message = 0.0
    for round_number in range(1, max_rounds + 1):
        before = _jit_seconds(broker.proc.pid)
        _one_run(base, pki, broker, f"warm-up-{round_number}", count, 20, encrypt=False)
        jit_per_message = (_jit_seconds(broker.proc.pid) - before) * 1000 / count
        if jit_per_message < 0.1:
            break
    return round_number, jit_per_message


def _median_run(runs: list[dict]) -> dict:
    """The run with the median messages/s, labelled with the range of all of them."""
    ordered = sorted(runs, key=lambda r: r["msg_per_s"])
    median = dict(ordered[len(ordered) // 2])
    median["run"] = (f"{median['run'].rsplit('-', 1)[0]} (median of {len(runs)}: "
                     f"{ordered[0]['msg_per_s']}–{ordered[-1]['msg_per_s']} msg/s)")
    return median


def run(quick: bool = False, base: Optional[str] = None) -> list[dict]:
    """Measure; returns one row per configuration."""
    own_base = base is None
    base = base or tempfile.mkdtemp(prefix="bench-ssm-")
    # Timed as installed: a pip-installed package has bytecode, an edited tree may not.
    for package in ("ssm", "apel", "bin"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=2)
    pki = TestPKI(os.path.join(base, "pki"))
    broker = ActiveMQ(os.path.join(base, "activemq"), pki).start()
    count = 300 if quick else 2000
    try:
        rounds, jit = _warm_up(base, pki, broker, count, 2 if quick else 8)
        print(f"Broker warmed up with {rounds} × {count} messages (JIT compiling {jit:.2f} ms of CPU "
              "per message in the last round)", file=sys.stderr)
        rows = [
            _median_run([_one_run(base, pki, broker, f"pipelined-{n}", count, 20, encrypt=False)
                         for n in range(3)]),
            _one_run(base, pki, broker, "pipelined-encrypted", count, 20, encrypt=True),
            _one_run(base, pki, broker, "pipelined-nonpersistent", count, 20, encrypt=False,
                     persistent=False),
            _one_run(base, pki, broker, "baseline-window-1", count, 1, encrypt=False),
            _transport_only(base, pki, broker, count),
        ]
    finally:
        broker.stop()
        if own_base:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| run | window | encrypted | messages (10 KB) | received | ssmsend done (s) | end to end (s) "
        "| messages/s | MB/s | sender peak RSS (MB) | receiver peak RSS (MB) "
        "| CPU ms/msg sender + receiver + broker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["cpu_ms_per_msg"]
        lines.append(
            f"| {r['run']} | {r['window']} | {'yes' if r['encrypted'] else 'no'} | {r['messages']} "
            f"| {r['received']} | {r['send_s']} | {r['seconds']} | **{r['msg_per_s']}** | {r['mb_per_s']} "
            f"| {r['sender_rss_mb']} | {r['receiver_rss_mb']} "
            f"| {cpu['sender']} + {cpu['receiver']} + {cpu['broker']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    load = os.getloadavg()[0]
    print(f"SSM end to end, {os.cpu_count()} CPUs (load average {load:.1f} at the end), "
          "ActiveMQ STOMP+TLS with client certificates\n")
    print(table(rows))


if __name__ == "__main__":
    main()

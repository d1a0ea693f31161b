"""Crypto benchmark: in-process ssm.crypto against the existing SSM's openssl subprocesses.

The baseline spawns ``openssl`` exactly as the existing SSM does per message (ssm.md
§13): sign 1 process, verify 4 (``smime -pk7out``, ``pkcs7 -print_certs``, ``verify
-CApath -crl_check_all``, ``smime -verify -noverify``), encrypt 1, decrypt 1. Both sides
work on the same messages, in the same process, with a throwaway PKI and CRL checking
on; ours verifies against one TrustStore kept for the run, as the receiver does.
Run: ``.venv/bin/python benchmarks/bench_crypto.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apel.testkit.pki import Identity, TestPKI  # noqa: E402
from ssm import crypto  # noqa: E402

SIZES = [("1 KB", 1024), ("100 KB", 100 * 1024), ("1 MB", 1024 * 1024)]
OPERATIONS = ("sign", "verify", "encrypt", "decrypt")
# (ours, baseline) iterations per size; the baseline is slow, so it gets fewer.
ITERATIONS = {1024: (300, 25), 100 * 1024: (60, 12), 1024 * 1024: (12, 5)}
QUICK_ITERATIONS = {1024: (50, 5), 100 * 1024: (10, 3), 1024 * 1024: (3, 2)}

_RECORD = (
    "Site: RAL-LCG2\nSubmitHost: ce01.gridpp.rl.ac.uk:8443/cream-pbs-grid\nLocalJobId: 31564872\n"
    "LocalUserId: atlasprd\nGlobalUserName: /C=UK/O=eScience/OU=CLRC/L=RAL/CN=prod user\n"
    "FQAN: /atlas/Role=production/Capability=NULL\nWallDuration: 234256\nCpuDuration: 2345\n"
    "Processors: 2\nNodeCount: 2\nStartTime: 1234567890\nEndTime: 1234567899\n%%\n"
)


def make_message(size: int) -> str:
    """An APEL job message of about ``size`` bytes."""
    header = "APEL-individual-job-message: v0.3\n"
    count = max(1, (size - len(header)) // len(_RECORD))
    text = header + _RECORD * count
    return text + "x" * max(0, size - len(text) - 1) + "\n"


# Peak RSS of the openssl processes, in KB, recorded while ``measure_rss`` is set.
_child_rss: list[int] = []
_measure_rss = False
_TIME = "/usr/bin/time"


def _openssl(args: list[str], data: bytes) -> bytes:
    command = ["openssl", *args]
    if _measure_rss:
        # getrusage(RUSAGE_CHILDREN) would count the forked Python image; time(1) forks
        # openssl from a small process, so its figure is openssl's own.
        command = [_TIME, "-f", "%M", *command]
    out = subprocess.run(command, input=data, capture_output=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {out.stderr.decode(errors='replace')}")
    if _measure_rss:
        _child_rss.append(int(out.stderr.strip().splitlines()[-1]))
    return out.stdout


class Baseline:
    """The existing SSM's crypto calls, one ``openssl`` process per step."""

    def __init__(self, signer: Identity, server: Identity, capath: str) -> None:
        self.signer = signer
        self.server = server
        self.capath = capath

    def sign(self, text: str) -> str:
        args = ["smime", "-sign", "-inkey", self.signer.key_path, "-signer", self.signer.cert_path, "-text"]
        return _openssl(args, text.encode()).decode()

    def verify(self, signed: str) -> tuple[str, str]:
        data = (signed + "\n\n").encode()
        p7 = _openssl(["smime", "-pk7out"], data)
        certs = _openssl(["pkcs7", "-print_certs"], p7).decode()
        first = certs[certs.index("-----BEGIN CERTIFICATE-----"):]
        first = first[: first.index("-----END CERTIFICATE-----") + 25] + "\n"
        result = _openssl(["verify", "-CApath", self.capath, "-crl_check_all"], first.encode())
        if b"OK" not in result:
            raise RuntimeError("Unverified signer")
        message = _openssl(["smime", "-verify", "-noverify"], data).decode()
        lines = message.strip().splitlines()
        blank = lines.index("")
        return "\n".join(lines[blank + 1:]), "subject"

    def encrypt(self, text: str) -> str:
        return _openssl(["smime", "-encrypt", "-aes128", self.server.cert_path], text.encode()).decode()

    def decrypt(self, encrypted: str) -> str:
        args = ["smime", "-decrypt", "-recip", self.server.cert_path, "-inkey", self.server.key_path]
        return _openssl(args, encrypted.encode()).decode()


def _time(func: Callable[[], object], iterations: int) -> float:
    """Seconds per call, after one warm-up call (caches, page faults)."""
    func()
    start = time.perf_counter()
    for _ in range(iterations):
        func()
    return (time.perf_counter() - start) / iterations


def run(quick: bool = False) -> list[dict]:
    """One row per (size, operation): ours and baseline ms/op and ops/s, and the speed-up."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as base:
        pki = TestPKI(base)
        signer = pki.host("bench-sender")
        server = pki.host("bench-server")
        capath = pki.capath
        baseline = Baseline(signer, server, capath)
        store = crypto.TrustStore(capath, True)
        table = QUICK_ITERATIONS if quick else ITERATIONS
        for label, size in SIZES:
            text = make_message(size)
            signed = crypto.sign(text, signer.cert_path, signer.key_path)
            encrypted = crypto.encrypt(signed, server.cert_path)
            if crypto.verify(signed, store)[0] != text:
                raise RuntimeError("round trip failed")
            baseline.verify(signed)
            ours: dict[str, Callable[[], object]] = {
                "sign": lambda: crypto.sign(text, signer.cert_path, signer.key_path),  # noqa: B023
                "verify": lambda: crypto.verify(signed, store),  # noqa: B023
                "encrypt": lambda: crypto.encrypt(signed, server.cert_path),  # noqa: B023
                "decrypt": lambda: crypto.decrypt(encrypted, server.cert_path, server.key_path),  # noqa: B023
            }
            theirs: dict[str, Callable[[], object]] = {
                "sign": lambda: baseline.sign(text),  # noqa: B023
                "verify": lambda: baseline.verify(signed),  # noqa: B023
                "encrypt": lambda: baseline.encrypt(signed),  # noqa: B023
                "decrypt": lambda: baseline.decrypt(encrypted),  # noqa: B023
            }
            n_ours, n_theirs = table[size]
            for op in OPERATIONS:
                t_ours = _time(ours[op], n_ours)
                t_theirs = _time(theirs[op], n_theirs)
                rss = _baseline_rss(theirs[op])
                rows.append({
                    "size": label,
                    "bytes": size,
                    "operation": op,
                    "ours_ms": t_ours * 1000,
                    "ours_ops": 1 / t_ours,
                    "baseline_ms": t_theirs * 1000,
                    "baseline_ops": 1 / t_theirs,
                    "speedup": t_theirs / t_ours,
                    "baseline_rss_mb": rss,
                })
    return rows


def _baseline_rss(func: Callable[[], object]) -> float | None:
    """Largest peak RSS (MB) among the openssl processes of one baseline call."""
    global _measure_rss
    if not os.access(_TIME, os.X_OK):
        return None
    _child_rss.clear()
    _measure_rss = True
    try:
        func()
    finally:
        _measure_rss = False
    return max(_child_rss) / 1024 if _child_rss else None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_table(rows: list[dict]) -> str:
    lines = [
        "| size | operation | ours ms/op | ours ops/s | openssl baseline ms/op | baseline ops/s | speed-up "
        "| baseline peak RSS per openssl process |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rss = row.get("baseline_rss_mb")
        lines.append(
            f"| {row['size']} | {row['operation']} | {row['ours_ms']:.3f} | {row['ours_ops']:.0f} | "
            f"{row['baseline_ms']:.2f} | {row['baseline_ops']:.1f} | {row['speedup']:.1f}x | "
            f"{'n/a' if rss is None else f'{rss:.1f} MB'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations, for a smoke run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(quick=args.quick)
    own = peak_rss_mb()
    print("### Crypto: in-process ssm.crypto vs openssl subprocesses (existing SSM), CRL checking on\n")
    print(format_table(rows))
    print(f"\nPeak RSS of this process (ssm.crypto, all sizes, plus the harness): {own:.1f} MB.")
    print(f"Total benchmark time {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

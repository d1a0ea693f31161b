"""The quick start: a whole accounting pipeline on one machine, from nothing.

A "site" publishes realistic job, summary and cloud messages; they travel signed
and encrypted through a local ActiveMQ over TLS to the "server", which receives,
loads, summarises and unloads them for the portal. Every program is run exactly
as an operator runs it (the installed console scripts with their INI configs),
so the working directory doubles as a set of example configurations.

Usage: ``python -m apel.testkit.quickstart [--workdir DIR] [--mariadb] [--seed N]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from itertools import islice
from typing import Optional

from dirq.QueueSimple import QueueSimple

from apel.db import DatabaseUnavailable, StorageError, load_backend
from apel.records import render_message
from apel.records.model import CLOUD, JOB, SUMMARY, Record
from apel.samples import cloud_records, job_records, summary_records
from apel.testkit.pki import Identity, TestPKI
from apel.testkit.services import ActiveMQ, MariaDB

BIN = os.path.dirname(sys.executable)
DESTINATION = "/queue/apel.quickstart"
JOB_MESSAGES, JOBS_PER_MESSAGE = 20, 1000
SUMMARY_MESSAGES, SUMMARIES_PER_MESSAGE = 2, 250
CLOUD_MESSAGES, CLOUD_PER_MESSAGE = 4, 250


class QuickstartError(RuntimeError):
    """A step of the pipeline failed; the message says which and where its log is."""


def _write(path: str, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _chunks(records: Iterable[Record], size: int) -> Iterable[list[Record]]:
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _run(step: str, argv: list[str], log: str, timeout: float = 300) -> None:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise QuickstartError(f"{step} failed ({detail[-1] if detail else 'no output'}); see {log}")
    print(f"  {step:<42} ok  {time.monotonic() - started:5.1f} s")


class Quickstart:
    """One run of the pipeline in ``workdir`` (wiped and rebuilt each time)."""

    def __init__(self, workdir: str, use_mariadb: bool, seed: int) -> None:
        self.workdir = os.path.abspath(workdir)
        self.use_mariadb = use_mariadb
        self.seed = seed
        self.services: list = []
        self.logs = os.path.join(self.workdir, "log")

    # -- set-up --------------------------------------------------------------------

    def prepare(self) -> None:
        if os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir)
        for sub in ("etc", "log", "run", "site/outgoing", "server/spool", "server/outgoing"):
            os.makedirs(os.path.join(self.workdir, sub), mode=0o700, exist_ok=True)
        self.pki = TestPKI(os.path.join(self.workdir, "pki"))
        self.site = self.pki.host("site", cn="site.example.org")
        self.server = self.pki.host("server", cn="accounting.example.org")

    def etc(self, name: str) -> str:
        return os.path.join(self.workdir, "etc", name)

    def start_services(self) -> None:
        broker = ActiveMQ(os.path.join(self.workdir, "activemq"), self.pki)
        self.services.append(broker)
        broker.start()
        self.broker = broker
        print(f"  ActiveMQ on 127.0.0.1:{broker.ssl_port} (STOMP+TLS, client certificates required)")
        if self.use_mariadb:
            mariadb = MariaDB(os.path.join(self.workdir, "mariadb"))
            self.services.append(mariadb)
            mariadb.start()
            mariadb.create_database("apel")
            self.mariadb = mariadb
            print(f"  MariaDB on 127.0.0.1:{mariadb.port}, database apel")

    def stop_services(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def _logging(self, name: str) -> str:
        return f"[logging]\nlogfile: {self.logs}/{name}.log\nlevel: INFO\nconsole: false\n"

    def write_hop(
        self, prefix: str, sender: Identity, receiver: Identity, outgoing: str, spool: str, destination: str
    ) -> None:
        """sender.cfg, receiver.cfg and dns (each named with ``prefix``) for one SSM hop:
        ``sender`` signs and encrypts for ``receiver``, which accepts only ``sender``."""
        broker = f"[broker]\nhost: localhost\nport: {self.broker.ssl_port}\nuse_ssl: true\n"

        def certificates(identity: Identity) -> str:
            return (f"[certificates]\ncertificate: {identity.cert_path}\nkey: {identity.key_path}\n"
                    f"capath: {self.pki.capath}\n")

        _write(self.etc(f"{prefix}dns"), f"# Hosts allowed to publish accounting data\n{sender.dn}\n", 0o644)
        _write(self.etc(f"{prefix}sender.cfg"), (
            "[sender]\nprotocol: STOMP\n" + broker + certificates(sender)
            + f"server_cert: {receiver.cert_path}\nverify_server_cert: true\n"
            + f"[messaging]\ndestination: {destination}\npath: {self.workdir}/{outgoing}\npath_type: dirq\n"
            + self._logging(f"{prefix}ssmsend")
        ))
        _write(self.etc(f"{prefix}receiver.cfg"), (
            "[receiver]\nprotocol: STOMP\n" + broker + certificates(receiver) + "check_crls: true\n"
            + f"[messaging]\ndestination: {destination}\npath: {self.workdir}/{spool}\n"
            + self._logging(f"{prefix}ssmreceive")
            + f"[daemon]\npidfile: {self.workdir}/run/{prefix}ssmreceive.pid\n"
        ))

    def write_loader(self, prefix: str, spool: str) -> None:
        _write(self.etc(f"{prefix}loader.cfg"), (
            f"[loader]\nmsgpath: {self.workdir}/{spool}\npidfile: {self.workdir}/run/{prefix}loader.pid\n"
            "interval: 1\nsave_messages: false\n" + self._logging(f"{prefix}loader")
        ))

    def write_configs(self) -> None:
        self.write_hop("", self.site, self.server, "site/outgoing", "server/spool", DESTINATION)
        self.write_loader("", "server/spool")
        for kind in ("cpu", "cloud"):
            if self.use_mariadb:
                db = (f"[db]\nbackend: mysql\nhostname: 127.0.0.1\nport: {self.mariadb.port}\nname: apel\n"
                      f"username: {self.mariadb.user}\npassword: {self.mariadb.password}\ntype: {kind}\n")
            else:
                db = f"[db]\nbackend: sqlite\nname: {self.workdir}/server/apel.sqlite\ntype: {kind}\n"
            _write(self.etc(f"db-{kind}.cfg"), db)
        _write(self.etc("summariser.cfg"), (
            f"[summariser]\npidfile: {self.workdir}/run/summariser.pid\n"
            + self._logging("summariser")
        ))
        for view in ("VSuperSummaries", "VCloudSummaries"):
            _write(self.etc(f"unloader-{view}.cfg"), (
                f"[unloader]\ndir_location: {self.workdir}/server\ntable_name: {view}\n"
                "interval: all\nrecords_per_message: 1000\nlocal_jobs: true\nwithhold_dns: false\n"
                "dict_benchmark_type: false\nsend_ur: false\n"
                + self._logging("unloader")
            ))

    def create_database(self) -> None:
        if not self.use_mariadb:
            return  # the SQLite backend creates its file with the schema
        from apel.db.schema import apply_schema

        apply_schema("mysql", self.mariadb.connect_args("apel"))

    # -- the pipeline ----------------------------------------------------------------

    def queue_site_messages(self) -> int:
        now = dt.datetime.now(dt.timezone.utc)
        outgoing = QueueSimple(os.path.join(self.workdir, "site/outgoing"))
        plan = (
            (JOB, job_records(JOB_MESSAGES * JOBS_PER_MESSAGE, self.seed, now), JOBS_PER_MESSAGE),
            (SUMMARY, summary_records(SUMMARY_MESSAGES * SUMMARIES_PER_MESSAGE, self.seed + 1, now),
             SUMMARIES_PER_MESSAGE),
            (CLOUD, cloud_records(CLOUD_MESSAGES * CLOUD_PER_MESSAGE, self.seed + 2, now), CLOUD_PER_MESSAGE),
        )
        messages = records = 0
        for record_type, generated, size in plan:
            for chunk in _chunks(generated, size):
                outgoing.add(render_message(record_type, chunk))
                messages += 1
                records += len(chunk)
        print(f"  queued {messages} messages ({records} records) in {self.workdir}/site/outgoing")
        return messages

    def send_and_receive(self, expected: int, prefix: str = "", spool: str = "server/spool") -> None:
        """Run the hop ``prefix`` (see write_hop) until ``expected`` messages are in ``spool``."""
        receiver = subprocess.Popen(
            [f"{BIN}/ssmreceive", "-c", self.etc(f"{prefix}receiver.cfg"), "-d", self.etc(f"{prefix}dns"),
             "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        receive_log = f"{self.logs}/{prefix}ssmreceive.log"
        try:
            send = [f"{BIN}/ssmsend", "-c", self.etc(f"{prefix}sender.cfg")]
            _run(f"{prefix}ssmsend (sign, encrypt, send)", send, f"{self.logs}/{prefix}ssmsend.log")
            started = time.monotonic()
            while self.count(f"{spool}/incoming") + self.count(f"{spool}/reject") < expected:
                if receiver.poll() is not None:
                    raise QuickstartError(f"ssmreceive stopped; see {receive_log}")
                if time.monotonic() - started > 120:
                    raise QuickstartError(f"messages did not all arrive; see {receive_log}")
                time.sleep(0.2)
            print(f"  {prefix + 'ssmreceive (decrypt, verify, store)':<42} ok  "
                  f"{time.monotonic() - started:5.1f} s")
        finally:
            receiver.send_signal(signal.SIGTERM)
            try:
                receiver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                receiver.kill()
        rejected = self.count(f"{spool}/reject")
        if rejected:
            raise QuickstartError(f"{rejected} messages rejected; see {self.workdir}/{spool}/reject")

    def count(self, relative: str) -> int:
        """Elements in the dirq below ``relative`` (a QueueSimple or a Queue)."""
        path = os.path.join(self.workdir, relative)
        if not os.path.isdir(path):
            return 0
        return sum(
            1 for bucket in os.listdir(path) if os.path.isdir(os.path.join(path, bucket))
            for element in os.listdir(os.path.join(path, bucket)) if not element.endswith(".tmp")
        )

    def load_summarise_unload(self) -> None:
        _run("apeldbloader --once", [f"{BIN}/apeldbloader", "-d", self.etc("db-cpu.cfg"),
                                     "-c", self.etc("loader.cfg"), "--once"], f"{self.logs}/loader.log")
        for kind in ("cpu", "cloud"):
            _run(f"apelsummariser ({kind})", [f"{BIN}/apelsummariser", "-d", self.etc(f"db-{kind}.cfg"),
                                             "-c", self.etc("summariser.cfg")], f"{self.logs}/summariser.log")
        for view in ("VSuperSummaries", "VCloudSummaries"):
            _run(f"apeldbunloader ({view})", [f"{BIN}/apeldbunloader", "-d", self.etc("db-cpu.cfg"),
                                              "-c", self.etc(f"unloader-{view}.cfg")],
                 f"{self.logs}/unloader.log")

    # -- the report ------------------------------------------------------------------

    def backend(self):
        """A backend on the server's database, to use in a ``with`` block."""
        settings = (
            {"hostname": "127.0.0.1", "port": str(self.mariadb.port), "name": "apel",
             "username": self.mariadb.user, "password": self.mariadb.password}
            if self.use_mariadb else {"name": f"{self.workdir}/server/apel.sqlite"}
        )
        return load_backend("mysql" if self.use_mariadb else "sqlite")(settings)

    def report(self) -> None:
        with self.backend() as backend:
            rows = backend.query(
                "SELECT Site, VO, Year, Month, SUM(NumberOfJobs), SUM(WallDuration), "
                "SUM(NormalisedWallDuration) FROM VNormalisedSuperSummaries "
                "GROUP BY Site, VO, Year, Month ORDER BY Site, VO, Year, Month", ()
            )
            clouds = backend.query(
                "SELECT SiteName, VO, Year, Month, SUM(NumberOfVMs), SUM(WallDuration) "
                "FROM VCloudSummaries GROUP BY SiteName, VO, Year, Month "
                "ORDER BY SiteName, VO, Year, Month", ()
            )
        print()
        print(f"{'Site':<24} {'VO':<16} {'Month':<8} {'Jobs':>8} {'Wall h':>12} {'Normalised h':>14}")
        print("-" * 86)
        for site, vo, year, month, jobs, wall, normalised in rows:
            print(f"{site:<24} {vo:<16} {year:04d}-{month:02d} {int(jobs):>8} "
                  f"{int(wall) / 3600:>12.1f} {int(normalised or 0) / 3600:>14.1f}")
        print()
        print(f"{'Cloud site':<24} {'VO':<16} {'Month':<8} {'VMs':>8} {'Wall h':>12}")
        print("-" * 72)
        for site, vo, year, month, vms, wall in clouds:
            print(f"{site:<24} {vo:<16} {year:04d}-{month:02d} {int(vms):>8} {int(wall or 0) / 3600:>12.1f}")
        print()
        published = self.count("server/outgoing")
        print(f"Published for the portal: {published} messages in {self.workdir}/server/outgoing")
        print(f"Configs: {self.workdir}/etc   Logs: {self.logs}")

    def run(self) -> int:
        started = time.monotonic()
        print(f"Quick start in {self.workdir} ({'MariaDB' if self.use_mariadb else 'SQLite'})")
        self.prepare()
        try:
            self.start_services()
            self.write_configs()
            self.create_database()
            expected = self.queue_site_messages()
            self.send_and_receive(expected)
            self.load_summarise_unload()
            self.report()
        finally:
            self.stop_services()
        print(f"Done in {time.monotonic() - started:.1f} s; every process started here has been stopped.")
        return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="quickstart-work", help="working directory (rebuilt)")
    parser.add_argument("--mariadb", action="store_true", help="use MariaDB instead of SQLite")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample data")
    args = parser.parse_args(argv)
    try:
        return Quickstart(args.workdir, args.mariadb, args.seed).run()
    except (QuickstartError, StorageError, DatabaseUnavailable, subprocess.TimeoutExpired) as exc:
        print(f"quickstart: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

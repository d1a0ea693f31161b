"""The loader's test environment (configs, queues, database access) and sample messages,
shared by the loader test files.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import pymysql
from dirq.queue import Queue

from apel.samples import job_records

LOADER = str(Path(sys.executable).with_name("apeldbloader"))
SSM_INCOMING_SCHEMA = {"body": "string", "signer": "string", "empaid": "string?"}
READ_SCHEMA = {"body": "string", "signer": "string?", "empaid": "string?", "error": "string?"}
SIGNER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=test-host.example.org"
JOB_FIELDS = (
    "Site", "SubmitHost", "MachineName", "Queue", "LocalJobId", "LocalUserId", "GlobalUserName", "FQAN",
    "VO", "VOGroup", "VORole", "WallDuration", "CpuDuration", "Processors", "NodeCount", "StartTime",
    "EndTime", "InfrastructureDescription", "InfrastructureType", "MemoryReal", "MemoryVirtual",
    "ServiceLevelType", "ServiceLevel",
)


# -- messages ------------------------------------------------------------------------


def _text_value(value: object) -> str:
    if isinstance(value, dt.datetime):
        return str(int(value.timestamp()))
    return str(value)


def job_message(records: Iterable[dict], header: str = "APEL-individual-job-message: v0.3") -> str:
    """An APEL text job message, as an APEL client would send it."""
    chunks = [header]
    for record in records:
        chunks.append("\n".join(f"{key}: {_text_value(record[key])}" for key in JOB_FIELDS if key in record))
        chunks.append("%%")
    return "\n".join(chunks)


def jobs(count: int, prefix: str, seed: int = 7) -> list[dict]:
    """``count`` realistic job records whose LocalJobIds start with ``prefix``."""
    records = list(job_records(count, seed=seed))
    for index, record in enumerate(records):
        record["LocalJobId"] = f"{prefix}-{index:04d}"
    return records


def _epoch(year: int, month: int, day: int = 1) -> int:
    return int(dt.datetime(year, month, day, tzinfo=dt.timezone.utc).timestamp())


MARCH_2024, END_MARCH_2024 = _epoch(2024, 3), _epoch(2024, 3, 30)

JOB_V03 = textwrap.dedent(f"""\
    APEL-individual-job-message: v0.3
    Site: TEST-SITE
    SubmitHost: ce.example.org:8443/cream-pbs-long
    MachineName: ce.example.org
    Queue: long
    LocalJobId: type-job-v03
    LocalUserId: atlas001
    GlobalUserName: /C=UK/O=eScience/CN=Test User
    FQAN: /atlas/Role=production/Capability=NULL
    WallDuration: 3600
    CpuDuration: 3000
    Processors: 1
    NodeCount: 1
    StartTime: {MARCH_2024}
    EndTime: {MARCH_2024 + 3600}
    InfrastructureDescription: APEL-CREAM-PBS
    InfrastructureType: grid
    MemoryReal: 1000
    MemoryVirtual: 2000
    ServiceLevelType: HEPSPEC
    ServiceLevel: 10.5
    %%""")
JOB_V04 = (
    JOB_V03.replace("v0.3", "v0.4").replace("type-job-v03", "type-job-v04")
    .replace("ServiceLevelType: HEPSPEC\n", "")
    .replace("ServiceLevel: 10.5", "ServiceLevel: {HEPscore23: 15.3, hepspec: 11.4}")
)
SUMMARY_V02 = textwrap.dedent(f"""\
    APEL-summary-job-message: v0.2
    Site: TEST-SITE
    Month: 3
    Year: 2024
    GlobalUserName: /C=UK/O=eScience/CN=Test User
    VO: atlas
    VOGroup: /atlas
    VORole: Role=production
    SubmitHost: ce.example.org:8443/cream-pbs-long
    InfrastructureType: grid
    ServiceLevelType: HEPSPEC
    ServiceLevel: 10.0
    NodeCount: 1
    Processors: 8
    EarliestEndTime: {MARCH_2024}
    LatestEndTime: {END_MARCH_2024}
    WallDuration: 100000
    CpuDuration: 90000
    NumberOfJobs: 10
    %%""")
SUMMARY_V04 = (
    SUMMARY_V02.replace("v0.2", "v0.4").replace("ServiceLevelType: HEPSPEC\n", "")
    .replace("ServiceLevel: 10.0", "ServiceLevel: {hepscore23: 12.0}")
)
NORMALISED_V03 = textwrap.dedent(f"""\
    APEL-summary-job-message: v0.3
    Site: TEST-SITE
    Month: 3
    Year: 2024
    GlobalUserName: /C=UK/O=eScience/CN=Test User
    VO: atlas
    VOGroup: /atlas
    VORole: Role=production
    SubmitHost: ce.example.org:8443/cream-pbs-long
    Infrastructure: grid
    NodeCount: 1
    Processors: 8
    EarliestEndTime: {MARCH_2024}
    LatestEndTime: {END_MARCH_2024}
    WallDuration: 100000
    CpuDuration: 90000
    NormalisedWallDuration: 1000000
    NormalisedCpuDuration: 900000
    NumberOfJobs: 10
    %%""")
NORMALISED_V04 = (
    NORMALISED_V03.replace("APEL-summary-job-message: v0.3", "APEL-normalised-summary-message: v0.4")
    .replace("NormalisedWallDuration: 1000000",
             "NormalisedWallDuration: {hepspec: 1000000, HEPscore23: 1200000}")
    .replace("NormalisedCpuDuration: 900000",
             "NormalisedCpuDuration: {hepspec: 900000, HEPscore23: 1100000}")
)
SYNC = textwrap.dedent("""\
    APEL-sync-message: v0.1
    Site: TEST-SITE
    SubmitHost: ce.example.org:8443/cream-pbs-long
    NumberOfJobs: 42
    Month: 3
    Year: 2024
    %%""")
CLOUD = textwrap.dedent(f"""\
    APEL-cloud-message: v0.4
    RecordCreateTime: {END_MARCH_2024}
    VMUUID: 2c1e6a5e-7f2c-4e1a-9d4b-000000000001
    SiteName: CESGA
    CloudComputeService: cloud.cesga.es
    MachineName: vm-1
    LocalUserId: u0001
    LocalGroupId: g001
    GlobalUserName: /C=ES/O=Test/CN=Cloud User
    FQAN: /fedcloud.egi.eu/Role=NULL/Capability=NULL
    Status: started
    StartTime: {MARCH_2024}
    EndTime: None
    SuspendDuration: 0
    WallDuration: 86400
    CpuDuration: 43200
    CpuCount: 2
    NetworkType: None
    NetworkInbound: 1
    NetworkOutbound: 2
    PublicIPCount: 1
    Memory: 4
    Disk: 40
    BenchmarkType: HEPSPEC
    Benchmark: 10.5
    StorageRecordId: None
    ImageId: ubuntu-22.04
    CloudType: caso/5.2.1 (OpenStack)
    %%""")
CLOUD_SUMMARY = textwrap.dedent(f"""\
    APEL-cloud-summary-message: v0.4
    SiteName: CESGA
    CloudComputeService: cloud.cesga.es
    Month: 3
    Year: 2024
    GlobalUserName: /C=ES/O=Test/CN=Cloud User
    VO: fedcloud.egi.eu
    VOGroup: /fedcloud.egi.eu
    VORole: Role=NULL
    Status: started
    CloudType: caso/5.2.1 (OpenStack)
    ImageId: ubuntu-22.04
    EarliestStartTime: {MARCH_2024}
    LatestStartTime: {END_MARCH_2024}
    WallDuration: 86400
    CpuDuration: 43200
    CpuCount: 2
    NetworkInbound: 1
    NetworkOutbound: 2
    Memory: 4
    Disk: 40
    BenchmarkType: HEPSPEC
    Benchmark: 10.5
    NumberOfVMs: 1
    %%""")
STAR = textwrap.dedent("""\
    <sr:StorageUsageRecords xmlns:sr="http://eu-emi.eu/namespaces/2011/02/storagerecord">
      <sr:StorageUsageRecord>
        <sr:RecordIdentity sr:createTime="2024-03-02T02:42:15Z" sr:recordId="star-type-test-1"/>
        <sr:StorageSystem>se.example.org</sr:StorageSystem>
        <sr:Site>TEST-SITE</sr:Site>
        <sr:StorageShare>atlas</sr:StorageShare>
        <sr:StorageMedia>disk</sr:StorageMedia>
        <sr:FileCount>42</sr:FileCount>
        <sr:SubjectIdentity>
          <sr:Group>atlas</sr:Group>
          <sr:GroupAttribute sr:attributeType="subgroup">uk</sr:GroupAttribute>
          <sr:GroupAttribute sr:attributeType="role">production</sr:GroupAttribute>
          <sr:GroupAttribute sr:attributeType="authority">/O=Grid/CN=VOMS</sr:GroupAttribute>
        </sr:SubjectIdentity>
        <sr:StartTime>2024-03-01T02:42:15Z</sr:StartTime>
        <sr:EndTime>2024-03-02T02:42:15Z</sr:EndTime>
        <sr:ResourceCapacityUsed>14728</sr:ResourceCapacityUsed>
        <sr:LogicalCapacityUsed>13617</sr:LogicalCapacityUsed>
      </sr:StorageUsageRecord>
    </sr:StorageUsageRecords>""")
CAR = textwrap.dedent("""\
    <urf:UsageRecords xmlns:urf="http://eu-emi.eu/namespaces/2012/11/computerecord">
      <urf:UsageRecord>
        <urf:RecordIdentity urf:createTime="2024-03-02T00:00:00Z" urf:recordId="car-type-test-1"/>
        <urf:JobIdentity><urf:LocalJobId>type-car-1</urf:LocalJobId></urf:JobIdentity>
        <urf:UserIdentity>
          <urf:GlobalUserName urf:type="opensslCompat">/C=UK/O=eScience/CN=Test User</urf:GlobalUserName>
          <urf:Group>atlas</urf:Group>
          <urf:GroupAttribute urf:type="FQAN">/atlas/Role=production/Capability=NULL</urf:GroupAttribute>
          <urf:LocalUserId>atlas001</urf:LocalUserId>
        </urf:UserIdentity>
        <urf:Status>completed</urf:Status>
        <urf:Infrastructure urf:description="APEL-ARC-HTCONDOR" urf:type="grid"/>
        <urf:WallDuration>PT3600S</urf:WallDuration>
        <urf:CpuDuration urf:usageType="all">PT3000S</urf:CpuDuration>
        <urf:ServiceLevel urf:type="HEPSPEC">10.0</urf:ServiceLevel>
        <urf:NodeCount>1</urf:NodeCount>
        <urf:Processors>1</urf:Processors>
        <urf:StartTime>2024-03-01T10:00:00Z</urf:StartTime>
        <urf:EndTime>2024-03-01T11:00:00Z</urf:EndTime>
        <urf:MachineName>ce.example.org</urf:MachineName>
        <urf:SubmitHost>ce.example.org:8443/cream-pbs-long</urf:SubmitHost>
        <urf:Queue>long</urf:Queue>
        <urf:Site>TEST-SITE</urf:Site>
      </urf:UsageRecord>
    </urf:UsageRecords>""")

# (id, body, table the records land in, rows expected there)
MESSAGE_TYPES = [
    ("job-v0.3", JOB_V03, "JobRecords", 1),
    ("job-v0.4", JOB_V04, "JobRecords", 1),
    ("summary-v0.2", SUMMARY_V02, "Summaries", 1),
    ("summary-v0.4", SUMMARY_V04, "Summaries", 1),
    ("normalised-v0.3", NORMALISED_V03, "NormalisedSummaries", 1),
    ("normalised-v0.4", NORMALISED_V04, "NormalisedSummaries", 1),
    ("sync", SYNC, "SyncRecords", 1),
    ("cloud", CLOUD, "CloudRecords", 1),
    ("cloud-summary", CLOUD_SUMMARY, "CloudSummaries", 1),
    ("star", STAR, "StarRecords", 1),
    ("car", CAR, "JobRecords", 1),
]


# -- environment: configs, queues, database access -----------------------------------


class LoaderEnv:
    """Configs, queues and database access for one loader setup in tmp_path."""

    def __init__(self, base: Path, db_settings: dict, **loader_options: object) -> None:
        self.base = base
        self.msgpath = base / "spool"
        self.db_settings = db_settings
        self.logfile = base / "loader.log"
        self.pidfile = base / "run" / "loader.pid"
        self.db_cfg = base / "db.cfg"
        self.loader_cfg = base / "loader.cfg"
        options = {"interval": 0.2, "backoff_max": 2, "save_messages": "false"}
        options.update(loader_options)
        self.write_configs(options)

    def write_configs(self, options: dict) -> None:
        lines = ["[db]"] + [f"{key} = {value}" for key, value in self.db_settings.items()]
        self.db_cfg.write_text("\n".join(lines) + "\n")
        loader = [
            "[loader]", f"msgpath = {self.msgpath}", f"pidfile = {self.pidfile}",
            *(f"{key} = {value}" for key, value in options.items()),
            "[logging]", f"logfile = {self.logfile}", "level = INFO", "console = false",
        ]
        self.loader_cfg.write_text("\n".join(loader) + "\n")

    # queues
    def put(self, body: str, signer: str = SIGNER, empaid: str = "noid") -> str:
        """Add a message as ssmreceive does."""
        queue = Queue(str(self.msgpath / "incoming"), schema=SSM_INCOMING_SCHEMA)
        return queue.add({"body": body, "signer": signer, "empaid": empaid})

    def elements(self, queue_name: str) -> list[dict]:
        """The elements of a queue (without locking: the loaders are stopped)."""
        path = self.msgpath / queue_name
        found = []
        if not path.is_dir():
            return found
        for intermediate in sorted(path.iterdir()):
            # intermediate directories are 8 hex digits ("obsolete" and "temporary" are not)
            if not re.fullmatch("[0-9a-f]{8}", intermediate.name) or not intermediate.is_dir():
                continue
            try:
                elements = sorted(intermediate.iterdir())
            except FileNotFoundError:  # purged by a running loader meanwhile
                continue
            for element in elements:
                try:
                    fields = {f.name: f.read_text() for f in element.iterdir() if f.is_file()}
                except FileNotFoundError:  # removed by a running loader meanwhile
                    continue
                fields["_name"] = f"{intermediate.name}/{element.name}"
                fields["_locked"] = (element / "locked").is_dir()
                found.append(fields)
        return found

    # running
    def command(self, *extra: str, config: Optional[Path] = None) -> list[str]:
        return [LOADER, "-d", str(self.db_cfg), "-c", str(config or self.loader_cfg), *extra]

    def run_once(self, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command("--once"), capture_output=True, text=True, timeout=timeout, check=False,
        )

    def start(self, *extra: str, config: Optional[Path] = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command("--foreground", *extra, config=config),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: text in self.log(), timeout, f"log line {text!r}\n{self.log()}")

    # database
    def count(self, table: str) -> int:
        return self.query(f"SELECT COUNT(*) FROM {table}")[0][0]  # noqa: S608 - fixed table names

    def query(self, sql: str) -> list[tuple]:
        if "hostname" not in self.db_settings:  # sqlite, or a plug-in built on it
            with sqlite3.connect(self.db_settings["name"]) as connection:
                return connection.execute(sql).fetchall()
        connection = pymysql.connect(**mysql_args(self.db_settings))
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()


def mysql_args(db_settings: dict) -> dict:
    return {
        "host": db_settings["hostname"], "port": int(db_settings["port"]), "user": db_settings["username"],
        "password": db_settings["password"], "database": db_settings["name"],
    }


def mysql_settings(connect_args: dict) -> dict:
    return {
        "backend": "mysql", "hostname": connect_args["host"], "port": connect_args["port"],
        "name": connect_args["database"], "username": connect_args["user"],
        "password": connect_args["password"],
    }


def apply_mysql_schema(connect_args: dict) -> None:
    """Load the project's MySQL schema into a fresh database (the backend's helper)."""
    from apel.db.mysql_backend import apply_schema

    apply_schema(connect_args)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""The real ``apeldbloader`` console script against real MariaDB and SQLite.

Messages are put into ``<msgpath>/incoming`` exactly as ssmreceive writes them
(dirq ``Queue``, fields body/signer/empaid), the loader runs as a subprocess with
its configs in tmp_path, and the outcome is read back from the queues and the
database.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import pymysql
import pytest
from dirq.queue import Queue

from apel.samples import job_records
from apel.testkit.services import MariaDB, free_port

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


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.services)])
def env(request, tmp_path) -> LoaderEnv:
    """A loader setup on SQLite or on a fresh MariaDB database with the schema."""
    if request.param == "sqlite":
        return LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")})
    connect_args = request.getfixturevalue("mysql_database")
    apply_mysql_schema(connect_args)
    return LoaderEnv(tmp_path, mysql_settings(connect_args))


@pytest.fixture
def mysql_env(mysql_database, tmp_path) -> LoaderEnv:
    apply_mysql_schema(mysql_database)
    return LoaderEnv(tmp_path, mysql_settings(mysql_database))


# -- tests ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("body", "table", "rows"), [m[1:] for m in MESSAGE_TYPES], ids=[m[0] for m in MESSAGE_TYPES]
)
def test_every_message_type_loads(env, body, table, rows):
    env.put(body, empaid="type-test")
    result = env.run_once()
    assert result.returncode == 0, (result.stdout, result.stderr, env.log(), env.elements("reject"))
    assert env.elements("incoming") == []
    assert env.elements("reject") == []
    assert env.count(table) == rows
    assert "Loaded 1 " in env.log()


@pytest.mark.timeout(120)
def test_invalid_record_rejects_the_whole_message_and_writes_nothing(env):
    records = jobs(3, "invalid")
    body = job_message(records).replace(
        f"WallDuration: {records[2]['WallDuration']}", "WallDuration: 12.5h", 1
    )
    env.put(job_message(jobs(2, "good", seed=8)), empaid="good-1")
    env.put(body, empaid="bad-1")
    result = env.run_once()
    assert result.returncode == 2, (result.stdout, result.stderr, env.log())
    assert env.elements("incoming") == []
    (rejected,) = env.elements("reject")
    assert rejected["body"] == body
    assert rejected["signer"] == SIGNER and rejected["empaid"] == "bad-1"
    error = rejected["error"]
    assert error.startswith("Parsing unsuccessful: "), error
    assert "3" in error and "WallDuration" in error and "12.5h" in error, error
    # nothing of the bad message, everything of the good one
    assert env.count("JobRecords") == 2
    assert env.query("SELECT COUNT(*) FROM JobRecords WHERE LocalJobId LIKE 'invalid-%'")[0][0] == 0
    assert "Rejected message" in env.log() and "bad-1" in env.log()


@pytest.mark.timeout(120)
def test_save_messages_copies_to_accept_with_private_modes(tmp_path, mysql_database):
    apply_mysql_schema(mysql_database)
    env = LoaderEnv(tmp_path, mysql_settings(mysql_database), save_messages="true")
    body = job_message(jobs(5, "accept"))
    env.put(body, empaid="acc-1")
    result = env.run_once()
    assert result.returncode == 0, (result.stdout, result.stderr, env.log())
    (accepted,) = env.elements("accept")
    assert accepted["body"] == body and accepted["signer"] == SIGNER and accepted["empaid"] == "acc-1"
    assert "error" not in accepted
    assert env.count("JobRecords") == 5
    for path in (env.msgpath / "accept").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} has mode {oct(mode)}"


@pytest.mark.timeout(60)
def test_once_with_unreachable_database_keeps_the_message_and_exits_1(tmp_path):
    settings = {
        "backend": "mysql", "hostname": "127.0.0.1", "port": free_port(), "name": "apel",
        "username": "apel", "password": "apelpw",
    }
    env = LoaderEnv(tmp_path, settings, backoff_max=1)
    body = job_message(jobs(2, "down"))
    env.put(body)
    result = env.run_once(timeout=45)
    assert result.returncode == 1, (result.stdout, result.stderr, env.log())
    (kept,) = env.elements("incoming")
    assert kept["body"] == body and not kept["_locked"]
    assert env.elements("reject") == []
    assert "database unavailable" in env.log() and "retrying in" in env.log()
    assert not env.pidfile.exists()
    (line,) = result.stderr.strip().splitlines()
    assert "database unavailable" in line and "giving up" in line


@pytest.mark.services
@pytest.mark.timeout(180)
def test_database_outage_keeps_messages_and_loads_them_when_it_is_back(tmp_path):
    server = MariaDB(str(tmp_path / "private-mariadb")).start()
    try:
        name = server.create_database("apel_outage")
        apply_mysql_schema(server.connect_args(name))
        (tmp_path / "loader").mkdir()
        env = LoaderEnv(tmp_path / "loader", mysql_settings(server.connect_args(name)), backoff_max=1)
        server.stop()
        body = job_message(jobs(20, "outage"))
        env.put(body, empaid="outage-1")
        proc = env.start()
        try:
            env.wait_for_log("retrying in", timeout=60)
            time.sleep(1.5)  # several retries while the server is down
            (kept,) = env.elements("incoming")
            assert kept["body"] == body
            assert env.elements("reject") == []
            server.start()
            wait_until(lambda: env.elements("incoming") == [], 60, "the message to be loaded\n" + env.log())
            assert env.count("JobRecords") == 20
            # the server goes away between two messages, and comes back again
            server.stop()
            env.put(job_message(jobs(10, "outage2", seed=9)), empaid="outage-2")
            env.wait_for_log(" kept, retrying in", timeout=60)  # "...; message <name> kept, retrying in N s"
            server.start()
            wait_until(lambda: env.elements("incoming") == [], 60, "the second message\n" + env.log())
            assert env.count("JobRecords") == 30
            assert env.elements("reject") == []
            assert "database available again" in env.log()
        finally:
            assert stop(proc) == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        server.stop()


EXPLODING_BACKEND = '''
from apel.db.sqlite_backend import SQLiteBackend


class ExplodingBackend(SQLiteBackend):
    """The SQLite backend with a bug: it crashes on one particular job."""

    name = "exploding"

    def load_message(self, message, publisher_dn):
        if any(str(r.get("LocalJobId", "")).startswith("explode") for r in message.records):
            raise RuntimeError("backend bug: cannot handle this job")
        return super().load_message(message, publisher_dn)
'''


@pytest.mark.timeout(120)
def test_unexpected_exception_rejects_that_message_and_the_loader_goes_on(tmp_path):
    # A third-party backend registered through the same entry points as the built-in ones.
    plugin = tmp_path / "plugin"
    (plugin / "exploding_backend-1.0.dist-info").mkdir(parents=True)
    (plugin / "exploding_backend-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: exploding-backend\nVersion: 1.0\n"
    )
    (plugin / "exploding_backend-1.0.dist-info" / "entry_points.txt").write_text(
        "[apel.backends]\nexploding = exploding_backend:ExplodingBackend\n"
    )
    (plugin / "exploding_backend.py").write_text(EXPLODING_BACKEND)
    env = LoaderEnv(tmp_path, {"backend": "exploding", "name": str(tmp_path / "apel.sqlite3")})
    env.put(job_message(jobs(3, "before")), empaid="m1")
    env.put(job_message(jobs(3, "explode", seed=8)), empaid="m2")
    env.put(job_message(jobs(3, "after", seed=9)), empaid="m3")
    proc = subprocess.run(
        env.command("--once"), capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(plugin)},
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr, env.log())
    (rejected,) = env.elements("reject")
    assert rejected["empaid"] == "m2"
    assert rejected["error"].startswith("Parsing unsuccessful: ")
    assert "RuntimeError" in rejected["error"] and "cannot handle this job" in rejected["error"]
    assert env.elements("incoming") == []
    assert env.count("JobRecords") == 6
    assert "Traceback" in env.log()  # the bug is logged in full for the developers


@pytest.mark.timeout(120)
def test_pidfile_stale_is_replaced_and_live_refuses(env):
    env.put(job_message(jobs(2, "pid")))
    dead = subprocess.Popen(["true"])
    dead.wait()
    env.pidfile.parent.mkdir(parents=True, exist_ok=True)
    env.pidfile.write_text(f"{dead.pid}\n")
    result = env.run_once()
    assert result.returncode == 0, (result.stdout, result.stderr, env.log())
    assert not env.pidfile.exists()
    assert env.count("JobRecords") == 2

    env.put(job_message(jobs(2, "pid2", seed=5)))
    env.pidfile.write_text(f"{os.getpid()}\n")
    result = env.run_once()
    assert result.returncode == 1
    assert "already running" in result.stderr + result.stdout + env.log()
    assert len(result.stderr.strip().splitlines()) <= 1, result.stderr
    assert env.pidfile.read_text() == f"{os.getpid()}\n"
    assert len(env.elements("incoming")) == 1


@pytest.mark.timeout(120)
def test_sigterm_in_foreground_exits_0_and_removes_the_pidfile(env):
    proc = env.start()
    try:
        env.wait_for_log("Loader started")
        assert env.pidfile.read_text().strip() == str(proc.pid)
        env.put(job_message(jobs(4, "term")))
        wait_until(lambda: env.elements("incoming") == [], 30, "the message to be loaded")
    finally:
        status = stop(proc)
    assert status == 0
    assert not env.pidfile.exists()
    assert env.count("JobRecords") == 4


@pytest.mark.timeout(120)
def test_daemon_mode_detaches_writes_pidfile_and_stops_on_sigterm(env):
    result = subprocess.run(env.command(), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    wait_until(env.pidfile.exists, 15, "the daemon's pidfile")
    pid = int(env.pidfile.read_text())
    try:
        env.put(job_message(jobs(3, "daemon")))
        wait_until(lambda: env.elements("incoming") == [], 30, "the daemon to load\n" + env.log())
        assert env.count("JobRecords") == 3
        # queue files written by the daemon are private
        env.put("APEL-individual-job-message: v0.3\nSite: X\n%%")
        wait_until(lambda: len(env.elements("reject")) == 1, 30, "the reject")
        for path in (env.msgpath / "reject").rglob("*"):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not env.pidfile.exists(), 30, "the daemon to remove its pidfile")


@pytest.mark.timeout(180)
def test_two_loaders_on_one_queue_load_everything_exactly_once(mysql_env, tmp_path):
    env = mysql_env
    messages = 60
    bodies = [job_message(jobs(50, f"two{index:03d}", seed=index)) for index in range(messages)]
    second_cfg = tmp_path / "loader2.cfg"
    second_log = tmp_path / "loader2.log"
    second_cfg.write_text(
        env.loader_cfg.read_text()
        .replace(str(env.pidfile), str(tmp_path / "run" / "loader2.pid"))
        .replace(str(env.logfile), str(second_log))
    )
    first, second = env.start(), env.start(config=second_cfg)
    try:
        env.wait_for_log("Loader started")
        wait_until(lambda: "Loader started" in second_log.read_text() if second_log.exists() else False,
                   30, "the second loader")
        for index, body in enumerate(bodies):
            env.put(body, empaid=f"two-{index}")
        wait_until(lambda: env.elements("incoming") == [], 120, "the queue to be emptied")
    finally:
        assert stop(first) == 0
        assert stop(second) == 0
    assert env.elements("reject") == []
    assert env.count("JobRecords") == messages * 50
    logs = env.log() + second_log.read_text()
    assert logs.count("Loaded 50 job records") == messages
    # both took part (each loads some); lookups were not duplicated by the race
    assert "Loaded 50" in env.log() and "Loaded 50" in second_log.read_text()
    duplicated = env.query("SELECT name, COUNT(*) FROM Sites GROUP BY name HAVING COUNT(*) > 1")
    assert duplicated == []


@pytest.mark.timeout(60)
def test_bad_configuration_is_one_line_and_exit_1(tmp_path):
    env = LoaderEnv(tmp_path, {"backend": "nosuchdb", "name": "x"})
    result = env.run_once()
    assert result.returncode == 1
    assert "nosuchdb" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_locks_left_by_a_dead_loader_are_released_at_start(tmp_path):
    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")})
    name = env.put(job_message(jobs(3, "stale")))
    (env.msgpath / "incoming" / name / "locked").mkdir()  # as left by kill -9 mid-message
    result = env.run_once()
    assert result.returncode == 0, (result.stdout, result.stderr, env.log())
    assert env.elements("incoming") == []
    assert env.count("JobRecords") == 3
    assert "Released 1 locks" in env.log()


@pytest.mark.timeout(60)
def test_a_live_loaders_lock_is_not_stolen_but_an_abandoned_one_is(tmp_path):
    import fcntl

    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")}, lock_timeout=2)
    name = env.put(job_message(jobs(3, "live")))
    element = env.msgpath / "incoming" / name
    (element / "locked").mkdir()
    # another loader is alive: it holds the registry lock shared, as every loader does
    registry = os.open(env.msgpath / ".apeldbloader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(registry, fcntl.LOCK_SH)
        result = env.run_once()
        assert result.returncode == 0, (result.stdout, result.stderr, env.log())
        (kept,) = env.elements("incoming")
        assert kept["_locked"], "the live loader's lock was stolen"
        # that loader has not touched the element for longer than lock_timeout: it is dead
        old = time.time() - 10
        os.utime(element, (old, old))
        result = env.run_once()
        assert result.returncode == 0, (result.stdout, result.stderr, env.log())
        assert env.elements("incoming") == []
        assert env.count("JobRecords") == 3
    finally:
        os.close(registry)


@pytest.mark.timeout(60)
def test_sighup_reopens_the_log_file(tmp_path):
    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")})
    proc = env.start()
    try:
        env.wait_for_log("Loader started")
        env.logfile.rename(tmp_path / "loader.log.1")  # logrotate
        proc.send_signal(signal.SIGHUP)
        env.wait_for_log("Log files reopened")
        env.put(job_message(jobs(2, "hup")))
        env.wait_for_log("Loaded 2 job records")
    finally:
        assert stop(proc) == 0

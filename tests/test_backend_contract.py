"""The contract every registered storage backend must keep, run on each of them.

Backends are found through the ``apel.backends`` entry points, as the tools find them,
so a newly registered backend is run through this suite without editing it (it only
needs a way to get an empty test database: :data:`PROVISIONERS`; without one its tests
fail and say so). Each backend gets the same messages, of every kind the loader takes
(APEL text job v0.3/v0.4, CAR, summary v0.2/v0.4, normalised summary v0.3/v0.4, sync,
cloud, cloud summary, StAR with group attributes), in two rounds:

1. round one loaded, then summarised (cpu and cloud: the first run is a full one);
2. round two loaded: new jobs only, jobs re-sent with another ServiceLevel and another
   spelling of their benchmark type, new and changed summaries, later reports of cloud
   VMs, ...; then an incremental summariser run, and every view the unloader publishes
   is unloaded; finally a ``--full`` run.

Each backend must leave, after the incremental run, exactly what the full run leaves,
and all backends must publish the same records (parsed back from the messages the
unloader wrote, so database types and row order do not matter).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from dirq.QueueSimple import QueueSimple

from apel import samples
from apel.db.backend import Backend, available_backends, load_backend
from apel.db.dialect import Dialect, Merge, MergeColumn, UnsupportedBackend
from apel.db.schema import apply_schema
from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    JOB,
    NORMALISED_SUMMARY,
    SUMMARY,
    SYNC,
    Record,
    parse_message,
    render_car,
    render_message,
    render_star,
)
from apel.services.summariser import CLOUD as CLOUD_RUN
from apel.services.summariser import CPU, RunReport, Summariser, SummariserSettings
from apel.services.summary_sql import CLOUD_SUMMARY_COLUMNS, HSS_COLUMNS
from apel.services.unloader import ALL, VIEWS, Unloader, UnloaderSettings

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
PUBLISHER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=contract.example.org"
BACKENDS = sorted(available_backends())
_databases = itertools.count()

pytestmark = pytest.mark.timeout(300)


# -- empty test databases, per registered backend -------------------------------------------


def _mysql(request: pytest.FixtureRequest, directory: Path) -> dict[str, str]:
    """A fresh schema on the session's MariaDB (tests/conftest.py)."""
    server = request.getfixturevalue("mariadb")
    args = server.connect_args(server.create_database(f"apel_contract_{next(_databases)}"))
    apply_schema("mysql", args)
    return {"hostname": args["host"], "port": str(args["port"]), "name": args["database"],
            "username": args["user"], "password": args["password"]}


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> dict[str, str]:
    """A file the backend creates with its schema."""
    return {"name": str(directory / "apel.sqlite3")}


# How to get an empty database for each registered backend; a new backend adds its own.
PROVISIONERS: dict[str, Callable[[pytest.FixtureRequest, Path], dict[str, str]]] = {
    "mysql": _mysql,
    "sqlite": _sqlite,
}


def connect(name: str, request: pytest.FixtureRequest, directory: Path) -> Backend:
    if name not in PROVISIONERS:
        pytest.fail(f"backend {name!r} is registered but this suite cannot create a test database"
                    " for it: add a provisioner to PROVISIONERS in tests/test_backend_contract.py")
    settings = PROVISIONERS[name](request, directory)
    backend = load_backend(name)(dict(settings, backend=name))
    backend.connect()
    return backend


# -- the messages ------------------------------------------------------------------------


def _normalised(records: list[Record]) -> list[Record]:
    """Normalised summaries (v0.3 fields) made from realistic summaries."""
    out = []
    for record in records:
        level = record["ServiceLevel"] / (250 if record["ServiceLevelType"].lower() == "si2k" else 1)
        out.append({
            **{key: record[key] for key in ("Site", "Month", "Year", "GlobalUserName", "VO", "VOGroup",
                                            "VORole", "SubmitHost", "ServiceLevelType", "NodeCount",
                                            "Processors", "EarliestEndTime", "LatestEndTime",
                                            "WallDuration", "CpuDuration", "NumberOfJobs")},
            "Infrastructure": record["InfrastructureType"],
            "InfrastructureDescription": "APEL-SLURM",
            "NormalisedWallDuration": round(record["WallDuration"] * level),
            "NormalisedCpuDuration": round(record["CpuDuration"] * level),
        })
    return out


def _syncs(count: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    months = range(NOW.month - count + 1, NOW.month + 1)
    return [{"Site": site, "SubmitHost": hosts[0], "NumberOfJobs": rng.randrange(1, 100_000),
             "Month": month, "Year": NOW.year}
            for site, _, hosts, _, _ in samples.SITES for month in months]


def _cloud_summaries(count: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for index in range(count):
        site, service, cloud_type = samples.CLOUD_SITES[index % len(samples.CLOUD_SITES)]
        month = NOW.month - index % 3
        start = dt.datetime(NOW.year, month, 1 + index % 20, 8, tzinfo=UTC)
        out.append({
            "SiteName": site, "CloudComputeService": service, "Month": month, "Year": NOW.year,
            "GlobalUserName": f"/DC=org/CN=cloud user {index}", "VO": "fedcloud.egi.eu",
            "VOGroup": "/fedcloud.egi.eu", "VORole": "Role=NULL", "Status": "completed",
            "CloudType": cloud_type, "ImageId": f"image-{index % 4}",
            "EarliestStartTime": start, "LatestStartTime": start + dt.timedelta(days=3),
            "WallDuration": rng.randrange(3600, 10**7), "CpuDuration": rng.randrange(3600, 10**7),
            "CpuCount": float(rng.choice((1, 2, 4))), "NetworkInbound": rng.randrange(100),
            "NetworkOutbound": rng.randrange(100), "Memory": rng.randrange(1, 64),
            "Disk": rng.randrange(10, 100), "BenchmarkType": "HEPSPEC",
            "Benchmark": round(rng.uniform(9, 14), 3), "NumberOfVMs": rng.randrange(1, 50),
        })
    return out


def _storage(first: int, count: int) -> tuple[list[Record], list[Record]]:
    records, attributes = [], []
    for number in range(first, first + count):
        start = dt.datetime(2024, 5, 1, tzinfo=UTC) + dt.timedelta(days=number % 30)
        record_id = f"host.example.org/sr/{number:05d}"
        records.append({
            "RecordId": record_id, "CreateTime": start + dt.timedelta(days=1),
            "StorageSystem": "dcache.example.org", "Site": "RAL-LCG2", "StorageShare": f"share{number % 3}",
            "StorageMedia": "disk", "StorageClass": "replicated", "FileCount": 1000 + number,
            "DirectoryPath": f"/data/vo{number % 4}", "LocalUser": f"user{number % 7}",
            "LocalGroup": f"group{number % 5}", "UserIdentity": f"/DC=org/CN=user {number % 7}",
            "Group": f"vo{number % 4}", "SubGroup": "None", "Role": "None",
            "StartTime": start, "EndTime": start + dt.timedelta(days=1),
            "ResourceCapacityUsed": 10**9 + number, "LogicalCapacityUsed": 10**9,
            "ResourceCapacityAllocated": 2 * 10**9,
        })
        attributes.append({"StarRecordID": record_id, "AttributeType": "authority",
                           "AttributeValue": f"/O=Grid/CN=authority {number % 2}"})
    return records, attributes


def _chunks(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def _text(record_type: str, records: list[Record], size: int, dict_benchmark: bool = False) -> list[str]:
    return [render_message(record_type, chunk, dict_benchmark=dict_benchmark)
            for chunk in _chunks(records, size)]


def round_one() -> list[str]:
    jobs = list(samples.job_records(1500, seed=11, now=NOW))
    summaries = list(samples.summary_records(150, seed=12, now=NOW))
    storage, attributes = _storage(0, 20)
    return [
        *_text(JOB, jobs[:800], 400), *_text(JOB, jobs[800:1300], 250, dict_benchmark=True),
        render_car(jobs[1300:]),
        *_text(SUMMARY, summaries[:100], 50), *_text(SUMMARY, summaries[100:], 50, dict_benchmark=True),
        *_text(NORMALISED_SUMMARY, _normalised(list(samples.summary_records(60, seed=13, now=NOW))), 30),
        *_text(NORMALISED_SUMMARY, _normalised(list(samples.summary_records(20, seed=14, now=NOW))), 20,
               dict_benchmark=True),
        *_text(SYNC, _syncs(2, 15), 100),
        *_text(CLOUD, list(samples.cloud_records(300, seed=16, now=NOW)), 100),
        *_text(CLOUD_SUMMARY, _cloud_summaries(30, 17), 30),
        render_star(storage, attributes),
    ]


def round_two() -> list[str]:
    """New records, and records of round one sent again with other values (replaced)."""
    moved = []
    for job in itertools.islice(samples.job_records(1500, seed=11, now=NOW), 0, 1500, 15):
        level_type = job["ServiceLevelType"]
        moved.append(dict(job, ServiceLevel=job["ServiceLevel"] + 1, WallDuration=job["WallDuration"] + 60,
                          ServiceLevelType=level_type.lower() if level_type != level_type.lower()
                          else level_type.upper()))
    changed = [dict(summary, WallDuration=summary["WallDuration"] + 3600,
                    NumberOfJobs=summary["NumberOfJobs"] + 1)
               for summary in itertools.islice(samples.summary_records(150, seed=12, now=NOW), 0, 150, 10)]
    storage, attributes = _storage(15, 10)
    return [
        *_text(JOB, list(samples.job_records(600, seed=21, now=NOW)), 300),  # only new jobs
        *_text(JOB, moved, 100),
        *_text(SUMMARY, list(samples.summary_records(30, seed=22, now=NOW)) + changed, 50),
        *_text(NORMALISED_SUMMARY, _normalised(list(samples.summary_records(10, seed=23, now=NOW))), 10),
        *_text(SYNC, _syncs(1, 24), 100),
        *_text(CLOUD, list(samples.cloud_records(450, seed=16, now=NOW))[300:], 75),
        *_text(CLOUD_SUMMARY, _cloud_summaries(10, 25), 10),
        render_star(storage, attributes),
    ]


# -- one backend through the pipeline ----------------------------------------------------


@dataclass
class Outcome:
    """What one backend did with the messages."""

    loaded: int  # records written, as load_message counted them
    incremental: dict[str, RunReport]
    after_incremental: dict[str, list[tuple]]  # summary tables after the incremental runs
    after_full: dict[str, list[tuple]]  # ... and after --full
    view_rows: dict[str, int]  # rows in each published view
    published: dict[str, list[tuple]]  # records parsed back from the unloaded messages
    dialect: Dialect


def _load(backend: Backend, bodies: list[str]) -> int:
    return sum(backend.load_message(parse_message(body), PUBLISHER) for body in bodies)


def _summarise(backend: Backend, full: bool = False) -> dict[str, RunReport]:
    return {kind: Summariser(backend, SummariserSettings(kind=kind, full=full)).run()
            for kind in (CPU, CLOUD_RUN)}


def _summary_tables(backend: Backend) -> dict[str, list[tuple]]:
    """Every summarised row (UpdateTime aside), in a fixed order."""
    tables = (("HybridSuperSummaries", HSS_COLUMNS), ("CloudSummaries", CLOUD_SUMMARY_COLUMNS))
    return {table: sorted(backend.query(f"SELECT {', '.join(columns)} FROM {table}"), key=repr)  # noqa: S608
            for table, columns in tables}


def _comparable(record: Record) -> tuple:
    return tuple(sorted((key, repr(value)) for key, value in record.items()))


def _published(records: list[Record], attributes: list[Record]) -> list[tuple]:
    """Each record with the (StAR) group attributes that name it, comparable."""
    by_record: dict[Any, list[tuple]] = {}
    for attribute in attributes:
        by_record.setdefault(attribute["StarRecordID"], []).append(_comparable(attribute))
    return [(_comparable(record), tuple(sorted(by_record.get(record.get("RecordId"), ()))))
            for record in records]


def _unload(backend: Backend, view: str, directory: Path) -> list[tuple]:
    """Every row of ``view`` as published, parsed back, in a fixed order."""
    settings = UnloaderSettings(dir_location=str(directory / view), table_name=view, interval=ALL,
                                local_jobs=True, send_ur=view == "VStarRecords", records_per_message=500)
    umask = os.umask(0o077)
    try:
        result = Unloader(settings, backend).run()
    finally:  # dirq's QueueSimple(umask=...) leaves the process umask set: later tests would inherit it
        os.umask(umask)
    queue = QueueSimple(settings.outgoing)
    records: list[tuple] = []
    for name in result.names:
        queue.lock(name)
        parsed = parse_message(queue.get(name).decode("utf-8"))
        records += _published(parsed.records, parsed.group_attributes)
    return sorted(records)


def run_pipeline(name: str, request: pytest.FixtureRequest, directory: Path) -> Outcome:
    backend = connect(name, request, directory)
    try:
        loaded = _load(backend, round_one())
        _summarise(backend)
        loaded += _load(backend, round_two())
        incremental = _summarise(backend)
        after_incremental = _summary_tables(backend)
        view_rows = {view: backend.query(f"SELECT COUNT(*) FROM {view}")[0][0] for view in VIEWS}  # noqa: S608
        published = {view: _unload(backend, view, directory / "unloaded") for view in VIEWS}
        _summarise(backend, full=True)
        return Outcome(loaded, incremental, after_incremental, _summary_tables(backend), view_rows, published,
                       backend.dialect)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Outcome]:
    """Each backend's outcome, computed once for all the tests of this module."""
    done: dict[str, Outcome] = {}

    def get(name: str) -> Outcome:
        if name not in done:
            done[name] = run_pipeline(name, request, tmp_path_factory.mktemp(f"contract-{name}"))
        return done[name]

    return get


# -- the contract --------------------------------------------------------------------------


def test_the_built_in_backends_are_registered():
    assert {"mysql", "sqlite"} <= set(BACKENDS)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_declares_a_dialect(name):
    backend_class = load_backend(name)
    dialect = backend_class.dialect
    assert isinstance(dialect, Dialect)
    # a gate is both halves or neither; deltas need the upsert the summariser adds them with
    assert (dialect.gate_shared is None) == (dialect.gate_exclusive is None)
    if dialect.job_deltas:
        assert dialect.upsert("T", ("a", "b"), ("a",), "SELECT 1, 2", [MergeColumn("b", Merge.ADD)])


@pytest.mark.services  # every outcome loads into MariaDB too
@pytest.mark.parametrize("name", BACKENDS)
def test_every_message_is_loaded_and_every_view_published(name, outcome):
    result = outcome(name)
    jobs = {(job["Site"], job["LocalJobId"]) for seed, count in ((11, 1500), (21, 600))
            for job in samples.job_records(count, seed=seed, now=NOW)}
    assert result.view_rows["VJobRecords"] == len(jobs)
    for view, rows in result.view_rows.items():
        assert rows > 0, f"{view} is empty"
        published = len(result.published[view])
        assert published == rows, f"{view}: {rows} rows, {published} published"
    storage = result.published["VStarRecords"]
    assert all(attributes for _, attributes in storage), "StAR records published without group attributes"


@pytest.mark.services  # every outcome loads into MariaDB too
@pytest.mark.parametrize("name", BACKENDS)
def test_incremental_summaries_equal_a_full_run(name, outcome):
    result = outcome(name)
    cpu = result.incremental[CPU]
    assert cpu.mode == "incremental" and cpu.keys > 0
    cloud = result.incremental[CLOUD_RUN]
    assert cloud.mode == "incremental" and cloud.site_months > 0
    if result.dialect.job_deltas:  # the new jobs of round two were added, not recomputed
        assert cpu.delta_keys > 0
    for table, rows in result.after_full.items():
        assert rows, f"{table} is empty"
        assert result.after_incremental[table] == rows, f"{table}: incremental run differs from --full"


@pytest.mark.services  # every outcome loads into MariaDB too
@pytest.mark.parametrize("name", BACKENDS)
def test_backends_publish_the_same_records(name, outcome):
    others = [other for other in BACKENDS if other != name]
    if not others:
        pytest.skip("only one backend registered")
    mine = outcome(name)
    for other in others:
        theirs = outcome(other)
        assert mine.loaded == theirs.loaded
        for view in VIEWS:
            missing = sorted(set(theirs.published[view]) - set(mine.published[view]))[:2]
            extra = sorted(set(mine.published[view]) - set(theirs.published[view]))[:2]
            assert mine.published[view] == theirs.published[view], (
                f"{view}: {name} and {other} publish different records;"
                f" only {other}: {missing}; only {name}: {extra}")


# -- a backend without a dialect is refused at start-up -------------------------------------

_PLUGIN = """
    from apel.db.backend import Backend


    class NoDialect(Backend):
        \"\"\"A complete backend, except that it does not say which SQL it speaks.\"\"\"

        name = "nodialect"

        def connect(self): pass
        def close(self): pass
        def load_message(self, message, publisher_dn): return 0
        def query(self, sql, params=()): raise AssertionError(f"ran {sql}")
        def transaction(self): raise AssertionError("opened a transaction")
        def create_schema(self): pass
"""


@pytest.fixture
def no_dialect_plugin(tmp_path: Path) -> dict[str, str]:
    """The environment of a tool that finds a plug-in ``nodialect`` backend (an installed
    distribution's entry point, as a third party's package would register it)."""
    site = tmp_path / "site"
    info = site / "apel_nodialect-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: apel-nodialect\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[apel.backends]\nnodialect = apel_nodialect:NoDialect\n")
    (site / "apel_nodialect.py").write_text(textwrap.dedent(_PLUGIN))
    return dict(os.environ, PYTHONPATH=str(site))


@pytest.mark.parametrize("tool", ["apelsummariser", "apeldbunloader", "apeldbloader"])
def test_a_backend_without_dialect_stops_the_tools_with_one_line(tool, tmp_path, no_dialect_plugin):
    db_cfg = tmp_path / "db.cfg"
    db_cfg.write_text("[db]\nbackend = nodialect\nname = whatever\n")
    cfg = tmp_path / "tool.cfg"
    cfg.write_text(
        f"[summariser]\npidfile = {tmp_path / 'summariser.pid'}\n"
        f"[unloader]\ndir_location = {tmp_path / 'out'}\ntable_name = VSuperSummaries\n"
        f"[loader]\nmsgpath = {tmp_path / 'spool'}\npidfile = {tmp_path / 'loader.pid'}\n"
        f"[logging]\nlogfile = {tmp_path / 'tool.log'}\nconsole = false\n"
    )
    proc = subprocess.run([str(Path(sys.executable).parent / tool), "-d", str(db_cfg), "-c", str(cfg)]
                          + (["--once"] if tool == "apeldbloader" else []),
                          capture_output=True, text=True, env=no_dialect_plugin, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "'nodialect'" in line and "declares no SQL dialect" in line


def test_the_services_refuse_a_backend_object_without_dialect():
    class Bare:
        name = "bare"

    with pytest.raises(UnsupportedBackend, match="'bare' declares no SQL dialect"):
        Summariser(Bare(), SummariserSettings())  # type: ignore[arg-type]
    with pytest.raises(UnsupportedBackend, match="'bare' declares no SQL dialect"):
        Unloader(UnloaderSettings(dir_location="/nonexistent", table_name="VSuperSummaries"),
                 Bare())  # type: ignore[arg-type]

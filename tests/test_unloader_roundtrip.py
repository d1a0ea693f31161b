"""Round trip through the real tools: load → summarise → unload → load elsewhere → summarise.

A central server forwards its super summaries to the next level (the portal, EGI's
repository), which summarises them again. Whatever the first database holds in
HybridSuperSummaries must come out identical in the second one. Every step runs the
console script a user would run: ``apeldbloader --once``, ``apelsummariser``,
``apeldbunloader``; on MariaDB and on SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dirq.queue import Queue
from unloader_support import PUBLISHER, Env, db_settings

from apel.records import JOB, SUMMARY, render_message
from apel.samples import job_records, summary_records

BIN = Path(sys.executable).parent
SSM_INCOMING_SCHEMA = {"body": "string", "signer": "string", "empaid": "string?"}
SUMMARY_COLUMNS = (
    "Site", "Month", "Year", "GlobalUserName", "VO", "VOGroup", "VORole", "SubmitHost", "InfrastructureType",
    "InfrastructureDescription", "ServiceLevelType", "ServiceLevel", "NodeCount", "Processors",
    "EarliestEndTime", "LatestEndTime", "WallDuration", "CpuDuration", "NumberOfJobs",
)
NORMALISED_COLUMNS = (
    "Site", "Month", "Year", "GlobalUserName", "VO", "VOGroup", "VORole", "SubmitHost", "Infrastructure",
    "InfrastructureDescription", "ServiceLevelType", "NodeCount", "Processors", "EarliestEndTime",
    "LatestEndTime", "WallDuration", "CpuDuration", "NormalisedWallDuration", "NormalisedCpuDuration",
    "NumberOfJobs",
)

pytestmark = pytest.mark.timeout(180)


def run_tool(*command: str) -> None:
    proc = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{command[0]}: {proc.stdout}{proc.stderr}"


def summarise(env: Env) -> None:
    cfg = env.base / "summariser.cfg"
    cfg.write_text(f"[summariser]\npidfile = {env.base / 'summariser.pid'}\n"
                   f"[logging]\nlogfile = {env.base / 'summariser.log'}\nconsole = false\n")
    run_tool("apelsummariser", "-d", str(env.db_cfg), "-c", str(cfg))


def load_with_loader(env: Env, bodies: list[str]) -> None:
    """Queue the bodies as ssmreceive would, and load them with ``apeldbloader --once``."""
    msgpath = env.base / "spool-in"
    queue = Queue(str(msgpath / "incoming"), schema=SSM_INCOMING_SCHEMA)
    for body in bodies:
        queue.add({"body": body, "signer": PUBLISHER, "empaid": "noid"})
    cfg = env.base / "loader.cfg"
    cfg.write_text(f"[loader]\nmsgpath = {msgpath}\npidfile = {env.base / 'loader.pid'}\n"
                   f"[logging]\nlogfile = {env.base / 'loader.log'}\nconsole = false\n")
    run_tool("apeldbloader", "-d", str(env.db_cfg), "-c", str(cfg), "--once")


def rows(env: Env, view: str, columns: tuple[str, ...], fold: tuple[str, ...] = ()) -> list[tuple]:
    """The view's rows without UpdateTime, sorted; ``fold`` columns compared case-insensitively."""
    names = ", ".join(columns)
    result = []
    for row in env.db.query(f"SELECT {names} FROM {view}"):  # noqa: S608
        result.append(tuple(str(v).lower() if c in fold else v for c, v in zip(columns, row)))
    return sorted(result, key=repr)


@pytest.fixture(params=[pytest.param("mysql", marks=pytest.mark.services), "sqlite"])
def pair(request, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Env(tmp_path / "one", db_settings(request.param, request, tmp_path / "one"))
    second = Env(tmp_path / "two", db_settings(request.param, request, tmp_path / "two"))
    yield first, second
    first.close()
    second.close()


def fill_first(env: Env) -> None:
    load_with_loader(env, [
        render_message(JOB, list(job_records(3000, seed=21))),
        render_message(SUMMARY, list(summary_records(200, seed=22))),
    ])
    summarise(env)


def test_super_summaries_round_trip_to_identical_rows(pair):
    first, second = pair
    fill_first(first)
    expected = rows(first, "VSuperSummaries", SUMMARY_COLUMNS)
    assert len(expected) > 100
    first.unload(table_name="VSuperSummaries", interval="all", local_jobs="true",
                 include_infrastructure_description="true", records_per_message=250)
    messages = first.messages()
    assert len(messages) == -(-len(expected) // 250)
    load_with_loader(second, messages)
    summarise(second)
    assert rows(second, "VSuperSummaries", SUMMARY_COLUMNS) == expected
    assert rows(second, "VNormalisedSuperSummaries", NORMALISED_COLUMNS) == \
        rows(first, "VNormalisedSuperSummaries", NORMALISED_COLUMNS)


def test_normalised_super_summaries_round_trip_in_dict_mode(pair):
    """v0.4 carries the benchmark type (lower-cased by the parser); v0.3 has no room for it."""
    first, second = pair
    fill_first(first)
    expected = rows(first, "VNormalisedSuperSummaries", NORMALISED_COLUMNS, fold=("ServiceLevelType",))
    first.unload(table_name="VNormalisedSuperSummaries", interval="all", local_jobs="true",
                 include_infrastructure_description="true", dict_benchmark_type="true")
    messages = first.messages()
    assert messages and all(m.startswith("APEL-normalised-summary-message: v0.4\n") for m in messages)
    load_with_loader(second, messages)
    summarise(second)
    assert rows(second, "VNormalisedSuperSummaries", NORMALISED_COLUMNS, fold=("ServiceLevelType",)) \
        == expected


def test_job_records_round_trip_in_dict_mode_and_car(pair):
    first, second = pair
    load_with_loader(first, [render_message(JOB, list(job_records(500, seed=23)))])
    columns = ("Site", "LocalJobId", "EndTime", "WallDuration", "CpuDuration", "ServiceLevel", "VO",
               "GlobalUserName", "MachineName", "InfrastructureType", "NodeCount", "Processors")
    expected = rows(first, "VJobRecords", columns)
    first.unload(table_name="VJobRecords", interval="all", local_jobs="true", dict_benchmark_type="true")
    first.unload(table_name="VJobRecords", interval="all", local_jobs="true", send_ur="true")
    messages = first.messages()
    assert len(messages) == 2
    load_with_loader(second, messages)
    assert rows(second, "VJobRecords", columns) == expected
    assert rows(second, "VJobRecords", ("ServiceLevelType",), fold=("ServiceLevelType",)) == \
        rows(first, "VJobRecords", ("ServiceLevelType",), fold=("ServiceLevelType",))


"""Kill test: ``kill -9`` at random moments never loses or half-loads a message.

200 messages of 50 job records each are loaded by a loader in ``--foreground`` that
is killed with SIGKILL and restarted until all are loaded. The kill points are
chosen by the loader's progress, not by the clock (so a fast machine gets as many as
a slow one): as soon as it holds its pidfile, or after it has loaded 1 to 4 more
messages; and it is fed at most 10 messages per start, so it cannot load them all in
a few runs however fast it is. After every kill the database is checked: each
message is either fully in it or not at all, and every message that left
``incoming`` is fully in it. At the end the database must equal a clean load of the
same messages in a second database, and so must the summaries the summariser makes
of each.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time

import pytest
from loader_support import LoaderEnv, apply_mysql_schema, job_message, jobs, mysql_settings

from acctbase.pidfile import read_pid
from apel.db.backend import load_backend
from apel.services.summariser import Summariser, SummariserSettings

MESSAGES = 200
RECORDS = 50
QUEUED = 10  # messages in incoming at each start of the killed loader
JOB_ID = re.compile(r"LocalJobId: (kill\d{3})-")
# JobRecords with every lookup id replaced by its name: ids may differ between two
# loads (auto-increment values are not rolled back), the content must not.
LOOKUPS = {
    "SiteID": "Sites", "SubmitHostID": "SubmitHosts", "MachineNameID": "MachineNames",
    "QueueID": "Queues", "GlobalUserNameID": "DNs", "VOID": "VOs", "VOGroupID": "VOGroups",
    "VORoleID": "VORoles", "PublisherDNID": "DNs",
}


def _resolved_job_rows(env: LoaderEnv) -> list[tuple]:
    columns = [
        row[0] for row in env.query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'JobRecords' ORDER BY ORDINAL_POSITION"
        )
    ]
    select, joins = [], []
    for column in columns:
        if column == "UpdateTime":
            continue
        table = LOOKUPS.get(column)
        if table is None:
            select.append(f"j.`{column}`")
            continue
        alias = f"l_{column}"
        joins.append(f"LEFT JOIN `{table}` {alias} ON {alias}.id = j.`{column}`")
        select.append(f"{alias}.name")
    sql = f"SELECT {', '.join(select)} FROM JobRecords j {' '.join(joins)}"  # noqa: S608 - schema names
    return sorted(env.query(sql), key=repr)


def _table_counts(env: LoaderEnv) -> dict:
    """Rows per table, except the summariser's work queues (``Pending*``): a message
    reloaded after a kill leaves other entries there than a first load (a key to
    recompute rather than a delta), and what counts is what the summariser makes of
    them (:func:`_summaries`)."""
    tables = [row[0] for row in env.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME NOT LIKE 'Pending%'"
    )]
    return {table: env.count(f"`{table}`") for table in sorted(tables)}


def _summarise(env: LoaderEnv) -> str:
    """Run the summariser (cpu) on the env's database; its mode."""
    db = load_backend("mysql")(env.db_settings)
    db.connect()
    try:
        return Summariser(db, SummariserSettings()).run().mode
    finally:
        db.close()


def _summaries(env: LoaderEnv) -> list[tuple]:
    """The super summaries (as the unloader reads them) after an incremental summariser
    run, i.e. from the entries the loads left in PendingSummaryKeys."""
    assert _summarise(env) == "incremental"
    rows = [row[1:] for view in ("VSuperSummaries", "VNormalisedSuperSummaries")  # without UpdateTime
            for row in env.query(f"SELECT * FROM {view}")]  # noqa: S608 - fixed view names
    return sorted(rows, key=repr)


def _check_atomic(env: LoaderEnv, all_ids: set) -> None:
    """Every message is in the database completely or not at all; none that left
    incoming is missing."""
    per_message = dict(env.query(
        "SELECT SUBSTRING_INDEX(LocalJobId, '-', 1), COUNT(*) FROM JobRecords GROUP BY 1"
    ))
    half = {key: count for key, count in per_message.items() if count != RECORDS}
    assert half == {}, f"half-loaded messages: {half}"
    queued = set()
    for element in env.elements("incoming"):
        match = JOB_ID.search(element["body"])
        queued.add(match.group(1))
    lost = all_ids - queued - set(per_message)
    assert lost == set(), f"messages neither in incoming nor in the database: {sorted(lost)}"


def _queued(env: LoaderEnv) -> int:
    """Messages in incoming, counted without reading them (cheap enough to poll)."""
    incoming = env.msgpath / "incoming"
    return sum(
        1 for intermediate in incoming.glob("[0-9a-f]" * 8) for element in intermediate.iterdir()
        if element.is_dir()
    ) if incoming.is_dir() else 0


def _wait_for_kill_point(env: LoaderEnv, proc: subprocess.Popen, rng: random.Random) -> None:
    """Until the loader reaches a point chosen by what it has done, not by the clock: one
    start in five, as soon as it holds the pidfile (still starting, or on its first
    message); otherwise once it has loaded 1 to 4 more messages (then it is usually in
    the middle of the next one)."""
    if rng.random() < 0.2:
        def reached() -> bool:
            return read_pid(str(env.pidfile)) == proc.pid
    else:
        target = max(_queued(env) - rng.randint(1, 4), 0)

        def reached() -> bool:
            return _queued(env) <= target
    deadline = time.monotonic() + 120
    while not reached():
        assert proc.poll() is None, f"the loader exited with {proc.returncode}\n{env.log()}"
        assert time.monotonic() < deadline, f"the loader made no progress in 120 s\n{env.log()}"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_loses_nothing_and_half_loads_nothing(mariadb, tmp_path):
    bodies = [
        job_message(jobs(RECORDS, f"kill{index:03d}", seed=1000 + index)) for index in range(MESSAGES)
    ]
    all_ids = {f"kill{index:03d}" for index in range(MESSAGES)}
    envs = {}
    for label in ("clean", "killed"):
        base = tmp_path / label
        base.mkdir()
        connect_args = mariadb.connect_args(mariadb.create_database(f"apel_kill_{label}"))
        apply_mysql_schema(connect_args)
        envs[label] = LoaderEnv(base, mysql_settings(connect_args), interval=0.1)
        assert _summarise(envs[label]) == "full"  # the first run: later ones are incremental
    for index, body in enumerate(bodies):  # the killed loader is fed as it goes
        envs["clean"].put(body, empaid=f"kill-{index}")

    clean = envs["clean"]
    result = clean.run_once(timeout=300)
    assert result.returncode == 0, (result.stdout, result.stderr, clean.log())
    assert clean.elements("incoming") == [] and clean.count("JobRecords") == MESSAGES * RECORDS

    killed = envs["killed"]
    rng = random.Random(20240301)
    fed, kills = 0, 0
    deadline = time.monotonic() + 420
    while fed < MESSAGES or _queued(killed):
        assert time.monotonic() < deadline, f"{fed} messages fed, {kills} kills after 420 s\n{killed.log()}"
        while _queued(killed) < QUEUED and fed < MESSAGES:
            killed.put(bodies[fed], empaid=f"kill-{fed}")
            fed += 1
        proc = killed.start()
        _wait_for_kill_point(killed, proc, rng)
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        kills += 1
        proc.wait(timeout=30)
        _check_atomic(killed, {f"kill{index:03d}" for index in range(fed)})
    # At most QUEUED messages are loaded per start, whatever the machine's speed.
    assert kills >= MESSAGES // QUEUED
    assert "Loaded" in killed.log()

    assert killed.elements("reject") == []
    _check_atomic(killed, all_ids)
    assert _table_counts(killed) == _table_counts(clean)
    assert _resolved_job_rows(killed) == _resolved_job_rows(clean)
    summaries = _summaries(clean)
    assert len(summaries) > 1 and _summaries(killed) == summaries
    print(f"kill test: {kills} SIGKILLs")  # noqa: T201 - shown with -s

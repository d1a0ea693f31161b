"""``[loader] workers``: several loader processes under one apeldbloader (real MariaDB/SQLite)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from loader_support import (
    LoaderEnv,
    apply_mysql_schema,
    job_message,
    jobs,
    mysql_settings,
    stop,
    wait_until,
)


@pytest.fixture
def mysql_env(mysql_database, tmp_path) -> LoaderEnv:
    apply_mysql_schema(mysql_database)
    return LoaderEnv(tmp_path, mysql_settings(mysql_database), workers=2)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


@pytest.mark.timeout(180)
def test_once_with_two_workers_loads_every_message_once_and_rejects_the_bad_one(mysql_env):
    env = mysql_env
    messages = 40
    for index in range(messages):
        env.put(job_message(jobs(25, f"w{index:03d}", seed=index)), empaid=f"w-{index}")
    env.put("APEL-individual-job-message: v0.3\nSite: X\n%%\n", empaid="bad")
    result = env.run_once()
    assert result.returncode == 2, (result.stdout, result.stderr, env.log())
    assert env.elements("incoming") == []
    (rejected,) = env.elements("reject")
    assert rejected["empaid"] == "bad" and rejected["error"].startswith("Parsing unsuccessful: ")
    assert env.count("JobRecords") == messages * 25
    log = env.log()
    assert "Started 2 loader workers" in log
    assert log.count("Loaded 25 job records") == messages
    assert f"{messages} messages loaded ({messages * 25} records" in log  # the parent's summary line
    # both workers took part: each logs its own pass
    assert log.count("Pass done in") == 2
    assert env.query("SELECT name, COUNT(*) FROM Sites GROUP BY name HAVING COUNT(*) > 1") == []


@pytest.mark.timeout(60)
def test_once_with_two_workers_and_no_database_exits_1_with_one_line(tmp_path):
    env = LoaderEnv(
        tmp_path,
        {"backend": "mysql", "hostname": "127.0.0.1", "port": "1", "name": "apel", "username": "apel",
         "password": "x"},
        workers=2, backoff_max=1,
    )
    env.put(job_message(jobs(3, "down")), empaid="down-1")
    result = env.run_once(timeout=45)
    assert result.returncode == 1, (result.stdout, result.stderr, env.log())
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "giving up" in result.stderr
    (kept,) = env.elements("incoming")
    assert kept["empaid"] == "down-1" and not kept["_locked"]


@pytest.mark.timeout(180)
def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(tmp_path):
    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")}, workers=2,
                    lock_timeout=2)
    proc = env.start()
    try:
        env.wait_for_log("Started 2 loader workers")
        wait_until(lambda: len(_children(proc.pid)) == 2, 30, "two workers")
        first, second = _children(proc.pid)
        os.kill(first, signal.SIGKILL)
        env.wait_for_log(f"Loader worker {first} stopped (killed by SIGKILL); starting another", 30)
        wait_until(lambda: len(_children(proc.pid)) == 2 and first not in _children(proc.pid), 30,
                   "a replacement worker")
        assert second in _children(proc.pid)
        for index in range(10):
            env.put(job_message(jobs(5, f"k{index}", seed=index)), empaid=f"k-{index}")
        wait_until(lambda: env.elements("incoming") == [], 60, "the queue to be emptied")
        workers = _children(proc.pid)
    finally:
        assert stop(proc) == 0
    assert env.count("JobRecords") == 50
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers), "workers outlived the loader"
    assert not env.pidfile.exists()
    assert "Loader stopped" in env.log()


@pytest.mark.timeout(60)
def test_sighup_reaches_every_worker(tmp_path):
    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")}, workers=2)
    proc = env.start()
    try:
        env.wait_for_log("Started 2 loader workers")
        wait_until(lambda: env.log().count("Loader started") == 2, 30, "both workers")
        env.logfile.rename(tmp_path / "loader.log.1")  # logrotate
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: env.log().count("Log files reopened") == 2, 30, "both workers to reopen")
    finally:
        assert stop(proc) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_bad_worker_count_is_one_line(tmp_path, value):
    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")}, workers=value)
    result = env.run_once()
    assert result.returncode == 1
    assert "[loader] workers" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_workers_stop_when_their_parent_is_killed(tmp_path):
    env = LoaderEnv(tmp_path, {"backend": "sqlite", "name": str(tmp_path / "apel.sqlite3")}, workers=2)
    proc = env.start()
    try:
        wait_until(lambda: len(_children(proc.pid)) == 2, 30, "two workers")
        workers = _children(proc.pid)
        proc.kill()
        proc.wait()
        wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), 30,
                   "the orphaned workers to stop")
    finally:
        if proc.poll() is None:
            proc.kill()

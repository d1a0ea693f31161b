"""The real ``apeldbloader`` console script against real MariaDB and SQLite.

Messages are put into ``<msgpath>/incoming`` exactly as ssmreceive writes them
(dirq ``Queue``, fields body/signer/empaid), the loader runs as a subprocess with
its configs in tmp_path, and the outcome is read back from the queues and the
database.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest
from loader_support import (
    MESSAGE_TYPES,
    SIGNER,
    LoaderEnv,
    apply_mysql_schema,
    job_message,
    jobs,
    mysql_settings,
    stop,
    wait_until,
)

from apel.testkit.services import MariaDB, free_port


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

"""Session-wide real services: a test CA, ActiveMQ, MariaDB and slapd.

Each service starts once per test session, on free loopback ports with its data in
pytest's temporary directory, and is stopped by its own PID at the end. Tests that
need a fresh database take ``mysql_database`` (a new, empty schema each time).
"""

from __future__ import annotations

import itertools
import os

import pytest

from apel.testkit.pki import TestPKI
from apel.testkit.services import ActiveMQ, MariaDB, Slapd

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def activemq(tmp_path_factory, pki):
    broker = ActiveMQ(str(tmp_path_factory.mktemp("activemq")), pki).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    server = MariaDB(str(tmp_path_factory.mktemp("mariadb"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory):
    server = Slapd(str(tmp_path_factory.mktemp("slapd"))).start()
    yield server
    server.stop()


@pytest.fixture
def mysql_database(mariadb) -> dict:
    """Connection arguments of a new empty database on the session's MariaDB."""
    name = mariadb.create_database(f"apel_test_{next(_db_counter)}")
    return mariadb.connect_args(name)


@pytest.fixture(autouse=True)
def _restore_umask():
    """Programs run in-process (``main()``) set the umask they need for good, as a real
    process does; put it back so a later test sees the umask it started with."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)

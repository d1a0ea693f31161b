"""Session-wide real services: a test CA, ActiveMQ, MariaDB and slapd.

Each service starts once per test session, on free loopback ports with its data in
pytest's temporary directory, and is stopped by its own PID at the end. Tests that
need a fresh database take ``mysql_database`` (a new, empty schema each time).

Every test whose fixtures include one of those services is marked ``services``, so
``pytest -m "not services"`` runs the rest without MariaDB, ActiveMQ or slapd. A test
that asks for a service only at run time (``request.getfixturevalue``) cannot be seen
at collection: it must carry the marker itself, or the service fixture fails it.
"""

from __future__ import annotations

import itertools
import os

import pytest

from apel.testkit.pki import TestPKI
from apel.testkit.services import ActiveMQ, MariaDB, Slapd

_db_counter = itertools.count()
SERVICE_FIXTURES = frozenset({"activemq", "mariadb", "slapd", "mysql_database"})
_running: list[pytest.Item] = []  # the test being set up, for _require_services_marker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running[:] = [item]


def _require_services_marker(name: str) -> None:
    """Without this, a test reaching a service through getfixturevalue would silently
    start MariaDB or ActiveMQ in the fast lane (or fail there for want of one)."""
    if _running and _running[0].get_closest_marker("services") is None:
        pytest.fail(f"{_running[0].nodeid} uses the {name} service but is not marked "
                    "pytest.mark.services", pytrace=False)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def activemq(tmp_path_factory, pki):
    _require_services_marker("activemq")
    broker = ActiveMQ(str(tmp_path_factory.mktemp("activemq")), pki).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    _require_services_marker("mariadb")
    server = MariaDB(str(tmp_path_factory.mktemp("mariadb"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory):
    _require_services_marker("slapd")
    server = Slapd(str(tmp_path_factory.mktemp("slapd"))).start()
    yield server
    server.stop()


@pytest.fixture
def mysql_database(mariadb) -> dict:
    """Connection arguments of a new empty database on the session's MariaDB."""
    _require_services_marker("mysql_database")
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

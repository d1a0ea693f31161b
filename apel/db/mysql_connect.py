"""Opening a MySQL/MariaDB session the way every part of the backend relies on, and
creating the schema.

Settings (``[db]`` of db.cfg): hostname, port (3306), name, username, password,
optional socket and connect_timeout (s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pymysql
import pymysql.cursors

from apel.db.backend import DatabaseUnavailable, Transaction
from apel.db.mysql_errors import error_for
from apel.db.schema_files import schema_statements

# The session runs strict whatever the server's default: nothing is silently clamped.
SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
COLLATION = "utf8mb4_general_ci"
# Room for the longest text apel.db.pending.replaced_job_keys reads (1,000 distinct keys
# of at most ~700 characters); the server's default of 1 MB would cut it short.
GROUP_CONCAT_MAX_LEN = 4 * 1024 * 1024


def connection_args(settings: Mapping[str, str]) -> dict[str, Any]:
    """PyMySQL arguments for the ``[db]`` options of db.cfg (hostname, port, name,
    username, password, optional socket and connect_timeout)."""
    args: dict[str, Any] = {
        "host": settings.get("hostname") or "localhost",
        "port": int(settings.get("port") or 3306),
        "user": settings.get("username") or None,
        "password": settings.get("password") or "",
        "database": settings.get("name") or None,
        "connect_timeout": float(settings.get("connect_timeout") or 10),
    }
    if settings.get("socket"):
        args["unix_socket"] = settings["socket"]
    return args


def open_connection(args: Mapping[str, Any], local_infile: bool = False) -> pymysql.connections.Connection:
    """A session in strict SQL mode, UTC, the schema's collation, autocommit until a
    transaction begins; DatabaseUnavailable if the server cannot be reached."""
    try:
        return pymysql.connect(
            charset="utf8mb4", collation=COLLATION, autocommit=True, local_infile=local_infile,
            init_command=(
                f"SET SESSION sql_mode = '{SQL_MODE}', time_zone = '+00:00',"
                f" group_concat_max_len = {GROUP_CONCAT_MAX_LEN}"
            ),
            **args,
        )
    except pymysql.Error as exc:
        raise error_for(exc) from exc
    except OSError as exc:  # e.g. an unresolvable host name
        raise DatabaseUnavailable(f"MySQL database unavailable: {exc}") from exc


def apply_schema(connection: Mapping[str, Any]) -> None:
    """Create the tables and views of ``schemas/mysql.sql`` (safe to repeat).

    ``connection`` holds PyMySQL arguments (host, port, user, password, database), as
    the test kit's ``connect_args`` gives them.
    """
    conn = open_connection(connection)
    try:
        with conn.cursor() as cur:
            for statement in schema_statements("mysql"):
                cur.execute(statement)
    except pymysql.Error as exc:
        raise error_for(exc) from exc
    finally:
        conn.close()


class MySQLTransaction(Transaction):
    """The Transaction interface over one cursor of an open transaction."""

    def __init__(self, cursor: pymysql.cursors.Cursor) -> None:
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.cursor.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self.cursor.executemany(sql, [tuple(row) for row in rows]) or 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.cursor.execute(sql, tuple(params))
        return list(self.cursor.fetchall())

"""The MySQL/MariaDB backend (PyMySQL): bulk, all-or-nothing message loads.

A message is written in one transaction with a handful of statements, whatever its
size: its lookup names resolved per lookup table in bulk (``mysql_lookups``), then each
table's rows and the summariser's bookkeeping for them with one bulk statement each
(``mysql_jobs``, ``mysql_bulk``). A lost connection shows on BEGIN (reconnect once)
rather than through a ping per message. Errors map to reject-or-retry in
``mysql_errors``; sessions are opened in ``mysql_connect``.

Settings (``[db]`` of db.cfg): hostname, port (3306), name, username, password,
optional socket, connect_timeout (s) and ``local_infile`` (yes/no, default yes).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import pymysql
import pymysql.cursors
import pymysql.err

from apel.db import pending
from apel.db import rows as _rows
from apel.db.backend import Backend, DatabaseUnavailable, StorageError, Transaction
from apel.db.mysql_bulk import BulkWriter
from apel.db.mysql_connect import MySQLTransaction, apply_schema, connection_args, open_connection
from apel.db.mysql_dialect import MYSQL
from apel.db.mysql_errors import LOST_CODES, Conflict, error_code, error_for
from apel.db.mysql_jobs import PartWriter
from apel.db.mysql_lookups import LookupCache, substitute
from apel.records.model import ParsedMessage

log = logging.getLogger(__name__)

# Tries of a message that deadlocks with another transaction before the loader backs off.
CONFLICT_ATTEMPTS = 4

__all__ = ["CONFLICT_ATTEMPTS", "MySQLBackend", "apply_schema", "error_for"]


class MySQLBackend(Backend):
    """The accounting database on a MySQL or MariaDB server."""

    name = "mysql"
    dialect = MYSQL

    def __init__(self, settings: Mapping[str, str]) -> None:
        super().__init__(settings)
        self._args = connection_args(self.settings)
        local_infile = self.settings.get("local_infile", "yes").strip().lower()
        self._bulk = BulkWriter(local_infile not in ("no", "false", "off", "0"))
        self._writer = PartWriter(self._bulk, self.dialect)
        self._lookups = LookupCache()
        self._conn: Optional[pymysql.connections.Connection] = None

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and check that the schema is there (this backend never creates it)."""
        if self._conn is not None:  # reconnecting: drop the old session first
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._conn = open_connection(self._args, self._bulk.local_infile)
        try:
            with self._conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.TABLES"
                    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", ("JobRecords",),
                )
                (found,) = cur.fetchone()  # type: ignore[misc]  # COUNT(*) always gives a row
        except pymysql.Error as exc:
            self.close()
            raise error_for(exc) from exc
        if not found:
            database = self._args.get("database")
            self.close()
            raise DatabaseUnavailable(
                f"database {database!r} has no JobRecords table: load schemas/mysql.sql"
                " (e.g. mysql {database} < schemas/mysql.sql)"
            )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._bulk.close()

    def create_schema(self) -> None:
        apply_schema(self._args)

    def _connection(self, ping: bool = True) -> pymysql.connections.Connection:
        """The connection, reconnecting if the server dropped it.

        With ``ping`` the connection is checked first (one round trip): for the
        occasional query of the tools. A transaction skips that and notices a lost
        connection on its first statement instead (see :meth:`_begin`).
        """
        if self._conn is not None and ping:
            try:
                self._conn.ping(reconnect=False)
            except (pymysql.Error, OSError) as exc:
                log.warning("MySQL connection lost (%s); reconnecting", exc)
                self.close()
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def _begin(self) -> pymysql.connections.Connection:
        """Start a transaction on a live connection, reconnecting once if the first
        statement finds the connection gone (nothing was done in it, so it is safe)."""
        conn = self._connection(ping=False)
        try:
            conn.begin()
            return conn
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            if isinstance(exc, pymysql.err.OperationalError) and error_code(exc) not in LOST_CODES:
                raise error_for(exc) from exc
            log.warning("MySQL connection lost (%s); reconnecting", exc)
            self.close()
        conn = self._connection(ping=False)
        try:
            conn.begin()
        except pymysql.Error as exc:
            self.close()
            raise error_for(exc) from exc
        return conn

    # -- generic helpers ----------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
        except pymysql.Error as exc:
            raise error_for(exc) from exc

    def iter_query(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[list[tuple]]:
        """Stream with a server-side cursor (``SSCursor``): rows are read from the socket
        ``batch`` at a time, so a whole view never sits in the client's memory."""
        conn = self._connection()
        try:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(sql, tuple(params))
                while True:
                    rows = cur.fetchmany(batch)
                    if not rows:
                        return
                    yield list(rows)
        except pymysql.Error as exc:
            raise error_for(exc) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        conn = self._begin()
        try:
            with conn.cursor() as cur:
                yield MySQLTransaction(cur)
            conn.commit()
        except pymysql.Error as exc:
            self._rollback()
            raise error_for(exc) from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except Exception:  # the connection is gone: the server rolls back for us
                self.close()

    # -- loading ------------------------------------------------------------------------

    def load_message(self, message: ParsedMessage, publisher_dn: str) -> int:
        """Write the message in one transaction; a deadlock with another loader (the
        server rolled the transaction back) is tried again at once, a few times, rather
        than costing the loader its connection and a back-off pause."""
        for attempt in range(1, CONFLICT_ATTEMPTS):
            try:
                return self._load_message(message, publisher_dn)
            except Conflict as exc:
                log.info("%s; trying the message again (attempt %d of %d)",
                         exc, attempt + 1, CONFLICT_ATTEMPTS)
                time.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311 - jitter, not crypto
        return self._load_message(message, publisher_dn)  # a conflict now goes to the loader's back-off

    def _load_message(self, message: ParsedMessage, publisher_dn: str) -> int:
        parts = _rows.build_message(message, publisher_dn)  # anew per attempt: substitute edits it
        if not parts:
            return 0
        written = 0
        with self.transaction() as tx:
            assert isinstance(tx, MySQLTransaction)
            if any(part.layout.record_type in pending.HSS_SOURCES for part in parts):
                tx.execute(self.dialect.gate_shared)  # first: see apel.db.pending
            ids, fresh = self._lookups.resolve_all(tx.cursor, parts)
            for part in parts:
                substitute(part, ids)
                try:
                    self._writer.write(tx, part)
                except UnicodeEncodeError as exc:
                    raise StorageError(
                        f"{part.layout.record_type}: text that is not valid Unicode: {exc}"
                    ) from None
                written += len(part)
        self._lookups.remember(fresh)  # committed: only now do these ids exist for others
        return written

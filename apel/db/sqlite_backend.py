"""The SQLite backend (stdlib sqlite3): a single-file accounting database.

For small sites, tests and the quick start: no server to run. ``[db] name`` is the
database file; a missing file is created with ``schemas/sqlite.sql`` (mode 0600, in a
directory created 0700), because it holds user DNs.

Each message is one ``BEGIN IMMEDIATE`` transaction, so concurrent loaders queue on
SQLite's single write lock (WAL mode keeps readers unblocked); a lock still held after
``timeout`` seconds is DatabaseUnavailable, and the loader retries. Lookups and
replaces follow the MySQL backend: first spelling wins for names, last record wins
per key, both case-insensitive and trailing-space-insensitive (see the schema).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Optional

from apel.db import pending
from apel.db import rows as _rows
from apel.db.backend import Backend, DatabaseUnavailable, StorageError, Transaction
from apel.db.schema_files import schema_text
from apel.db.sqlite_dialect import SQLITE
from apel.db.tables import DATETIME_COLUMNS, DECIMAL_COLUMNS
from apel.records.model import ParsedMessage

_DT_FORMAT = "%Y-%m-%d %H:%M:%S"

# Errors about the values themselves; every other sqlite3 error means "cannot work now".
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, UnicodeEncodeError)


def error_for(exc: BaseException) -> Exception:
    """StorageError for refused data, DatabaseUnavailable for everything else.

    ``database is locked``/``busy``, I/O errors, a missing table or an unopenable file
    are not the message's fault, so the loader must keep and retry the message.
    """
    if isinstance(exc, _DATA_ERRORS):
        return StorageError(f"the database refused the data: {exc}")
    return DatabaseUnavailable(f"SQLite database unavailable: {exc}")


def _adapt(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.strftime(_DT_FORMAT)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _convert_row(names: Sequence[str], row: tuple) -> tuple:
    """Give datetime and 3-decimal columns the Python types the MySQL backend returns."""
    out = list(row)
    for i, name in enumerate(names):
        value = out[i]
        if value is None:
            continue
        if name in DATETIME_COLUMNS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                out[i] = _dt.datetime.fromisoformat(value)
        elif name in DECIMAL_COLUMNS and isinstance(value, (int, float)):
            out[i] = Decimal(repr(float(value))).quantize(Decimal("0.001"))
    return tuple(out)


def _fetch(cur: sqlite3.Cursor) -> list[tuple]:
    result = cur.fetchall()
    if not cur.description:
        return result
    names = [d[0] for d in cur.description]
    if not any(n in DATETIME_COLUMNS or n in DECIMAL_COLUMNS for n in names):
        return result
    return [_convert_row(names, row) for row in result]


class _SQLiteTransaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, [_adapt(v) for v in params]).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._conn.executemany(sql, ([_adapt(v) for v in row] for row in rows)).rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return _fetch(self._conn.execute(sql, [_adapt(v) for v in params]))


class SQLiteBackend(Backend):
    """The accounting database in one SQLite file (``[db] name``)."""

    name = "sqlite"
    dialect = SQLITE

    def __init__(self, settings: Mapping[str, str]) -> None:
        super().__init__(settings)
        self.path = self.settings.get("name") or ""
        if not self.path:
            raise ValueError("[db] name must be the SQLite database file's path")
        self.timeout = float(self.settings.get("timeout") or 30)
        self._conn: Optional[sqlite3.Connection] = None

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open the file, creating it (0600, directory 0700) with the schema if missing."""
        try:
            self._create_file()
            # one backend object serves one thread at a time, but not always the thread
            # that connected it (a loader may hand it to a worker)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._conn = conn
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            found = conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'JobRecords'"
            ).fetchone()[0]
            if not found:
                self._apply_schema(conn)
        except sqlite3.Error as exc:
            self.close()
            raise error_for(exc) from exc

    def _create_file(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        os.close(fd)

    @staticmethod
    def _apply_schema(conn: sqlite3.Connection) -> None:
        # executescript commits first and runs the file as one script
        conn.executescript(schema_text("sqlite"))

    def create_schema(self) -> None:
        try:
            self._apply_schema(self._connection())
        except sqlite3.Error as exc:
            raise error_for(exc) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    # -- generic helpers ----------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = self._connection()
        try:
            return _fetch(conn.execute(sql, [_adapt(v) for v in params]))
        except (sqlite3.Error, OverflowError) as exc:
            raise error_for(exc) from exc

    def iter_query(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[list[tuple]]:
        """Step one cursor ``batch`` rows at a time (one read snapshot in WAL mode)."""
        conn = self._connection()
        try:
            cur = conn.execute(sql, [_adapt(v) for v in params])
            names = [d[0] for d in cur.description or ()]
            convert = any(n in DATETIME_COLUMNS or n in DECIMAL_COLUMNS for n in names)
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    return
                yield [_convert_row(names, row) for row in rows] if convert else rows
        except (sqlite3.Error, OverflowError) as exc:
            raise error_for(exc) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise error_for(exc) from exc
        try:
            yield _SQLiteTransaction(conn)
            conn.execute("COMMIT")
        except (sqlite3.Error, OverflowError, UnicodeEncodeError) as exc:
            self._rollback(conn)
            raise error_for(exc) from exc
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # -- loading ------------------------------------------------------------------------

    def load_message(self, message: ParsedMessage, publisher_dn: str) -> int:
        parts = _rows.build_message(message, publisher_dn)
        if not parts:
            return 0
        written = 0
        with self.transaction() as tx:
            conn = self._connection()
            cache: dict[str, dict[str, int]] = {}
            for part in parts:
                layout = part.layout
                table_rows = self._substitute(conn, part, cache)
                # the summariser's bookkeeping, in this same transaction (apel.db.pending)
                pending.before_write(tx, self.dialect, layout.record_type, layout.columns, table_rows)
                written += self._write(conn, layout, table_rows)
                pending.after_write(tx, self.dialect, layout.record_type, layout.columns, table_rows)
        return written

    def _substitute(
        self, conn: sqlite3.Connection, part: _rows.TableData, cache: dict[str, dict[str, int]]
    ) -> list[list[Any]]:
        """The rows, with names replaced by ids (inserting new names) and SQLite types."""
        layout = part.layout
        columns = part.columns
        for position, table in layout.lookup_positions:
            ids = cache.setdefault(table, {})
            for name in dict.fromkeys(columns[position]):
                if name not in ids:
                    ids[name] = self._lookup(conn, table, name)
            column: list[Any] = list(map(ids.__getitem__, columns[position]))
            if layout.publisher_as_text and layout.columns[position] == "PublisherDNID":
                column = list(map(str, column))
            columns[position] = column
        for i in layout.positions_of(_dt.datetime):
            columns[i] = [None if v is None else v.strftime(_DT_FORMAT) for v in columns[i]]
        for i in layout.positions_of(Decimal):
            columns[i] = [None if v is None else float(v) for v in columns[i]]
        return part.rows()

    @staticmethod
    def _lookup(conn: sqlite3.Connection, table: str, name: str) -> int:
        """The id of ``name`` (matched like the UNIQUE index), inserting it if new.

        No race: the transaction holds SQLite's write lock (BEGIN IMMEDIATE).
        """
        select = f"SELECT id FROM {table} WHERE rtrim(name, ' ') = rtrim(?, ' ') COLLATE NOCASE"  # noqa: S608
        found = conn.execute(select, (name,)).fetchone()
        if found is None:
            return conn.execute(f"INSERT INTO {table} (name) VALUES (?)", (name,)).lastrowid  # type: ignore[return-value]  # noqa: S608 - set by an INSERT
        return found[0]

    @staticmethod
    def _write(conn: sqlite3.Connection, layout: _rows.Layout, table_rows: list[list[Any]]) -> int:
        columns = ", ".join(layout.columns)
        marks = ", ".join(["?"] * len(layout.columns))
        conn.executemany(f"REPLACE INTO {layout.table} ({columns}) VALUES ({marks})", table_rows)  # noqa: S608
        return len(table_rows)

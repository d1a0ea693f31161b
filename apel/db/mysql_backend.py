"""The MySQL/MariaDB backend (PyMySQL): bulk, all-or-nothing message loads.

A message is written in one transaction with a handful of statements, whatever its
size: the distinct names of all lookup fields are resolved per lookup table in bulk,
then each table's rows go in with one ``LOAD DATA LOCAL INFILE ... REPLACE`` (rows
streamed as a private temporary TSV file; last write wins per primary key, also within
one message). If the server or the settings do not allow LOCAL INFILE, multi-row
``REPLACE ... VALUES`` statements (PyMySQL ``executemany``) are used instead. One
statement per record would cap the loader at a few thousand records a second
(``test-services.md`` §3); LOAD DATA is several times faster than multi-row VALUES,
mostly because PyMySQL escapes every value in Python. Values are never part of the
SQL text on either path. The session runs in strict SQL mode, so LOAD DATA refuses
bad values (error, not warning); rows.py has already checked them anyway.

A job message of 1,000 records, lookups cached, is BEGIN, SAVEPOINT, LOAD DATA into
JobRecords, LOAD DATA of its distinct summariser keys into PendingSummaryKeys, COMMIT;
one locking read more where stored jobs are replaced (see ``_write_part``). A lost
connection shows on BEGIN (reconnect once) rather than through a ping per message.
The server's work then dominates: on MariaDB the LOAD DATA into JobRecords (four
indexes, all used by the summariser or the unloader) and the COMMIT's log flush. The
code needs no server tuning; for a busy central loader, an InnoDB buffer pool that holds
JobRecords' indexes and a redo log of a few hundred MB help (the test kit uses 256 MB
each); ``innodb_flush_log_at_trx_commit = 1`` (the default) keeps each committed
message durable and should stay.

Settings (``[db]`` of db.cfg): hostname, port (3306), name, username, password,
optional socket, connect_timeout (s) and ``local_infile`` (yes/no, default yes;
``no`` also keeps PyMySQL from honouring the server's file requests at all).

Lookups are race-free with concurrent loaders: names are inserted with
``INSERT ... ON DUPLICATE KEY UPDATE`` against the UNIQUE name index, then read back
with a locking read (which, unlike a plain read, sees rows other loaders committed
after this transaction's snapshot). The case-insensitive PAD SPACE collation of the
schema makes 'RAL-LCG2' and 'ral-lcg2 ' the same name; the first stored spelling stays.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any, Optional

import pymysql
import pymysql.err

from apel.db import pending
from apel.db import rows as _rows
from apel.db.backend import Backend, DatabaseUnavailable, StorageError, Transaction
from apel.db.mysql_dialect import MYSQL
from apel.db.schema_files import schema_statements
from apel.records import model
from apel.records.model import ParsedMessage

log = logging.getLogger(__name__)

# The session runs strict whatever the server's default: nothing is silently clamped.
SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
COLLATION = "utf8mb4_general_ci"
# Room for the longest text apel.db.pending.replaced_job_keys reads (1,000 distinct keys
# of at most ~700 characters); the server's default of 1 MB would cut it short.
GROUP_CONCAT_MAX_LEN = 4 * 1024 * 1024

# Server conditions that are nobody's fault in the message: retry later.
_UNAVAILABLE_CODES = frozenset({
    1021,  # disk full
    1040,  # too many connections
    1044, 1045,  # access denied (configuration)
    1046, 1049,  # no database selected / unknown database (configuration)
    1053,  # server shutdown in progress
    1114,  # table is full
    1146, 1054,  # missing table / column: schema not loaded or outdated
    1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161,  # network errors
    1180, 1181,  # error during COMMIT / ROLLBACK
    1203, 1226,  # user connection limits
    1205,  # lock wait timeout
    1213,  # deadlock
    1290,  # server running with --read-only (or similar option)
    1317,  # query interrupted
    1792, 1836,  # read-only transaction / read-only mode
    1927,  # MariaDB: connection was killed
    2002, 2003, 2005, 2006, 2013, 2055,  # client: cannot connect / server gone / lost
    4031,  # MySQL: disconnected for inactivity
    1047,  # Galera: WSREP has not yet prepared node for application use
})
# The connection is gone (server restarted, idle timeout, KILL): reconnect and start over.
_LOST_CODES = frozenset({1053, 1927, 2006, 2013, 2055, 4031})
# Tries of a message that deadlocks with another transaction before the loader backs off.
CONFLICT_ATTEMPTS = 4
# Lookup names remembered per table before the cache starts over (bounds memory).
_CACHE_LIMIT = 200_000

# LOAD DATA LOCAL INFILE is not allowed by the server (MariaDB/MySQL 5, MySQL 8) or client.
_NO_LOCAL_INFILE_CODES = frozenset({1148, 3948, 2068})

# Values the database refused: the message is at fault, reject it.
_DATA_CODES = frozenset({
    1048,  # column cannot be null
    1062,  # duplicate entry (a unique rule other than the replaced key)
    1264,  # out of range
    1265,  # data truncated
    1292,  # incorrect datetime value
    1366,  # incorrect value for the column type
    1406,  # data too long
    1644,  # SIGNAL raised by a trigger
    1690,  # value out of range in an expression
    3819, 4025,  # CHECK constraint violated (MySQL, MariaDB)
})


class Conflict(DatabaseUnavailable):
    """A clash with a concurrent transaction (deadlock): the server rolled this one
    back, and running it again usually succeeds at once."""


def error_for(exc: BaseException) -> Exception:
    """The StorageError or DatabaseUnavailable that stands for a PyMySQL error.

    Only errors that are clearly about the data become StorageError (the loader
    rejects the message); anything else about the server or the connection becomes
    DatabaseUnavailable, because rejecting a good message is worse than retrying.
    """
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code in _DATA_CODES or (
        code not in _UNAVAILABLE_CODES
        and isinstance(exc, (pymysql.err.DataError, pymysql.err.IntegrityError))
    ):
        return StorageError(f"the database refused the data: ({code}) {text}")
    if code == 1213:
        return Conflict(f"MySQL deadlock with another transaction: ({code}) {text}")
    return DatabaseUnavailable(f"MySQL database unavailable: ({code}) {text}")


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


def _open(args: Mapping[str, Any], local_infile: bool = False) -> pymysql.connections.Connection:
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
    conn = _open(connection)
    try:
        with conn.cursor() as cur:
            for statement in schema_statements("mysql"):
                cur.execute(statement)
    except pymysql.Error as exc:
        raise error_for(exc) from exc
    finally:
        conn.close()


def _key(name: str) -> str:
    """How the schema's collation compares names, for mapping rows back to inputs."""
    return name.rstrip(" ").lower()


class _MySQLTransaction(Transaction):
    def __init__(self, cursor: pymysql.cursors.Cursor) -> None:
        self._cur = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._cur.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._cur.executemany(sql, [tuple(row) for row in rows]) or 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self._cur.execute(sql, tuple(params))
        return list(self._cur.fetchall())


class MySQLBackend(Backend):
    """The accounting database on a MySQL or MariaDB server."""

    name = "mysql"
    dialect = MYSQL

    def __init__(self, settings: Mapping[str, str]) -> None:
        super().__init__(settings)
        self._args = connection_args(self.settings)
        self._local_infile = self.settings.get("local_infile", "yes").strip().lower() not in (
            "no", "false", "off", "0")
        self._tmpdir: Optional[str] = None
        self._known: dict[str, dict[str, int]] = {}  # committed lookup ids, per table
        self._conn: Optional[pymysql.connections.Connection] = None
        # whether the last job message replaced stored jobs (see _write_part)
        self._expect_replaced = False

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and check that the schema is there (this backend never creates it)."""
        if self._conn is not None:  # reconnecting: drop the old session first
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self._conn = _open(self._args, self._local_infile)
        try:
            with self._conn.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.TABLES"
                    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", ("JobRecords",),
                )
                (found,) = cur.fetchone()
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
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

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
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if isinstance(exc, pymysql.err.OperationalError) and code not in _LOST_CODES:
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
                yield _MySQLTransaction(cur)
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
        parts = _rows.build_message(message, publisher_dn)  # anew per attempt: _substitute edits it
        if not parts:
            return 0
        fresh: dict[str, dict[str, int]] = {}  # ids learnt in this transaction
        written = 0
        with self.transaction() as tx:
            assert isinstance(tx, _MySQLTransaction)
            cur = tx._cur
            if any(part.layout.record_type in pending.HSS_SOURCES for part in parts):
                cur.execute(self.dialect.gate_shared)  # first: see apel.db.pending
            ids = self._resolve_all(cur, parts, fresh)
            for part in parts:
                layout = part.layout
                _substitute(part, ids)
                try:
                    self._write_part(tx, part)
                except UnicodeEncodeError as exc:
                    raise StorageError(
                        f"{layout.record_type}: text that is not valid Unicode: {exc}"
                    ) from None
                written += len(part)
        # only committed ids may be remembered: a rolled-back insert's id does not exist
        for table, learnt in fresh.items():
            known = self._known.setdefault(table, {})
            if len(known) + len(learnt) > _CACHE_LIMIT:
                known.clear()
            known.update(learnt)
        return written

    def _resolve_all(
        self, cur: pymysql.cursors.Cursor, parts: list[_rows.TableData], fresh: dict[str, dict[str, int]]
    ) -> dict[str, dict[str, int]]:
        """name -> id for every lookup value of the message, per lookup table.

        Ids are immutable once committed (lookup rows are never updated or deleted), so
        names seen in earlier messages come from the backend's cache without a query.
        """
        wanted: dict[str, dict[str, None]] = {}  # table -> names in message order
        for part in parts:
            for position, table in part.layout.lookup_positions:
                wanted.setdefault(table, {}).update(dict.fromkeys(part.columns[position]))
        resolved = {}
        for table, names in wanted.items():
            known = self._known.get(table, {})
            ids = {name: known[name] for name in names if name in known}
            unknown = [name for name in names if name not in ids]
            if unknown:
                learnt = self._resolve(cur, table, unknown)
                fresh[table] = learnt
                ids.update(learnt)
            resolved[table] = ids
        return resolved

    def _resolve(self, cur: pymysql.cursors.Cursor, table: str, names: list[str]) -> dict[str, int]:
        """The id of every name, inserting the missing ones (first spelling wins)."""
        ids = self._select_ids(cur, table, names, lock=False)
        missing = [name for name in names if name not in ids]
        if missing:
            # Insert in a stable order (by collation key, then message order) so that two
            # loaders adding the same new names take the index locks in the same order.
            missing.sort(key=_key)
            cur.executemany(
                f"INSERT INTO {table} (name) VALUES (%s) ON DUPLICATE KEY UPDATE id = id",  # noqa: S608
                [(name,) for name in missing],
            )
            ids.update(self._select_ids(cur, table, missing, lock=True))
        for name in names:
            if name not in ids:  # the collation folds something Python's lower() does not
                cur.execute(f"SELECT id FROM {table} WHERE name = %s LOCK IN SHARE MODE", (name,))  # noqa: S608
                found = cur.fetchone()
                if found is None:
                    # Not the message's fault (a concurrent loader's insert of the same name
                    # was not visible yet): roll back and let the loader retry the message.
                    raise Conflict(f"{table}: the name {name!r} is not readable yet")
                ids[name] = found[0]
        return ids

    @staticmethod
    def _select_ids(
        cur: pymysql.cursors.Cursor, table: str, names: list[str], lock: bool
    ) -> dict[str, int]:
        by_key: dict[str, Optional[int]] = {}
        suffix = " LOCK IN SHARE MODE" if lock else ""
        for start in range(0, len(names), 1000):
            chunk = names[start:start + 1000]
            marks = ", ".join(["%s"] * len(chunk))
            cur.execute(f"SELECT id, name FROM {table} WHERE name IN ({marks}){suffix}", chunk)  # noqa: S608
            for row_id, stored in cur.fetchall():
                key = _key(stored)
                # two stored names with one Python key: resolve those one by one instead
                by_key[key] = None if key in by_key and by_key[key] != row_id else row_id
        ids = {}
        for name in names:
            row_id = by_key.get(_key(name))
            if row_id is not None:
                ids[name] = row_id
        return ids

    def _write_part(self, tx: _MySQLTransaction, part: _rows.TableData) -> None:
        """One table's rows and the summariser's bookkeeping for them (apel.db.pending).

        Jobs and (normalised) summaries: the rows, then their distinct HSS keys, each with
        one bulk statement. A job that replaces a stored one may leave the stored job's
        key behind, which must be recorded too (pending.replaced_job_keys, one locking
        read before the rows are written). Most messages replace nothing, so unless the
        previous job message did replace, the rows go in first, after a savepoint: the
        write's row count says whether anything was replaced (a REPLACE counts each
        replaced row twice), and only then is the write undone, the stored keys read and
        the rows written again. Other types use pending's generic hooks.

        A job write that replaced nothing only added jobs: their keys get *delta entries*
        (pending.job_deltas), which the summariser adds to the HSS rows without reading
        the keys' other jobs; anything else gets recompute entries. "Replaced nothing" is
        the session's Handler_update + Handler_delete counters unchanged by the write (two
        cheap status reads), not the changed-row count alone: REPLACE counts a row that
        replaces an identical one (same values, same UpdateTime second: a message loaded
        twice within a second, or a job twice in one message) once, as if it were new.
        """
        layout = part.layout
        record_type = layout.record_type
        cur = tx._cur
        keys = pending.summary_keys(record_type, layout.columns, part.columns)
        if not keys:
            table_rows = part.rows()
            pending.before_write(tx, self.dialect, record_type, layout.columns, table_rows)
            self._write(cur, layout.table, layout.columns, layout.text_columns, part.columns)
            pending.after_write(tx, self.dialect, record_type, layout.columns, table_rows)
            return

        def rows_replaced() -> Optional[int]:
            # this session's row updates and deletes so far: a REPLACE that meets a stored
            # row (or an earlier row of the same statement) updates or deletes it, and
            # counts here even when the new row is identical to it, where its changed-row
            # count does not (an identical row counts once, like a new one). None if the
            # server does not say (then no delta: a recompute entry is always right).
            cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Handler_update', 'Handler_delete')")
            found = cur.fetchall()
            return sum(int(value) for _, value in found) if len(found) == 2 else None

        added = False  # only new jobs: their keys get delta entries
        if record_type != model.JOB:  # summary keys are primary keys: a replaced row has the same
            self._write(cur, layout.table, layout.columns, layout.text_columns, part.columns)
        elif self._expect_replaced:
            replaced = pending.replaced_job_keys(tx, self.placeholder, layout.columns, part.columns, keys)
            before = rows_replaced()
            changed = self._write(cur, layout.table, layout.columns, layout.text_columns, part.columns)
            self._expect_replaced = changed > len(part)
            added = not replaced and changed == len(part) and before is not None and rows_replaced() == before
            keys += replaced
        else:
            cur.execute("SAVEPOINT apel_jobs")
            before = rows_replaced()
            changed = self._write(cur, layout.table, layout.columns, layout.text_columns, part.columns)
            if changed > len(part):
                # InnoDB keeps the row locks taken since the savepoint: nobody can change
                # these jobs before the locking read below
                cur.execute("ROLLBACK TO SAVEPOINT apel_jobs")
                keys += pending.replaced_job_keys(tx, self.placeholder, layout.columns, part.columns, keys)
                self._write(cur, layout.table, layout.columns, layout.text_columns, part.columns, again=True)
                self._expect_replaced = True
            else:
                added = before is not None and rows_replaced() == before
        deltas = pending.job_deltas(layout.columns, part.columns) if added else None
        # PendingSummaryKeys has no key but its auto-increment id: REPLACE only inserts
        if deltas is not None:
            self._write(cur, "PendingSummaryKeys", pending.KEY_COLUMNS + pending.DELTA_COLUMNS,
                        pending.DELTA_TEXT_COLUMNS, deltas)
            return
        key_columns = [list(values) for values in zip(*keys)]
        self._write(cur, "PendingSummaryKeys", pending.KEY_COLUMNS, pending.KEY_TEXT_COLUMNS, key_columns)

    def _write(
        self, cur: pymysql.cursors.Cursor, table: str, columns: Sequence[str], text: frozenset[str],
        data: list[list[Any]], again: bool = False,
    ) -> int:
        """Rows given column by column into ``table`` (REPLACE): LOAD DATA, else multi-row
        VALUES. Returns the server's count of changed rows (a replaced row counts twice).
        ``again``: the same rows as the previous call (its bulk-load file is reused)."""
        if self._local_infile:
            try:
                return self._load_data(cur, table, columns, text, None if again else data)
            except OSError as exc:  # the loader host's disk, not the message
                raise DatabaseUnavailable(f"cannot write the bulk-load file: {exc}") from exc
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in _NO_LOCAL_INFILE_CODES:
                    raise
                # the statement had no effect: carry on in the same transaction
                log.warning("MySQL refuses LOAD DATA LOCAL INFILE (%s); using multi-row REPLACE", exc)
                self._local_infile = False
        names = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        sql = f"REPLACE INTO {table} ({names}) VALUES ({marks})"  # noqa: S608 - fixed names
        return cur.executemany(sql, list(zip(*data))) or 0

    def _load_data(
        self, cur: pymysql.cursors.Cursor, table: str, columns: Sequence[str], text: frozenset[str],
        data: Optional[list[list[Any]]],
    ) -> int:
        """Stream the rows as a TSV file that LOAD DATA reads back exactly (see _tsv_column);
        ``data`` None: load the file written last time again."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="apel-mysql-")  # mode 0700
        path = os.path.join(self._tmpdir, "rows.tsv")
        if data is not None:
            fields = [_tsv_column(values, column in text) for column, values in zip(columns, data)]
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.write("\n".join(map("\t".join, zip(*fields))))
                out.write("\n")
        sql = (
            f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE {table} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
            f" ({', '.join(columns)})"
        )
        return cur.execute(sql, (path,))


# LOAD DATA's escapes (FIELDS ESCAPED BY '\\'): \\ \t \n \r \0 are the characters, \N is NULL.
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _tsv_column(values: list[Any], text: bool) -> list[str]:
    """One column as LOAD DATA fields, converting a whole column per pass (like rows.py)."""
    if text:  # never NULL: a null string is 'None'
        joined = "".join(values)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined or "\0" in joined:
            return [value.translate(_TSV_ESCAPES) for value in values]
        return values
    distinct = set(values)
    if len(distinct) > _FEW and None not in distinct:
        if set(map(type, distinct)) == {_dt.datetime}:  # rows.py leaves no microseconds
            return list(map(_dt.datetime.isoformat, values, repeat(" ")))
        return list(map(str, values))
    # few distinct values (lookup ids, counts, benchmarks): format each once
    text_of = dict(zip(distinct, map(str, distinct)))
    if None in text_of:
        text_of[None] = "\\N"
    return list(map(text_of.__getitem__, values))


# Above this many distinct values in a column, formatting every value is cheaper than a table.
_FEW = 100


def _substitute(part: _rows.TableData, ids: dict[str, dict[str, int]]) -> None:
    """Replace the names at the layout's lookup positions by their ids, in place."""
    layout = part.layout
    for position, table in layout.lookup_positions:
        column = list(map(ids[table].__getitem__, part.columns[position]))
        if layout.publisher_as_text and layout.columns[position] == "PublisherDNID":
            column = list(map(str, column))
        part.columns[position] = column

"""Writing a table's rows in one statement, whatever their number.

Each table's rows go in with one ``LOAD DATA LOCAL INFILE ... REPLACE`` (the rows
streamed as a private temporary TSV file; last write wins per primary key, also within
one message). If the server or the settings do not allow LOCAL INFILE, multi-row
``REPLACE ... VALUES`` statements (PyMySQL ``executemany``) are used instead. Values are
never part of the SQL text on either path. The session runs in strict SQL mode, so
LOAD DATA refuses bad values (error, not warning); ``apel.db.rows`` has already checked
them anyway.

``[db] local_infile`` (yes/no, default yes): ``no`` also keeps PyMySQL from honouring
the server's file requests at all.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Optional

import pymysql.cursors
import pymysql.err

from apel.db.backend import DatabaseUnavailable
from apel.db.mysql_errors import NO_LOCAL_INFILE_CODES

# the backend's logger, as before this module was split from it: log settings that name
# it keep working
log = logging.getLogger("apel.db.mysql_backend")

# LOAD DATA's escapes (FIELDS ESCAPED BY '\\'): \\ \t \n \r \0 are the characters, \N is NULL.
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
# Above this many distinct values in a column, formatting every value is cheaper than a table.
_FEW = 100


class BulkWriter:
    """Writes rows given column by column; owns the bulk-load file's private directory."""

    def __init__(self, local_infile: bool) -> None:
        self.local_infile = local_infile
        self._tmpdir: Optional[str] = None

    def close(self) -> None:
        """Remove the bulk-load file (the next write creates a new directory)."""
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def write(
        self, cur: pymysql.cursors.Cursor, table: str, columns: Sequence[str], text: frozenset[str],
        data: list[list[Any]], again: bool = False,
    ) -> int:
        """Rows given column by column into ``table`` (REPLACE): LOAD DATA, else multi-row
        VALUES. Returns the server's count of changed rows (a replaced row counts twice).
        ``text``: the columns holding text, never NULL. ``again``: the same rows as the
        previous call (its bulk-load file is reused)."""
        if self.local_infile:
            try:
                return self._load_data(cur, table, columns, text, None if again else data)
            except OSError as exc:  # the loader host's disk, not the message
                raise DatabaseUnavailable(f"cannot write the bulk-load file: {exc}") from exc
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in NO_LOCAL_INFILE_CODES:
                    raise
                # the statement had no effect: carry on in the same transaction
                log.warning("MySQL refuses LOAD DATA LOCAL INFILE (%s); using multi-row REPLACE", exc)
                self.local_infile = False
        names = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        sql = f"REPLACE INTO {table} ({names}) VALUES ({marks})"  # noqa: S608 - fixed names
        return cur.executemany(sql, list(zip(*data))) or 0

    def _load_data(
        self, cur: pymysql.cursors.Cursor, table: str, columns: Sequence[str], text: frozenset[str],
        data: Optional[list[list[Any]]],
    ) -> int:
        """Stream the rows as a TSV file that LOAD DATA reads back exactly (see tsv_column);
        ``data`` None: load the file written last time again."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="apel-mysql-")  # mode 0700
        path = os.path.join(self._tmpdir, "rows.tsv")
        if data is not None:
            fields = [tsv_column(values, column in text) for column, values in zip(columns, data)]
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.write("\n".join(map("\t".join, zip(*fields))))
                out.write("\n")
        sql = (
            f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE {table} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
            f" ({', '.join(columns)})"
        )
        return cur.execute(sql, (path,))


def tsv_column(values: list[Any], text: bool) -> list[str]:
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

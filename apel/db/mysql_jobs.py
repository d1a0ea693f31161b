"""One table's rows and the summariser's bookkeeping for them (``apel.db.pending``),
written column-wise, each with one bulk statement.

Jobs and (normalised) summaries: the rows, then their distinct HSS keys. A job that
replaces a stored one may leave the stored job's key behind, which must be recorded
too (``pending.replaced_job_keys``, one locking read before the rows are written). Most
messages replace nothing, so unless the previous job message did replace, the rows go
in first, after a savepoint: the write's row count says whether anything was replaced
(a REPLACE counts each replaced row twice), and only then is the write undone, the
stored keys read and the rows written again. Other types use pending's generic hooks.

A job write that replaced nothing only added jobs: their keys get *delta entries*
(``pending.job_deltas``), which the summariser adds to the HSS rows without reading
the keys' other jobs; anything else gets recompute entries. "Replaced nothing" is the
session's Handler_update + Handler_delete counters unchanged by the write (two cheap
status reads), not the changed-row count alone: REPLACE counts a row that replaces an
identical one (same values, same UpdateTime second: a message loaded twice within a
second, or a job twice in one message) once, as if it were new.
"""

from __future__ import annotations

from typing import Optional

import pymysql.cursors

from apel.db import pending, tables
from apel.db.dialect import Dialect
from apel.db.mysql_bulk import BulkWriter
from apel.db.mysql_connect import MySQLTransaction
from apel.db.rows import TableData
from apel.records import model

_PENDING = tables.PENDING_SUMMARY_KEYS.name


def _rows_replaced(cur: pymysql.cursors.Cursor) -> Optional[int]:
    """This session's row updates and deletes so far: a REPLACE that meets a stored row
    (or an earlier row of the same statement) updates or deletes it, and counts here
    even when the new row is identical to it, where its changed-row count does not. None
    if the server does not say (then no delta: a recompute entry is always right)."""
    cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Handler_update', 'Handler_delete')")
    found = cur.fetchall()
    return sum(int(value) for _, value in found) if len(found) == 2 else None


class PartWriter:
    """Writes the parts of messages for one backend session, remembering whether the
    last job message replaced stored jobs (then the next one reads first)."""

    def __init__(self, bulk: BulkWriter, dialect: Dialect) -> None:
        self.bulk = bulk
        self.dialect = dialect
        self.expect_replaced = False

    def write(self, tx: MySQLTransaction, part: TableData) -> None:
        """The part's rows and its bookkeeping, in the caller's transaction."""
        layout = part.layout
        keys = pending.summary_keys(layout.record_type, layout.columns, part.columns)
        if not keys:
            self._write_generic(tx, part)
            return
        added = False  # only new jobs: their keys get delta entries
        if layout.record_type != model.JOB:  # summary keys are primary keys: a replaced row has the same
            self._write_rows(tx, part)
        elif self.expect_replaced:
            added, replaced = self._write_jobs_reading_first(tx, part, keys)
            keys += replaced
        else:
            added, replaced = self._write_jobs_optimistically(tx, part, keys)
            keys += replaced
        self._write_entries(tx, part, keys, added)

    def _write_rows(self, tx: MySQLTransaction, part: TableData, again: bool = False) -> int:
        layout = part.layout
        return self.bulk.write(tx.cursor, layout.table, layout.columns, layout.text_columns, part.columns,
                               again)

    def _write_generic(self, tx: MySQLTransaction, part: TableData) -> None:
        layout = part.layout
        table_rows = part.rows()
        pending.before_write(tx, self.dialect, layout.record_type, layout.columns, table_rows)
        self._write_rows(tx, part)
        pending.after_write(tx, self.dialect, layout.record_type, layout.columns, table_rows)

    def _write_jobs_reading_first(
        self, tx: MySQLTransaction, part: TableData, keys: list[tuple]
    ) -> tuple[bool, list[tuple]]:
        """The previous job message replaced stored jobs: read the keys this one may
        replace before writing. Returns (only added, the replaced jobs' other keys)."""
        layout = part.layout
        replaced = pending.replaced_job_keys(tx, self.dialect.placeholder, layout.columns, part.columns, keys)
        before = _rows_replaced(tx.cursor)
        changed = self._write_rows(tx, part)
        self.expect_replaced = changed > len(part)
        added = (not replaced and changed == len(part) and before is not None
                 and _rows_replaced(tx.cursor) == before)
        return added, replaced

    def _write_jobs_optimistically(
        self, tx: MySQLTransaction, part: TableData, keys: list[tuple]
    ) -> tuple[bool, list[tuple]]:
        """Write first; only if that replaced stored jobs, undo it, read their keys and
        write again. Returns (only added, the replaced jobs' other keys)."""
        cur = tx.cursor
        cur.execute("SAVEPOINT apel_jobs")
        before = _rows_replaced(cur)
        changed = self._write_rows(tx, part)
        if changed <= len(part):
            return before is not None and _rows_replaced(cur) == before, []
        # InnoDB keeps the row locks taken since the savepoint: nobody can change these
        # jobs before the locking read below
        cur.execute("ROLLBACK TO SAVEPOINT apel_jobs")
        layout = part.layout
        replaced = pending.replaced_job_keys(tx, self.dialect.placeholder, layout.columns, part.columns, keys)
        self._write_rows(tx, part, again=True)
        self.expect_replaced = True
        return False, replaced

    def _write_entries(self, tx: MySQLTransaction, part: TableData, keys: list[tuple], added: bool) -> None:
        """Delta entries for jobs that were only added, else recompute entries.
        PendingSummaryKeys has no key but its auto-increment id: REPLACE only inserts."""
        deltas = pending.job_deltas(part.layout.columns, part.columns) if added else None
        if deltas is not None:
            self.bulk.write(tx.cursor, _PENDING, pending.KEY_COLUMNS + pending.DELTA_COLUMNS,
                            pending.DELTA_TEXT_COLUMNS, deltas)
            return
        key_columns = [list(values) for values in zip(*keys)]
        self.bulk.write(tx.cursor, _PENDING, pending.KEY_COLUMNS, pending.KEY_TEXT_COLUMNS, key_columns)

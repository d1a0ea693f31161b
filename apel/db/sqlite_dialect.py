"""SQLite SQL for the services (the SQLite backend's :class:`Dialect`).

SQLite has no collation that ignores trailing spaces, so text is compared and grouped
as ``rtrim(x, ' ') COLLATE NOCASE`` (the schema's unique indexes use the same
expressions), and ServiceLevel is a binary REAL, so normalisation is done in integers
(:meth:`SQLiteDialect.normalised`). One writer at a time: no gate, no deltas.
"""

# Every statement here is built from the caller's fixed table and column names and the
# placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence

from apel.db.dialect import Column, Dialect, Kind

# Integers are 64-bit whatever their kind; datetimes are text ('YYYY-MM-DD HH:MM:SS').
_INTEGERS = (Kind.INT, Kind.UINT, Kind.TINY_UINT, Kind.SMALL_UINT, Kind.COUNTER, Kind.BIGINT)
_TYPES = {
    **dict.fromkeys(_INTEGERS, "INTEGER"), Kind.TEXT: "TEXT", Kind.DECIMAL: "REAL", Kind.UDECIMAL: "REAL",
    Kind.DATETIME: "DATETIME", Kind.TIMESTAMP: "DATETIME",
}


class SQLiteDialect(Dialect):
    """The embedded engine: writers are serialised by SQLite's write lock."""

    name = "sqlite"
    placeholder = "?"
    embedded = True

    def same(self, left: str, right: str) -> str:
        return f"rtrim({left}, ' ') = rtrim({right}, ' ') COLLATE NOCASE"

    def identical(self, left: str, right: str) -> str:
        return f"{left} = {right} COLLATE BINARY"

    def group(self, column: str) -> str:
        return f"rtrim({column}, ' ') COLLATE NOCASE"

    def spelling(self, column: str) -> str:
        return f"MIN({column} COLLATE BINARY)"

    def normalised(self, total: str, level: str, level_type: str) -> str:
        """Exact ``round(total × level / d)`` in 64-bit integers.

        ``level`` is a REAL holding a 3-decimal value, so ``S = round(level × 1000)`` is
        its exact value in thousandths, and the result is total × S / D with D = 1000 × d.
        Writing total = q·D + r gives q·S + round(r·S / D): r·S stays far below 2^63
        (r < D ≤ 250 000, |S| < 10^10), and q·S overflows only where the result itself
        would not fit the BIGINT column. round(x / D) for x ≥ 0 is (2x + D) div 2D; a
        negative level is handled by symmetry, so halves go away from zero as MySQL's
        ROUND does (201 × 10.5 = 2110.5 gives 2111 on both).
        """
        scaled = f"CAST(ROUND(ABS({level}) * 1000) AS INTEGER)"
        divisor = f"(CASE WHEN {self.is_si2k(level_type)} THEN 250000 ELSE 1000 END)"
        magnitude = (
            f"(({total}) / {divisor}) * {scaled}"
            f" + ((({total}) % {divisor}) * {scaled} * 2 + {divisor}) / (2 * {divisor})"
        )
        return f"(CASE WHEN {level} < 0 THEN -({magnitude}) ELSE {magnitude} END)"

    def signed(self, expression: str) -> str:
        return expression

    def quote(self, name: str) -> str:
        """Backquotes: unlike double quotes, SQLite never reads them as a string literal
        when the column does not exist."""
        if "`" in name:
            raise ValueError(f"cannot quote the name {name!r}")
        return f"`{name}`"

    def insert_ignore(self, table: str, columns: Sequence[str], rows: str) -> str:
        return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) {rows}"

    def replace(self, table: str, columns: Sequence[str], key: Sequence[str], rows: str) -> str:
        return f"REPLACE INTO {table} ({', '.join(columns)}) {rows}"

    def delete_joined(self, table: str, alias: str, driver: str, condition: str) -> str:
        """SQLite deletes from one table: the rows are chosen by rowid through the join."""
        return (
            f"DELETE FROM {table} WHERE rowid IN (SELECT {alias}.rowid FROM {driver} {self.join_in_order}"
            f" {table} {alias} ON {condition})"
        )

    def create_temporary_table(
        self, table: str, columns: Sequence[Column], key: Sequence[str]
    ) -> tuple[str, ...]:
        """A single integer key is the rowid; any other key is a unique index on the
        expressions the schema's keys use."""
        kinds = {c.name: c.kind for c in columns}
        rowid = len(key) == 1 and kinds[key[0]] in _INTEGERS
        definitions = [
            f"{c.name} INTEGER PRIMARY KEY" if rowid and c.name == key[0] else self._definition(c)
            for c in columns
        ]
        create = f"CREATE TEMP TABLE IF NOT EXISTS {table} ({', '.join(definitions)})"
        if rowid:
            return (create,)
        terms = [self.group(name) if kinds[name] is Kind.TEXT else name for name in key]
        return (create, f"CREATE UNIQUE INDEX IF NOT EXISTS temp.{table}_PK ON {table} ({', '.join(terms)})")

    def column_type(self, column: Column) -> str:
        return _TYPES[column.kind]

    def _definition(self, column: Column) -> str:
        text = f"{column.name} {self.column_type(column)} {'NULL' if column.nullable else 'NOT NULL'}"
        return text + " COLLATE NOCASE" if column.kind is Kind.TEXT else text


SQLITE = SQLiteDialect()

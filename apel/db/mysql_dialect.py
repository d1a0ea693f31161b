"""MySQL/MariaDB SQL for the services (the MySQL backend's :class:`Dialect`).

The schema's utf8mb4_general_ci (PAD SPACE) columns compare and group text as the keys
do by themselves, so text needs no wrapping; DECIMAL arithmetic and ROUND are exact.
"""

# Every statement here is built from the caller's fixed table and column names and the
# placeholder; values are always parameters.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence

from apel.db.dialect import Column, Dialect, Kind, Merge, MergeColumn

_TYPES = {
    Kind.INT: "INT", Kind.UINT: "INT UNSIGNED", Kind.TINY_UINT: "TINYINT UNSIGNED",
    Kind.SMALL_UINT: "SMALLINT UNSIGNED", Kind.COUNTER: "BIGINT UNSIGNED", Kind.BIGINT: "BIGINT",
    Kind.DECIMAL: "DECIMAL(10,3)", Kind.UDECIMAL: "DECIMAL(10,3) UNSIGNED", Kind.DATETIME: "DATETIME",
    Kind.TIMESTAMP: "TIMESTAMP",
}
_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"


class MySQLDialect(Dialect):
    """InnoDB: a gate row orders loads and summariser runs, job loads write deltas."""

    name = "mysql"
    placeholder = "%s"
    job_deltas = True
    # Loads take the gate row in share mode (they do not wait for each other), the
    # summariser exclusively (apel.db.pending explains why).
    gate_shared = "SELECT id FROM SummariserGate WHERE id = 1 LOCK IN SHARE MODE"
    gate_exclusive = "SELECT id FROM SummariserGate WHERE id = 1 FOR UPDATE"
    replace_counts_twice = True
    join_in_order = "STRAIGHT_JOIN"

    def same(self, left: str, right: str) -> str:
        return f"{left} = {right}"

    def identical(self, left: str, right: str) -> str:
        return f"CAST({left} AS BINARY) = CAST({right} AS BINARY)"

    def group(self, column: str) -> str:
        return column

    def spelling(self, column: str) -> str:
        return f"CONVERT(MIN(CAST({column} AS BINARY)) USING utf8mb4)"

    def matches_any(self, column: str, count: int) -> str:
        """IN compares with the column's collation, which is the keys' comparison."""
        return f"{column} IN ({', '.join([self.placeholder] * count)})"

    def normalised(self, total: str, level: str, level_type: str) -> str:
        return f"ROUND({total} * {level} / (CASE WHEN {self.is_si2k(level_type)} THEN 250 ELSE 1 END))"

    def signed(self, expression: str) -> str:
        return f"CAST({expression} AS SIGNED)"

    def quote(self, name: str) -> str:
        if "`" in name:
            raise ValueError(f"cannot quote the name {name!r}")
        return f"`{name}`"

    def index_hint(self, index: str) -> str:
        """MySQL's statistics lag behind bulk loads (a fresh table looks empty), and then
        it reads a site's jobs through the primary key instead of the summary index; the
        hints keep every plan an index range."""
        return f" FORCE INDEX ({index})"

    def insert_ignore(self, table: str, columns: Sequence[str], rows: str) -> str:
        return f"INSERT IGNORE INTO {table} ({', '.join(columns)}) {rows}"

    def replace(self, table: str, columns: Sequence[str], key: Sequence[str], rows: str) -> str:
        return f"REPLACE INTO {table} ({', '.join(columns)}) {rows}"

    def upsert(
        self, table: str, columns: Sequence[str], key: Sequence[str], rows: str, merges: Sequence[MergeColumn]
    ) -> str:
        """ON DUPLICATE KEY UPDATE assigns left to right, each assignment seeing the ones
        before: a NORMALISED column reads its total's merged value, so the total must be
        merged before it."""
        assigned: set[str] = set()
        terms = []
        for merge in merges:
            if merge.how is Merge.NORMALISED and merge.of[0] not in assigned:
                raise ValueError(f"{merge.name}: merge {merge.of[0]} before normalising it")
            terms.append(f"{merge.name} = {self._merged(merge)}")
            assigned.add(merge.name)
        return f"INSERT INTO {table} ({', '.join(columns)}) {rows} ON DUPLICATE KEY UPDATE {', '.join(terms)}"

    def _merged(self, merge: MergeColumn) -> str:
        column, new = merge.name, f"VALUES({merge.name})"
        if merge.how is Merge.SMALLEST:
            return f"IF(CAST({new} AS BINARY) < CAST({column} AS BINARY), {new}, {column})"
        if merge.how is Merge.LEAST:
            return f"LEAST({column}, {new})"
        if merge.how is Merge.GREATEST:
            return f"GREATEST({column}, {new})"
        if merge.how is Merge.ADD:
            return f"{column} + {new}"
        return self.normalised(*merge.of)

    def delete_joined(self, table: str, alias: str, driver: str, condition: str) -> str:
        return f"DELETE {alias} FROM {driver} {self.join_in_order} {table} {alias} ON {condition}"

    def create_temporary_table(
        self, table: str, columns: Sequence[Column], key: Sequence[str]
    ) -> tuple[str, ...]:
        definitions = [f"{c.name} {self.column_type(c)} {'NULL' if c.nullable else 'NOT NULL'}"
                       for c in columns]
        definitions.append(f"PRIMARY KEY ({', '.join(key)})")
        return (f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({', '.join(definitions)}) {_TABLE_OPTIONS}",)

    def column_type(self, column: Column) -> str:
        if column.kind is Kind.TEXT:
            return f"VARCHAR({column.length})"
        return _TYPES[column.kind]


MYSQL = MySQLDialect()

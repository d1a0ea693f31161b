"""The schemas of both built-in backends match the one description of every table.

``apel.db.tables`` derives the record tables from the record fields and describes the
summariser's tables; the loader checks values, and the summariser creates its
temporary tables, by that description. Here the live schema of a database created from
``schemas/mysql.sql`` (MariaDB, ``information_schema``) and from ``schemas/sqlite.sql``
(``PRAGMA``) is compared with it, column by column: a width, type, nullability, column,
table or primary key changed in only one place fails here, naming what differs.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Optional

import pymysql
import pytest

from apel.db.dialect import Dialect
from apel.db.mysql_dialect import MYSQL
from apel.db.schema import apply_schema, schema_statements, schema_text
from apel.db.sqlite_dialect import SQLITE
from apel.db.tables import SUMMARISER_GATE, TABLES, VIEWS

# table -> column -> (SQL type, nullable); the key as the pseudo-column "PRIMARY KEY"
Schema = dict[str, dict[str, tuple[str, bool]]]
KEY = "PRIMARY KEY"


def expected(dialect: Dialect, keys: Optional[dict[str, tuple[str, ...]]] = None) -> Schema:
    """What the description says the dialect's schema holds (``keys``: primary keys the
    engine's schema deliberately declares otherwise)."""
    described = dict(TABLES)
    if dialect.gate_exclusive is not None:
        described[SUMMARISER_GATE.name] = SUMMARISER_GATE
    schema: Schema = {}
    for table in described.values():
        columns = {c.name: (dialect.column_type(c).upper(), c.nullable) for c in table.columns}
        columns[KEY] = (", ".join((keys or {}).get(table.name, table.key)), False)
        schema[table.name] = columns
    return schema


def differences(wanted: Schema, found: Schema) -> list[str]:
    """One line per table, column or key that is not the same in both."""
    lines = [f"{name}: table not in the schema" for name in sorted(wanted.keys() - found.keys())]
    lines += [f"{name}: table not described" for name in sorted(found.keys() - wanted.keys())]
    for name in sorted(wanted.keys() & found.keys()):
        want, have = wanted[name], found[name]
        lines += [f"{name}.{column}: not in the schema" for column in sorted(want.keys() - have.keys())]
        lines += [f"{name}.{column}: not described" for column in sorted(have.keys() - want.keys())]
        lines += [f"{name}.{column}: described {want[column]}, schema {have[column]}"
                  for column in sorted(want.keys() & have.keys()) if want[column] != have[column]]
    return lines


# -- MariaDB -------------------------------------------------------------------------------

_DISPLAY_WIDTH = re.compile(r"\b(tinyint|smallint|int|bigint)\(\d+\)")


def mysql_schema(args: dict) -> tuple[Schema, set[str]]:
    """The tables (columns, primary keys) and views of a MariaDB database."""
    conn = pymysql.connect(**args)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE"
                " FROM information_schema.COLUMNS c JOIN information_schema.TABLES t"
                " ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME"
                " WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'")
            schema: Schema = {}
            for table, column, kind, nullable in cur.fetchall():
                kind = _DISPLAY_WIDTH.sub(r"\1", kind).upper()
                schema.setdefault(table, {})[column] = (kind, nullable == "YES")
            cur.execute(
                "SELECT TABLE_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ', ')"
                " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
                " AND INDEX_NAME = 'PRIMARY' GROUP BY TABLE_NAME")
            for table, key in cur.fetchall():
                schema[table][KEY] = (key, False)
            cur.execute("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()")
            views = {name for (name,) in cur.fetchall()}
    finally:
        conn.close()
    return schema, views


def test_mysql_schema_matches_the_description(mysql_database):
    apply_schema("mysql", mysql_database)
    schema, views = mysql_schema(mysql_database)
    assert differences(expected(MYSQL), schema) == []
    assert views == set(VIEWS)


def test_a_width_changed_only_in_the_mysql_schema_is_found(mysql_database):
    changed = "  InfrastructureType VARCHAR(30) NOT NULL,"
    text = schema_text("mysql").replace("  InfrastructureType VARCHAR(20) NOT NULL,", changed, 1)
    assert changed in text
    conn = pymysql.connect(**mysql_database)
    try:
        with conn.cursor() as cur:
            for statement in _statements(text):
                cur.execute(statement)
    finally:
        conn.close()
    schema, _ = mysql_schema(mysql_database)
    assert differences(expected(MYSQL), schema) == [
        "JobRecords.InfrastructureType: described ('VARCHAR(20)', False), schema ('VARCHAR(30)', False)"
    ]


def _statements(text: str) -> list[str]:
    """The statements of a schema text, split as ``schema_statements`` splits the file."""
    statements, current = [], []
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    assert len(statements) == len(schema_statements("mysql"))
    return statements


# -- SQLite --------------------------------------------------------------------------------

# InnoDB keeps a table's rows in primary key order, so PendingSummaryKeys' key starts
# with the site-month whose entries are read together; SQLite keeps rows in rowid order
# whatever the key, so there the key is the id and an index serves the site-months.
SQLITE_KEYS = {"PendingSummaryKeys": ("id",)}


def sqlite_schema(path: str) -> tuple[Schema, set[str]]:
    """The tables (columns, primary keys) and views of a SQLite database.

    SQLite declares no widths, and keys that compare text as the MySQL collation does
    are unique indexes named ``<table>_PK`` on expressions; their columns are read from
    the index's SQL.
    """
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
        schema: Schema = {}
        for kind, table, _ in objects:
            if kind == "table":
                schema[table] = _sqlite_columns(conn, table)
        indexes = {name: sql for kind, name, sql in objects if kind == "index"}
        for table, columns in schema.items():
            if KEY not in columns and f"{table}_PK" in indexes:
                words = re.findall(r"\w+", indexes[f"{table}_PK"].split("(", 1)[1])
                columns[KEY] = (", ".join(w for w in words if w in columns), False)
        views = {name for kind, name, _ in objects if kind == "view"}
    finally:
        conn.close()
    return schema, views


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[str, bool]]:
    columns = {}
    key = []
    for _, name, kind, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})"):
        # an INTEGER PRIMARY KEY is the rowid: never NULL without saying so
        columns[name] = (kind.upper(), not notnull and not (pk and kind.upper() == "INTEGER"))
        if pk:
            key.append((pk, name))
    if key:
        columns[KEY] = (", ".join(name for _, name in sorted(key)), False)
    return columns


def test_sqlite_schema_matches_the_description(tmp_path):
    path = str(tmp_path / "apel.sqlite3")
    apply_schema("sqlite", path)
    schema, views = sqlite_schema(path)
    assert differences(expected(SQLITE, SQLITE_KEYS), schema) == []
    assert views == set(VIEWS)


@pytest.mark.parametrize(("old", "new", "difference"), [
    ("  MemoryReal INTEGER NULL,", "  MemoryReal INTEGER NOT NULL,",
     "JobRecords.MemoryReal: described ('INTEGER', True), schema ('INTEGER', False)"),
    ("  Benchmark REAL NOT NULL DEFAULT 0,\n  StorageRecordId", "  Benchmark INTEGER NOT NULL DEFAULT 0,\n"
     "  StorageRecordId", "CloudRecords.Benchmark: described ('REAL', False), schema ('INTEGER', False)"),
    ("  NetworkType TEXT NOT NULL COLLATE NOCASE,\n", "", "CloudRecords.NetworkType: not in the schema"),
])
def test_a_column_changed_only_in_the_sqlite_schema_is_found(tmp_path, old, new, difference):
    text = schema_text("sqlite")
    assert text.count(old) == 1
    path = str(tmp_path / "apel.sqlite3")
    conn = sqlite3.connect(path)
    conn.executescript(text.replace(old, new))
    conn.close()
    schema, _ = sqlite_schema(path)
    assert differences(expected(SQLITE, SQLITE_KEYS), schema) == [difference]

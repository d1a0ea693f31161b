"""The SQL schema files, read from the installed ``apel_schemas`` package.

The schemas ship as package data so that an installed suite (not only a source
checkout) can create its database; both backends and the tests read them here.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

DIALECTS = ("mysql", "sqlite")


def schema_text(dialect: str) -> str:
    """The full text of ``schemas/<dialect>.sql``."""
    if dialect not in DIALECTS:
        raise ValueError(f"no schema for {dialect!r} (known: {', '.join(DIALECTS)})")
    return resources.files("apel_schemas").joinpath(f"{dialect}.sql").read_text(encoding="utf-8")


def schema_statements(dialect: str) -> list[str]:
    """The schema as single statements, for drivers that execute one at a time.

    The schema files contain no procedures or triggers, so a statement ends with a
    ``;`` at the end of a line; ``--`` comment lines are dropped.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in schema_text(dialect).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements


def apply_schema(dialect: str, target: Any) -> None:
    """Create the schema's tables and views (safe to repeat), for tools and quick starts.

    ``target`` is, for ``mysql``, a dict of PyMySQL connection arguments (host, port,
    user, password, database); for ``sqlite``, the database file's path (created 0600
    if missing).
    """
    if dialect == "mysql":
        from apel.db.mysql_backend import apply_schema as apply_mysql

        apply_mysql(target)
    elif dialect == "sqlite":
        from apel.db.sqlite_backend import SQLiteBackend

        db = SQLiteBackend({"name": str(target)})
        try:
            db.connect()  # creates a missing file with the schema
            db.create_schema()
        finally:
            db.close()
    else:
        raise ValueError(f"no schema for {dialect!r} (known: {', '.join(DIALECTS)})")

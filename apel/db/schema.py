"""Creating the accounting schema from tools and quick starts, on either built-in backend.

The schema text itself is read by :mod:`apel.db.schema_files` (re-exported here), which
the backends use; this module sits above the backends and is imported by none of them.
"""

from __future__ import annotations

from typing import Any

from apel.db import mysql_connect
from apel.db.schema_files import DIALECTS, schema_statements, schema_text
from apel.db.sqlite_backend import SQLiteBackend

__all__ = ["DIALECTS", "apply_schema", "schema_statements", "schema_text"]


def apply_schema(dialect: str, target: Any) -> None:
    """Create the schema's tables and views (safe to repeat), for tools and quick starts.

    ``target`` is, for ``mysql``, a dict of PyMySQL connection arguments (host, port,
    user, password, database); for ``sqlite``, the database file's path (created 0600
    if missing).
    """
    if dialect == "mysql":
        mysql_connect.apply_schema(target)
    elif dialect == "sqlite":
        db = SQLiteBackend({"name": str(target)})
        try:
            db.connect()  # creates a missing file with the schema
            db.create_schema()
        finally:
            db.close()
    else:
        raise ValueError(f"no schema for {dialect!r} (known: {', '.join(DIALECTS)})")

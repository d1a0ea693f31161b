"""The SQL schema files, read from the installed ``apel_schemas`` package.

The schemas ship as package data so that an installed suite (not only a source
checkout) can create its database. The backends read their schema here; this module
imports no backend, so that the backends and the schema tools (``apel.db.schema``)
do not import each other.
"""

from __future__ import annotations

from importlib import resources

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

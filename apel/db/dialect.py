"""What the services may assume about a backend's SQL: its dialect and its capabilities.

The summariser, the loaders' bookkeeping (``apel.db.pending``) and the unloader write
each statement once and take every engine-specific piece from the backend's
:class:`Dialect`. A backend declares it as its class attribute ``dialect``, so a backend
registered under ``apel.backends`` by a third party brings its own SQL with it; nothing
above this layer asks which engine it has. A backend without a dialect is refused when
it is loaded (:func:`dialect_of`): an engine the services do not know must never be
handed another engine's SQL.

Every method returns SQL text built from the caller's fixed table and column names and
the dialect's placeholder; values are always parameters.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional


class UnsupportedBackend(ValueError):
    """The backend cannot serve the services (it declares no SQL dialect, or is not a
    backend at all). A ValueError, so that the tools report it as a configuration error."""


class Kind(enum.Enum):
    """Column types, named by what they hold (``apel.db.tables`` describes every table
    with them; the summariser creates its temporary tables from them)."""

    INT = "int"  # signed 32-bit (ids, years, months)
    UINT = "uint"  # unsigned 32-bit (NodeCount, Processors)
    TINY_UINT = "tiny_uint"  # unsigned 8-bit (derived months)
    SMALL_UINT = "small_uint"  # unsigned 16-bit (derived years)
    COUNTER = "counter"  # unsigned 64-bit (durations, counts, row ids)
    BIGINT = "bigint"  # signed 64-bit (sums of deltas, which may be negative)
    TEXT = "text"  # compared as the schema's keys compare (see Dialect.same)
    DECIMAL = "decimal"  # exact, 3 decimals (ServiceLevel)
    UDECIMAL = "udecimal"  # exact, 3 decimals, never negative (CpuCount)
    DATETIME = "datetime"  # naive UTC
    TIMESTAMP = "timestamp"  # naive UTC, set by the database when a row is written


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    name: str
    kind: Kind
    length: int = 0  # TEXT only: the longest value in characters
    nullable: bool = False


class Merge(enum.Enum):
    """How :meth:`Dialect.upsert` combines a new row with the stored row of the same key."""

    SMALLEST = "smallest"  # the binary-smallest of the two spellings
    LEAST = "least"
    GREATEST = "greatest"
    ADD = "add"
    # round(total × level / d) of the *merged* row (see MergeColumn.of)
    NORMALISED = "normalised"


@dataclass(frozen=True)
class MergeColumn:
    """One column of an upsert: how it merges, and for NORMALISED the columns (total,
    level, level type) it is computed from, each taking its merged value."""

    name: str
    how: Merge
    of: tuple[str, ...] = ()


class Dialect(abc.ABC):
    """One SQL engine's spelling of what the services need, and what the backend can do.

    Capabilities (class attributes) have the conservative default; SQL pieces that every
    engine spells differently are abstract, so a dialect that forgets one cannot be
    instantiated at all.
    """

    # A short name for messages (never compared by the services).
    name: str = ""
    # The driver's parameter marker.
    placeholder: str = "?"
    # The backend's loads write *delta entries* (``apel.db.pending.job_deltas``) and
    # :meth:`upsert` can add them to HybridSuperSummaries. False: every pending entry is
    # recomputed.
    job_deltas: bool = False
    # The summariser gate (``apel.db.pending``): the statement a load that writes HSS
    # sources runs first, and the one every summariser transaction runs first. None:
    # the engine serialises writers anyway, no gate is needed.
    gate_shared: Optional[str] = None
    gate_exclusive: Optional[str] = None
    # A REPLACE that replaces a stored row counts it twice in the changed-row count.
    replace_counts_twice: bool = False
    # The engine runs in this process, so a statement costs no round trip: bookkeeping
    # probes stored rows one record at a time (exact key matches) instead of in chunks.
    embedded: bool = False
    # Keyword joining two tables so that the left one drives the join (the small work
    # tables of the summariser are looked up in the big source tables, never the reverse).
    join_in_order: str = "CROSS JOIN"

    # -- comparing and grouping text as the schema's keys do ------------------------------

    @abc.abstractmethod
    def same(self, left: str, right: str) -> str:
        """Two text values compared as the schema's keys compare them (case-insensitive,
        trailing spaces ignored)."""

    @abc.abstractmethod
    def identical(self, left: str, right: str) -> str:
        """Two text values equal byte for byte."""

    @abc.abstractmethod
    def group(self, column: str) -> str:
        """A text column as a GROUP BY term that merges what :meth:`same` calls equal."""

    @abc.abstractmethod
    def spelling(self, column: str) -> str:
        """The binary-smallest spelling of a text column in a group, so that the shown
        spelling does not depend on row order (aggregate)."""

    def matches_any(self, column: str, count: int) -> str:
        """``column`` equals, as :meth:`same` compares, one of ``count`` parameters."""
        return "(" + " OR ".join([self.same(column, self.placeholder)] * count) + ")"

    def is_si2k(self, column: str) -> str:
        return self.same(column, "'si2k'")

    # -- arithmetic -------------------------------------------------------------------------

    @abc.abstractmethod
    def normalised(self, total: str, level: str, level_type: str) -> str:
        """round(total × level / d), d = 250 for si2k (any letter case) else 1, rounded
        half away from zero on the exact decimal value: both engines must give the same
        figure for the same rows."""

    @abc.abstractmethod
    def signed(self, expression: str) -> str:
        """An unsigned column as a signed value (cloud deltas may be negative)."""

    # -- statements -------------------------------------------------------------------------

    def quote(self, name: str) -> str:
        """A column name as a quoted identifier (VStarRecords has a column named Group)."""
        if '"' in name:
            raise ValueError(f"cannot quote the name {name!r}")
        return f'"{name}"'

    def index_hint(self, index: str) -> str:
        """Text after a table name that makes the engine read it through ``index``; empty
        where the planner needs no help."""
        return ""

    @abc.abstractmethod
    def insert_ignore(self, table: str, columns: Sequence[str], rows: str) -> str:
        """Insert ``rows`` (a SELECT or VALUES clause), skipping rows whose key is taken."""

    @abc.abstractmethod
    def replace(self, table: str, columns: Sequence[str], key: Sequence[str], rows: str) -> str:
        """Insert ``rows``, a row whose ``key`` is taken replacing the stored row."""

    def upsert(
        self, table: str, columns: Sequence[str], key: Sequence[str], rows: str, merges: Sequence[MergeColumn]
    ) -> str:
        """Insert ``rows``; a row whose ``key`` is taken is merged into the stored row as
        ``merges`` say (other columns keep their stored values). Needed where
        :attr:`job_deltas` is set."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} dialect has no upsert")

    @abc.abstractmethod
    def delete_joined(self, table: str, alias: str, driver: str, condition: str) -> str:
        """Delete the rows of ``table`` (as ``alias``) that join a row of ``driver`` (a
        table and its alias) on ``condition``, ``driver`` driving the join."""

    @abc.abstractmethod
    def column_type(self, column: Column) -> str:
        """The SQL type the engine's schema declares for ``column`` (what the schema
        check compares with the live database)."""

    @abc.abstractmethod
    def create_temporary_table(
        self, table: str, columns: Sequence[Column], key: Sequence[str]
    ) -> tuple[str, ...]:
        """Statements creating the connection's own table ``table`` unless it exists, with
        the unique ``key`` (text compared as :meth:`same` does)."""


def dialect_of(backend: object) -> Dialect:
    """The backend's (class or object) dialect; UnsupportedBackend if it declares none."""
    dialect = getattr(backend, "dialect", None)
    if not isinstance(dialect, Dialect):
        name = getattr(backend, "name", "") or getattr(backend, "__name__", type(backend).__name__)
        raise UnsupportedBackend(
            f"database backend {name!r} declares no SQL dialect (its 'dialect' attribute must be"
            " an apel.db.dialect.Dialect), so the services cannot use it"
        )
    return dialect

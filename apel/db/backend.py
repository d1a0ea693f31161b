"""The interface every storage backend implements, and how one is found by name.

Backends are registered under the ``apel.backends`` entry-point group (the
built-in ``mysql`` and ``sqlite`` exactly like a third party's), so nothing above
this layer imports a backend module by name. ``db.cfg`` ``[db] backend = NAME``
selects one. A backend brings its SQL dialect (:mod:`apel.db.dialect`) as its
``dialect`` attribute; one without a dialect is refused when it is loaded.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

from apel.db.dialect import Dialect, UnsupportedBackend
from apel.records.model import ParsedMessage

ENTRY_POINT_GROUP = "apel.backends"


class StorageError(Exception):
    """The database refused this message's data (the message itself is at fault).

    The loader rejects the message with this text; it never retries it.
    """


class DatabaseUnavailable(Exception):
    """The database cannot be reached or is temporarily unable to work.

    Never the message's fault: the loader keeps the message and retries later.
    """


class Transaction(abc.ABC):
    """Statements that commit together (see :meth:`Backend.transaction`).

    SQL is the backend's own dialect (:attr:`Backend.dialect`) with its own placeholder;
    values are always passed as parameters.
    """

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for each parameter row; return the rows changed."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement and return all its rows (sees this transaction's writes)."""


class Backend(abc.ABC):
    """One connection to one accounting database."""

    name: str = ""
    # The SQL the services run on this backend; every backend must set it.
    dialect: ClassVar[Dialect]

    def __init__(self, settings: Mapping[str, str]) -> None:
        """``settings`` are the ``[db]`` options of ``db.cfg`` (hostname, port, name,
        username, password, ...), as text."""
        self.settings = dict(settings)

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection (creating an embedded database if the backend has one).

        Raises DatabaseUnavailable when the server cannot be reached.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; safe to call twice."""

    @abc.abstractmethod
    def load_message(self, message: ParsedMessage, publisher_dn: str) -> int:
        """Write every record of ``message`` in one transaction; return the count.

        All or nothing: on any failure the transaction is rolled back before the
        exception propagates (StorageError for data the database refuses,
        DatabaseUnavailable for a lost or unreachable server).
        """

    # Generic helpers for the summariser, the unloader and tests.

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one read statement outside any transaction; return all rows.

        Datetimes come back as naive UTC ``datetime``, 3-decimal columns as ``Decimal``.
        Errors map to StorageError / DatabaseUnavailable like :meth:`load_message`.
        """

    def iter_query(self, sql: str, params: Sequence[Any] = (), batch: int = 1000) -> Iterator[list[tuple]]:
        """Run one read statement and yield its rows in lists of at most ``batch``.

        For results too large to hold in memory (the unloader reads whole views). Types
        as for :meth:`query`. Backends should stream (a server-side cursor); this default
        only chunks :meth:`query`, so a backend written before it still works. No other
        statement may run on this backend until the iterator is exhausted or closed.
        """
        rows = self.query(sql, params)
        for start in range(0, len(rows), batch):
            yield rows[start:start + batch]

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Transaction]:
        """A context manager: commit if the block succeeds, roll back if it raises.

        Used by writers other than the loader (summariser steps, the unloader's
        LastUpdated row), so that each step is all or nothing.
        """

    @abc.abstractmethod
    def create_schema(self) -> None:
        """Create every table and view of the accounting schema (safe to repeat)."""

    @property
    def placeholder(self) -> str:
        """The parameter marker of the backend's SQL (its dialect's)."""
        return self.dialect.placeholder

    def __enter__(self) -> Backend:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def available_backends() -> dict[str, EntryPoint]:
    """The entry points registered under ``apel.backends``, by name."""
    found = entry_points()
    if hasattr(found, "select"):  # Python >= 3.10
        group = found.select(group=ENTRY_POINT_GROUP)
    else:  # Python 3.9: a dict of groups
        group = found.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in group}


def load_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``; KeyError lists the known names.

    UnsupportedBackend if what is registered is not a Backend or declares no dialect:
    caught here, at start-up, rather than by the first statement it would get wrong.
    """
    found = available_backends()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise KeyError(f"unknown database backend {name!r} (known: {known})")
    where = found[name].value
    try:
        backend_class = found[name].load()
    except ImportError:
        raise
    except Exception as exc:  # e.g. a dialect that lacks a method cannot be instantiated
        raise UnsupportedBackend(f"database backend {name!r} ({where}) cannot be loaded: {exc}") from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
        raise UnsupportedBackend(f"database backend {name!r} ({where}) is not an apel.db Backend")
    if not isinstance(getattr(backend_class, "dialect", None), Dialect):
        raise UnsupportedBackend(
            f"database backend {name!r} ({where}) declares no SQL dialect (its 'dialect' attribute"
            " must be an apel.db.dialect.Dialect), so the services cannot use it"
        )
    return backend_class

"""The interface every storage backend implements, and how one is found by name.

Backends are registered under the ``apel.backends`` entry-point group (the
built-in ``mysql`` and ``sqlite`` exactly like a third party's), so nothing above
this layer imports a backend module by name. ``db.cfg`` ``[db] backend = NAME``
selects one.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from importlib.metadata import entry_points

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


class Backend(abc.ABC):
    """One connection to one accounting database."""

    name: str = ""

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

    def __enter__(self) -> Backend:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def available_backends() -> dict[str, object]:
    found = entry_points()
    if hasattr(found, "select"):  # Python >= 3.10
        group = found.select(group=ENTRY_POINT_GROUP)
    else:  # Python 3.9: a dict of groups
        group = found.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in group}


def load_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``; KeyError lists the known names."""
    found = available_backends()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise KeyError(f"unknown database backend {name!r} (known: {known})")
    return found[name].load()

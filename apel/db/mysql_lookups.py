"""Lookup names -> ids for a message, in bulk, race-free with concurrent loaders.

The distinct names of all lookup fields of a message are resolved per lookup table with
a few statements, whatever the message's size. Names are inserted with
``INSERT ... ON DUPLICATE KEY UPDATE`` against the UNIQUE name index, then read back
with a locking read (which, unlike a plain read, sees rows other loaders committed
after this transaction's snapshot). The case-insensitive PAD SPACE collation of the
schema makes 'RAL-LCG2' and 'ral-lcg2 ' the same name; the first stored spelling stays.
"""

from __future__ import annotations

from typing import Any, Optional

import pymysql.cursors

from apel.db.mysql_errors import Conflict
from apel.db.rows import TableData

# Lookup names remembered per table before the cache starts over (bounds memory).
_CACHE_LIMIT = 200_000
# Names per SELECT ... IN (each one a parameter).
_NAMES_PER_READ = 1000

Ids = dict[str, dict[str, int]]  # lookup table -> name -> id


def _key(name: str) -> str:
    """How the schema's collation compares names, for mapping rows back to inputs."""
    return name.rstrip(" ").lower()


class LookupCache:
    """The committed ids of one backend's session, and their resolution for a message.

    Ids are immutable once committed (lookup rows are never updated or deleted), so
    names seen in earlier messages come from the cache without a query. Ids learnt in a
    transaction are remembered only once it committed (:meth:`remember`): a rolled-back
    insert's id does not exist.
    """

    def __init__(self) -> None:
        self._known: Ids = {}

    def resolve_all(self, cur: pymysql.cursors.Cursor, parts: list[TableData]) -> tuple[Ids, Ids]:
        """name -> id for every lookup value of the message, per lookup table; and the
        ids learnt from the database (to :meth:`remember` after the commit)."""
        wanted: dict[str, dict[str, None]] = {}  # table -> names in message order
        for part in parts:
            for position, table in part.layout.lookup_positions:
                wanted.setdefault(table, {}).update(dict.fromkeys(part.columns[position]))
        resolved: Ids = {}
        fresh: Ids = {}
        for table, names in wanted.items():
            known = self._known.get(table, {})
            ids = {name: known[name] for name in names if name in known}
            unknown = [name for name in names if name not in ids]
            if unknown:
                fresh[table] = _resolve(cur, table, unknown)
                ids.update(fresh[table])
            resolved[table] = ids
        return resolved, fresh

    def remember(self, fresh: Ids) -> None:
        """Keep the ids of a committed transaction."""
        for table, learnt in fresh.items():
            known = self._known.setdefault(table, {})
            if len(known) + len(learnt) > _CACHE_LIMIT:
                known.clear()
            known.update(learnt)


def _resolve(cur: pymysql.cursors.Cursor, table: str, names: list[str]) -> dict[str, int]:
    """The id of every name, inserting the missing ones (first spelling wins)."""
    ids = _select_ids(cur, table, names, lock=False)
    missing = [name for name in names if name not in ids]
    if missing:
        # Insert in a stable order (by collation key, then message order) so that two
        # loaders adding the same new names take the index locks in the same order.
        missing.sort(key=_key)
        cur.executemany(
            f"INSERT INTO {table} (name) VALUES (%s) ON DUPLICATE KEY UPDATE id = id",  # noqa: S608
            [(name,) for name in missing],
        )
        ids.update(_select_ids(cur, table, missing, lock=True))
    for name in names:
        if name not in ids:  # the collation folds something Python's lower() does not
            cur.execute(f"SELECT id FROM {table} WHERE name = %s LOCK IN SHARE MODE", (name,))  # noqa: S608
            found = cur.fetchone()
            if found is None:
                # Not the message's fault (a concurrent loader's insert of the same name
                # was not visible yet): roll back and let the loader retry the message.
                raise Conflict(f"{table}: the name {name!r} is not readable yet")
            ids[name] = found[0]
    return ids


def _select_ids(cur: pymysql.cursors.Cursor, table: str, names: list[str], lock: bool) -> dict[str, int]:
    by_key: dict[str, Optional[int]] = {}
    suffix = " LOCK IN SHARE MODE" if lock else ""
    for start in range(0, len(names), _NAMES_PER_READ):
        chunk = names[start:start + _NAMES_PER_READ]
        marks = ", ".join(["%s"] * len(chunk))
        cur.execute(f"SELECT id, name FROM {table} WHERE name IN ({marks}){suffix}", chunk)  # noqa: S608
        for row_id, stored in cur.fetchall():
            key = _key(stored)
            # two stored names with one Python key: resolve those one by one instead
            by_key[key] = None if key in by_key and by_key[key] != row_id else row_id
    ids = {}
    for name in names:
        row_id = by_key.get(_key(name))
        if row_id is not None:
            ids[name] = row_id
    return ids


def substitute(part: TableData, ids: Ids) -> None:
    """Replace the names at the layout's lookup positions by their ids, in place."""
    layout = part.layout
    for position, table in layout.lookup_positions:
        column: list[Any] = list(map(ids[table].__getitem__, part.columns[position]))
        if layout.publisher_as_text and layout.columns[position] == "PublisherDNID":
            column = list(map(str, column))
        part.columns[position] = column

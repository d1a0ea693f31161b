"""The unloader's SELECT over one view: values only as parameters, names only from the
allow-list of views (``apel.services.unloader_settings.VIEWS``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Optional

from apel.db.dialect import Dialect
from apel.services.unloader_settings import GAP, GAP_BY_END_TIME, LATEST, UnloaderSettings, View

GRID = "grid"
SQL_TIME = "%Y-%m-%d %H:%M:%S"


def first_of_previous_month(now: dt.datetime) -> dt.datetime:
    """00:00 on the first day of the month before ``now``'s: the super summaries' window."""
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return dt.datetime(year, month, 1)


@dataclass
class Selection:
    """One parameterised SELECT over a view, plus what the log line says about it."""

    sql: str
    params: list[Any]
    describe: str


def build_selection(view: View, settings: UnloaderSettings, dialect: Dialect,
                    last_sent: Optional[dt.datetime], now: dt.datetime) -> Selection:
    """The SELECT for this run in the backend's ``dialect``: values only as parameters,
    names only from ``view``.

    ``last_sent`` is LastUpdated['sent'] (None: never sent), ``now`` the database's
    current UTC time; both naive UTC.
    """
    placeholder = dialect.placeholder
    quote = _quoter(dialect)
    conditions: list[str] = []
    params: list[Any] = []
    notes: list[str] = []

    def marks(count: int) -> str:
        return ", ".join([placeholder] * count)

    if view.filtered:
        if settings.include_vos:  # include wins over exclude
            conditions.append(f"{quote(view.vo_column)} IN ({marks(len(settings.include_vos))})")
            params += settings.include_vos
        elif settings.exclude_vos:
            conditions.append(f"{quote(view.vo_column)} NOT IN ({marks(len(settings.exclude_vos))})")
            params += settings.exclude_vos
        if not settings.local_jobs:
            conditions.append(f"{quote(view.infrastructure_column)} = {placeholder}")
            params.append(GRID)
    if settings.interval == LATEST:
        if view.super_summary:
            since = first_of_previous_month(now)
            conditions.append(f"EarliestEndTime >= {placeholder}")
            params.append(since.strftime(SQL_TIME))
            notes.append(f"EarliestEndTime since {since:%Y-%m-%d}")
        elif last_sent is not None:
            conditions.append(f"UpdateTime > {placeholder}")
            params.append(last_sent.strftime(SQL_TIME))
            notes.append(f"updated after {last_sent:%Y-%m-%d %H:%M:%S}")
        else:
            notes.append("never sent before: everything")
    elif settings.interval == GAP:
        assert settings.gap_start is not None and settings.gap_end is not None
        if view.gap == GAP_BY_END_TIME:
            conditions.append(f"EndTime > {placeholder} AND EndTime <= {placeholder}")
            params += [f"{settings.gap_start:%Y-%m-%d} 00:00:00",
                       f"{settings.gap_end + dt.timedelta(days=1):%Y-%m-%d} 00:00:00"]
        else:
            conditions.append(f"Year * 12 + Month BETWEEN {placeholder} AND {placeholder}")
            params += [settings.gap_start.year * 12 + settings.gap_start.month,
                       settings.gap_end.year * 12 + settings.gap_end.month]
        notes.append(f"gap {settings.gap_start}..{settings.gap_end}")
    columns = ", ".join(quote(name) for name in view.columns)
    # Names come from VIEWS (a fixed allow-list), never from the configuration.
    sql = f"SELECT {columns} FROM {view.name}"  # noqa: S608
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return Selection(sql, params, "; ".join(notes))


def _quoter(dialect: Dialect) -> Callable[[Optional[str]], str]:
    """Column names quoted as the dialect quotes them (VStarRecords has a column named Group)."""
    def quote(name: Optional[str]) -> str:
        assert name is not None
        return dialect.quote(name)

    return quote

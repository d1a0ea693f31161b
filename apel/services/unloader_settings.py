"""What the unloader may unload, and how: the allow-list of views, and the settings
checked against it before anything is read or written.

Impossible option combinations and filters a view cannot apply are refused with one
clear line, so cron mails the operator instead of the unloader sending garbage.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    FIELDS,
    JOB,
    NORMALISED_SUMMARY,
    STORAGE,
    SUMMARY,
    SYNC,
    render_message,
)

log = logging.getLogger("apel.unloader")

LATEST, GAP, ALL = "latest", "gap", "all"
INTERVALS = (LATEST, GAP, ALL)
DEFAULT_RECORDS_PER_MESSAGE = 1000
MIN_RECORDS_PER_MESSAGE, MAX_RECORDS_PER_MESSAGE = 1, 5000

# How rows of a view are picked in gap mode.
GAP_BY_END_TIME = "EndTime"  # EndTime > gap_start 00:00 AND EndTime <= gap_end + 1 day 00:00
GAP_BY_MONTH = "month"  # (Year, Month) from gap_start's month to gap_end's month


class InvalidSettings(Exception):
    """The unloader settings cannot work with this view; the message is one line to act on."""


@dataclass(frozen=True)
class View:
    """What the unloader may do with one view: the allow-list its SQL is built from."""

    name: str
    record_type: str
    # VO and local_jobs filters apply to job, summary and sync views only.
    filtered: bool = False
    vo_column: Optional[str] = None  # None: the view cannot filter by VO
    infrastructure_column: Optional[str] = None  # None: the view cannot tell grid from local
    gap: Optional[str] = None  # GAP_BY_END_TIME, GAP_BY_MONTH or None (no gap mode)
    super_summary: bool = False  # latest mode = the two-month EarliestEndTime window
    site_column: str = "Site"
    # Where --dry-run takes a row's month from: a datetime column, or (year, month) columns.
    month_from: tuple[str, ...] = ("Year", "Month")

    @property
    def columns(self) -> tuple[str, ...]:
        """The record's fields (message order), then any column only --dry-run needs."""
        names = [f.name for f in FIELDS[self.record_type]]
        names += [c for c in self.month_from if c not in names]
        return tuple(names)


VIEWS: dict[str, View] = {view.name: view for view in (
    View("VJobRecords", JOB, True, "VO", "InfrastructureType", GAP_BY_END_TIME, month_from=("EndTime",)),
    View("VSummaries", SUMMARY, True, "VO", "InfrastructureType", GAP_BY_MONTH),
    View("VSuperSummaries", SUMMARY, True, "VO", "InfrastructureType", GAP_BY_MONTH, super_summary=True),
    View("VNormalisedSummaries", NORMALISED_SUMMARY, True, "VO", "Infrastructure", GAP_BY_MONTH),
    View("VNormalisedSuperSummaries", NORMALISED_SUMMARY, True, "VO", "Infrastructure", GAP_BY_MONTH,
         super_summary=True),
    View("VSyncRecords", SYNC, True, None, None, GAP_BY_MONTH),
    View("VCloudRecords", CLOUD, site_column="SiteName", month_from=("MeasurementYear", "MeasurementMonth")),
    View("VCloudSummaries", CLOUD_SUMMARY, gap=GAP_BY_MONTH, site_column="SiteName"),
    View("VStarRecords", STORAGE, month_from=("EndTime",)),
)}
DICT_MODE_TYPES = frozenset((JOB, SUMMARY, NORMALISED_SUMMARY))


@dataclass
class UnloaderSettings:
    """``[unloader]`` of unloader.cfg, already typed (see conf/unloader.cfg)."""

    dir_location: str
    table_name: str
    interval: str = LATEST
    gap_start: Optional[dt.date] = None
    gap_end: Optional[dt.date] = None
    records_per_message: int = DEFAULT_RECORDS_PER_MESSAGE
    withhold_dns: bool = False
    include_vos: list[str] = field(default_factory=list)
    exclude_vos: list[str] = field(default_factory=list)
    local_jobs: bool = False
    dict_benchmark_type: bool = False
    include_infrastructure_description: bool = False
    send_ur: bool = False
    decimal_cpu_count: bool = False

    @property
    def outgoing(self) -> str:
        return os.path.join(self.dir_location, "outgoing")


def records_per_message(raw: Optional[str]) -> int:
    """The configured value clamped to [1, 5000]; missing or not an integer → 1000.

    The existing unloader's rule, kept so that old configs behave
    the same; anything changed is logged, because it is probably not what was meant.
    """
    if raw is None or raw.strip() == "":
        return DEFAULT_RECORDS_PER_MESSAGE
    try:
        value = int(raw.strip())
    except ValueError:
        log.warning("records_per_message %r is not an integer: using %d", raw, DEFAULT_RECORDS_PER_MESSAGE)
        return DEFAULT_RECORDS_PER_MESSAGE
    clamped = min(max(value, MIN_RECORDS_PER_MESSAGE), MAX_RECORDS_PER_MESSAGE)
    if clamped != value:
        log.warning("records_per_message %d is outside %d..%d: using %d", value, MIN_RECORDS_PER_MESSAGE,
                    MAX_RECORDS_PER_MESSAGE, clamped)
    return clamped


def check_settings(settings: UnloaderSettings) -> View:
    """The view to unload, once every option is known to work with it.

    Raises InvalidSettings, before anything is read or written, for: an unknown view;
    storage without XML; XML for anything but jobs and storage; dict mode or withheld
    DNs where the message format has no room for them; VO/local-jobs filters on a view
    without the column; gap mode on a view without a time range, or with bad dates.
    """
    view = VIEWS.get(settings.table_name)
    if view is None:
        raise InvalidSettings(f"Invalid table name: {settings.table_name!r} (one of {', '.join(VIEWS)})")
    kind = view.record_type
    if settings.dict_benchmark_type and kind not in DICT_MODE_TYPES:
        raise InvalidSettings(f"dict_benchmark_type is only for job and summary views, not {view.name}")
    if kind == STORAGE:
        if not settings.send_ur:
            raise InvalidSettings("Cannot unload StorageRecords in APEL format (set send_ur = true for StAR)")
        if settings.withhold_dns:
            raise InvalidSettings("Cannot withhold DNs for StorageRecord")
    elif settings.send_ur and kind != JOB:
        raise InvalidSettings(f"send_ur (CAR/StAR XML) is only for VJobRecords and VStarRecords, "
                              f"not {view.name}")
    else:
        try:  # the renderer is the authority on what each format can express
            render_message(kind, [], dict_benchmark=settings.dict_benchmark_type,
                           withhold_dns=settings.withhold_dns)
        except ValueError as exc:
            raise InvalidSettings(str(exc)) from None
    if view.filtered:
        if (settings.include_vos or settings.exclude_vos) and view.vo_column is None:
            raise InvalidSettings(f"{view.name} has no VO column: remove include_vos/exclude_vos")
        if not settings.local_jobs and view.infrastructure_column is None:
            raise InvalidSettings(f"{view.name} cannot tell grid from local jobs: set local_jobs = true")
    if settings.interval not in INTERVALS:
        raise InvalidSettings(f"interval {settings.interval!r} is not one of {', '.join(INTERVALS)}")
    if settings.interval == GAP:
        if view.gap is None:
            raise InvalidSettings(f"Can only gap publish for job records, summaries and sync records, "
                                  f"not {view.name}")
        if settings.gap_start is None or settings.gap_end is None:
            raise InvalidSettings("interval = gap needs gap_start and gap_end (YYYY-MM-DD)")
        if settings.gap_start > settings.gap_end:
            raise InvalidSettings(f"gap_start {settings.gap_start} is after gap_end {settings.gap_end}")
    return view

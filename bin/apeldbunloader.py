"""``apeldbunloader``: write one database view as messages into ``<dir_location>/outgoing``.

Arguments and configuration only; the work is in ``apel.services.unloader``. Run from
cron, once per view (see conf/apeldbunloader.cron):

    apeldbunloader [-d db.cfg] [-c unloader.cfg] [--dry-run]

Exit 0 when the run completed (also with nothing to send), 1 on a configuration
error or when the database cannot be used; the reason is one line.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Optional

from acctbase.cli import FatalError, run, warn_deprecated
from acctbase.config import NEW_DIR, ConfigFile
from acctbase.logs import setup_logging_or_console
from apel.db.backend import DatabaseUnavailable, StorageError
from apel.db.settings import read_db_settings
from apel.services.unloader import (
    INTERVALS,
    LATEST,
    VIEWS,
    InvalidSettings,
    Unloader,
    UnloaderSettings,
    dry_run_report,
    records_per_message,
)

from .db_program import parse_db_program_args

PROG = "apeldbunloader"
DESCRIPTION = "Unload accounting records from a database view into the outgoing message queue."
SWITCHES = {"--dry-run": "print the records per site and month that would be sent; write nothing"}
DEFAULT_CONFIG = "/etc/apel/unloader.cfg"
SECTION = "unloader"

log = logging.getLogger("apel.unloader")


def _date(config: ConfigFile, option: str) -> Optional[dt.date]:
    raw = config.get(SECTION, option, "")
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise config.error(SECTION, option, f"{raw!r} is not a date (YYYY-MM-DD)") from None


def read_unloader_settings(config: ConfigFile) -> UnloaderSettings:
    """``[unloader]`` of unloader.cfg, typed; combinations are checked by the service."""
    if not config.has_section(SECTION):
        raise config.error(SECTION, None, "missing section")
    getbool = config.getbool
    return UnloaderSettings(
        dir_location=config.getpath(SECTION, "dir_location", "/var/spool/apel", kind=NEW_DIR),
        table_name=config.getchoice(SECTION, "table_name", VIEWS),
        interval=config.getchoice(SECTION, "interval", INTERVALS, LATEST),
        gap_start=_date(config, "gap_start"),
        gap_end=_date(config, "gap_end"),
        records_per_message=records_per_message(config.get(SECTION, "records_per_message", None)),
        withhold_dns=getbool(SECTION, "withhold_dns", False),
        include_vos=config.getlist(SECTION, "include_vos", []),
        exclude_vos=config.getlist(SECTION, "exclude_vos", []),
        local_jobs=getbool(SECTION, "local_jobs", False),
        dict_benchmark_type=getbool(SECTION, "dict_benchmark_type", False),
        include_infrastructure_description=getbool(SECTION, "include_infrastructure_description", False),
        send_ur=getbool(SECTION, "send_ur", False),
        decimal_cpu_count=getbool(SECTION, "decimal_cpu_count", False),
    )


def _main(argv: Optional[list[str]] = None) -> int:
    args = parse_db_program_args(PROG, DESCRIPTION, DEFAULT_CONFIG, SWITCHES, argv)
    config = ConfigFile(args.config)
    db_config = ConfigFile(args.db)
    setup_logging_or_console(config)
    warn_deprecated(args)
    settings = read_unloader_settings(config)
    backend_class, db_settings = read_db_settings(db_config)
    try:
        backend = backend_class(db_settings)
        unloader = Unloader(settings, backend)
    except (InvalidSettings, ValueError) as exc:
        raise FatalError(f"{config.path}: {exc}") from None
    try:
        backend.connect()
        result = unloader.run(dry_run=args.dry_run)
    except (DatabaseUnavailable, StorageError) as exc:
        raise FatalError(str(exc)) from None
    except OSError as exc:
        raise FatalError(f"cannot write to {settings.outgoing}: {exc}") from None
    finally:
        backend.close()
    if args.dry_run:
        sys.stdout.write(dry_run_report(result, settings))
    return 0


def main() -> None:
    """Console-script entry point."""
    run(_main, PROG)


if __name__ == "__main__":
    main()

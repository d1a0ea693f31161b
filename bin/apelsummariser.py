"""``apelsummariser``: summarise job or cloud records (run from cron).

Arguments and configuration only; the work is in ``apel.services.summariser``.

    apelsummariser [-d db.cfg] [-c summariser.cfg] [--full]

``[db] type`` of db.cfg chooses ``cpu`` (default: jobs and summaries into
HybridSuperSummaries) or ``cloud`` (cloud records into CloudSummaries). Runs are
incremental unless ``--full`` is given. Exit 0 on success, 1 on any failure (a
configuration error, a live run holding the pidfile, the database unavailable), with
the reason in one line; the pidfile is removed on every exit path.
"""

from __future__ import annotations

import logging
from typing import Optional

from acctbase.cli import FatalError, run, warn_deprecated
from acctbase.config import NEW_FILE, ConfigFile
from acctbase.logs import setup_logging_or_console
from acctbase.pidfile import PidFile
from apel.db.backend import DatabaseUnavailable, StorageError
from apel.db.settings import read_db_settings
from apel.services.summariser import TYPES, Summariser, SummariserSettings

from .db_program import parse_db_program_args

PROG = "apelsummariser"
DESCRIPTION = "Summarise job records into HybridSuperSummaries, or cloud records into CloudSummaries."
SWITCHES = {"--full": "recompute every site-month instead of only what was loaded since the last run"}
DEFAULT_CONFIG = "/etc/apel/summariser.cfg"
DEFAULT_PIDFILE = "/var/run/apel/summariser.pid"
SECTION = "summariser"

log = logging.getLogger("apel.summariser")


def read_summariser_settings(
    config: ConfigFile, db_config: ConfigFile, full: bool
) -> tuple[SummariserSettings, str]:
    """``[summariser]`` of summariser.cfg and ``[db] type``: the settings and the pidfile."""
    if not config.has_section(SECTION):
        raise config.error(SECTION, None, "missing section")
    pidfile = config.getpath(SECTION, "pidfile", DEFAULT_PIDFILE, kind=NEW_FILE)
    kind = db_config.getchoice("db", "type", list(TYPES), "cpu").lower()
    # As in the existing tool, the clean-up needs both options; each is checked when present.
    delete = config.getbool(SECTION, "delete_stale_summaries", False)
    days = config.getint(SECTION, "stale_summary_window_days", None, minimum=0, maximum=3650, unit="days")
    window = days if delete else None
    progress = config.getfloat(SECTION, "progress_interval", 30.0, minimum=1, maximum=86400,
                               unit="seconds")
    settings = SummariserSettings(kind=kind, full=full, stale_window_days=window, progress_interval=progress)
    return settings, pidfile


def _main(argv: Optional[list[str]] = None) -> int:
    args = parse_db_program_args(PROG, DESCRIPTION, DEFAULT_CONFIG, SWITCHES, argv)
    config = ConfigFile(args.config)
    db_config = ConfigFile(args.db)
    backend_class, db_settings = read_db_settings(db_config)
    settings, pidfile = read_summariser_settings(config, db_config, args.full)
    setup_logging_or_console(config)
    warn_deprecated(args)
    with PidFile(pidfile):
        try:
            backend = backend_class(db_settings)
        except ValueError as exc:
            raise FatalError(f"{db_config.path}: {exc}") from None
        try:
            backend.connect()
            Summariser(backend, settings).run()
        except (DatabaseUnavailable, StorageError) as exc:
            raise FatalError(f"summarising failed: {exc}") from None
        except Exception as exc:  # a bug: full details in the log, one line for cron
            log.exception("Unexpected error while summarising")
            raise FatalError(f"summarising failed: {type(exc).__name__}: {exc}") from None
        finally:
            backend.close()
    return 0


def main() -> None:
    """Console-script entry point."""
    run(_main, PROG)


if __name__ == "__main__":
    main()

"""``apeldbloader``: load messages from the incoming queue into the APEL database.

Arguments and configuration only; the work is in ``apel.services.loader``.

    apeldbloader [-d db.cfg] [-c loader.cfg] [--foreground] [--once]

``--once`` processes what is queued and exits: 0 when every message was loaded,
2 when the queue was emptied but some messages were rejected, 1 when the database
stayed unreachable (the messages stay in incoming) or on a configuration error.

Stop signals are caught before anything else (see ``acctbase.signals``), so this module
imports nothing else at the top: the database and queue modules take a tenth of a
second to load, during which a SIGTERM would otherwise kill the loader unclean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from acctbase.signals import catch_signals

if TYPE_CHECKING:
    import argparse
    import threading

    from acctbase.config import ConfigFile
    from apel.services.loader import LoaderSettings

PROG = "apeldbloader"
DEFAULT_CONFIG = "/etc/apel/loader.cfg"
MAX_WORKERS = 64


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    from .db_program import parse_db_program_args

    return parse_db_program_args(
        PROG,
        "Load accounting messages from the incoming queue into the database.",
        DEFAULT_CONFIG,
        {
            "--foreground": "do not detach (for systemd); log to the configured places",
            "--once": "process what is queued, then exit "
            "(0: all loaded, 2: some rejected, 1: database unavailable)",
        },
        argv,
    )


def read_loader_settings(config: ConfigFile) -> tuple[LoaderSettings, str]:
    """``[loader]`` of loader.cfg: the service settings and the pidfile path."""
    from acctbase.config import NEW_DIR, NEW_FILE
    from apel.services.loader import LoaderSettings

    section = "loader"
    settings = LoaderSettings(
        msgpath=config.getpath(section, "msgpath", "/var/spool/apel", kind=NEW_DIR),
        interval=config.getfloat(section, "interval", 5.0, minimum=0, maximum=3600, unit="seconds"),
        save_messages=config.getbool(section, "save_messages", False),
        lock_timeout=config.getfloat(section, "lock_timeout", 60.0, minimum=1, maximum=86400,
                                     unit="seconds"),
        backoff_max=config.getfloat(section, "backoff_max", 60.0, minimum=1, maximum=3600, unit="seconds"),
        workers=config.getint(section, "workers", 1, minimum=1, maximum=MAX_WORKERS),
    )
    pidfile = config.getpath(section, "pidfile", "/var/run/apel/loader.pid", kind=NEW_FILE)
    return settings, pidfile


def _prepare_msgpath(msgpath: str) -> None:
    import os

    from acctbase.cli import FatalError

    try:
        os.makedirs(msgpath, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise FatalError(f"cannot create msgpath {msgpath}: {exc.strerror}") from None
    if not os.access(msgpath, os.W_OK | os.X_OK):
        raise FatalError(f"msgpath {msgpath} is not writable")


def _make_service(
    settings: LoaderSettings, make_loader: Callable, once: bool, holder: dict
) -> Callable[[threading.Event], int]:
    """The loader (or pool of loaders) as ``run_service`` runs it."""
    import os

    from acctbase.cli import FatalError
    from apel.services.loader_pool import LoaderPool

    def service(stop: threading.Event) -> int:
        # Built here, after daemonising: the lock-keeper thread and the database
        # connection must belong to the process that does the work. Queue files are
        # private (0600/0700) in the foreground too, as in daemon mode.
        os.umask(0o077)
        if settings.workers > 1:
            pool = LoaderPool(settings.workers, make_loader, once, stop, holder)
            holder["pool"] = pool
            status = pool.run()
            if pool.failure:
                raise FatalError(pool.failure)
            return status
        try:
            loader = make_loader()
        except OSError as exc:
            raise FatalError(f"cannot open the queues under {settings.msgpath}: {exc}") from None
        holder["loader"] = loader
        try:
            status = loader.run_once(stop) if once else loader.run_forever(stop)
        finally:
            loader.close()
        if loader.failure:
            raise FatalError(loader.failure)  # one line on stderr, exit 1
        return status

    return service


def _main(argv: Optional[list[str]] = None) -> int:
    import sys

    from acctbase.cli import warn_deprecated
    from acctbase.config import ConfigFile
    from acctbase.daemon import run_service
    from acctbase.logs import setup_logging_or_console
    from apel.db.settings import read_db_settings
    from apel.services.loader import Loader

    args = parse_args(argv)
    loader_config = ConfigFile(args.config)
    db_config = ConfigFile(args.db)
    settings, pidfile = read_loader_settings(loader_config)
    backend_class, db_settings = read_db_settings(db_config)
    setup_logging_or_console(loader_config, sys.stdout)
    warn_deprecated(args)
    _prepare_msgpath(settings.msgpath)

    holder: dict = {}

    def make_loader() -> Loader:
        return Loader(settings, backend_class(db_settings))

    def on_reload() -> None:
        if "pool" in holder:
            holder["pool"].reopen_logs()
        elif "loader" in holder:
            holder["loader"].request_log_reopen()

    service = _make_service(settings, make_loader, args.once, holder)
    return run_service(service, pidfile, foreground=args.foreground or args.once, on_reload=on_reload)


def main() -> None:
    """Console-script entry point; stop signals are caught before anything is imported or read."""
    catch_signals()
    from acctbase.cli import run

    run(_main, PROG)


if __name__ == "__main__":
    main()

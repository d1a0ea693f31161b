"""What every entry point in ``bin/`` shares: its arguments and how it ends.

Each program accepts ``-c/--config`` (and the APEL ones ``-d/--db``) with the same
defaults as the existing tools, ``-v/--version``, and the deprecated
``-l/--log_config``. Any ``ConfigError``, ``FatalError`` or other ``ReportedError`` (what
the libraries raise) ends the program with exit code 1 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional

from acctbase.config import ConfigError
from acctbase.exceptions import ReportedError

log = logging.getLogger(__name__)


class FatalError(ReportedError):
    """A problem ``bin/`` finds that stops the program; the message is the one line shown."""


def make_parser(
    prog: str,
    description: str,
    version: str,
    config_default: str,
    db_default: Optional[str] = None,
    switches: Optional[dict[str, str]] = None,
) -> argparse.ArgumentParser:
    """The shared options, plus ``switches``: on/off flags (``--name``) mapped to their help."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "-c", "--config", default=config_default,
        help=f"location of the config file (default {config_default})",
    )
    if db_default is not None:
        parser.add_argument(
            "-d", "--db", default=db_default,
            help=f"location of the database config file (default {db_default})",
        )
    parser.add_argument(
        "-l", "--log_config", default=None,
        help="deprecated: logging is configured in the [logging] section",
    )
    parser.add_argument("-v", "--version", action="version", version=version)
    for flag, text in (switches or {}).items():
        parser.add_argument(flag, action="store_true", help=text)
    return parser


def warn_deprecated(args: argparse.Namespace) -> None:
    if getattr(args, "log_config", None):
        log.warning("-l/--log_config is deprecated and ignored; use the [logging] section")


def run(main: Callable[[], int], prog: str) -> None:
    """Run ``main`` and exit with its status; every failure becomes one line on stderr, exit 1.

    The line goes to stderr whatever the logging settings (cron mails it, a shell user
    sees it) and to the log files; not to a console log handler as well, so it is shown
    once. An exception nobody expected is a bug: its traceback goes to the log files,
    never to the terminal.
    """
    try:
        status = main()
    except (ConfigError, ReportedError) as exc:
        _fail(prog, str(exc))
    except KeyboardInterrupt:
        _fail(prog, "interrupted")
    except Exception as exc:
        _log_to_files(logging.ERROR, "Unexpected error", exc_info=True, prog=prog)
        _fail(prog, f"internal error: {type(exc).__name__}: {exc}", logged=True)
    sys.exit(status or 0)


def _fail(prog: str, line: str, logged: bool = False) -> None:
    if not logged:
        _log_to_files(logging.CRITICAL, line, prog=prog)
    print(f"{prog}: {' '.join(line.split())}", file=sys.stderr)
    sys.exit(1)


def _log_to_files(level: int, message: str, prog: str, exc_info: bool = False) -> None:
    """Log ``message`` through the handlers that do not write to the terminal."""
    record = logging.getLogger(prog).makeRecord(
        prog, level, __file__, 0, "%s", (message,), sys.exc_info() if exc_info else None
    )
    for handler in logging.getLogger().handlers:
        if getattr(handler, "stream", None) not in (sys.stdout, sys.stderr) and level >= handler.level:
            handler.handle(record)

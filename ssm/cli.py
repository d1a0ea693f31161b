"""What every entry point in ``bin/`` shares: its arguments and how it ends.

Each program accepts ``-c/--config`` (and the APEL ones ``-d/--db``) with the same
defaults as the existing tools, ``-v/--version``, and the deprecated
``-l/--log_config``. Any ``ConfigError`` or ``FatalError`` ends the program with exit
code 1 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional

from ssm.config import ConfigError

log = logging.getLogger(__name__)


class FatalError(Exception):
    """A problem that stops the program; the message is the one line shown."""


def make_parser(
    prog: str,
    description: str,
    version: str,
    config_default: str,
    db_default: Optional[str] = None,
) -> argparse.ArgumentParser:
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
    return parser


def warn_deprecated(args: argparse.Namespace) -> None:
    if getattr(args, "log_config", None):
        log.warning("-l/--log_config is deprecated and ignored; use the [logging] section")


def run(main: Callable[[], int], prog: str) -> None:
    """Run ``main`` and exit with its status; known failures become one line, exit 1."""
    try:
        status = main()
    except (ConfigError, FatalError) as exc:
        if logging.getLogger().handlers:  # logging is set up: record it in the log too
            logging.getLogger(prog).critical("%s", exc)
        if not _logs_to_console():
            print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(1)
    sys.exit(status or 0)


def _logs_to_console() -> bool:
    return any(
        isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stdout, sys.stderr)
        for h in logging.getLogger().handlers
    )

"""Logging set up from a ``[logging]`` section, as the APEL/SSM configs have it.

Format ``<time> - <logger> - <LEVEL> - <message>`` so existing log scrapers and
operators' habits keep working.
"""

from __future__ import annotations

import logging
import os
import sys

from acctbase.config import NEW_FILE, ConfigFile

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
# Libraries whose INFO chatter drowns the per-message lines at INFO.
NOISY_LOGGERS = ("stomp.py", "stomp", "urllib3", "ldap3")


def _open_logfile(path: str) -> logging.Handler:
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o750, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o640))
    return logging.FileHandler(path, encoding="utf-8")


def setup_logging(config: ConfigFile, section: str = "logging") -> logging.Logger:
    """Configure the root logger from ``[logging] logfile, level, console``.

    Returns the root logger. A missing option or bad value raises ConfigError.
    """
    logfile = config.get(section, "logfile")
    if logfile:  # empty: log to stdout only
        logfile = config.check_path(section, "logfile", logfile, NEW_FILE)
    level_name = config.getchoice(section, "level", list(LEVELS), default="INFO").upper()
    console = config.getbool(section, "console", default=False)
    level = LEVELS[level_name]

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = []
    if logfile:
        try:
            handlers.append(_open_logfile(logfile))
        except OSError as exc:
            raise config.error(section, "logfile", f"cannot open {logfile}: {exc.strerror}") from None
    if console or not logfile:
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    quiet = logging.INFO if level <= logging.DEBUG else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    return root


def setup_logging_or_console(config: ConfigFile, stream=sys.stderr) -> None:
    """``[logging]`` when the file has one; otherwise INFO to ``stream``, so a config
    written for a quick test still says what happened."""
    if config.has_section("logging"):
        setup_logging(config)
        return
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=stream)


def log_handler_streams() -> list:
    """File objects behind the current handlers, to keep them open when daemonising."""
    streams = []
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None and stream not in (sys.stdout, sys.stderr):
            streams.append(stream)
    return streams

"""``apelauth``: refresh the allowed-DN file of the SSM receiver from GOCDB (cron job).

Replaces ``retrieve_dns``. This module only reads the command line and auth.cfg; the
work is in ``apel.auth``. Exit 0 when the file was replaced, 1 with one line on stderr
when it was not (the current file is then left exactly as it was).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional

import apel
from acctbase.cli import FatalError, make_parser, run, warn_deprecated
from acctbase.config import FILE_IN_DIR, MAYBE_FILE, ConfigFile
from acctbase.logs import setup_logging
from apel.auth import AuthError, AuthSettings, refresh_dn_file
from apel.auth.dnlist import DEFAULT_MAX_SHRINK
from apel.auth.gocdb import (
    DEFAULT_DEADLINE,
    DEFAULT_GOCDB_URL,
    DEFAULT_MAX_PAGE_BYTES,
    DEFAULT_MAX_PAGES,
    DEFAULT_TIMEOUT,
)

PROG = "apelauth"
CONFIG_DEFAULT = "/etc/apel/auth.cfg"
SECTION = "auth"
DEFAULT_ALLOWED_DNS = "/etc/apel/dns"

log = logging.getLogger(PROG)


def _path(config: ConfigFile, option: str, default: Optional[str], kind: str) -> Optional[str]:
    """A path option with environment variables expanded and normalised, as retrieve_dns did;
    None when empty."""
    raw = config.get(SECTION, option, default)
    if not raw:
        return None
    return config.check_path(SECTION, option, os.path.normpath(os.path.expandvars(raw)), kind)


def _url(config: ConfigFile, option: str, default: Optional[str]) -> Optional[str]:
    """An http(s) URL; ``default`` when absent (an empty value is refused, not defaulted)."""
    return config.geturl(SECTION, option, default, schemes=("http", "https"))


def read_settings(config: ConfigFile) -> AuthSettings:
    """The [auth] options of auth.cfg, checked; ConfigError names the option at fault."""
    if not config.has_section(SECTION):
        # Without it every default would apply, including writing /etc/apel/dns.
        raise config.error(SECTION, None, "missing section")
    allowed = _path(config, "allowed-dns", DEFAULT_ALLOWED_DNS, FILE_IN_DIR)
    if allowed is None:
        raise config.error(SECTION, "allowed-dns", "must name the DN file to write")
    proxy = _url(config, "proxy", None) if config.get(SECTION, "proxy", "") else None  # empty: none
    return AuthSettings(
        allowed_dns=allowed,
        gocdb_url=_url(config, "gocdb_url", DEFAULT_GOCDB_URL),  # type: ignore[arg-type]  # has a default
        extra_dns=_path(config, "extra-dns", None, MAYBE_FILE),
        banned_dns=_path(config, "banned-dns", None, MAYBE_FILE),
        proxy=proxy,
        expire_hours=config.getfloat(SECTION, "expire_hours", 0.0, minimum=0, maximum=87600,
                                     unit="hours (0: never keep a stale file)"),
        max_shrink=config.getfloat(SECTION, "max_shrink", DEFAULT_MAX_SHRINK, minimum=0, maximum=1,
                                   unit="(a fraction of the current list)"),
        timeout=config.getfloat(SECTION, "timeout", DEFAULT_TIMEOUT, minimum=1, maximum=3600,
                                unit="seconds"),
        max_pages=config.getint(SECTION, "max_pages", DEFAULT_MAX_PAGES, minimum=1, maximum=100_000),
        max_page_bytes=config.getint(SECTION, "max_page_bytes", DEFAULT_MAX_PAGE_BYTES, minimum=1024,
                                     maximum=1 << 30, unit="bytes"),
        deadline=config.getfloat(SECTION, "deadline", DEFAULT_DEADLINE, minimum=1, maximum=86400,
                                 unit="seconds for the whole run"),
    )


def _main(argv: Optional[list[str]] = None) -> int:
    parser = make_parser(
        PROG,
        "Write the allowed-DN file of the SSM receiver from the GOCDB list of APEL hosts.",
        f"APEL {apel.__version__}",
        CONFIG_DEFAULT,
        switches={
            "--force": "write the list even if it is empty or shrank by more than max_shrink, "
            "or, after a failed fetch past expire_hours, from the pages that arrived",
        },
    )
    args = parser.parse_args(argv)
    config = ConfigFile(args.config)
    setup_logging(config)
    warn_deprecated(args)
    settings = read_settings(config)
    log.info("Starting %s (APEL %s) with %s", PROG, apel.__version__, config.path)
    try:
        report = refresh_dn_file(settings, force=args.force)
    except AuthError as exc:
        raise FatalError(f"DN file not updated: {exc}") from None
    log.info("%s finished: %d DNs in %s", PROG, report.written, report.path)
    return 0


def main() -> None:
    """Console-script entry point."""
    run(lambda: _main(sys.argv[1:]), PROG)


if __name__ == "__main__":
    main()

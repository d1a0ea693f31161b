"""The command line the database programs share (apeldbloader, apelsummariser, apeldbunloader)."""

from __future__ import annotations

import argparse
from typing import Optional


def parse_db_program_args(
    prog: str, description: str, config_default: str, switches: dict[str, str],
    argv: Optional[list[str]] = None,
) -> argparse.Namespace:
    """``-c`` and ``-d`` (db.cfg) with their defaults, the APEL version, and ``switches``.

    Imports are deferred: apeldbloader parses its arguments right after installing its
    signal handlers, before anything heavier is loaded.
    """
    import apel
    from acctbase.cli import make_parser
    from apel.db.settings import DEFAULT_DB_CONFIG

    parser = make_parser(
        prog, description, f"APEL {apel.__version__}", config_default, DEFAULT_DB_CONFIG, switches
    )
    return parser.parse_args(argv)

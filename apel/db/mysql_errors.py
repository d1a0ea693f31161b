"""PyMySQL errors -> the backend interface's two outcomes: reject the message, or retry.

Only errors that are clearly about the data become StorageError (the loader rejects
the message); anything else about the server or the connection becomes
DatabaseUnavailable, because rejecting a good message is worse than retrying it.
"""

from __future__ import annotations

from typing import Optional

import pymysql.err

from apel.db.backend import DatabaseUnavailable, StorageError

# Server conditions that are nobody's fault in the message: retry later.
_UNAVAILABLE_CODES = frozenset({
    1021,  # disk full
    1040,  # too many connections
    1044, 1045,  # access denied (configuration)
    1046, 1049,  # no database selected / unknown database (configuration)
    1053,  # server shutdown in progress
    1114,  # table is full
    1146, 1054,  # missing table / column: schema not loaded or outdated
    1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161,  # network errors
    1180, 1181,  # error during COMMIT / ROLLBACK
    1203, 1226,  # user connection limits
    1205,  # lock wait timeout
    1213,  # deadlock
    1290,  # server running with --read-only (or similar option)
    1317,  # query interrupted
    1792, 1836,  # read-only transaction / read-only mode
    1927,  # MariaDB: connection was killed
    2002, 2003, 2005, 2006, 2013, 2055,  # client: cannot connect / server gone / lost
    4031,  # MySQL: disconnected for inactivity
    1047,  # Galera: WSREP has not yet prepared node for application use
})
# The connection is gone (server restarted, idle timeout, KILL): reconnect and start over.
LOST_CODES = frozenset({1053, 1927, 2006, 2013, 2055, 4031})
# LOAD DATA LOCAL INFILE is not allowed by the server (MariaDB/MySQL 5, MySQL 8) or client.
NO_LOCAL_INFILE_CODES = frozenset({1148, 3948, 2068})
_DEADLOCK = 1213

# Values the database refused: the message is at fault, reject it.
_DATA_CODES = frozenset({
    1048,  # column cannot be null
    1062,  # duplicate entry (a unique rule other than the replaced key)
    1264,  # out of range
    1265,  # data truncated
    1292,  # incorrect datetime value
    1366,  # incorrect value for the column type
    1406,  # data too long
    1644,  # SIGNAL raised by a trigger
    1690,  # value out of range in an expression
    3819, 4025,  # CHECK constraint violated (MySQL, MariaDB)
})


class Conflict(DatabaseUnavailable):
    """A clash with a concurrent transaction (deadlock): the server rolled this one
    back, and running it again usually succeeds at once."""


def error_code(exc: BaseException) -> Optional[int]:
    """The server's or the client's error number, if the error carries one."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def error_for(exc: BaseException) -> Exception:
    """The StorageError or DatabaseUnavailable that stands for a PyMySQL error."""
    code = error_code(exc)
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code in _DATA_CODES or (
        code not in _UNAVAILABLE_CODES
        and isinstance(exc, (pymysql.err.DataError, pymysql.err.IntegrityError))
    ):
        return StorageError(f"the database refused the data: ({code}) {text}")
    if code == _DEADLOCK:
        return Conflict(f"MySQL deadlock with another transaction: ({code}) {text}")
    return DatabaseUnavailable(f"MySQL database unavailable: ({code}) {text}")

"""Allowed-DN list retrieval (``apelauth``, the replacement of ``retrieve_dns``).

The SSM receiver accepts a message only when its signer's DN is in a file that this
package writes from GOCDB. A wrong file locks every site out (empty list) or lets a
banned host in, so the pieces are kept apart and testable on their own:

* ``gocdb``: fetch every ``HOSTDN`` from the GOCDB PI, following the paging links;
* ``dnlist``: validate and merge DNs, guard against empty or shrunk lists, and write
  the file atomically;
* ``service``: one run as cron starts it, deciding whether the file is replaced.
"""

from apel.auth.exceptions import AuthError, DNFileError, FetchError, UnsafeListError
from apel.auth.service import AuthSettings, RunReport, refresh_dn_file

__all__ = [
    "AuthError",
    "AuthSettings",
    "DNFileError",
    "FetchError",
    "RunReport",
    "UnsafeListError",
    "refresh_dn_file",
]

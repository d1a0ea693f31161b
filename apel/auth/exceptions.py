"""Why a run did not replace the DN file, one class per thing an operator fixes.

Every message is a single line: ``apelauth`` prints it on stderr and exits 1, and
the current DN file is left as it was.
"""

from __future__ import annotations

from typing import Optional


class AuthError(Exception):
    """The DN file was not updated; the message says why in one line."""


class FetchError(AuthError):
    """GOCDB could not be read completely (network, HTTP status, size, bad or hostile XML).

    ``partial`` holds the DNs read from the pages that did arrive, which only a forced
    run past ``expire_hours`` may use; ``pages`` is how many pages were read.
    """

    def __init__(self, message: str, partial: Optional[list[str]] = None, pages: int = 0) -> None:
        super().__init__(message)
        self.partial: list[str] = list(partial or [])
        self.pages = pages


class UnsafeListError(AuthError):
    """The new list is empty or shrank too much compared with the current file."""


class DNFileError(AuthError):
    """A DN file (extra, banned, current or output) could not be read or written."""

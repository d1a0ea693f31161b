"""The one exception every crypto step raises, so callers catch a single type."""


class CryptoException(Exception):
    """A crypto step failed; the message says why, for the log and the reject reason."""

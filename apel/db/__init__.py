"""Storage: a small backend interface and the backends found by name."""

from apel.db.backend import (
    Backend,
    DatabaseUnavailable,
    StorageError,
    load_backend,
)

__all__ = ["Backend", "DatabaseUnavailable", "StorageError", "load_backend"]

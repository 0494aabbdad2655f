#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs Hodei into it.
#   scripts/setup.sh           -> hodei[all]  (CLI, server, embedded PostgreSQL, Docker SDK)
#   scripts/setup.sh test      -> hodei[test] (all of the above + test tools)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
extra="${1:-all}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "setup: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv"
fi
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[$extra]"

#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the whole test suite against real
# PostgreSQL, server and agent processes. Extra arguments go to pytest.
# Uses HODEI_TEST_DATABASE_URL when set, else an embedded PostgreSQL.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" test
"$root/scripts/tools.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

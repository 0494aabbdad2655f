#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the whole test suite against real
# PostgreSQL, server and agent processes. Extra arguments go to pytest.
# Uses HODEI_TEST_DATABASE_URL when set, else an embedded PostgreSQL (one per test process).
#
# Two phases: every test but the fault tests, side by side in HODEI_TEST_WORKERS processes
# (default 3; 1 runs them one at a time); then the fault tests (marked `serial`: they kill,
# stop and time things), alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" test
"$root/scripts/tools.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/mypy
workers="${HODEI_TEST_WORKERS:-3}"
parallel=(-p no:xdist)
if [[ "$workers" -gt 1 ]]; then
    parallel=(-n "$workers" --dist loadfile)
fi
status=0
# Exit code 5: no test selected in that phase (arguments naming only the other kind).
.venv/bin/python -m pytest "${parallel[@]}" -m "not serial" "$@" || status=$?
[[ $status -eq 5 ]] && status=0
serial=0
.venv/bin/python -m pytest -p no:xdist -m serial "$@" || serial=$?
[[ $serial -eq 5 ]] && serial=0
if [[ $status -ne 0 ]]; then exit "$status"; fi
exit "$serial"

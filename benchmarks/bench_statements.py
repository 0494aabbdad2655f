"""Statements per job: N `true` jobs through 2 agents x 4 slots on the embedded stack, every
SQL statement counted by PostgreSQL itself (pg_stat_statements, in a private cluster this
script starts; see pgstat.py), per job and by named query.

The benchmark's own polling (ListJobs until no job is active) is counted apart. The jobs are
submitted one SubmitJob each, as bench_throughput.py does, unless --batch is given
(one SubmitJobs call).

Usage: python benchmarks/bench_statements.py [JOBS] [--batch]
"""

from __future__ import annotations

import os
import sys
import time

from bench_throughput import run_true_jobs
from pgstat import private_postgres, reset, statement_counts
from reference import measure
from stack import embedded_stack

# Statements the benchmark causes by watching, not the jobs: its GetJob and ListJobs polls
# (the list's query is list_jobs_matching since the live feeds; list_jobs before).
POLLING = {"list_jobs", "list_jobs_matching", "get_job", "get_job_attempts"}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 1000
    batch = "--batch" in sys.argv
    with private_postgres() as url:
        os.environ["HODEI_DATABASE_URL"] = url
        with embedded_stack() as stack:
            run = run_true_jobs(stack, count, on_start=lambda: reset(url), batch=batch)
            time.sleep(0.5)  # the last acknowledgements' heartbeats and wake-ups
            calls, times = statement_counts(url)
    reference = measure()
    polling = sum(calls[name] for name in POLLING)
    total = sum(calls.values()) - polling
    print(f"{count} jobs ({'one SubmitJobs call' if batch else 'one SubmitJob each'}): "
          f"{total / count:.2f} statements per job ({total} in all; the benchmark's polling "
          f"another {polling}); {count / run.elapsed:.0f} jobs/s")
    for name, n in calls.most_common():
        if name in POLLING:
            continue
        print(f"  {name:34s} {n / count:6.3f} per job  {times[name] / count:6.3f} ms/job in PG")
    print(f"  {reference.describe()}")


if __name__ == "__main__":
    main()

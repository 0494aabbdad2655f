"""How long hodeictl takes to start, as a ratio to a bare `python -c pass` of the same venv.

Three figures, each the median of RUNS runs beside the same-run reference:

- `hodeictl --help`                                (goal: at most 4x)
- `hodeictl job list` on a warm local stack, with 20 jobs in it, found through
  HODEI_HOME/stack.json as a user's would be                  (goal: at most 6x)
- one Tab of completion: `hodeictl job <Tab>`                 (goal: at most 4x)

Usage: python benchmarks/bench_cli_start.py [RUNS]
(set HODEI_DATABASE_URL to use a running PostgreSQL instead of an embedded one)

The commands run as installed: PYTHONDONTWRITEBYTECODE is dropped from their environment,
so the first (unmeasured) runs leave the byte code a pip install would have compiled.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import BIN, embedded_stack, wait_finished

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc

GOALS = {"hodeictl --help": 4.0, "hodeictl job list (warm stack)": 6.0,
         "Tab: hodeictl job <Tab>": 4.0}


def _median_seconds(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()}")
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    python = str(BIN / "python")
    hodeictl = str(BIN / "hodeictl")
    with embedded_stack() as stack:
        with stack.channel() as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            ids = [stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(
                name=f"bench-{index}", command=["true"])), timeout=10).job.id
                for index in range(20)]
            wait_finished(stub, ids)  # warm and idle: nothing else competes for the CPU
        env = {key: value for key, value in os.environ.items()
               if (not key.startswith("HODEI_") or key == "HODEI_DATABASE_URL")
               and key != "PYTHONDONTWRITEBYTECODE"}
        env["HODEI_HOME"] = str(stack.home)
        env["HODEI_CONFIG"] = str(stack.home / "config.toml")
        complete = {**env, "_HODEICTL_COMPLETE": "complete_bash",
                    "COMP_WORDS": "hodeictl job ", "COMP_CWORD": "2"}
        cases = {
            "hodeictl --help": ([hodeictl, "--help"], env),
            "hodeictl job list (warm stack)": ([hodeictl, "job", "list"], env),
            "Tab: hodeictl job <Tab>": ([hodeictl], complete),
        }
        for argv, case_env in cases.values():  # warm the page cache and the stack
            _median_seconds(argv, case_env, 2)
        print(f"{'what':<34}{'median':>10}{'python -c pass':>16}{'ratio':>8}{'goal':>7}")
        for label, (argv, case_env) in cases.items():
            # The reference is measured right beside each figure, in the same conditions.
            reference = _median_seconds([python, "-c", "pass"], env, runs)
            seconds = _median_seconds(argv, case_env, runs)
            ratio = seconds / reference
            print(f"{label:<34}{seconds * 1000:>8.0f}ms{reference * 1000:>14.0f}ms"
                  f"{ratio:>7.1f}x{GOALS[label]:>6.0f}x")


if __name__ == "__main__":
    main()

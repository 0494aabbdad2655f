"""Output throughput: `seq N` through a job to the hodeictl client, on the embedded stack.

Compares `hodeictl job run -- seq N > /dev/null` with `seq N > /dev/null` in the same run.
Usage: python benchmarks/bench_output.py [LINES]
"""

from __future__ import annotations

import subprocess
import sys
import time

from stack import BIN, embedded_stack


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with embedded_stack() as stack:
        env = stack.env()
        hodeictl = [str(BIN / "hodeictl"), "job", "run", "--", "seq", str(lines)]
        timed(hodeictl, env)  # warm-up
        through = min(timed(hodeictl, env) for _ in range(3))
        local = min(timed(["seq", str(lines)]) for _ in range(3))
    print(f"seq {lines} through hodeictl: {through:.2f} s, {lines / through:,.0f} lines/s; "
          f"plain seq > /dev/null: {local:.3f} s ({lines / local:,.0f} lines/s); "
          f"ratio {through / local:.0f}x")


if __name__ == "__main__":
    main()

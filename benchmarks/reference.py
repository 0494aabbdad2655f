"""The same-run references every figure is printed beside: what this machine does right now.

The machine's speed varies by a factor of two from hour to hour, so a figure means little
alone: each benchmark measures these in the same run and prints its figure's ratio to them.

- spawn rate: `true` processes per second through asyncio, 8 at once (2 agents x 4 slots):
  the most any scheduler could run here.
- one spawn: the wall time of one `true` process, started and awaited, one at a time.
- one spawn after an idle gap (`one_spawn_ms(gap=...)`): the same, each after the machine
  sat idle that long. On this kind of machine an idle pause makes the next piece of work
  markedly slower (caches, sleeping cores): a `true` spawned every 10 ms takes about half as
  long again as one spawned back to back, and so does a statement. A figure measured with
  pauses (`bench_latency.py`) is compared with this one too.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

AT_ONCE = 8


async def _spawn_rate(count: int) -> float:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - start)


async def _one_spawn(samples: int, gap: float = 0.0) -> float:
    times = []
    for _ in range(samples):
        if gap:
            await asyncio.sleep(gap)
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


@dataclass(frozen=True)
class Reference:
    spawns_per_s: float  # `true` through asyncio, 8 at once
    spawn_ms: float  # one sequential `true`, median

    def describe(self) -> str:
        return (f"same-run reference: the machine spawns {self.spawns_per_s:.0f} processes/s "
                f"(asyncio, {AT_ONCE} at once); one sequential spawn {self.spawn_ms:.2f} ms")


def one_spawn_ms(samples: int = 100, gap: float = 0.0) -> float:
    """The median wall time of one `true` started and awaited, each `gap` seconds after the
    last one ended."""
    return asyncio.run(_one_spawn(samples, gap))


def measure(count: int = 1000, samples: int = 100) -> Reference:
    """Measure both references now (about a second)."""
    rate = asyncio.run(_spawn_rate(count))
    one = asyncio.run(_one_spawn(samples))
    return Reference(rate, one)


if __name__ == "__main__":
    print(measure().describe())

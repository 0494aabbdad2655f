"""`hodei-agent` / `python -m hodei_agent`: parse the command line, run the agent, exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from hodei_agent import exporter, jsonlog
from hodei_agent.agent import Agent
from hodei_agent.config import AgentConfig, parse_config
from hodei_agent.errors import AgentError, ConfigError

logger = logging.getLogger("hodei_agent")

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _use_pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    """Python 3.11 waits for each job's process in a thread of its own; a pidfd costs none.

    (3.12 and later use pidfds by default.)
    """
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return  # kernel without pidfd_open: keep the default watcher
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)


async def _serve(config: AgentConfig) -> int:
    agent = Agent(config)
    stop_metrics = (exporter.serve(config.metrics_listen, agent.job_pids)
                    if config.metrics_listen else None)
    loop = asyncio.get_running_loop()
    _use_pidfd_child_watcher(loop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.on_signal)
    try:
        return await agent.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if stop_metrics is not None:
            stop_metrics()


def run(argv: Sequence[str] | None = None) -> int:
    """Run the agent; returns the process exit code (0 drained, 1 failed, 2 bad usage)."""
    try:
        config = parse_config(argv)
    except ConfigError as exc:
        sys.stderr.write(f"hodei-agent: {exc}\n")
        return EXIT_USAGE
    jsonlog.setup(config.log_level, config.log_format)
    try:
        return asyncio.run(_serve(config))
    except AgentError as exc:
        logger.error("%s", exc)
    except Exception:
        logger.exception("the agent crashed")
    return EXIT_FAILURE


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()

"""Starts and stops agent processes on the server's own machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from hodei_plugins.local.agentproc import (
    RECORD_FILE,
    AgentProcess,
    has_identity,
    read_record,
    with_server,
    write_record,
)
from hodei_plugins.provider import ProviderConfig

log = logging.getLogger(__name__)


# An agent that dies sooner than this after a start, twice or more in a row (a crash loop),
# is restarted after a delay, doubled at each such death, up to the cap.
MIN_UPTIME_FOR_RESTART = 5.0
RESTART_BACKOFF = 1.0
RESTART_BACKOFF_CAP = 30.0
# How long an agent taken over from a previous server, to be restarted with this server's
# address, may take to die of SIGKILL.
_KILL_WAIT = 5.0


def _default_state_root() -> str:
    return os.path.join(tempfile.gettempdir(), f"hodei-agents-{os.getuid()}")


@dataclass(frozen=True)
class LocalProviderConfig(ProviderConfig):
    name: str = "local"
    # Interpreter that runs `-m hodei_agent`; the server's own by default.
    python: str = sys.executable
    stop_grace: float = 30.0
    # Each agent keeps its identity and its jobs' output in <state_root>/<agent name>.
    state_root: str = field(default_factory=_default_state_root)
    # An agent killed by a signal (crash, OOM killer, kill -9) is started again at once with
    # the same state dir: it is the same worker and re-attaches to the jobs still running.
    restart: bool = True
    # The agents a previous process of this server left in state_root (it was killed, or
    # stopped without stopping them) are taken over at start: kept if they dial this
    # server's address, else restarted with it on their state dirs. Only for a state_root
    # that belongs to this server alone.
    adopt: bool = False


@dataclass
class _Agent:
    argv: list[str]
    env: dict[str, str]
    state_dir: Path
    process: AgentProcess
    started_at: float = field(default_factory=time.monotonic)
    # Deaths in a row, each sooner than MIN_UPTIME_FOR_RESTART after a start.
    quick_deaths: int = 0
    restart: asyncio.Task[None] | None = None


class LocalProvider:
    """Each worker is a `python -m hodei_agent` process; its infra id is its name.

    Every agent it started or took over stays its own until it exits by itself (drained,
    refused) or is destroyed: one killed, however often, is started again on its state dir.
    """

    type_name: ClassVar[str] = "local"
    config_class: ClassVar[type[ProviderConfig]] = LocalProviderConfig

    def __init__(self, config: ProviderConfig) -> None:
        assert isinstance(config, LocalProviderConfig)
        self.config = config
        self._agents: dict[str, _Agent] = {}

    async def __aenter__(self) -> LocalProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(
            *(self.destroy_worker(infra_id) for infra_id in list(self._agents)),
            return_exceptions=True,
        )

    def _environment(self) -> dict[str, str]:
        # The agents log as the server does (HODEI_LOG_FORMAT); no other setting of ours.
        return {k: v for k, v in os.environ.items()
                if not k.startswith("HODEI_") or k == "HODEI_LOG_FORMAT"}

    async def create_worker(
        self, *, name: str, bootstrap_token: str, server_address: str,
        labels: dict[str, str], slots: int, ca_cert: str = "",
    ) -> str:
        env = self._environment()
        env["HODEI_BOOTSTRAP_TOKEN"] = bootstrap_token
        state_dir = Path(self.config.state_root) / name
        argv = [self.config.python, "-m", "hodei_agent", "--server", server_address,
                "--name", name, "--slots", str(slots), "--state-dir", str(state_dir)]
        if ca_cert:
            argv += ["--ca-cert", ca_cert]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        os.makedirs(self.config.state_root, mode=0o700, exist_ok=True)
        state_dir.mkdir(mode=0o700, exist_ok=True)
        agent = _Agent(argv, env, state_dir, await self._spawn(argv, env, state_dir))
        self._agents[name] = agent
        log.info("local provider %s started agent %s (pid %s)", self.config.name, name,
                 agent.process.pid)
        return name

    async def _spawn(self, argv: list[str], env: dict[str, str],
                     state_dir: Path) -> AgentProcess:
        process = await AgentProcess.spawn(argv, env)
        write_record(state_dir, process.record(self.config.name, argv))
        return process

    async def adopt_workers(self, *, server_address: str) -> dict[str, str]:
        """Take over the agents a previous server process left in the state root (with
        `adopt`); returns their names and infra ids.

        One that dials `server_address` is kept as it is; one that dials another address
        (the previous server listened elsewhere) is killed and started again with this
        one, on its state dir, so it re-attaches to its jobs; one that died meanwhile is
        started again if it is still a registered worker. Any other is forgotten.
        """
        if not self.config.adopt:
            return {}
        adopted = {}
        for state_dir in self._recorded_state_dirs():
            name = state_dir.name
            record = read_record(state_dir)
            if name in self._agents or record is None or record.provider != self.config.name:
                continue
            argv = with_server([self.config.python, *record.argv[1:]], server_address)
            process = AgentProcess.adopt(record)
            if process is not None and record.server == server_address:
                self._agents[name] = _Agent(argv, self._environment(), state_dir, process)
                log.info("local provider %s took over agent %s (pid %s)", self.config.name,
                         name, process.pid)
                adopted[name] = name
                continue
            if process is not None:
                log.info("local provider %s: agent %s (pid %s) dials %s; restarting it with "
                         "%s", self.config.name, name, process.pid, record.server,
                         server_address)
                process.send(signal.SIGKILL)
                if not await process.wait(_KILL_WAIT):
                    log.warning("local provider %s: agent %s (pid %s) does not die; leaving "
                                "it", self.config.name, name, process.pid)
                    continue
            if not has_identity(state_dir):
                # Never registered, drained or refused: no job of it can be left.
                shutil.rmtree(state_dir, ignore_errors=True)
                continue
            env = self._environment()
            try:
                started = await self._spawn(argv, env, state_dir)
            except OSError as exc:
                log.error("local provider %s: cannot restart agent %s: %s", self.config.name,
                          name, exc)
                continue
            self._agents[name] = _Agent(argv, env, state_dir, started)
            log.info("local provider %s took over agent %s, started again (pid %s)",
                     self.config.name, name, started.pid)
            adopted[name] = name
        return adopted

    def _recorded_state_dirs(self) -> list[Path]:
        """The state dirs in the state root that hold a record of this provider's."""
        return sorted(path.parent for path in
                      Path(self.config.state_root).glob(f"*/{RECORD_FILE}"))

    def forget_exited(self) -> list[str]:
        """Infra ids of agents that exited by themselves (drained, refused); one killed (by a
        signal, or gone with its identity still in its state dir) is restarted instead."""
        gone = []
        for name, agent in list(self._agents.items()):
            if agent.restart is not None or agent.process.running:
                continue
            if self._killed(agent):
                self._schedule_restart(name, agent)
                continue
            del self._agents[name]
            if not has_identity(agent.state_dir):
                # Drained (its identity is retired) or never registered: nothing is left.
                shutil.rmtree(agent.state_dir, ignore_errors=True)
            gone.append(name)
        return gone

    def _killed(self, agent: _Agent) -> bool:
        """Whether an agent that is gone is to be restarted."""
        if not self.config.restart:
            return False
        code = agent.process.returncode
        if code is not None:
            return code < 0
        # An adopted agent's exit status is not ours to learn: one that was not drained
        # or refused still has its identity.
        return has_identity(agent.state_dir)

    def _schedule_restart(self, name: str, agent: _Agent) -> None:
        uptime = time.monotonic() - agent.started_at
        agent.quick_deaths = agent.quick_deaths + 1 if uptime < MIN_UPTIME_FOR_RESTART else 0
        delay = 0.0
        if agent.quick_deaths > 1:
            delay = min(RESTART_BACKOFF_CAP, RESTART_BACKOFF * 2 ** (agent.quick_deaths - 2))
        agent.restart = asyncio.get_running_loop().create_task(
            self._restart(name, agent, delay), name=f"restart-agent-{name}"
        )

    async def _restart(self, name: str, agent: _Agent, delay: float) -> None:
        code = agent.process.returncode
        how = f"was killed by signal {-code}" if code is not None else "is gone"
        log.warning("local provider %s: agent %s (pid %s) %s; restarting it with its state "
                    "dir%s", self.config.name, name, agent.process.pid, how,
                    f" in {delay:g}s" if delay else "")
        try:
            await asyncio.sleep(delay)
            agent.process = await self._spawn(agent.argv, agent.env, agent.state_dir)
        except OSError as exc:
            log.error("local provider %s: cannot restart agent %s: %s", self.config.name,
                      name, exc)
        finally:
            agent.started_at = time.monotonic()
            agent.restart = None

    async def destroy_worker(self, infra_id: str) -> None:
        """SIGTERM (the agent drains), then SIGKILL after the grace period."""
        agent = self._agents.pop(infra_id, None)
        if agent is None:
            return
        if agent.restart is not None:
            agent.restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent.restart
        process = agent.process
        if process.running:
            process.send(signal.SIGTERM)
            if not await process.wait(self.config.stop_grace):
                log.warning("agent pid %s did not stop in %.0fs; killing it", process.pid,
                            self.config.stop_grace)
                process.send(signal.SIGKILL)
                await process.wait(_KILL_WAIT)
        if not has_identity(agent.state_dir):
            # Drained. Otherwise its state dir stays: its lease watchdog stops what it left.
            shutil.rmtree(agent.state_dir, ignore_errors=True)

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

from hodei_plugins.provider import ProviderConfig

log = logging.getLogger(__name__)


# A restarted agent that dies again this soon is not restarted once more (a crash loop).
MIN_UPTIME_FOR_RESTART = 5.0


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


@dataclass
class _Agent:
    argv: list[str]
    env: dict[str, str]
    state_dir: Path
    proc: asyncio.subprocess.Process
    started_at: float = field(default_factory=time.monotonic)
    restarting: bool = False


class LocalProvider:
    """Each worker is a `python -m hodei_agent` child process; its infra id is its name."""

    type_name: ClassVar[str] = "local"
    config_class: ClassVar[type[ProviderConfig]] = LocalProviderConfig

    def __init__(self, config: ProviderConfig) -> None:
        assert isinstance(config, LocalProviderConfig)
        self.config = config
        self._agents: dict[str, _Agent] = {}
        self._restarts: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LocalProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(
            *(self.destroy_worker(infra_id) for infra_id in list(self._agents)),
            return_exceptions=True,
        )

    async def create_worker(
        self, *, name: str, bootstrap_token: str, server_address: str,
        labels: dict[str, str], slots: int, ca_cert: str = "",
    ) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
        env["HODEI_BOOTSTRAP_TOKEN"] = bootstrap_token
        state_dir = Path(self.config.state_root) / name
        argv = [self.config.python, "-m", "hodei_agent", "--server", server_address,
                "--name", name, "--slots", str(slots), "--state-dir", str(state_dir)]
        if ca_cert:
            argv += ["--ca-cert", ca_cert]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        os.makedirs(self.config.state_root, mode=0o700, exist_ok=True)
        proc = await self._spawn(argv, env)
        self._agents[name] = _Agent(argv, env, state_dir, proc)
        log.info("local provider %s started agent %s (pid %s)", self.config.name, name, proc.pid)
        return name

    @staticmethod
    async def _spawn(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )

    def forget_exited(self) -> list[str]:
        """Infra ids of agents that exited by themselves (drained, refused) or crashed in a
        loop; one killed by a signal is restarted in place instead (see `restart`)."""
        gone = []
        for name, agent in list(self._agents.items()):
            code = agent.proc.returncode
            if code is None or agent.restarting:
                continue
            uptime = time.monotonic() - agent.started_at
            if self.config.restart and code < 0 and uptime >= MIN_UPTIME_FOR_RESTART:
                agent.restarting = True
                task = asyncio.get_running_loop().create_task(
                    self._restart(name, agent, -code), name=f"restart-agent-{name}"
                )
                self._restarts.add(task)
                task.add_done_callback(self._restarts.discard)
                continue
            del self._agents[name]
            if code == 0:  # drained: no job left, and its identity is retired
                shutil.rmtree(agent.state_dir, ignore_errors=True)
            gone.append(name)
        return gone

    async def _restart(self, name: str, agent: _Agent, signum: int) -> None:
        log.warning("local provider %s: agent %s (pid %s) was killed by signal %d; restarting "
                    "it with its state dir", self.config.name, name, agent.proc.pid, signum)
        try:
            agent.proc = await self._spawn(agent.argv, agent.env)
        except OSError as exc:
            log.error("local provider %s: cannot restart agent %s: %s", self.config.name,
                      name, exc)
            agent.started_at = 0.0  # reported exited on the next look
        else:
            agent.started_at = time.monotonic()
        finally:
            agent.restarting = False

    async def destroy_worker(self, infra_id: str) -> None:
        """SIGTERM (the agent drains), then SIGKILL after the grace period."""
        agent = self._agents.pop(infra_id, None)
        if agent is None:
            return
        proc = agent.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.config.stop_grace)
            except TimeoutError:
                log.warning("agent pid %s did not stop in %.0fs; killing it", proc.pid,
                            self.config.stop_grace)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if proc.returncode == 0:
            # Drained. Otherwise its state dir stays: its lease watchdog stops what it left.
            shutil.rmtree(agent.state_dir, ignore_errors=True)

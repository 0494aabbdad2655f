"""Starts and stops agent processes on the server's own machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

from hodei_plugins.provider import ProviderConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalProviderConfig(ProviderConfig):
    name: str = "local"
    # Interpreter that runs `-m hodei_agent`; the server's own by default.
    python: str = sys.executable
    stop_grace: float = 30.0


class LocalProvider:
    """Each worker is a `python -m hodei_agent` child process; its id is the pid."""

    type_name: ClassVar[str] = "local"
    config_class: ClassVar[type[ProviderConfig]] = LocalProviderConfig

    def __init__(self, config: ProviderConfig) -> None:
        assert isinstance(config, LocalProviderConfig)
        self.config = config
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    async def __aenter__(self) -> LocalProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(
            *(self.destroy_worker(infra_id) for infra_id in list(self._procs)),
            return_exceptions=True,
        )

    async def create_worker(
        self, *, name: str, bootstrap_token: str, server_address: str,
        labels: dict[str, str], slots: int, ca_cert: str = "",
    ) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
        env["HODEI_BOOTSTRAP_TOKEN"] = bootstrap_token
        argv = [self.config.python, "-m", "hodei_agent", "--server", server_address,
                "--name", name, "--slots", str(slots)]
        if ca_cert:
            argv += ["--ca-cert", ca_cert]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )
        infra_id = str(proc.pid)
        self._procs[infra_id] = proc
        log.info("local provider %s started agent %s (pid %s)", self.config.name, name, infra_id)
        return infra_id

    def forget_exited(self) -> list[str]:
        """Infra ids of agents that exited by themselves (drained, crashed)."""
        gone = [i for i, p in self._procs.items() if p.returncode is not None]
        for infra_id in gone:
            del self._procs[infra_id]
        return gone

    async def destroy_worker(self, infra_id: str) -> None:
        """SIGTERM (the agent drains), then SIGKILL after the grace period."""
        proc = self._procs.pop(infra_id, None)
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=self.config.stop_grace)
        except TimeoutError:
            log.warning("agent pid %s did not stop in %.0fs; killing it", infra_id,
                        self.config.stop_grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

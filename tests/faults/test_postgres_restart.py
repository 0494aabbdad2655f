"""Restart PostgreSQL during a claim storm: each job claimed once, none lost."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import FINAL, FaultServer, submit, wait_for

pytestmark = pytest.mark.e2e

JOBS = 2000
RECOVERY_LIMIT = 20.0  # seconds after the restart for jobs to succeed again
STALL_LIMIT = 15.0  # seconds without any job finishing that count as stuck


class PrivatePostgres:
    """A pgserver instance this test alone uses, so it can restart it."""

    def __init__(self, handle: Any, data: Path) -> None:
        self.handle = handle
        self.data = data

    @property
    def url(self) -> str:
        return str(self.handle.get_uri())

    def stop(self) -> None:
        """pgserver's own clean-up misses a postmaster that `restart` replaced."""
        from pgserver._commands import pg_ctl

        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.data,
                       user=self.handle.system_user, timeout=60)

    def restart(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "-l", str(self.handle.log), "restart"],
               pgdata=self.data, user=self.handle.system_user, timeout=60)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="hodei-fault-pg-"))
    handle = pgserver.get_server(data, cleanup_mode="stop")
    instance = PrivatePostgres(handle, data)
    try:
        yield instance
    finally:
        handle.cleanup()
        instance.stop()
        shutil.rmtree(data, ignore_errors=True)


def counts(url: str) -> dict[str, int]:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    except psycopg.OperationalError:
        return {}


def test_postgres_restart_during_claim_storm(
    tmp_path: Path, private_postgres: PrivatePostgres, servers: list[FaultServer],
    record_figure: Recorder,
) -> None:
    url = private_postgres.url
    server = FaultServer(tmp_path, url, workers=4, slots=4)
    servers.append(server)
    server.start()
    with server.channel() as channel, ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: submit(channel, command=["true"]), range(JOBS)))
    wait_for(lambda: counts(url).get("SUCCEEDED", 0) >= JOBS // 4, 120,
             "a quarter of the jobs to finish", interval=0.05)
    before = counts(url).get("SUCCEEDED", 0)
    restart_began = time.monotonic()
    private_postgres.restart()
    restarted = time.monotonic()

    def progressed() -> bool:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise AssertionError(f"the server exited ({server.proc.returncode}) after the "
                                 f"PostgreSQL restart:\n{server.log_text()[-6000:]}")
        return counts(url).get("SUCCEEDED", 0) > before

    recovery = wait_for(progressed, RECOVERY_LIMIT, "jobs to succeed again after the restart",
                        interval=0.05) + (restarted - restart_began)

    last = {"succeeded": -1, "at": time.monotonic()}

    def settled() -> bool:
        progressed()
        state = counts(url)
        succeeded = state.get("SUCCEEDED", 0)
        if succeeded != last["succeeded"]:
            last.update(succeeded=succeeded, at=time.monotonic())
        elif time.monotonic() - last["at"] > STALL_LIMIT:
            raise AssertionError(f"no job finished for {STALL_LIMIT}s after the restart: "
                                 f"{state}\n{server.log_text()[-6000:]}")
        return sum(state.values()) == JOBS and set(state) <= FINAL

    wait_for(settled, 120, "every job to finish", interval=0.2)
    with psycopg.connect(url) as conn:
        per_job = dict(conn.execute(
            "SELECT j.id::text, count(a.attempt) FROM jobs j"
            " LEFT JOIN job_attempts a ON a.job_id = j.id GROUP BY j.id").fetchall())
        states = dict(conn.execute("SELECT id::text, state FROM jobs").fetchall())
    duplicate_claims = sum(n - 1 for n in per_job.values() if n > 1)
    lost = sum(1 for job_id in ids if states.get(job_id) != "SUCCEEDED")
    record_figure("jobs succeeded before the restart", before)
    record_figure("duplicate claims", duplicate_claims)
    record_figure("lost jobs", lost)
    record_figure("recovery time (s)", round(recovery, 2))
    assert set(per_job) == set(ids)
    assert duplicate_claims == 0
    assert lost == 0

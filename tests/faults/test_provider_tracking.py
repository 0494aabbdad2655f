"""The `local` provider keeps every agent it started, however old and however often killed.

Its agents are older than the connect deadline (shortened through `connect_timeout`, and
waited out before each fault), so a provider that took a missing stream for "never
connected" would stop them: killed three times, an agent is restarted three times and its
job is re-attached each time; a PostgreSQL restart that cuts every stream leaves it alone; in
a storm of jobs with such faults, no job runs twice.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FINAL,
    FaultServer,
    agents_of,
    get_job,
    hodeictl_logs,
    processes_with_arg,
    state_of,
    stored_output,
    submit,
    wait_for,
)
from tests.faults.test_agent_reattach import job_command, numbered_lines, state_name
from tests.faults.test_postgres_restart import PrivatePostgres, private_postgres

pytestmark = pytest.mark.e2e

__all__ = ["private_postgres"]  # the fixture, used by name

CONNECT_TIMEOUT = 2.0
KILLS = 3
# How long PostgreSQL is down in the restart.
DOWN_FOR = 3.0


def agent_age(pid: int) -> float:
    """Seconds since the process `pid` started."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def stored_lines(database_url: str, job_id: str) -> int:
    return stored_output(database_url, job_id)[0].count(b"\n")


def disconnected(server: FaultServer, name: str) -> bool:
    """Whether the agent `name` has no stream to the server (per the server's log)."""
    log = server.log_text()
    return log.count(f"({name}) disconnected") == log.count(f"({name}) connected with")


def stop_postgres(postgres: PrivatePostgres) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=postgres.data,
           user=postgres.handle.system_user, timeout=60)


def start_postgres(postgres: PrivatePostgres) -> None:
    """Start it again as pgserver did: no TCP, its socket where it was."""
    from pgserver._commands import pg_ctl

    socket_dir = postgres.handle.get_postmaster_info().socket_dir
    pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(postgres.handle.log),
            "start"], pgdata=postgres.data, user=postgres.handle.system_user, timeout=60)


def long_lived_server(tmp_path: Path, database_url: str, servers: list[FaultServer],
                      ttl: float = 10.0) -> FaultServer:
    """A server with one local agent whose connect deadline is short."""
    server = FaultServer(tmp_path, database_url, workers=1, heartbeat_ttl=ttl,
                         provider_config=f"connect_timeout = {CONNECT_TIMEOUT}")
    servers.append(server)
    return server.start()


def wait_older_than_the_deadline(pid: int) -> None:
    """Until the agent `pid` is older than the connect deadline, with a reconcile between."""
    time.sleep(max(0.0, CONNECT_TIMEOUT + 1.5 - agent_age(pid)))


def test_an_agent_older_than_the_deadline_killed_three_times_keeps_its_job(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    server = long_lived_server(tmp_path, database_url, servers)
    starts, marker = tmp_path / "starts", secrets.token_hex(8)
    lines = 500
    [agent] = server.agent_pids()
    restarts: list[float] = []
    with server.channel() as channel:
        job_id = submit(channel, command=job_command(numbered_lines(starts, lines, 0.04),
                                                     marker))
        wait_for(lambda: stored_lines(database_url, job_id) >= 20, 30, "the first lines")
        worker = get_job(channel, job_id).worker_id
        for _ in range(KILLS):
            wait_older_than_the_deadline(agent)
            assert agent_age(agent) > CONNECT_TIMEOUT
            os.kill(agent, signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda a=agent: agents_of(server.pid) not in ([], [a]), 30,
                     "the agent's restart")
            [agent] = agents_of(server.pid)
            before = stored_lines(database_url, job_id)
            wait_for(lambda b=before: stored_lines(database_url, job_id) > b, 30,
                     "output to flow again")
            restarts.append(time.monotonic() - killed)
            assert processes_with_arg(marker), "the job should outlive its agent"
        wait_for(lambda: state_of(channel, job_id) in FINAL, 90, "the job to finish")
        job = get_job(channel, job_id)
        workers = [w for w in server.list_workers() if w.state != 0]
    logs = hodeictl_logs(server, job_id)
    expected = b"".join(b"line-%d\n" % i for i in range(1, lines + 1))
    record_figure("kills of one agent", KILLS)
    record_figure("attempts", len(job.attempts))
    record_figure("kill to output flowing again, worst (s)", round(max(restarts), 2))
    detail = server.log_text()[-6000:]
    assert state_name(job) == "SUCCEEDED", detail
    assert starts.read_text().split() == ["1"]
    assert len(job.attempts) == 1
    assert job.worker_id == worker
    assert logs.stdout == expected
    # One agent all along: no replacement was started beside it.
    assert len(agents_of(server.pid)) == 1, detail
    assert len({w.name for w in workers}) == 1, [w.name for w in workers]


def restart_postgres_while_away(postgres: PrivatePostgres, server: FaultServer, name: str,
                                agent: int) -> tuple[bool, float]:
    """Stop PostgreSQL for DOWN_FOR seconds: the agent's stream is closed (its output can't
    be stored). The agent is held back (SIGSTOP) until the server has reconciled three
    times with PostgreSQL back. Returns whether it was away all that time (a Connect it had
    in flight when stopped may still have gone through once PostgreSQL was back), and how
    long PostgreSQL was down (on a loaded machine its stop and start take longer)."""
    began = time.monotonic()
    stop_postgres(postgres)
    try:
        wait_for(lambda: disconnected(server, name), 30, "the agent's stream to close")
        os.kill(agent, signal.SIGSTOP)
        try:
            time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - began)))
        finally:
            start_postgres(postgres)
            down = time.monotonic() - began
        time.sleep(3 * server.reconcile_interval)
        return disconnected(server, name), down
    finally:
        os.kill(agent, signal.SIGCONT)


def test_postgres_restart_under_an_agent_older_than_the_deadline_keeps_its_job(
    tmp_path: Path, private_postgres: PrivatePostgres, servers: list[FaultServer],
    record_figure: Recorder,
) -> None:
    url = private_postgres.url
    # Heartbeats are acknowledged only once stored: PostgreSQL down longer than the lease
    # would rightly make the agent stop its job. A lease well beyond the outage, even on a
    # slow machine, leaves the connect deadline the only thing this test exercises.
    server = long_lived_server(tmp_path, url, servers, ttl=30.0)
    starts, copy, stop = tmp_path / "starts", tmp_path / "copy", tmp_path / "stop"
    marker = secrets.token_hex(8)
    # Prints numbered lines (and keeps a copy of them) until told to stop.
    script = (f'echo "$HODEI_JOB_ATTEMPT" >> {starts}; i=0; while [ ! -e {stop} ]; do '
              f"i=$((i+1)); echo line-$i; echo line-$i >> {copy}; sleep 0.03; done")
    [agent] = server.agent_pids()
    tries, downtimes = 0, []
    with server.channel() as channel:
        job_id = submit(channel, command=job_command(script, marker))
        wait_for(lambda: stored_lines(url, job_id) >= 20, 30, "the first lines")
        [name] = [w.name for w in server.list_workers()
                  if w.id == get_job(channel, job_id).worker_id]
        exercised = False
        while not exercised and tries < 4:
            tries += 1
            wait_older_than_the_deadline(agent)
            assert agent_age(agent) > CONNECT_TIMEOUT
            exercised, down = restart_postgres_while_away(private_postgres, server, name,
                                                          agent)
            downtimes.append(down)
            wait_for(lambda: not disconnected(server, name), 30, "the agent to reconnect")
        stop.touch()
        wait_for(lambda: state_of(channel, job_id) in FINAL, 90, "the job to finish")
        job = get_job(channel, job_id)
    logs = hodeictl_logs(server, job_id)
    record_figure("PostgreSQL down, longest (s)", round(max(downtimes), 2))
    record_figure("restarts until the agent was away while the server looked", tries)
    record_figure("attempts", len(job.attempts))
    detail = server.log_text()[-6000:]
    assert exercised, "the agent was never away while the server reconciled"
    assert state_name(job) == "SUCCEEDED", detail
    assert starts.read_text().split() == ["1"]
    assert len(job.attempts) == 1
    assert logs.stdout == copy.read_bytes()
    assert agents_of(server.pid) == [agent], "the agent should be the same process"


STORM_JOBS = 500


def agent_name(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return argv[argv.index(b"--name") + 1].decode()


def test_storm_with_agent_kills_and_a_postgres_restart_runs_no_job_twice(
    tmp_path: Path, private_postgres: PrivatePostgres, servers: list[FaultServer],
    record_figure: Recorder,
) -> None:
    url = private_postgres.url
    server = FaultServer(tmp_path, url, workers=2, slots=4, heartbeat_ttl=10.0,
                         provider_config=f"connect_timeout = {CONNECT_TIMEOUT}")
    servers.append(server)
    server.start()
    names = sorted(agent_name(pid) for pid in agents_of(server.pid))
    starts = tmp_path / "starts"
    script = f'echo "$HODEI_JOB_ID $HODEI_JOB_ATTEMPT" >> {starts}; sleep 0.5'
    with server.channel() as channel:
        ids = [submit(channel, script=script, max_attempts=3) for _ in range(STORM_JOBS)]

    def done() -> int:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                row = conn.execute("SELECT count(*) FROM jobs WHERE state = ANY(%s)",
                                   (list(FINAL),)).fetchone()
        except psycopg.OperationalError:
            return -1
        return int(row[0]) if row else 0

    # The same agent killed three times, the other once, PostgreSQL restarted once: each
    # fault once every agent is older than the connect deadline, all while jobs run.
    faults = [names[0], names[0], names[1], "postgres", names[0]]
    for number, fault in enumerate(faults, 1):
        wait_for(lambda n=number: done() >= n * STORM_JOBS // (2 * len(faults)), 120,
                 f"progress before fault {number}", interval=0.1)
        agents = agents_of(server.pid)
        for pid in agents:
            wait_older_than_the_deadline(pid)
            assert agent_age(pid) > CONNECT_TIMEOUT
        assert done() < STORM_JOBS
        if fault == "postgres":
            stop_postgres(private_postgres)
            time.sleep(DOWN_FOR)
            start_postgres(private_postgres)
        else:
            # (If the agent is no longer there, the one that is.)
            victim = next((p for p in agents if agent_name(p) == fault), agents[0])
            os.kill(victim, signal.SIGKILL)
    wait_for(lambda: done() == STORM_JOBS, 180, "every job to finish", interval=0.2)
    with psycopg.connect(url) as conn:
        states = dict(conn.execute("SELECT id::text, state FROM jobs").fetchall())
        attempts = dict(conn.execute(
            "SELECT job_id::text, count(*) FROM job_attempts GROUP BY job_id").fetchall())
    runs: dict[str, list[str]] = {}
    for line in starts.read_text().splitlines():
        job_id, attempt = line.split()
        runs.setdefault(job_id, []).append(attempt)
    twice = {j: r for j, r in runs.items() if len(r) > 1}
    record_figure("jobs", STORM_JOBS)
    record_figure("faults (3 kills of one agent, 1 of the other, 1 PostgreSQL restart)",
                  len(faults))
    record_figure("jobs run twice", len(twice))
    # An attempt the agent never got to start (its RunJob lost with its stream) is handed
    # back at no cost: another attempt, the same single run.
    record_figure("jobs with an attempt handed back unstarted",
                  sum(1 for n in attempts.values() if n > 1))
    record_figure("jobs not succeeded", sum(1 for s in states.values() if s != "SUCCEEDED"))
    detail = f"{twice}\n{server.log_text()[-6000:]}"
    assert set(runs) == set(ids), detail
    assert twice == {}, detail
    assert all(s == "SUCCEEDED" for s in states.values()), detail
    # The same two agents all along, restarted in place: none replaced, none added.
    assert sorted(agent_name(pid) for pid in agents_of(server.pid)) == names

"""Jobs whose processes daemonise: nothing they start outlives them, nothing stays a zombie.

A job's process that calls `setsid` leaves the job's process group, and one whose parent
exits is re-parented. Each job runs in a cgroup of its own (where cgroup v2 is writable),
which cancel, timeout, the end of the job's main process, a restarted agent and the lease
watchdog kill as a whole; the keeper, the subreaper of the jobs' processes, reaps what
they leave. Without cgroups, what left the process group survives (counted here) and is
still reaped once it ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from hodei_agent.cgroups import KEEPER_PREFIX, locate
from hodei_agent.procgroup import start_ticks
from tests.cgroupsupport import skip_without_job_cgroups
from tests.e2e.docker_engine import (  # noqa: F401  (docker_host: a fixture)
    IMAGE,
    DockerServer,
    docker_host,
)
from tests.faults.conftest import Recorder
from tests.faults.harness import (
    FINAL,
    FaultServer,
    alive,
    cancel,
    get_job,
    keepers_of,
    kill_groups,
    processes_by_arg,
    session_of,
    start_agent,
    state_of,
    submit,
    wait_for,
    zombies_of,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid (util-linux)"),
]

# A classic daemon: fork, the parent exits; setsid; fork again, that parent exits too.
DOUBLE_FORK = (
    "import os, sys\n"
    "if os.fork(): os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork(): os._exit(0)\n"
    "os.execvp('sleep', ['sleep', sys.argv[1]])\n"
)
# setsid(1) where util-linux is missing (the agent's image).
SETSID = "import os, sys\nos.setsid()\nos.execvp(sys.argv[1], sys.argv[1:])\n"


def daemons(python: str, setsid: str = "setsid") -> dict[str, str]:
    """Ways a job starts a process that leaves its process group and goes on running. `{m}`,
    the marker, is an argument of every process each one makes, to find them in /proc."""
    return {
        "setsid": f"{setsid} sleep {{m}} &",
        "double fork": f"{python} -c {shlex.quote(DOUBLE_FORK)} {{m}}",
        "nohup + setsid": f"nohup {setsid} sleep {{m}} >/dev/null 2>&1 &",
        "ignores SIGTERM": f"{setsid} sh -c 'trap \"\" TERM; exec sleep \"$0\"' {{m}} &",
        "forks repeatedly": f"{setsid} sh -c 'while :; do sleep \"$0\" & sleep 0.005; done' "
                            "{m} &",
    }


DAEMONS = daemons(shlex.quote(sys.executable))
TIMEOUT = 3.0
EXPECTED = {"cancel": "CANCELLED", "timeout": "TIMED_OUT", "exit 0": "SUCCEEDED",
            "exit 3": "FAILED"}


def marker() -> str:
    """A `sleep` argument no other process on the machine has: 300.<random digits>."""
    return f"300.{secrets.randbelow(10**9):09d}"


@dataclass
class Job:
    kind: str
    ending: str
    daemon: str = field(default_factory=marker)  # in the daemon's arguments
    leader: str = field(default_factory=marker)  # in the job's main process's, while it waits
    id: str = ""


def submit_job(channel: grpc.Channel, job: Job, then: str, timeout: float = 0.0,
               ways: dict[str, str] = DAEMONS) -> Job:
    """Submit `job`: it starts its daemon, then runs `then`."""
    script = f"{ways[job.kind].format(m=job.daemon)}\n{then}"
    job.id = submit(channel, command=["sh", "-c", script], timeout=timeout)
    return job


def exits_on(go: Path, code: int) -> str:
    """The main process waits for `go` (the test creates it once it saw every daemon
    running), then exits with `code` while its daemon runs on."""
    return f"while [ ! -e {go} ]; do sleep 0.05; done; exit {code}"


def markers(jobs: Iterable[Job]) -> list[str]:
    return [m for job in jobs for m in (job.daemon, job.leader)]


class Sightings:
    """Watches /proc in a thread for the markers: which had a process alive at some time."""

    def __init__(self, watched: list[str]) -> None:
        self.watched = watched
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(found for found, pids in processes_by_arg(self.watched).items()
                             if pids)
            time.sleep(0.02)

    @contextlib.contextmanager
    def running(self) -> Iterator[Sightings]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def time_to_dead(jobs: list[Job], since: float, timeout: float = 30.0) -> dict[str, float]:
    """Seconds from `since` until no process of each job's daemon was left, by kind."""
    dead: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(dead) < len(jobs) and time.monotonic() < deadline:
        found = processes_by_arg([job.daemon for job in jobs if job.kind not in dead])
        now = time.monotonic()
        for job in jobs:
            if job.kind not in dead and not found.get(job.daemon):
                dead[job.kind] = round(now - since, 2)
        time.sleep(0.01)
    return dead


def survivors(jobs: Iterable[Job]) -> dict[str, int]:
    """How many processes of each job's daemon (and its main process) are still alive."""
    return {found: len(pids) for found, pids in processes_by_arg(markers(jobs)).items() if pids}


def job_cgroup_trees(keepers: Iterable[int]) -> list[Path]:
    """Where these keepers put their jobs' cgroups."""
    trees = []
    for pid in keepers:
        home = locate(Path(f"/proc/{pid}/mountinfo").read_text(),
                      Path(f"/proc/{pid}/cgroup").read_text())
        trees.append(Path(home) / f"{KEEPER_PREFIX}{pid}-{start_ticks(pid)}")
    return trees


def cgroups_left(trees: Iterable[Path]) -> int:
    """Job cgroups still in these trees (a keeper that exited removed its tree)."""
    left = 0
    for tree in trees:
        with contextlib.suppress(FileNotFoundError):
            left += sum(1 for entry in tree.iterdir() if entry.is_dir())
    return left


def kill_everything(jobs: Iterable[Job]) -> None:
    """Whatever a failed test left: SIGKILL every process with one of the markers."""
    for _ in range(3):
        for pids in processes_by_arg(markers(jobs)).values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    if agent.poll() is None:
        kill_groups([agent.pid])
        agent.wait()


def kill9(agent: subprocess.Popen[bytes]) -> None:
    """SIGKILL the agent process only: its jobs and keeper go on."""
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()


def server_for(tmp_path: Path, database_url: str, servers: list[FaultServer],
               ttl: float = 20.0) -> FaultServer:
    """A started server with no agents of its own: the test starts them."""
    server = FaultServer(tmp_path, database_url, workers=0, heartbeat_ttl=ttl)
    servers.append(server)
    server.start()
    return server


def daemonised(job: Job) -> bool:
    """A process with the job's daemon marker has left the job's session: it leads a session
    of its own, or its session's leader is gone (a double fork). Until then (a Python
    interpreter starting, say) it is still the job's, and dies with the job's group."""
    for pid in processes_by_arg([job.daemon])[job.daemon]:
        session = session_of(pid)
        if session == pid or (session > 0 and not alive(session)):
            return True
    return False


def wait_running(channel: grpc.Channel, jobs: Iterable[Job]) -> None:
    for job in jobs:
        wait_for(lambda j=job: state_of(channel, j.id) == "RUNNING", 30, f"{job.kind} to run")
    wait_for(lambda: all(daemonised(job) for job in jobs), 30, "the daemons to start")


def wait_final(channel: grpc.Channel, jobs: Iterable[Job]) -> dict[tuple[str, str], str]:
    states = {}
    for job in jobs:
        wait_for(lambda j=job: state_of(channel, j.id) in FINAL, 60, f"{job.kind} to end")
        states[job.kind, job.ending] = state_of(channel, job.id)
    return states


def test_daemons_die_with_their_job_however_it_ends(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    """5 ways to daemonise, times cancel, timeout, and the main process exiting (0 or 3) while
    its daemon runs on: 20 jobs at once on one agent."""
    skip_without_job_cgroups()
    server = server_for(tmp_path, database_url, servers)
    agent = start_agent(database_url, server.address, tmp_path, "contained", slots=20,
                        state_dir=tmp_path / "state")
    jobs = [Job(kind, ending) for ending in EXPECTED for kind in DAEMONS]
    sightings = Sightings(markers(jobs))
    go = tmp_path / "go"
    try:
        server.wait_workers(1, 30)
        with server.channel() as channel, sightings.running():
            for job in jobs:
                exiting = job.ending.startswith("exit")
                submit_job(channel, job,
                           then=exits_on(go, int(job.ending[-1])) if exiting else
                           f"exec sleep {job.leader}",
                           timeout=TIMEOUT if job.ending == "timeout" else 0.0)
            cancelled = [job for job in jobs if job.ending == "cancel"]
            wait_running(channel, [job for job in jobs if job.ending != "timeout"])
            keepers = keepers_of(agent.pid)
            trees = job_cgroup_trees(keepers)
            go.touch()
            asked = time.monotonic()
            for job in cancelled:
                cancel(channel, job.id)
            after_cancel = time_to_dead(cancelled, asked)
            states = wait_final(channel, jobs)
            ended_at = time.monotonic()
        time.sleep(0.5)
        left = survivors(jobs)
        zombies = zombies_of([agent.pid, *keepers])
        cgroups = cgroups_left(trees)
        contained = "each job runs in a cgroup of its own" in (tmp_path /
                                                               "contained.log").read_text()
    finally:
        stop_agent(agent)
        kill_everything(jobs)
    never_seen = [(job.kind, job.ending) for job in jobs if job.daemon not in sightings.seen]
    record_figure("jobs", len(jobs))
    record_figure("surviving processes", sum(left.values()))
    record_figure("zombies under the agent and its keeper", len(zombies))
    record_figure("job cgroups left", cgroups)
    for kind, seconds in after_cancel.items():
        record_figure(f"cancel to dead, daemon by {kind} (s)", seconds)
    detail = (tmp_path / "contained.log").read_text()[-3000:]
    assert contained, detail
    assert never_seen == [], "every daemon must have run"
    assert states == {(job.kind, job.ending): EXPECTED[job.ending] for job in jobs}, detail
    assert left == {}, detail
    assert zombies == []
    assert cgroups == 0
    assert len(after_cancel) == len(DAEMONS)
    assert after_cancel["ignores SIGTERM"] < 5.0 + 2.0  # the kill grace (5 s), then SIGKILL
    assert ended_at - asked < 30


def test_daemons_die_when_cancelled_after_the_agent_was_killed_twice(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    """kill -9 the agent, let half the jobs' main processes exit while it is down, restart
    it on its state dir, kill -9 and restart it again, then cancel the rest."""
    skip_without_job_cgroups()
    server = server_for(tmp_path, database_url, servers)
    state_dir, log = tmp_path / "state", tmp_path / "reattached.log"

    def agent_up() -> subprocess.Popen[bytes]:
        return start_agent(database_url, server.address, tmp_path, "reattached", slots=20,
                           state_dir=state_dir)

    go = tmp_path / "go"
    running = [Job(kind, "cancel") for kind in DAEMONS]
    ending = [Job(kind, "exit 5") for kind in DAEMONS]
    jobs = running + ending
    agent = agent_up()
    keepers: list[int] = []
    agents: list[int] = []
    try:
        server.wait_workers(1, 30)
        with server.channel() as channel:
            for job in running:
                submit_job(channel, job, then=f"exec sleep {job.leader}")
            for job in ending:
                submit_job(channel, job,
                           then=f"while [ ! -e {go} ]; do sleep 0.05; done; exit 5")
            wait_running(channel, jobs)
            keepers += keepers_of(agent.pid)
            trees = job_cgroup_trees(keepers)
            kill9(agent)
            go.touch()  # the main processes of `ending` exit while no agent is there
            time.sleep(1.0)
            for kill in (1, 2):
                adopted_before = log.read_text().count("adopted")
                agent = agent_up()
                wait_for(lambda b=adopted_before: log.read_text().count("adopted") > b, 30,
                         "the restarted agent to re-attach")
                agents.append(agent.pid)
                wait_for(lambda a=agent.pid: keepers_of(a), 30, "the new keeper")
                keepers += keepers_of(agent.pid)
                if kill == 1:
                    ended = wait_final(channel, ending)
                    time.sleep(0.5)
                    kill9(agent)
            for job in running:
                cancel(channel, job.id)
            cancelled = wait_final(channel, running)
            exit_codes = {get_job(channel, job.id).exit_code for job in ending}
        time.sleep(0.5)
        left = survivors(jobs)
        zombies = zombies_of([*agents, *keepers])
        cgroups = cgroups_left(trees)
    finally:
        stop_agent(agent)
        kill_everything(jobs)
    record_figure("agent kills", 2)
    record_figure("surviving processes", sum(left.values()))
    record_figure("zombies under the agents and keepers", len(zombies))
    record_figure("job cgroups left", cgroups)
    detail = log.read_text()[-4000:]
    assert set(ended.values()) == {"FAILED"} and exit_codes == {5}, detail
    assert set(cancelled.values()) == {"CANCELLED"}, detail
    assert left == {}, detail
    assert zombies == []
    assert cgroups == 0


def test_the_lease_watchdog_kills_a_dead_agents_jobs_whole(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    """kill -9 the agent and leave it dead: when its lease runs out, its watchdog kills
    every process of its jobs, the daemons with them."""
    skip_without_job_cgroups()
    ttl = 3.0
    server = server_for(tmp_path, database_url, servers, ttl=ttl)
    agent = start_agent(database_url, server.address, tmp_path, "fenced", slots=10,
                        state_dir=tmp_path / "state")
    jobs = [Job(kind, "lease") for kind in DAEMONS]
    try:
        server.wait_workers(1, 30)
        time.sleep(ttl)  # the new leader's start-up grace (one TTL) must be over
        with server.channel() as channel:
            for job in jobs:
                submit_job(channel, job, then=f"exec sleep {job.leader}")
            wait_running(channel, jobs)
            keepers = keepers_of(agent.pid)
            trees = job_cgroup_trees(keepers)
            kill9(agent)
            stopped_after = wait_for(lambda: not survivors(jobs), 4 * ttl,
                                     "the watchdog to stop every process of the jobs")
            states = wait_final(channel, jobs)
        time.sleep(0.5)
        zombies = zombies_of(keepers)
        cgroups = cgroups_left(trees)
    finally:
        stop_agent(agent)
        kill_everything(jobs)
    record_figure("every process stopped after the kill (s)", round(stopped_after, 2))
    record_figure("zombies under the keeper", len(zombies))
    record_figure("job cgroups left", cgroups)
    assert set(states.values()) == {"FAILED"}, server.log_text()[-3000:]  # lost, no retry
    assert stopped_after < ttl + 2.0
    assert zombies == []
    assert cgroups == 0


def test_without_cgroups_orphans_are_reaped_and_what_left_the_group_survives(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    """`--cgroups off` (as where cgroup v2 can't be written): the jobs end as they should,
    what stayed in the process group dies, what left it lives on — and once it ends, the
    keeper reaps it: no zombie."""
    server = server_for(tmp_path, database_url, servers)
    agent = start_agent(database_url, server.address, tmp_path, "uncontained", slots=10,
                        state_dir=tmp_path / "state", args=["--cgroups", "off"])
    jobs = [Job(kind, ending) for ending in ("cancel", "exit 0") for kind in DAEMONS]
    go = tmp_path / "go"
    try:
        server.wait_workers(1, 30)
        with server.channel() as channel:
            for job in jobs:
                submit_job(channel, job, then=f"exec sleep {job.leader}"
                           if job.ending == "cancel" else exits_on(go, 0))
            wait_running(channel, jobs)
            keepers = keepers_of(agent.pid)
            go.touch()
            for job in jobs:
                if job.ending == "cancel":
                    cancel(channel, job.id)
            states = wait_final(channel, jobs)
        time.sleep(0.5)
        left = survivors(jobs)
        surviving_kinds = {(job.kind, job.ending) for job in jobs if job.daemon in left}
        leaders_left = [job for job in jobs if job.leader in left]
        kill_everything(jobs)
        time.sleep(0.5)
        zombies = zombies_of([agent.pid, *keepers])
        fell_back = "contained by their process group only" in (
            tmp_path / "uncontained.log").read_text()
    finally:
        stop_agent(agent)
        kill_everything(jobs)
    record_figure("daemons outliving their job (of 10)", len(surviving_kinds))
    record_figure("zombies under the agent and its keeper once they ended", len(zombies))
    assert fell_back
    assert states == {(job.kind, job.ending): EXPECTED[job.ending] for job in jobs}
    assert leaders_left == []
    assert surviving_kinds == {(job.kind, job.ending) for job in jobs}
    assert zombies == []


def test_in_a_docker_container_daemons_live_until_the_container_goes_never_as_zombies(
    tmp_path: Path, database_url: str, docker_host: str, record_figure: Recorder,  # noqa: F811
) -> None:
    """The Docker provider's agent runs as PID 1 of a container whose cgroup file system it
    can't write: jobs fall back to process groups. What left them lives until the worker's
    container is removed; the keeper reaps what jobs leave, and once the keeper is gone
    too, the agent (PID 1) does."""
    import docker

    name = f"dk-{secrets.token_hex(3)}"
    server = DockerServer(tmp_path, database_url, workers=1, slots=10,
                                  docker_host=docker_host, provider_name=name, cpus=1.0,
                                  memory_mb=512)
    ways = daemons("python3", f"python3 -c {shlex.quote(SETSID)}")
    go = f"/tmp/go-{secrets.token_hex(4)}"  # in the container
    jobs = [Job(kind, ending) for ending in ("cancel", "exit 0") for kind in ways]
    client = docker.DockerClient(base_url=docker_host, version="auto")
    server.start(timeout=90)
    try:
        [container] = client.containers.list(filters={"label": f"io.hodei.provider={name}"})
        agent = int(container.attrs["State"]["Pid"])  # the agent: PID 1 inside
        with server.channel() as channel:
            for job in jobs:
                submit_job(channel, job, ways=ways, then=f"exec sleep {job.leader}"
                           if job.ending == "cancel" else exits_on(Path(go), 0))
            wait_running(channel, jobs)
            keepers = keepers_of(agent)
            container.exec_run(["touch", go])
            for job in jobs:
                if job.ending == "cancel":
                    cancel(channel, job.id)
            states = wait_final(channel, jobs)
        time.sleep(0.5)
        outliving = {(job.kind, job.ending) for job in jobs if survivors([job]).get(job.daemon)}
        zombies = zombies_of([agent, *keepers])
        # The keeper killed too: its orphans are the agent's, PID 1, which reaps them.
        for keeper in keepers:
            os.kill(keeper, signal.SIGKILL)
        time.sleep(0.5)
        kill_everything(jobs)
        time.sleep(1.0)
        zombies_of_pid1 = zombies_of([agent])
        logs = container.logs().decode(errors="replace")
    finally:
        server.stop()
        client.close()
    left_after_removal = sum(survivors(jobs).values())
    record_figure("daemons outliving their job in the container (of 10)", len(outliving))
    record_figure("zombies under the agent and its keeper", len(zombies))
    record_figure("zombies under the agent (PID 1) once the keeper was killed",
                  len(zombies_of_pid1))
    record_figure("processes left once the container was removed", left_after_removal)
    assert "contained by their process group only" in logs, logs[-3000:]
    assert states == {(job.kind, job.ending): EXPECTED[job.ending] for job in jobs}, logs[-3000:]
    assert outliving == {(job.kind, job.ending) for job in jobs}
    assert zombies == [] and zombies_of_pid1 == []
    assert left_after_removal == 0

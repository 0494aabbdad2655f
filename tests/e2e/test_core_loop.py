"""End to end: real server, real local agents, driven through hodeictl."""

from __future__ import annotations

import json
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess

pytestmark = pytest.mark.e2e


def job_json(server: ServerProcess, job_id: str) -> dict[str, object]:
    out = server.hodeictl("job", "get", job_id, "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_state(server: ServerProcess, job_id: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = str(job_json(server, job_id)["state"]).upper()
        if state in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {state} after {timeout}s")


def test_exit_code_and_separate_streams(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == b"hello\n"
    assert out.stderr == b"oops\n"


def test_success_is_zero_and_the_job_records_it(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--", "true")
    assert out.returncode == 0
    listing = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
    assert len(listing) == 1
    job = job_json(server, str(listing[0]["id"]))
    assert str(job["state"]).upper() == "SUCCEEDED"
    assert job["exit_code"] == 0
    assert len(job["attempts"]) == 1  # type: ignore[arg-type]


def test_200k_lines_arrive_byte_exact(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--", "seq", "200000")
    assert out.returncode == 0
    expected = subprocess.run(["seq", "200000"], capture_output=True, check=True).stdout
    assert out.stdout == expected


def test_binary_output_is_byte_exact_on_both_streams(server: ServerProcess) -> None:
    program = (
        "import random,sys;r=random.Random(7);"
        "[(sys.stdout.buffer.write(r.randbytes(r.randint(1,5000))),"
        " sys.stderr.buffer.write(r.randbytes(r.randint(1,300)))) for _ in range(400)]"
    )
    out = server.hodeictl("job", "run", "--", "python3", "-c", program)
    assert out.returncode == 0
    r = random.Random(7)
    stdout, stderr = bytearray(), bytearray()
    for _ in range(400):
        stdout += r.randbytes(r.randint(1, 5000))
        stderr += r.randbytes(r.randint(1, 300))
    assert out.stdout == bytes(stdout)
    assert out.stderr == bytes(stderr)


def test_logs_of_a_finished_job_replay_from_storage(server: ServerProcess) -> None:
    job_id = server.hodeictl("job", "submit", "--", "sh", "-c", "echo a; echo b >&2; echo c")
    assert job_id.returncode == 0
    ident = job_id.stdout.decode().strip()
    wait_state(server, ident, {"SUCCEEDED"}, 30)
    logs = server.hodeictl("job", "logs", ident)
    assert logs.returncode == 0
    assert logs.stdout == b"a\nc\n"
    assert logs.stderr == b"b\n"


def test_fifty_concurrent_jobs_over_two_agents(server: ServerProcess) -> None:
    def submit(i: int) -> str:
        out = server.hodeictl("job", "submit", "--", "sh", "-c", f"sleep 1; echo job-{i}")
        assert out.returncode == 0, out.stderr
        return out.stdout.decode().strip()

    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(submit, range(50)))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        listing = server.hodeictl("job", "list", "--state", "succeeded", "--limit", "100",
                                  "-o", "json")
        succeeded = {job["id"]: job for job in json.loads(listing.stdout)}
        if len(succeeded) == 50:
            break
        time.sleep(0.5)
    assert set(succeeded) == set(ids)
    workers_used = {job["worker_id"] for job in succeeded.values()}
    for i, job_id in enumerate(ids):
        assert server.hodeictl("job", "logs", job_id).stdout == f"job-{i}\n".encode()
    assert len(workers_used) == 2


def test_cancel_a_sleeping_job_leaves_nothing_behind(server: ServerProcess) -> None:
    marker = "61.2345"
    out = server.hodeictl("job", "submit", "--", "sleep", marker)
    job_id = out.stdout.decode().strip()
    wait_state(server, job_id, {"RUNNING"}, 30)
    assert sleeping(marker), "the job's process should be running"
    cancelled = server.hodeictl("job", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert wait_state(server, job_id, {"CANCELLED"}, 2.0) == "CANCELLED"
    assert not sleeping(marker)
    again = server.hodeictl("job", "cancel", job_id)
    assert again.returncode == 0
    assert b"already" in again.stdout + again.stderr


def sleeping(marker: str) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                return True
        except OSError:
            continue
    return False


def test_cancel_a_pending_job_at_once(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path, database_url, workers=0).start()
    try:
        job_id = server.hodeictl("job", "submit", "--", "true").stdout.decode().strip()
        assert server.hodeictl("job", "cancel", job_id).returncode == 0
        assert str(job_json(server, job_id)["state"]).upper() == "CANCELLED"
    finally:
        server.stop()


def test_script_jobs_stop_at_the_first_failure(server: ServerProcess) -> None:
    out = server.hodeictl("job", "run", "--script", "echo one\nfalse\necho never\n")
    assert out.returncode == 1
    assert out.stdout == b"one\n"


def test_env_workdir_and_job_file(server: ServerProcess, tmp_path: Path) -> None:
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        'name = "from-file"\n'
        'command = ["sh", "-c", "echo $GREETING from $(pwd)"]\n'
        'working_dir = "/tmp"\n'
        "[env]\n"
        'GREETING = "hi"\n'
    )
    out = server.hodeictl("job", "run", "-f", str(job_file))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hi from /tmp\n"


def test_a_selector_nobody_matches_stays_pending(server: ServerProcess) -> None:
    out = server.hodeictl("job", "submit", "--selector", "gpu=yes", "--", "true")
    job_id = out.stdout.decode().strip()
    time.sleep(1.0)
    assert str(job_json(server, job_id)["state"]).upper() == "PENDING"
    ok = server.hodeictl("job", "run", "--selector", "provider=local", "--", "echo", "matched")
    assert ok.stdout == b"matched\n"


def test_worker_list_shows_both_agents(server: ServerProcess) -> None:
    out = server.hodeictl("worker", "list", "-o", "json")
    assert out.returncode == 0
    workers = json.loads(out.stdout)
    assert len(workers) == 2
    assert all(w["capacity"]["slots"] == 4 for w in workers)


def test_two_servers_on_one_empty_database(tmp_path: Path, empty_database_url: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_agent = ServerProcess(tmp_path / "a", empty_database_url, workers=1)
    without = ServerProcess(tmp_path / "b", empty_database_url, workers=0)
    try:
        # Both start at once: both migrate the same empty database.
        with_agent.launch()
        without.launch()
        with_agent.wait_ready(wait_workers=False)
        without.wait_ready()
        with_agent.wait_workers(1)
        # Submitted through the replica without agents, run by the other one, and
        # followed through the first: NOTIFY carries the work and the output across.
        out = without.hodeictl("job", "run", "--", "sh", "-c", "echo across; exit 4")
        assert out.returncode == 4
        assert out.stdout == b"across\n"
    finally:
        without.stop()
        with_agent.stop()

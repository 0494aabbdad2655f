"""`job delete` and the job retention setting, against a real server and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg

from tests.e2e.harness import ServerProcess


def _rows(database_url: str, job_id: str) -> tuple[int, int, int]:
    with psycopg.connect(database_url) as conn:
        return tuple(conn.execute(  # type: ignore[return-value]
            "SELECT (SELECT count(*) FROM jobs WHERE id = %(id)s),"
            " (SELECT count(*) FROM job_attempts WHERE job_id = %(id)s),"
            " (SELECT count(*) FROM job_logs WHERE job_id = %(id)s)", {"id": job_id}).fetchone())


def test_delete_takes_a_finished_job_and_its_output(server: ServerProcess) -> None:
    done = server.hodeictl("job", "run", "-d", "--name", "to-delete", "--", "echo", "hi")
    job_id = done.stdout.decode().strip()
    assert server.hodeictl("job", "logs", "-f", job_id).stdout == b"hi\n"
    assert _rows(server.database_url, job_id)[:2] == (1, 1)
    running = server.hodeictl("job", "submit", "--", "sleep", "30").stdout.decode().strip()

    deleted = server.hodeictl("job", "delete", "to-delete", running[:8])
    assert deleted.returncode == 1  # the running one is refused, the other deleted
    assert deleted.stdout.decode() == f"Job {job_id} deleted (SUCCEEDED).\n"
    assert "only a finished job can be deleted (cancel it first)" in deleted.stderr.decode()
    assert _rows(server.database_url, job_id) == (0, 0, 0)
    assert server.hodeictl("job", "get", job_id).returncode == 1
    state = json.loads(server.hodeictl("job", "get", running, "-o", "json").stdout)["state"]
    assert state in ("assigned", "running")
    server.hodeictl("job", "cancel", running)


def test_retention_prunes_old_finished_jobs(tmp_path: Path, database_url: str) -> None:
    # Two seconds of retention, so the test sees it act.
    server = ServerProcess(tmp_path, database_url, workers=1,
                           extra_config="job_retention_days = 0.0000232\n"
                                        "reconcile_interval = 0.2\n").start()
    try:
        old = server.hodeictl("job", "run", "-d", "--", "true").stdout.decode().strip()
        server.hodeictl("job", "logs", "-f", old)
        waiting = server.hodeictl("job", "submit", "-s", "os=plan9", "--",
                                  "true").stdout.decode().strip()
        deadline = time.monotonic() + 30
        while _rows(server.database_url, old)[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _rows(server.database_url, old) == (0, 0, 0)
        # Only finished jobs go: the pending one stays however old it gets.
        assert _rows(server.database_url, waiting)[0] == 1
        server.hodeictl("job", "cancel", waiting)
    finally:
        server.stop()

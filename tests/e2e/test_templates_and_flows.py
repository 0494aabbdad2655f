"""Templates, schedules, dependencies, indexed jobs and TTL through hodeictl, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess
from tests.e2e.test_core_loop import job_json, wait_state

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"


def submit(server: ServerProcess, *args: str) -> str:
    out = server.hodeictl("job", "submit", *args)
    assert out.returncode == 0, (out.stderr, args,
                                 server.hodeictl("job", "list", "-o", "json").stdout)
    return out.stdout.decode().strip()


def test_an_indexed_job_with_a_failing_index(server: ServerProcess) -> None:
    script = 'echo "index $HODEI_JOB_INDEX of $HODEI_JOB_COMPLETIONS"; [ "$HODEI_JOB_INDEX" != 2 ]'
    out = server.hodeictl("job", "run", "--completions", "4", "--parallelism", "2",
                          "--max-attempts", "2", "--retry-on", "failed", "--backoff", "0.1s",
                          "--name", "fan", "--", "sh", "-c", script)
    assert out.returncode == 1, out.stderr
    assert b"1 of 4 indexes failed (2)" in out.stderr
    listing = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
    parent = next(j for j in listing if j["spec"]["name"] == "fan")
    indexes = {j["index"]: j for j in listing if j.get("parent_id") == parent["id"]}
    assert sorted(indexes) == [0, 1, 2, 3]
    assert indexes[2]["state"] == "failed" and indexes[2]["attempt"] == 2  # its own retries
    assert {i: indexes[i]["state"] for i in (0, 1, 3)} == dict.fromkeys((0, 1, 3), "succeeded")
    logs = server.hodeictl("job", "logs", indexes[3]["id"])
    assert logs.stdout == b"index 3 of 4\n"
    shown = server.hodeictl("job", "get", parent["id"])
    assert b"4 (at most 2 at once): 3 succeeded, 1 failed" in shown.stdout
    full = job_json(server, parent["id"])
    assert full["indexes"] == {"waiting": 0, "active": 0, "succeeded": 3, "failed": 1}


def test_a_dependency_chain_and_its_failure(server: ServerProcess) -> None:
    first = submit(server, "--", "sh", "-c", "sleep 4; echo first")
    second = submit(server, "--after", first, "--", "sh", "-c", "sleep 1; exit 3")
    third = submit(server, "--after", second, "--", "echo", "never")
    cleanup = submit(server, "--after", f"{second}:failed", "--", "echo", "cleanup")
    blocked = job_json(server, third)
    assert blocked["state"] == "blocked"
    assert str(blocked["reason"]).startswith(f"waiting for job {second} to succeed")
    assert wait_state(server, third, {"CANCELLED"}, 60) == "CANCELLED"
    assert job_json(server, third)["reason"] == (
        f"dependency never met: job {second} ended FAILED but had to succeed")
    assert wait_state(server, cleanup, {"SUCCEEDED"}, 60) == "SUCCEEDED"
    shown = server.hodeictl("job", "get", cleanup).stdout
    assert f"{second}:failed".encode() in shown
    # A job that does not exist, or whose ending can no longer come, is refused at once.
    gone = server.hodeictl("job", "submit", "--after", "00000000-0000-4000-8000-000000000000",
                           "--", "true")
    assert gone.returncode == 2
    assert gone.stderr.count(b"\n") == 1 and b"does not exist" in gone.stderr
    never = server.hodeictl("job", "submit", "--after", second, "--", "true")
    assert never.returncode == 1 and b"dependency never met" in never.stderr


def test_a_template_run_by_hand(server: ServerProcess) -> None:
    created = server.hodeictl("template", "create", "-f", str(EXAMPLES / "report.toml"))
    assert created.returncode == 0, created.stderr
    assert created.stdout == b"Template report created (version 1).\n"
    missing = server.hodeictl("template", "run", "report")
    assert (missing.returncode, missing.stderr) == (
        2, b"hodeictl: invalid request: parameter 'day' is required by template 'report': "
           b"give it with --param day=VALUE\n")
    typed = server.hodeictl("template", "run", "report", "-p", "day=x", "-p", "rows=many")
    assert typed.returncode == 2
    assert b"parameter 'rows': value 'many' is not an integer" in typed.stderr
    unknown = server.hodeictl("template", "run", "report", "-p", "day=x", "-p", "colour=red")
    assert unknown.returncode == 2 and b"'colour' is not a parameter" in unknown.stderr
    ran = server.hodeictl("template", "run", "report", "--param", "day=2026-01-01")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b"report for 2026-01-01: 20 rows as text\n"
    listing = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
    run = listing[0]["run"]
    assert (run["template"], run["version"], run["parameters"]) == (
        "report", 1, {"day": "2026-01-01", "rows": "20", "format": "text"})
    updated = server.hodeictl("template", "update", "-f", str(EXAMPLES / "report.toml"))
    assert updated.stdout == b"Template report updated (version 2).\n"
    assert server.hodeictl("template", "run", "report", "-p", "day=d", "-p", "format=csv",
                           "--version", "1").returncode == 0

    def stats() -> dict[str, object]:
        shown = json.loads(server.hodeictl("template", "get", "report", "-o", "json").stdout)
        return dict(shown["stats"])

    deadline = time.monotonic() + 30
    while stats()["runs"] != 2 or stats()["active"] != 0:
        assert time.monotonic() < deadline, stats()
        time.sleep(0.1)
    assert stats()["succeeded"] == 2 and stats()["success_rate"] == 1.0
    got = server.hodeictl("template", "get", "report")
    assert b"success rate 100%" in got.stdout and b"latest 2" in got.stdout
    old = json.loads(server.hodeictl("template", "get", "report", "--version", "1", "-o",
                                     "json").stdout)
    assert old["version"] == 1
    assert b"report" in server.hodeictl("template", "list").stdout
    disabled = server.hodeictl("template", "disable", "report")
    assert disabled.returncode == 0
    refused = server.hodeictl("template", "run", "report", "-p", "day=x")
    assert refused.returncode == 1 and b"is disabled" in refused.stderr
    assert server.hodeictl("template", "delete", "report").returncode == 0
    assert server.hodeictl("template", "get", "report").returncode == 1


def test_a_scheduled_template_suspended_and_resumed(server: ServerProcess,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "tick.toml"
    path.write_text('name = "tick"\nschedule = "* * * * * */2"\nconcurrency = "forbid"\n'
                    '[job]\ncommand = ["echo", "tick"]\nttl_after_finished = 3600\n')
    assert server.hodeictl("template", "create", "-f", str(path)).returncode == 0

    def schedule() -> dict[str, object]:
        listing = json.loads(server.hodeictl("schedule", "list", "-o", "json").stdout)
        return dict(next(s for s in listing if s["template"] == "tick"))

    deadline = time.monotonic() + 30
    while int(str(schedule()["started"])) < 2:
        assert time.monotonic() < deadline, schedule()
        time.sleep(0.2)
    table = server.hodeictl("schedule", "list").stdout
    assert b"tick" in table and b"ACTIVE" in table and b"NEXT RUN" in table
    assert server.hodeictl("schedule", "suspend", "tick").returncode == 0
    paused = int(str(schedule()["started"]))
    time.sleep(4)
    assert int(str(schedule()["started"])) == paused
    assert b"SUSPENDED" in server.hodeictl("schedule", "list").stdout
    resumed = server.hodeictl("schedule", "resume", "tick")
    assert resumed.returncode == 0 and b"resumed" in resumed.stdout
    deadline = time.monotonic() + 30
    while int(str(schedule()["started"])) <= paused:
        assert time.monotonic() < deadline, schedule()
        time.sleep(0.2)
    assert int(str(schedule()["missed"])) >= 1  # the ticks passed while suspended
    runs = [j for j in json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
            if j.get("run", {}).get("template") == "tick"]
    scheduled = [j["run"]["scheduled_at"] for j in runs]
    assert len(scheduled) == len(set(scheduled))
    server.hodeictl("template", "disable", "tick")


def test_ttl_after_finished_deletes_the_job_and_its_output(server: ServerProcess,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "short.toml"
    path.write_text('command = ["echo", "brief"]\nttl_after_finished = 1\n')
    out = server.hodeictl("job", "run", "-f", str(path))
    assert out.returncode == 0 and out.stdout == b"brief\n"
    job_id = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)[0]["id"]
    deadline = time.monotonic() + 30
    while server.hodeictl("job", "get", job_id).returncode == 0:
        assert time.monotonic() < deadline, "the job was not deleted after its TTL"
        time.sleep(0.2)
    gone = server.hodeictl("job", "logs", job_id)
    assert gone.returncode == 1 and b"not found" in gone.stderr

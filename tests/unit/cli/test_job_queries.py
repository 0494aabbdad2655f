"""`job list --label --name --since --all` as the server is asked."""

from __future__ import annotations

import time
import uuid

from hodeictl_fakes import FakeJobService, invoke, serve, services

from hodei_api.v1 import jobs_pb2


def _jobs(count: int) -> list[jobs_pb2.Job]:
    jobs = []
    for index in range(count):
        job = jobs_pb2.Job(id=str(uuid.uuid4()), state=jobs_pb2.JOB_STATE_SUCCEEDED)
        job.spec.name = f"build-{index}" if index % 2 else f"test-{index}"
        job.spec.labels["team"] = "infra" if index % 3 == 0 else "apps"
        job.created_at.FromSeconds(int(time.time()) - index * 600)
        jobs.append(job)
    return jobs


def test_filters_reach_the_server_and_all_pages_through_everything() -> None:
    jobs = _jobs(130)
    service = FakeJobService(jobs, page_size=7)
    with serve(services(jobs=service)) as address:
        named = invoke("--server", address, "job", "list", "--name", "build-*", "-q", "--all")
        labelled = invoke("--server", address, "job", "list", "-l", "team=infra", "-q",
                          "--all")
        recent = invoke("--server", address, "job", "list", "--since", "1h", "-q")
        limited = invoke("--server", address, "job", "list", "-q")
        everything = invoke("--server", address, "job", "list", "-q", "--all")
    assert named.stdout.split() == [j.id for j in jobs if j.spec.name.startswith("build-")]
    assert labelled.stdout.split() == [j.id for j in jobs if j.spec.labels["team"] == "infra"]
    # Created 0, 10, ... 50 minutes ago: the six of the last hour.
    assert recent.stdout.split() == [j.id for j in jobs[:6]]
    assert len(limited.stdout.split()) == 50
    assert everything.stdout.split() == [j.id for j in jobs]  # 19 pages of 7
    sent = service.list_requests
    assert any(r.filter.name_glob == "build-*" for r in sent)
    assert any(dict(r.filter.labels) == {"team": "infra"} for r in sent)
    assert any(r.filter.HasField("created_after") for r in sent)


def test_a_bad_label_or_since_is_one_line() -> None:
    bad_label = invoke("--server", "127.0.0.1:1", "job", "list", "-l", "team")
    bad_since = invoke("--server", "127.0.0.1:1", "job", "list", "--since", "yesterday")
    assert bad_label.exit_code == 2
    assert bad_label.stderr == "hodeictl: --label expects KEY=VALUE, got 'team'\n"
    assert bad_since.exit_code == 2
    assert bad_since.stderr.startswith("hodeictl: --since: 'yesterday' is not a duration")

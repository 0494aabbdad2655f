"""Jobs and workers named as people name them: short ids, names, completion."""

from __future__ import annotations

import uuid

from hodeictl_fakes import FakeJobService, FakeWorkerService, invoke, serve, services

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl import resolve


def _job(job_id: str, name: str = "", created: int = 1_700_000_000) -> jobs_pb2.Job:
    job = jobs_pb2.Job(id=job_id, state=jobs_pb2.JOB_STATE_SUCCEEDED, attempt=1)
    job.spec.name = name
    job.spec.command.append("true")
    job.created_at.FromSeconds(created)
    return job


A = _job("a5541420-1111-4000-8000-000000000001", "deploy", 3)
B = _job("a5541420-2222-4000-8000-000000000002", "deploy", 2)  # older, same name
C = _job("c0ffee00-3333-4000-8000-000000000003", "nightly", 1)
JOBS = [A, B, C]  # newest first, as the server lists them


def test_a_unique_prefix_names_the_job() -> None:
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        got = invoke("--server", address, "job", "get", "c0ffee", "-o", "json")
        longer = invoke("--server", address, "job", "get", "a5541420-1", "-o", "json")
    assert got.exit_code == 0, got.output
    assert '"id": "c0ffee00-3333-4000-8000-000000000003"' in got.stdout
    assert '"id": "a5541420-1111-4000-8000-000000000001"' in longer.stdout


def test_an_ambiguous_prefix_is_refused_listing_the_candidates() -> None:
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        result = invoke("--server", address, "job", "cancel", "a5541420")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "'a5541420' starts more than one job id" in result.stderr
    assert A.id in result.stderr and B.id in result.stderr
    assert "give more of the id" in result.stderr


def test_a_name_means_the_newest_job_of_that_name() -> None:
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        newest = invoke("--server", address, "job", "get", "deploy", "-o", "json")
        only = invoke("--server", address, "job", "get", "nightly", "-o", "json")
        missing = invoke("--server", address, "job", "get", "nope")
    assert f'"id": "{A.id}"' in newest.stdout
    assert "the newest of several jobs of that name" in newest.stderr
    assert f'"id": "{C.id}"' in only.stdout and only.stderr == ""
    assert missing.exit_code == 1
    assert missing.stderr == ("hodeictl: no job has an id starting with, or the name, "
                              "'nope'\n")


def test_a_name_with_glob_characters_matches_only_itself() -> None:
    star = _job(str(uuid.uuid4()), "build-*")
    other = _job(str(uuid.uuid4()), "build-x", 5)
    with serve(services(jobs=FakeJobService([other, star], page_size=10))) as address:
        got = invoke("--server", address, "job", "get", "build-*", "-o", "json")
    assert f'"id": "{star.id}"' in got.stdout


def test_tables_show_ids_as_short_as_keeps_them_apart() -> None:
    assert resolve.short_length([C.id]) == 8
    assert resolve.short_length([A.id, B.id, C.id]) == 10  # a5541420-1 / a5541420-2
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        table = invoke("--server", address, "job", "list")
        wide = invoke("--server", address, "job", "list", "-o", "wide")
    rows = table.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [A.id[:10], B.id[:10], C.id[:10]]
    assert [row.split()[0] for row in wide.stdout.splitlines()[1:]] == [A.id, B.id, C.id]


class DrainingWorkers(FakeWorkerService):
    def __init__(self, workers: list[workers_pb2.Worker]) -> None:
        super().__init__(workers)
        self.drained: list[str] = []

    async def DrainWorker(self, request: workers_pb2.DrainWorkerRequest,
                          context: object) -> workers_pb2.DrainWorkerResponse:
        self.drained.append(request.id)
        worker = next(w for w in self.workers if w.id == request.id)
        return workers_pb2.DrainWorkerResponse(worker=worker)


def test_a_worker_is_named_by_its_name_or_a_prefix() -> None:
    workers = DrainingWorkers([
        workers_pb2.Worker(id="7e57ab1e-0000-4000-8000-000000000001", name="builder-1",
                           state=workers_pb2.WORKER_STATE_READY),
        workers_pb2.Worker(id="7e57ab1e-2222-4000-8000-000000000002", name="builder-2",
                           state=workers_pb2.WORKER_STATE_READY),
    ])
    with serve(services(workers=workers)) as address:
        by_name = invoke("--server", address, "worker", "drain", "builder-2")
        ambiguous = invoke("--server", address, "worker", "drain", "7e57ab1e")
        by_prefix = invoke("--server", address, "worker", "drain", "7e57ab1e-0")
    assert by_name.exit_code == 0, by_name.output
    assert ambiguous.exit_code == 2 and "names more than one worker" in ambiguous.stderr
    assert by_prefix.exit_code == 0, by_prefix.output
    assert workers.drained == ["7e57ab1e-2222-4000-8000-000000000002",
                               "7e57ab1e-0000-4000-8000-000000000001"]


def _complete(words: str) -> list[str]:
    from typer.testing import CliRunner

    from hodeictl import app

    parts = words.split(" ")
    result = CliRunner().invoke(app.app, [], prog_name="hodeictl", env={
        "_HODEICTL_COMPLETE": "complete_bash", "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1)})
    return result.stdout.split()


def test_tab_completes_job_ids_and_names_from_the_server() -> None:
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        by_id = _complete(f"hodeictl --server {address} job get c0f")
        by_name = _complete(f"hodeictl --server {address} job logs dep")
        everything = _complete(f"hodeictl --server {address} job cancel ")
    assert by_id == [C.id]
    assert by_name == ["deploy"]
    assert set(everything) == {A.id, B.id, C.id}


def test_tab_offers_nothing_without_a_server_and_starts_no_stack(tmp_path: object) -> None:
    from hodeictl import embedded

    assert _complete("hodeictl job get a") == []
    assert embedded.read_stack(embedded.home_dir()) is None


def test_tab_completes_context_names(monkeypatch: object) -> None:
    from hodeictl.config import Config

    config = Config.load()
    config.set_context("prod-eu", "prod.example.org:7443")
    config.save()
    assert _complete("hodeictl --context pr") == ["prod-eu"]
    assert _complete("hodeictl context use l") == ["local"]

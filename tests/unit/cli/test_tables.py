"""Tables keep what matters on a narrow terminal, and are plain aligned text in a pipe."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from hodeictl_fakes import FakeJobService, FakeWorkerService, invoke, serve, services

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl import output, table
from hodeictl.table import Column, cell_width

STATES = [jobs_pb2.JOB_STATE_TIMED_OUT, jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_PENDING,
          jobs_pb2.JOB_STATE_SUCCEEDED]


def _jobs() -> list[jobs_pb2.Job]:
    jobs = []
    for index, state in enumerate(STATES):
        job = jobs_pb2.Job(id=str(uuid.uuid4()), state=state, attempt=1)
        job.spec.name = ["nightly-build-and-test-every-platform", "", "deploy", "unit"][index]
        job.spec.command.extend(["make", "-j8", f"target-{index}", "PLATFORMS=linux,darwin"])
        job.spec.labels["team"] = "infrastructure"
        job.created_at.FromSeconds(int(time.time()) - 3700)
        if state == jobs_pb2.JOB_STATE_SUCCEEDED:
            job.has_exit_code = True
        jobs.append(job)
    return jobs


JOBS = _jobs()


@pytest.fixture
def columns(monkeypatch: pytest.MonkeyPatch) -> object:
    """Render as on a terminal of the width the test sets."""

    class Width:
        value = 80

    monkeypatch.setattr(table, "terminal_width", lambda: Width.value)
    return Width


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def test_at_80_columns_id_name_and_state_stay_whole(columns: object) -> None:
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        result = invoke("--server", address, "job", "list")
    lines = _lines(result.stdout)
    assert all(cell_width(line) <= 80 for line in lines), lines
    header = lines[0].split()
    assert header[:3] == ["ID", "NAME", "STATE"]
    for job, line in zip(JOBS, lines[1:], strict=True):
        assert line.startswith(job.id[:8] + "  ")  # the short id hodeictl takes back
        assert output.job_state(job.state) in line.split()  # TIMED_OUT, never TIMED_…
    # Everything fits once the command and the name give way; neither is dropped.
    assert header == ["ID", "NAME", "STATE", "EXIT", "ATTEMPT", "AGE", "COMMAND"]
    assert "nightly-build" in lines[1] and lines[1].endswith("…")
    # Narrower still, the least important columns drop; id, name and state stay.
    columns.value = 50  # type: ignore[attr-defined]
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        narrow = _lines(invoke("--server", address, "job", "list").stdout)
    assert all(cell_width(line) <= 50 for line in narrow), narrow
    assert narrow[0].split()[:3] == ["ID", "NAME", "STATE"] and "COMMAND" not in narrow[0]
    assert "TIMED_OUT" in narrow[1].split()


def test_at_200_columns_every_column_shows_in_full(columns: object) -> None:
    columns.value = 200  # type: ignore[attr-defined]
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        result = invoke("--server", address, "job", "list")
        wide = invoke("--server", address, "job", "list", "-o", "wide")
    lines = _lines(result.stdout)
    assert all(cell_width(line) <= 200 for line in lines)
    assert lines[0].split() == ["ID", "NAME", "STATE", "EXIT", "ATTEMPT", "AGE", "COMMAND"]
    assert "…" not in result.stdout
    assert "nightly-build-and-test-every-platform" in lines[1]
    assert "make -j8 target-0 PLATFORMS=linux,darwin" in lines[1]
    wide_header = _lines(wide.stdout)[0].split()
    assert wide_header[-3:] == ["LABELS", "WORKER", "REASON"]
    assert all(cell_width(line) <= 200 for line in _lines(wide.stdout))


@pytest.mark.parametrize("width", [80, 200])
def test_worker_and_plugin_states_are_never_cut(columns: object, width: int) -> None:
    columns.value = width  # type: ignore[attr-defined]
    worker = workers_pb2.Worker(
        id=str(uuid.uuid4()), name="builder-with-a-rather-long-host-name.example.org",
        state=workers_pb2.WORKER_STATE_DRAINING, running_jobs=1,
        labels={"os": "linux", "arch": "amd64", "gpu": "none", "zone": "eu-west-1a"},
        capacity=workers_pb2.Capacity(slots=4, cpus=8, memory_mb=16384))
    with serve(services(workers=FakeWorkerService([worker]))) as address:
        workers = invoke("--server", address, "worker", "list")
    plugins = invoke("plugin", "list")
    for result in (workers, plugins):
        assert result.exit_code == 0, result.output
        assert all(cell_width(line) <= width for line in _lines(result.stdout))
    assert "DRAINING" in workers.stdout.split()
    assert "1/4" in workers.stdout.split()
    assert "loaded" in plugins.stdout.split() and "d…" not in plugins.stdout


def test_piped_output_is_plain_aligned_text() -> None:
    # CliRunner's stdout is not a terminal: no width limit, no colour, no rule line.
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        result = invoke("--server", address, "job", "list")
    lines = _lines(result.stdout)
    assert "\x1b" not in result.stdout and "─" not in result.stdout
    assert all(line == line.rstrip() for line in lines)
    assert "…" not in result.stdout
    start = lines[0].index("STATE")
    for line in lines[1:]:
        assert line[start:].split()[0] in {"TIMED_OUT", "RUNNING", "PENDING", "SUCCEEDED"}
        assert line[start - 2:start] == "  "


def test_no_headers_quiet_name_json_and_yaml() -> None:
    with serve(services(jobs=FakeJobService(JOBS, page_size=10))) as address:
        bare = invoke("--server", address, "job", "list", "--no-headers")
        quiet = invoke("--server", address, "job", "list", "-q")
        names = invoke("--server", address, "job", "list", "-o", "name")
        as_json = invoke("--server", address, "job", "list", "-o", "json")
        as_yaml = invoke("--server", address, "job", "list", "-o", "yaml")
    assert len(_lines(bare.stdout)) == len(JOBS) and "STATE" not in bare.stdout
    assert _lines(quiet.stdout) == [job.id for job in JOBS]
    assert _lines(names.stdout) == [f"job/{job.id}" for job in JOBS]
    assert [job["id"] for job in json.loads(as_json.stdout)] == [job.id for job in JOBS]
    yaml_ids = [line.split(": ", 1)[1] for line in _lines(as_yaml.stdout)
                if line.startswith('- "id": ')]
    assert [json.loads(value) for value in yaml_ids] == [job.id for job in JOBS]


def test_yaml_strings_are_always_quoted_and_escaped() -> None:
    text = output.to_yaml({"name": "yes", "n": 1, "labels": {"k: v": "a\x1bb"}, "empty": [],
                           "none": None})
    assert text == ('"name": "yes"\n"n": 1\n"labels":\n  "k: v": "a\\u001bb"\n"empty": []\n'
                    '"none": null')


def test_fit_drops_by_priority_after_shrinking() -> None:
    columns = [Column("ID"), Column("NAME", shrink=2, min_width=6), Column("STATE"),
               Column("A", priority=1), Column("B", priority=2),
               Column("TEXT", priority=3, shrink=1, min_width=5)]
    rows = [["0123456789", "a-long-name", "RUNNING", "aaaa", "bbbb", "t" * 40]]
    for width in (30, 40, 50, 60, 100):
        lines = table.render(columns, rows, width=width)
        assert all(cell_width(line) <= width for line in lines), (width, lines)
        assert lines[0].split()[:3] == ["ID", "NAME", "STATE"]
        assert "0123456789" in lines[1] and "RUNNING" in lines[1]
    assert table.render(columns, rows, width=100)[0].split() == [
        "ID", "NAME", "STATE", "A", "B", "TEXT"]
    assert table.render(columns, rows, width=40)[0].split() == ["ID", "NAME", "STATE", "A", "B"]


def test_cells_cannot_break_the_table_or_the_terminal() -> None:
    lines = table.render([Column("NAME")], [["evil\x1b[2J\nname"]], width=80)
    assert lines == ["NAME", "evil^[[2J^Jname"]


@pytest.mark.parametrize("fmt", [output.OutputFormat.table, output.OutputFormat.wide,
                                 output.OutputFormat.name])
def test_a_listing_builds_its_json_only_when_json_or_yaml_is_asked_for(
    fmt: output.OutputFormat, capsys: pytest.CaptureFixture[str],
) -> None:
    """`job list` once turned every job into a dict (and imported protobuf's json_format)
    only to print a table."""
    def data(item: str) -> object:
        raise AssertionError("data built for a table")

    output.print_listing(fmt, ["a", "b"], columns=[Column("ID")], row=lambda item: [item],
                         data=data, ident=lambda item: item, kind="thing")
    assert "a" in capsys.readouterr().out


def test_a_listing_in_json_has_every_item(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_listing(output.OutputFormat.json, ["a", "b"], columns=[Column("ID")],
                         row=lambda item: [item], data=lambda item: {"id": item},
                         ident=lambda item: item, kind="thing")
    assert json.loads(capsys.readouterr().out) == [{"id": "a"}, {"id": "b"}]

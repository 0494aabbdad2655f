"""Template files, the job-file keys of dependencies and fan-out, and `--after`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hodeictl_fakes import invoke

from hodei_api.v1 import jobs_pb2, templates_pb2
from hodeictl import errors, jobfile, jobflow, templatefile

TEMPLATES = sorted((Path(__file__).parents[3] / "examples" / "templates").glob("*.toml"))
JOB = "0b9c3c1e-0000-4000-8000-000000000001"


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_there_are_example_templates_and_one_is_scheduled() -> None:
    specs = [templatefile.load(path) for path in TEMPLATES]
    assert len(specs) >= 2
    assert any(spec.schedule.cron for spec in specs)


def test_a_full_template_file(tmp_path: Path) -> None:
    spec = templatefile.load(write(tmp_path, """
        name = "nightly"
        schedule = "H 3 * * *"
        timezone = "Europe/Madrid"
        starting_deadline = "10m"
        concurrency = "replace"
        [history]
        succeeded = 3
        [[parameters]]
        name = "day"
        required = true
        [[parameters]]
        name = "n"
        type = "integer"
        default = 5
        choices = [5, 10]
        [[parameters]]
        name = "dry"
        type = "boolean"
        default = false
        [job]
        command = ["backup", "--all"]
        completions = 3
        after = []
        """))
    assert spec.schedule == templates_pb2.Schedule(
        cron="H 3 * * *", timezone="Europe/Madrid", starting_deadline_seconds=600,
        concurrency=templates_pb2.CONCURRENCY_POLICY_REPLACE)
    assert spec.history.succeeded == 3 and not spec.history.HasField("failed")
    assert [(p.name, p.type, p.required, p.default, list(p.choices))
            for p in spec.parameters] == [
        ("day", templates_pb2.PARAMETER_TYPE_STRING, True, "", []),
        ("n", templates_pb2.PARAMETER_TYPE_INTEGER, False, "5", ["5", "10"]),
        ("dry", templates_pb2.PARAMETER_TYPE_BOOLEAN, False, "false", []),
    ]
    assert list(spec.job.command) == ["backup", "--all"] and spec.job.completions == 3


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\n', "the template needs a [job] table"),
    ('[job]\ncommand = ["true"]\n', "the template needs a 'name'"),
    ('name = "x"\nschedul = "* * * * *"\n[job]\ncommand = ["true"]\n',
     "unknown key 'schedul'; did you mean 'schedule'?"),
    ('name = "x"\nconcurrency = "sometimes"\n[job]\ncommand = ["true"]\n',
     "'concurrency' must be one of allow, forbid, replace; got 'sometimes'"),
    ('name = "x"\nstarting_deadline = "soon"\n[job]\ncommand = ["true"]\n',
     "'starting_deadline': 'soon' is not a duration"),
    ('name = "x"\n[[parameters]]\nname = "a"\ntype = "date"\n[job]\ncommand = ["true"]\n',
     "parameter 'a': 'type' must be one of string, integer, number, boolean; got 'date'"),
    ('name = "x"\n[history]\nsucceeded = -1\n[job]\ncommand = ["true"]\n',
     "'history.succeeded' must be a whole number from 0 to 10000, got -1"),
    ('name = "x"\n[job]\ncommand = ["true"]\nparallelism = 2\n',
     "--parallelism needs --completions"),
])
def test_bad_template_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        templatefile.load(write(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_job_files_take_dependencies_fan_out_failure_policy_and_ttl(tmp_path: Path) -> None:
    options = jobfile.load(write(tmp_path, f"""
        command = ["true"]
        after = ["{JOB}", "{JOB.replace('1', '2')}:finished"]
        completions = 10
        parallelism = 3
        ttl_after_finished = "1h"
        [[failure_policy]]
        action = "fail_job"
        exit_codes = [42]
        [[failure_policy]]
        action = "ignore"
        exit_codes = [0, 1]
        not_in = true
        """))
    spec = jobfile.to_spec(options)
    assert [(d.job_id, d.condition) for d in spec.after] == [
        (JOB, jobs_pb2.DEPENDENCY_CONDITION_SUCCEEDED),
        (JOB.replace("1", "2"), jobs_pb2.DEPENDENCY_CONDITION_FINISHED)]
    assert (spec.completions, spec.parallelism, spec.ttl_after_finished_seconds) == \
        (10, 3, 3600)
    assert [(r.action, list(r.exit_codes), r.not_in) for r in spec.failure_policy] == [
        (jobs_pb2.FAILURE_ACTION_FAIL_JOB, [42], False),
        (jobs_pb2.FAILURE_ACTION_IGNORE, [0, 1], True)]
    # The command line adds to the file's dependencies and overrides its numbers.
    merged = jobfile.merge(options, jobfile.JobOptions(flow=jobflow.FlowOptions(
        after=[f"{JOB.replace('1', '3')}:failed"], completions=2)))
    spec = jobfile.to_spec(merged)
    assert len(spec.after) == 3 and spec.completions == 2


@pytest.mark.parametrize(("text", "message"), [
    ('after = ["nope"]', "'after': 'nope' is not JOB_ID[:succeeded|:finished|:failed]"),
    (f'after = ["{JOB}:never"]', "the condition must be succeeded, finished or failed"),
    ("completions = 0", "'completions' must be at least 1"),
    ('[[failure_policy]]\naction = "explode"\nexit_codes = [1]',
     "'failure_policy.action' must be one of fail_job, fail_index, ignore, count"),
    ('[[failure_policy]]\naction = "ignore"\nexit_codes = [300]',
     "'failure_policy.exit_codes' must be a non-empty list of exit codes from 0 to 255"),
])
def test_bad_flow_keys_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(errors.InvalidSpec) as caught:
        jobfile.load(write(tmp_path, 'command = ["true"]\n' + text + "\n"))
    assert message in str(caught.value)


def test_after_on_the_command_line() -> None:
    assert jobflow.after_value(JOB) == f"{JOB}:succeeded"
    assert jobflow.after_value(f"{JOB.upper()}:failed") == f"{JOB}:failed"
    result = invoke("--server", "127.0.0.1:1", "job", "submit", "--after", "x:finished",
                    "--", "true")
    assert result.exit_code == 2
    assert result.stderr == ("hodeictl: --after: 'x:finished' is not "
                             "JOB_ID[:succeeded|:finished|:failed] (a job id is a UUID)\n")
    result = invoke("--server", "127.0.0.1:1", "job", "submit", "--parallelism", "2",
                    "--", "true")
    assert (result.exit_code, result.stderr) == (
        2, "hodeictl: --parallelism needs --completions (an indexed job)\n")

"""Job files are validated by a schema (pydantic), which `hodeictl job schema` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hodeictl_fakes import invoke

from hodeictl import jobfile, jobflow, jobschema
from hodeictl.errors import InvalidSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_the_schema_knows_exactly_the_keys_the_reader_does() -> None:
    assert set(jobschema.JobFile.model_fields) == set(jobfile.TOP_LEVEL_KEYS)
    assert set(jobschema.Retry.model_fields) == set(jobfile.RETRY_KEYS)
    assert set(jobschema.Resources.model_fields) == set(jobfile.RESOURCE_KEYS)
    assert set(jobschema.Secret.model_fields) == set(jobfile.SECRET_KEYS)
    assert set(jobschema.FailureRule.model_fields) == set(jobflow.RULE_KEYS)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_job_file_fits_the_schema(path: Path) -> None:
    text = path.read_text()
    if "[job]" in text or "schedule" in text.split("\n", 1)[0]:
        pytest.skip("a template file")
    import tomllib

    assert jobschema.check(tomllib.loads(text)) is None
    jobfile.load(path)


@pytest.mark.parametrize(("text", "line"), [
    ('comand = ["true"]\n', "unknown key 'comand'; did you mean 'command'?"),
    ('command = ["true"]\n[resources]\ncpu = 1\n',
     "unknown key 'resources.cpu'; did you mean 'resources.cpus'?"),
    ('command = ["true"]\n[retry]\nbackof_seconds = 1\n',
     "unknown key 'retry.backof_seconds'; did you mean 'retry.backoff_seconds'?"),
    ('command = ["true"]\n[[secrets]]\nname = "x"\nas_enb = "X"\n',
     "unknown key 'secrets.as_enb'; did you mean 'secrets.as_env'?"),
    ('command = ["true"]\n[[failure_policy]]\naction = "ignore"\nexit_codes = [1]\nnotin = true\n',
     "unknown key 'failure_policy.notin'; did you mean 'failure_policy.not_in'?"),
])
def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path, text: str,
                                                    line: str) -> None:
    path = tmp_path / "job.toml"
    path.write_text(text)
    with pytest.raises(InvalidSpec) as refused:
        jobfile.load(path)
    assert str(refused.value) == f"{path}: {line}"


def test_job_schema_prints_the_json_schema() -> None:
    result = invoke("job", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "Hodei job file"
    assert schema["additionalProperties"] is False
    assert {"command", "script", "timeout", "retry", "failure_policy"} <= set(
        schema["properties"])
    timeout = json.dumps(schema["properties"]["timeout"])
    assert "1h30m" in timeout

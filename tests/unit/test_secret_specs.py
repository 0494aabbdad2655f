"""Jobs that name secrets: the job file, the command line and the server's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from hodei_api.v1 import jobs_pb2
from hodei_server.errors import InvalidSpec
from hodei_server.validation import split_secret_ref, validate_spec
from hodeictl import jobfile
from hodeictl.app import app
from hodeictl.errors import InvalidSpec as CliInvalidSpec


def _spec(*refs: jobs_pb2.SecretRef, **fields: object) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(command=["true"], secrets=list(refs), **fields)  # type: ignore[arg-type]


def test_job_file_names_secrets_as_a_list_or_as_tables(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('command = ["true"]\nsecrets = ["DB_PASSWORD", "env:TOKEN"]\n')
    spec = jobfile.to_spec(jobfile.load(path))
    assert [r.name for r in spec.secrets] == ["DB_PASSWORD", "env:TOKEN"]
    path.write_text('command = ["true"]\nsecret_delivery = "stdin"\n'
                    '[[secrets]]\nname = "DB"\nas_env = "DB_PASSWORD"\n'
                    '[[secrets]]\nname = "TLS"\nas_file = "db.pem"\n')
    options = jobfile.load(path)
    merged = jobfile.merge(options, jobfile.JobOptions(secrets=[{"name": "DB"}, {"name": "X"}]))
    spec = jobfile.to_spec(merged)
    assert [(r.name, r.as_env, r.as_file) for r in spec.secrets] == [
        ("DB", "DB_PASSWORD", ""), ("TLS", "", "db.pem"), ("X", "", "")]
    assert spec.secret_delivery == "stdin"


@pytest.mark.parametrize(("text", "message"), [
    ('secrets = "DB"', "'secrets' must be an array"),
    ('[[secrets]]\nas_env = "X"', "each secret needs a 'name'"),
    ('[[secrets]]\nname = "DB"\nas_envv = "X"', "did you mean 'secrets.as_env'"),
    ('secret_delivery = "env"', "'secret_delivery' must be one of file, stdin, both"),
])
def test_job_file_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "job.toml"
    path.write_text('command = ["true"]\n' + text + "\n")
    with pytest.raises(CliInvalidSpec, match=message):
        jobfile.load(path)


def test_no_command_line_option_carries_a_secret_value() -> None:
    command = typer.main.get_command(app)
    secret_group = command.get_command(None, "secret")  # type: ignore[attr-defined]
    set_command = secret_group.commands["set"]
    options = {opt for param in set_command.params for opt in getattr(param, "opts", [])}
    assert "--from-file" in options
    assert not any(word in opt for opt in options for word in ("value", "secret", "literal")
                   if opt.startswith("--"))
    assert [p.name for p in set_command.params if p.param_type_name == "argument"] == ["name"]


def test_refs_and_the_server_validation() -> None:
    assert split_secret_ref("DB") == ("hodei", "DB")
    assert split_secret_ref("vault:db.password") == ("vault", "db.password")
    validate_spec(_spec(jobs_pb2.SecretRef(name="DB", as_env="PW"),
                        jobs_pb2.SecretRef(name="env:DB", as_file="db2")))
    bad = [
        (_spec(jobs_pb2.SecretRef(name="../etc/passwd")), "is not a secret name"),
        (_spec(jobs_pb2.SecretRef(name="Vault:x")), "is not a backend name"),
        (_spec(jobs_pb2.SecretRef(name="DB"), jobs_pb2.SecretRef(name="DB")), "named twice"),
        (_spec(jobs_pb2.SecretRef(name="DB"), jobs_pb2.SecretRef(name="env:DB")),
         "two secrets would be the file 'DB'"),
        (_spec(jobs_pb2.SecretRef(name="DB", as_file="a/b")), "plain file name"),
        (_spec(jobs_pb2.SecretRef(name="DB", as_env="HODEI_X")), "not starting with HODEI_"),
        (_spec(jobs_pb2.SecretRef(name="DB", as_env="PATH"), env={"PATH": "/bin"}),
         "already set"),
        (_spec(secret_delivery="env"), "secret_delivery must be one of"),
        (_spec(*(jobs_pb2.SecretRef(name=f"S{i}") for i in range(33))), "at most 32"),
    ]
    for spec, message in bad:
        with pytest.raises(InvalidSpec, match=message):
            validate_spec(spec)

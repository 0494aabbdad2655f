"""The role table covers every API method, and tokens parse only in their one shape."""

from __future__ import annotations

import importlib
import pkgutil
import secrets

import pytest

import hodei_api.v1
from hodei_server.cli import token as tokencli
from hodei_server.errors import InvalidSpec
from hodei_server.security import apitokens, authz
from hodei_server.security.apitokens import Role


def _all_services() -> dict[str, list[str]]:
    """Every service of the wire contract → the full names of its methods."""
    found: dict[str, list[str]] = {}
    for module in pkgutil.iter_modules(hodei_api.v1.__path__):
        if not module.name.endswith("_pb2"):
            continue
        pb2 = importlib.import_module(f"hodei_api.v1.{module.name}")
        for service in pb2.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = [f"/{service.full_name}/{m.name}"
                                        for m in service.methods]
    return found


def test_every_method_of_every_api_service_has_a_minimum_role() -> None:
    services = _all_services()
    assert "hodei.api.v1.JobService" in services and "hodei.api.v1.TokenService" in services
    missing = [method for name, methods in services.items()
               if name not in authz.AGENT_SERVICES
               for method in methods if method not in authz.METHOD_ROLES]
    assert not missing, f"add these to authz.METHOD_ROLES (or they are refused): {missing}"


def test_the_role_table_names_only_real_methods() -> None:
    real = {m for methods in _all_services().values() for m in methods}
    assert set(authz.METHOD_ROLES) <= real


def test_the_role_table() -> None:
    roles = {method.rsplit("/", 1)[1]: str(role) for method, role in authz.METHOD_ROLES.items()}
    assert roles == {
        "SubmitJob": "submitter", "SubmitJobs": "submitter", "GetJob": "viewer",
        "ListJobs": "viewer",
        "CancelJob": "submitter", "RetryJob": "submitter", "DeleteJob": "submitter",
        "CountJobs": "viewer",
        "StreamLogs": "viewer",
        "ListWorkers": "viewer", "ListProviders": "viewer", "GetServerInfo": "viewer",
        "DrainWorker": "operator",
        "WhoAmI": "viewer", "CreateToken": "admin", "RevokeToken": "admin",
        "ListTokens": "admin", "ListAudit": "admin",
        "SetSecret": "admin", "DeleteSecret": "admin", "ListSecrets": "operator",
        "CreateTemplate": "operator", "UpdateTemplate": "operator", "GetTemplate": "viewer",
        "ListTemplates": "viewer", "DisableTemplate": "operator",
        "EnableTemplate": "operator", "DeleteTemplate": "operator",
        "RunTemplate": "submitter", "ListSchedules": "viewer",
        "SuspendSchedule": "operator", "ResumeSchedule": "operator",
        "WatchJobs": "viewer", "WatchWorkers": "viewer", "WatchEvents": "viewer",
    }
    assert authz.ANY_JOB_ROLE is Role.OPERATOR
    assert Role.VIEWER < Role.SUBMITTER < Role.OPERATOR < Role.ADMIN


def test_the_agent_service_is_not_in_the_role_table() -> None:
    agent_methods = _all_services()["hodei.api.v1.WorkerAgentService"]
    assert agent_methods and not set(agent_methods) & set(authz.METHOD_ROLES)


def test_new_tokens_have_a_prefix_an_id_and_256_random_bits() -> None:
    token, token_id, secret_hash = apitokens.new_token()
    assert token.startswith("hodei_") and token_id in token
    parsed = apitokens.parse(token)
    assert parsed is not None and parsed[0] == token_id
    assert len(parsed[1]) == 43  # 32 bytes, url-safe base64 without padding
    assert secret_hash == apitokens.hash_secret(parsed[1]) and parsed[1].encode() not in secret_hash
    assert apitokens.new_token()[0] != token


@pytest.mark.parametrize("text", [
    "", "hodei_", "Bearer hodei_0123456789abcdef_" + "A" * 43,
    "hodei_0123456789abcdeg_" + "A" * 43,  # not hex
    "hodei_0123456789abcde_" + "A" * 43,  # short id
    "hodei_0123456789abcdef_" + "A" * 42,  # short secret
    "hodei_0123456789abcdef_" + "A" * 42 + "=",
    "HODEI_0123456789abcdef_" + "A" * 43,
    "hodei_0123456789abcdef_" + "A" * 43 + "\n",
    pytest.param(secrets.token_urlsafe(32), id="agent-credential"),
])
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert apitokens.parse(text) is None


def test_secrets_compare_against_the_stored_hash() -> None:
    token, _, secret_hash = apitokens.new_token()
    parsed = apitokens.parse(token)
    assert parsed is not None
    row = {"secret_hash": secret_hash}
    assert apitokens.secret_matches(row, parsed[1])
    assert not apitokens.secret_matches(row, parsed[1][:-1] + "x")


def test_roles_parse_by_name_only() -> None:
    assert Role.parse(" Operator ") is Role.OPERATOR
    assert str(Role.ADMIN) == "admin"
    with pytest.raises(InvalidSpec):
        Role.parse("root")
    with pytest.raises(InvalidSpec):
        Role.from_proto(0)
    assert Role.from_proto(Role.VIEWER.to_proto()) is Role.VIEWER


@pytest.mark.parametrize("name", ["ci", "alice@example.com", "deploy-bot_2", "a" * 63])
def test_token_names(name: str) -> None:
    assert apitokens.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a" * 64, "x\n", "ci;drop"])
def test_bad_token_names(name: str) -> None:
    with pytest.raises(InvalidSpec):
        apitokens.validate_name(name)


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"authorization": "Bearer abc"}, "abc"),
    ({"authorization": "bearer  abc "}, "abc"),
    ({"authorization": "Basic abc"}, ""),
    ({"authorization": "abc"}, ""),
    ({}, ""),
])
def test_bearer_header(metadata: dict[str, str], expected: str) -> None:
    assert authz._bearer(metadata) == expected


def test_api_token_expiry_on_the_server_command_line() -> None:
    assert tokencli.parse_expiry("never") == 0
    assert tokencli.parse_expiry("90d") == 90 * 86400
    with pytest.raises(InvalidSpec):
        tokencli.parse_expiry("forever")
    with pytest.raises(InvalidSpec):
        tokencli.parse_expiry("20000d")

"""`job list` filters reach a real server as one JobFilter, through the fast path."""

from __future__ import annotations

import json

from tests.e2e.harness import ServerProcess


def _ids(server: ServerProcess, *args: str) -> list[str]:
    done = server.hodeictl("job", "list", "-q", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split()


def test_name_label_state_and_age_filters_on_a_real_server(server: ServerProcess) -> None:
    made = {}
    for name, team in (("build-linux", "infra"), ("build-mac", "apps"), ("test-linux", "infra")):
        done = server.hodeictl("job", "submit", "--name", name, "-l", f"team={team}",
                               "-s", "os=plan9", "--", "true")
        assert done.returncode == 0, done.stderr
        made[name] = done.stdout.decode().strip()
    assert set(_ids(server, "--name", "build-*")) == {made["build-linux"], made["build-mac"]}
    assert _ids(server, "--name", "build-?ac") == [made["build-mac"]]
    assert set(_ids(server, "-l", "team=infra", "--since", "1h")) == {
        made["build-linux"], made["test-linux"]}
    assert _ids(server, "--label=team=infra", "--name", "build-*", "--state", "PENDING") == [
        made["build-linux"]]
    assert _ids(server, "--state", "running", "--name", "build-*") == []
    # Newest first, paged: --limit 2 then --all.
    assert _ids(server, "--limit", "2") == [made["test-linux"], made["build-mac"]]
    # A short id is found through the same filter (its id_prefix).
    got = server.hodeictl("job", "get", made["build-mac"][:8], "-o", "json")
    assert json.loads(got.stdout)["id"] == made["build-mac"]
    for job_id in made.values():
        server.hodeictl("job", "cancel", job_id)

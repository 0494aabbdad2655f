"""The ssh provider's pieces that need no host: quoting, the agent wheel, platform tags."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hodei_ssh import payload
from hodei_ssh.bootstrap import AgentSettings, agent_argv
from hodei_ssh.quoting import script, shell

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=30)


@given(TEXT, TEXT)
def test_quoted_parts_reach_the_command_as_they_are(first: str, second: str) -> None:
    for command in (shell("printf", "%s|%s", first, second),
                    script('printf "%s|%s" "$1" "$2"', first, second)):
        out = subprocess.run(["sh", "-c", command], capture_output=True, check=True)
        assert out.stdout == f"{first}|{second}".encode()


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError):
        shell()


def test_agent_wheel_is_reproducible_and_installs_the_agent_only(tmp_path: Path) -> None:
    first = payload.agent_wheel(tmp_path)
    data = first.read_bytes()
    assert payload.agent_wheel(tmp_path).read_bytes() == data
    with zipfile.ZipFile(first) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert {name.split("/")[0] for name in names if not name.startswith("hodei-")} == {
        "hodei_agent", "hodei_api"}
    assert "hodei_agent/__main__.py" in names
    assert "Requires-Dist: grpcio==" in metadata and "Requires-Dist: protobuf==" in metadata
    # It is a wheel pip installs: into a scratch target, then the agent imports from there.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", "--target", str(target),
                    str(first)], check=True)
    assert (target / "hodei_agent" / "agent.py").is_file()


def test_platform_tags_follow_the_hosts_glibc() -> None:
    tags = payload.Target("3.12", "aarch64", "2.28").platforms()
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux_2_28_aarch64" in tags
    assert "manylinux_2_29_aarch64" not in tags
    with pytest.raises(payload.PayloadError, match="glibc"):
        payload.Target("3.12", "x86_64", "").platforms()


def test_the_token_is_never_in_the_agents_argv() -> None:
    argv = agent_argv(AgentSettings(server="h:1", worker_name="w", labels={"a": "b"},
                                    insecure=True), "/home/u")
    assert "--token-file" in argv and argv[argv.index("--token-file") + 1] == \
        "/home/u/.hodei/token"
    assert argv[-2:] == ["--label", "a=b"]


def test_service_kind_and_unit_text() -> None:
    from hodei_ssh.bootstrap import UNIT, Facts, _service, _systemd_quote
    from hodei_ssh.registry import Host

    host = Host(name="h", address="192.0.2.1", username="u", sudo=True)
    auto = AgentSettings(server="h:1", worker_name="w", labels={})
    assert _service(auto, Facts({"systemd": "no", "sudo": "yes"}), host) == "process"
    assert _service(auto, Facts({"systemd": "yes", "sudo": "yes"}), host) == "systemd-system"
    assert _service(auto, Facts({"systemd": "yes", "sudo": "no"}), host) == "systemd-user"
    # systemd's own quoting: spaces, quotes, backslashes and % specifiers stay literal.
    assert _systemd_quote('/home/a b/"x"\\%h') == '"/home/a b/\\"x\\"\\\\%%h"'
    unit = UNIT.format(python=_systemd_quote("/h/.hodei/venv/bin/python"),
                       launcher=_systemd_quote("/h/.hodei/launch.py"), user="",
                       wanted_by="default.target")
    assert 'ExecStart="/h/.hodei/venv/bin/python" "/h/.hodei/launch.py"' in unit
    assert "Restart=on-failure" in unit


def test_hosts_bootstrapped_at_once_share_one_wheelhouse(tmp_path: Path) -> None:
    """Eight builds at once (`host bootstrap --parallel 8`, or several hodeictl processes)
    all get the same wheelhouse: the agent's wheel is written by one at a time."""
    from concurrent.futures import ProcessPoolExecutor

    target = payload.Target("3.11", "x86_64", "2.36")
    third = tmp_path / target.key / "third-party"
    third.mkdir(parents=True)
    (third / "pip-24.0-py3-none-any.whl").write_bytes(b"a stand-in for pip's wheel")
    (third / ".complete").write_text("pip-24.0-py3-none-any.whl")
    for _ in range(10):
        (tmp_path / target.key / "agent").mkdir(exist_ok=True)
        for stale in (tmp_path / target.key / "agent").iterdir():
            stale.unlink()  # each round writes the agent's wheel afresh
        with ProcessPoolExecutor(8) as pool:
            houses = list(pool.map(payload.build, [target] * 8, [tmp_path] * 8))
        assert len({house.marker for house in houses}) == 1
        assert [p.name for p in (tmp_path / target.key / "agent").iterdir()] == [
            houses[0].files[0].name]

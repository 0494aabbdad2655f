"""Secrets end to end: a real server, real agents, a real PostgreSQL, hodeictl as a user runs it.

Each leak test prints how many places it searched for how many forms of the values, e.g.
`leaks: 0 of 120 checks`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import queue
import secrets
import shlex
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest

from hodei_api.v1 import agent_pb2, agent_pb2_grpc, workers_pb2
from hodei_server.security.secretkeys import Keyring, Sealed
from tests.e2e.harness import BIN, ServerProcess

pytestmark = pytest.mark.e2e


def _secret_values() -> dict[str, bytes]:
    body = base64.b64encode(os.urandom(96)).decode()
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(
        body[i:i + 64] for i in range(0, len(body), 64)) + "\n-----END PRIVATE KEY-----\n"
    return {
        "DB_PASSWORD": f"pw-{secrets.token_hex(12)}".encode(),
        "TLS_KEY": pem.encode(),
        "NL_SECRET": f"nl-{secrets.token_hex(10)}\n".encode(),
    }


def needles(values: dict[str, bytes]) -> dict[str, bytes]:
    """What must never be seen: each value, its lines, and the encodings the jobs print."""
    found: dict[str, bytes] = {}
    for name, value in values.items():
        stripped = value.rstrip(b"\n")
        found[f"{name}"] = stripped
        found[f"{name}:base64"] = base64.b64encode(stripped)
        found[f"{name}:urlencoded"] = urllib.parse.quote(stripped, safe="").encode()
        for number, line in enumerate(stripped.split(b"\n")):
            if len(line) >= 16:
                found[f"{name}:line{number}"] = line
    return found


@dataclass
class LeakCheck:
    values: dict[str, bytes]
    # More forms to look for, by label (what a job printed them with).
    extra: dict[str, bytes] = field(default_factory=dict)
    checks: int = 0
    leaks: list[str] = field(default_factory=list)

    def search(self, place: str, haystack: bytes | str) -> None:
        data = haystack.encode() if isinstance(haystack, str) else haystack
        for label, needle in {**needles(self.values), **self.extra}.items():
            self.checks += 1
            if needle in data:
                self.leaks.append(f"{label} in {place}")

    def report(self) -> None:
        print(f"leaks: {len(self.leaks)} of {self.checks} checks")
        assert not self.leaks, self.leaks


def key_create(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / "hodei-server"), "secret-key", "create", "--file", str(path)],
                          capture_output=True, timeout=60)


class DebugServer(ServerProcess):
    """The harness's server, logging at DEBUG: the most it ever writes to its log."""

    def launch(self) -> ServerProcess:
        config = self.workdir / "server.toml"
        config.write_text(self.config_text())
        self.ready_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(BIN / "hodei-server"), "--config", str(config), "--log-level", "DEBUG",
             "--ready-file", str(self.ready_path)],
            env={**os.environ, "HODEI_DATABASE_URL": self.database_url},
            stdin=subprocess.DEVNULL, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
        )
        return self


def start_server(tmp_path: Path, database_url: str, *, key: bool = True, workers: int = 2,
                 slots: int = 4) -> ServerProcess:
    extra = ""
    if key:
        key_file = tmp_path / "secret.key"
        made = key_create(key_file)
        assert made.returncode == 0, made.stderr
        extra = f'secret_key_file = "{key_file}"'
    return DebugServer(tmp_path, database_url, workers=workers, slots=slots,
                       extra_config=extra).start()


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[tuple[ServerProcess, dict[str, bytes]]]:
    """A server with a key file and two agents, and three secrets set through hodeictl."""
    server = start_server(tmp_path, database_url)
    values = _secret_values()
    try:
        for name, value in values.items():
            done = server.hodeictl("secret", "set", name, input=value)
            assert done.returncode == 0, done.stderr
        yield server, values
    finally:
        server.stop()


def sql(database_url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description is not None else []


def run_json(server: ServerProcess, *args: str) -> dict[str, object]:
    done = server.hodeictl(*args)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


LEAKY_SCRIPT = r"""
d="$HODEI_SECRETS_DIR"
v=$(cat "$d/DB_PASSWORD")
echo "plain: $v"
cat "$d/TLS_KEY"
cat "$d/NL_SECRET"
printf 'base64: '; printf '%s' "$v" | base64 -w0; echo
printf 'pem-base64: '; base64 -w0 < "$d/TLS_KEY"; echo
python3 -c 'import sys, urllib.parse as u; print("url: " + u.quote(sys.argv[1], safe=""))' "$v"
head=${v%????????}
printf 'split: %s' "$head"; sleep 0.4; printf '%s\n' "${v#"$head"}"
head -c 65530 /dev/zero | tr '\0' x; printf '%s\n' "$v"
echo "stderr: $v" >&2
printf 'nl-split: %s' "$(head -c 8 "$d/NL_SECRET")"; sleep 0.3; tail -c +9 "$d/NL_SECRET"
echo done
"""


def test_secret_values_never_leave_the_job_unredacted(
    stack: tuple[ServerProcess, dict[str, bytes]], database_url: str,
) -> None:
    server, values = stack
    job_file = server.workdir / "leaky.toml"
    job_file.write_text(
        f"script = '''{LEAKY_SCRIPT}'''\ninterpreter = \"bash\"\n"
        'secrets = ["DB_PASSWORD", "TLS_KEY", "NL_SECRET"]\n'
    )
    streamed = server.hodeictl("job", "run", "-f", str(job_file))
    assert streamed.returncode == 0, streamed.stderr
    assert b"done" in streamed.stdout
    assert streamed.stdout.count(b"[REDACTED:DB_PASSWORD]") >= 5
    assert b"[REDACTED:TLS_KEY]" in streamed.stdout
    assert b"[REDACTED:NL_SECRET]" in streamed.stdout
    assert b"stderr: [REDACTED:DB_PASSWORD]" in streamed.stderr
    [(job_id,)] = sql(database_url, "SELECT id FROM jobs")
    check = LeakCheck(values)
    check.search("hodeictl job run (StreamLogs, live)", streamed.stdout + streamed.stderr)
    stored = b"".join(bytes(r[0]) for r in sql(  # type: ignore[arg-type]
        database_url, "SELECT data FROM job_logs WHERE job_id = %s ORDER BY attempt, seq", job_id))
    check.search("job_logs table", stored)
    logs = server.hodeictl("job", "logs", str(job_id))
    check.search("hodeictl job logs (StreamLogs, history)", logs.stdout + logs.stderr)
    assert logs.stdout == streamed.stdout
    for args in (["job", "get", str(job_id)], ["job", "get", str(job_id), "-o", "json"],
                 ["job", "list", "-o", "json"], ["secret", "list"],
                 ["secret", "list", "-o", "json"]):
        shown = server.hodeictl(*args)
        assert shown.returncode == 0, shown.stderr
        check.search(f"hodeictl {' '.join(args)}", shown.stdout + shown.stderr)
    check.search("jobs table", repr(sql(database_url, "SELECT * FROM jobs")))
    check.search("job_attempts table", repr(sql(database_url, "SELECT * FROM job_attempts")))
    check.search("events table", repr(sql(database_url, "SELECT type, payload::text FROM events")))
    check.search("audit_log table", repr(sql(database_url, "SELECT * FROM audit_log")))
    check.search("secrets table (ciphertexts)", b"".join(
        bytes(r[0]) + bytes(r[1]) for r in sql(  # type: ignore[arg-type]
            database_url, "SELECT nonce, ciphertext FROM secrets")))
    server.stop()  # everything the server and its agents logged, flushed
    log_text = server.log_path.read_bytes()
    assert b" DEBUG " in log_text  # the server logged at its most verbose
    check.search("server (DEBUG) and agent log file", log_text)
    check.report()


# A job that puts a secret into URLs, JSON, HTML, shell commands and log lines the way
# libraries do, computed by those libraries (not by the agent's encoders).
LIBRARY_FORMS = r"""
import base64, html, json, os, shlex, sys, urllib.parse as u
v = open(os.path.join(os.environ["HODEI_SECRETS_DIR"], "WEIRD"), "rb").read()
t = v.decode()
for name, form in FORMS:
    print(name + ":", eval(form), flush=True)
print("stderr:", json.dumps(t, ensure_ascii=False), file=sys.stderr)
print("done")
"""
FORMS = [
    ("url-path", "u.quote(v)"),  # quote(safe='/'): the usual way into a URL
    ("url-query", "u.urlencode({'password': v})"),
    ("json-unicode", "json.dumps({'pw': t}, ensure_ascii=False)"),  # JSON.stringify, Go
    ("json-slash", "json.dumps(t).replace('/', '\\\\/')"),  # PHP's json_encode
    ("json-go-html", "json.dumps(t, ensure_ascii=False).replace('<', '\\\\u003c')"
                     ".replace('>', '\\\\u003e').replace('&', '\\\\u0026')"),
    ("html", "html.escape(t)"),
    ("shell", "'curl -u ' + shlex.quote('admin:' + t)"),
    ("repr", "repr({'password': t})"),
    ("hex", "v.hex()"),
    ("base64url", "base64.urlsafe_b64encode(v).decode()"),
]


def library_forms(value: bytes) -> dict[str, bytes]:
    """What the job above prints for `value`, less its surroundings."""
    text = value.decode()
    return {
        "url-path": urllib.parse.quote(value).encode(),
        "url-query": urllib.parse.quote_plus(value).encode(),
        "json-unicode": json.dumps(text, ensure_ascii=False)[1:-1].encode(),
        "json-slash": json.dumps(text)[1:-1].replace("/", "\\/").encode(),
        "json-go-html": json.dumps(text, ensure_ascii=False)[1:-1].replace("<", "\\u003c")
        .replace(">", "\\u003e").replace("&", "\\u0026").encode(),
        "html": html.escape(text).encode(),
        "shell": shlex.quote("admin:" + text)[1:-1].split("admin:", 1)[1].encode(),
        "repr": repr(text)[1:-1].encode(),
        "hex": value.hex().encode(),
        "base64url": base64.urlsafe_b64encode(value),
    }


def test_a_job_printing_a_secret_through_common_libraries_leaks_nothing(
    stack: tuple[ServerProcess, dict[str, bytes]], database_url: str,
) -> None:
    server, _ = stack
    weird = f"p/w+{secrets.token_hex(6)}=é'\"<&>\\ {secrets.token_urlsafe(6)}".encode()
    done = server.hodeictl("secret", "set", "WEIRD", input=weird)
    assert done.returncode == 0, done.stderr
    job_file = server.workdir / "libraries.toml"
    script = f"FORMS = {FORMS!r}\n{LIBRARY_FORMS}"
    job_file.write_text(f"script = '''{script}'''\ninterpreter = \"python3\"\n"
                        'secrets = ["WEIRD"]\n')
    streamed = server.hodeictl("job", "run", "-f", str(job_file))
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.endswith(b"done\n")
    lines = streamed.stdout.decode().splitlines()
    for name, _ in FORMS:  # each line printed, its secret replaced
        line = next(line for line in lines if line.startswith(f"{name}:"))
        assert "[REDACTED:WEIRD]" in line, line
    assert b"[REDACTED:WEIRD]" in streamed.stderr
    check = LeakCheck({"WEIRD": weird}, extra={f"WEIRD:{name}": form for name, form
                                               in library_forms(weird).items()})
    check.search("hodeictl job run (StreamLogs, live)", streamed.stdout + streamed.stderr)
    [(job_id,)] = sql(database_url, "SELECT id FROM jobs")
    stored = b"".join(bytes(r[0]) for r in sql(  # type: ignore[arg-type]
        database_url, "SELECT data FROM job_logs WHERE job_id = %s ORDER BY seq", job_id))
    check.search("job_logs table", stored)
    logs = server.hodeictl("job", "logs", str(job_id))
    check.search("hodeictl job logs (StreamLogs, history)", logs.stdout + logs.stderr)
    server.stop()
    check.search("server and agent log file", server.log_path.read_bytes())
    check.report()


def test_a_reason_is_redacted_before_it_is_stored(
    stack: tuple[ServerProcess, dict[str, bytes]], database_url: str,
) -> None:
    server, values = stack
    password = values["DB_PASSWORD"].decode()
    # A job whose failure message quotes the value (here, through its working directory).
    done = server.hodeictl("job", "run", "--secret", "DB_PASSWORD", "-w",
                           f"/nonexistent/{password}", "--", "true")
    assert done.returncode == 1
    job = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)[0]
    assert "[REDACTED:DB_PASSWORD]" in job["reason"]
    check = LeakCheck({"DB_PASSWORD": values["DB_PASSWORD"]})
    check.search("jobs.reason", repr(sql(database_url, "SELECT reason FROM jobs")))
    check.search("job_attempts.reason", repr(sql(database_url, "SELECT reason FROM job_attempts")))
    check.search("events", repr(sql(database_url, "SELECT payload::text FROM events")))
    check.search("job_logs", repr(sql(database_url, "SELECT data FROM job_logs")))
    check.report()


def test_delivery_modes(stack: tuple[ServerProcess, dict[str, bytes]], tmp_path: Path) -> None:
    server, values = stack
    probe = (
        'd="$HODEI_SECRETS_DIR"; echo "dir=$d"; stat -c "dir-mode=%a" "$d"; '
        'stat -c "file-mode=%a %n" "$d"/*; echo "env=${DB_PASSWORD:-unset}"; '
        'cmp -s "$d/DB_PASSWORD" "$EXPECTED_FILE" && echo same-bytes'
    )
    (tmp_path / "expected").write_bytes(values["DB_PASSWORD"])
    done = server.hodeictl("job", "run", "--secret", "DB_PASSWORD", "--secret", "TLS_KEY",
                           "-e", f"EXPECTED_FILE={tmp_path / 'expected'}",
                           "--script", probe)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "dir-mode=700" in out and out.count("file-mode=600") == 2 and "same-bytes" in out
    assert "env=unset" in out  # no environment variable unless the spec asks
    directory = out.split("dir=")[1].split()[0]
    assert not os.path.exists(directory)  # removed when the job ended

    job_file = tmp_path / "stdin.toml"
    job_file.write_text(
        'command = ["python3", "-c", "import json, os, sys; d = json.load(sys.stdin); '
        'print(sorted(d), len(d[\'db\']), os.environ.get(\'HODEI_SECRETS_DIR\', \'none\'), '
        'len(os.environ[\'PW\']), \'TLS_KEY\' in os.environ)"]\n'
        'secret_delivery = "stdin"\n'
        '[[secrets]]\nname = "DB_PASSWORD"\nas_file = "db"\nas_env = "PW"\n'
        '[[secrets]]\nname = "TLS_KEY"\n'
    )
    done = server.hodeictl("job", "run", "-f", str(job_file))
    assert done.returncode == 0, done.stderr
    expected = f"['TLS_KEY', 'db'] {len(values['DB_PASSWORD'])} none " \
               f"{len(values['DB_PASSWORD'])} False\n"
    assert done.stdout.decode() == expected


def test_each_resolution_is_one_audit_row_without_the_value(
    stack: tuple[ServerProcess, dict[str, bytes]], database_url: str,
) -> None:
    server, values = stack
    done = server.hodeictl("job", "run", "--secret", "DB_PASSWORD", "--secret", "TLS_KEY",
                           "--max-attempts", "2", "--retry-on", "failed", "--backoff", "0.1",
                           "--", "sh", "-c", "exit 1")
    assert done.returncode == 1
    [(job_id,)] = sql(database_url, "SELECT id FROM jobs")
    workers = dict(sql(database_url, "SELECT attempt, worker_id FROM job_attempts"))
    rows = sql(database_url, "SELECT actor, target, allowed, detail FROM audit_log "
                             "WHERE action = 'secret.resolve' ORDER BY id")
    assert len(rows) == 4  # two secrets, two attempts
    assert {(r[3]["secret"], r[3]["attempt"]) for r in rows} == {  # type: ignore[index]
        ("DB_PASSWORD", 1), ("TLS_KEY", 1), ("DB_PASSWORD", 2), ("TLS_KEY", 2)}
    assert all(r[1] == str(job_id) and r[2] is True for r in rows)
    # The actor is the worker each attempt was assigned to.
    assert all(r[0] == f"worker:{workers[r[3]['attempt']]}" for r in rows)  # type: ignore[index]
    sets = sql(database_url, "SELECT count(*) FROM audit_log WHERE action = 'secret.set'")
    assert sets == [(3,)]
    check = LeakCheck(values)
    check.search("audit_log", repr(sql(database_url, "SELECT * FROM audit_log")))
    check.report()


def test_ciphertexts_are_bound_to_key_and_name(
    stack: tuple[ServerProcess, dict[str, bytes]], database_url: str,
) -> None:
    server, values = stack
    rows = sql(database_url, "SELECT name, key_id, nonce, ciphertext FROM secrets ORDER BY name")
    assert [r[0] for r in rows] == sorted(values)
    keyring = Keyring.load(str(server.workdir / "secret.key"), environ={})
    wrong = Keyring([os.urandom(32)])
    checks = 0
    for name, key_id, nonce, ciphertext in rows:
        sealed = Sealed(str(key_id), bytes(nonce), bytes(ciphertext))  # type: ignore[arg-type]
        assert values[str(name)] not in sealed.ciphertext
        assert keyring.open(str(name), sealed) == values[str(name)]
        with pytest.raises(Exception, match="not configured"):
            wrong.open(str(name), sealed)
        forged = Sealed(wrong.current_id, sealed.nonce, sealed.ciphertext)
        with pytest.raises(Exception, match="does not decrypt"):
            wrong.open(str(name), forged)
        with pytest.raises(Exception, match="does not decrypt"):
            keyring.open("OTHER_NAME", sealed)
        checks += 4
    print(f"ciphertext checks: {checks}, all refused as they should be")
    # Moved to another name in the database: the job fails with a reason, not a value.
    sql(database_url, "UPDATE secrets SET (key_id, nonce, ciphertext) = "
                      "(SELECT key_id, nonce, ciphertext FROM secrets WHERE name = 'TLS_KEY') "
                      "WHERE name = 'DB_PASSWORD'")
    done = server.hodeictl("job", "run", "--secret", "DB_PASSWORD", "--", "true")
    assert done.returncode == 1
    job = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)[0]
    assert "does not decrypt" in job["reason"]
    check = LeakCheck(values)
    check.search("job reason", job["reason"])
    check.report()


def test_missing_short_and_keyless(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "one-slot").mkdir()
    server = start_server(tmp_path / "one-slot", database_url, workers=1, slots=1)
    try:
        missing = server.hodeictl("job", "run", "--secret", "NOPE", "--", "true")
        assert missing.returncode == 2
        assert b"secret 'NOPE' does not exist (set it with: hodeictl secret set NOPE)" \
            in missing.stderr
        short = server.hodeictl("secret", "set", "TINY", input=b"abc")
        assert short.returncode == 2 and b"shorter than 4 bytes" in short.stderr
        assert b"Traceback" not in short.stderr
        assert server.hodeictl("secret", "set", "GOES", input=b"going-away").returncode == 0
        # The only slot is busy; the job waits; its secret is deleted before it dispatches.
        blocker = server.hodeictl("job", "submit", "--", "sleep", "60")
        waiting = server.hodeictl("job", "submit", "--secret", "GOES", "--", "echo", "ran")
        assert blocker.returncode == waiting.returncode == 0
        job_id = waiting.stdout.decode().strip()
        assert server.hodeictl("secret", "delete", "GOES").stdout == b"Secret GOES deleted.\n"
        assert server.hodeictl("job", "cancel", blocker.stdout.decode().strip()).returncode == 0
        deadline = time.monotonic() + 60
        job: dict[str, object] = {}
        while time.monotonic() < deadline:
            job = run_json(server, "job", "get", job_id, "-o", "json")
            if job["state"] in ("failed", "succeeded"):
                break
            time.sleep(0.2)
        assert job["state"] == "failed"
        assert job["reason"] == "secret 'GOES' no longer exists"
        logs = server.hodeictl("job", "logs", job_id)
        assert b"ran" not in logs.stdout
    finally:
        server.stop()
    # A server without a key: setting a secret says how to configure one, in one line.
    keyless = start_server(tmp_path, database_url, key=False, workers=0)
    try:
        refused = keyless.hodeictl("secret", "set", "X", input=b"some-value")
        assert refused.returncode == 1
        lines = refused.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "hodei-server secret-key create" in lines[0]
        assert "secret_key_file" in lines[0]
    finally:
        keyless.stop()


class SpyAgent:
    """A worker registered with a real bootstrap token that records every server message."""

    def __init__(self, address: str, token: str, running: list[tuple[str, int]] = ()) -> None:
        self.channel = grpc.insecure_channel(address)
        stub = agent_pb2_grpc.WorkerAgentServiceStub(self.channel)
        reply = stub.Register(agent_pb2.RegisterRequest(
            bootstrap_token=token, name=f"spy-{uuid.uuid4().hex[:6]}", hostname="spy",
            capacity=workers_pb2.Capacity(slots=4), agent_version="spy"), timeout=10)
        self.worker_id, self.credential = reply.worker_id, reply.credential
        self.stub = stub
        self.received: list[agent_pb2.ServerMessage] = []
        self.outgoing: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.connect(running)

    def connect(self, running: list[tuple[str, int]] = ()) -> None:
        self.outgoing = queue.Queue()
        self.outgoing.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            worker_id=self.worker_id,
            running=[agent_pb2.RunningJob(job_id=j, attempt=a) for j, a in running],
            capacity=workers_pb2.Capacity(slots=4))))
        outgoing = self.outgoing

        def requests() -> Iterator[agent_pb2.AgentMessage]:
            while (message := outgoing.get()) is not None:
                yield message

        self.call = self.stub.Connect(requests(), metadata=(
            ("authorization", f"Bearer {self.credential}"),
            ("x-hodei-worker-id", self.worker_id)))
        call = self.call

        def receive() -> None:
            try:
                for message in call:  # a batch is its messages, as for a real agent
                    self.received.extend(message.batch.messages
                                         if message.WhichOneof("msg") == "batch" else [message])
            except grpc.RpcError:
                pass

        threading.Thread(target=receive, daemon=True).start()

    def heartbeat(self) -> None:
        self.outgoing.put(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat()))

    def send(self, message: agent_pb2.AgentMessage) -> None:
        self.outgoing.put(message)

    def close(self) -> None:
        self.outgoing.put(None)
        self.call.cancel()

    def close_all(self) -> None:
        self.close()
        self.channel.close()


def test_secrets_travel_only_to_the_assigned_agent(
    stack: tuple[ServerProcess, dict[str, bytes]], database_url: str,
) -> None:
    server, values = stack
    minted = subprocess.run(
        [str(BIN / "hodei-server"), "token", "create", "--database-url", database_url,
         "--label", "site=spy", "--ttl", "10m"], capture_output=True, timeout=60)
    assert minted.returncode == 0, minted.stderr
    spy = SpyAgent(server.address, minted.stdout.decode().strip())
    try:
        server.wait_workers(3)
        job_ids = []
        for _ in range(4):
            done = server.hodeictl("job", "run", "--secret", "DB_PASSWORD", "--secret",
                                   "TLS_KEY", "-s", "provider=local", "--", "sh", "-c",
                                   'cat "$HODEI_SECRETS_DIR/DB_PASSWORD"')
            assert done.returncode == 0 and done.stdout == b"[REDACTED:DB_PASSWORD]", done
            job_ids.append(sql(database_url, "SELECT id, attempt FROM jobs ORDER BY created_at "
                                             "DESC LIMIT 1")[0])
        # The spy claims one of those jobs as its own, reports it running and finished, and
        # reconnects announcing it: it is told to stop it, and receives no secret.
        job_id, attempt = job_ids[0]
        spy.send(agent_pb2.AgentMessage(job_accepted=agent_pb2.JobAccepted(
            job_id=str(job_id), attempt=int(attempt), pid=1)))  # type: ignore[call-overload]
        spy.heartbeat()
        time.sleep(1.0)
        spy.close()
        spy.connect(running=[(str(job_id), int(attempt))])  # type: ignore[call-overload]
        spy.heartbeat()
        time.sleep(1.5)
        kinds = {m.WhichOneof("msg") for m in spy.received}
        assert "run_job" not in kinds
        assert "cancel_job" in kinds  # the server fenced the announced job, nothing more
        check = LeakCheck(values)
        check.search("every message the other agent received",
                     b"".join(m.SerializeToString() for m in spy.received))
        check.report()
        print(f"messages received by the other agent: {len(spy.received)} ({sorted(kinds)})")
    finally:
        spy.close_all()

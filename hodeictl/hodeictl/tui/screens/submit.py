"""The submit form: a command or script, labels, selector, resources, timeout, retries,
secrets by name; or a job file, the form's fields overriding it.

The spec is built by `hodeictl.jobfile` exactly as `hodeictl job submit` builds it, so the
form and the command line accept and refuse the same things.
"""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path
from typing import ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea

from hodei_api.v1 import jobs_pb2
from hodeictl import durations, jobfile
from hodeictl.errors import HodeiCtlError, UsageError
from hodeictl.tui.console import Console
from hodeictl.tui.live import one_line

FIELDS = (
    ("name", "Name", "a name for the job (optional)"),
    ("command", "Command", "argv, shell-quoted: python3 -c 'print(1)'"),
    ("interpreter", "Interpreter", "for the script: sh (default), bash, python3"),
    ("labels", "Labels", "KEY=VALUE ..."),
    ("selector", "Selector", "worker labels, KEY=VALUE ..."),
    ("cpus", "CPUs", "e.g. 0.5"),
    ("memory", "Memory MiB", "e.g. 512"),
    ("timeout", "Timeout", "e.g. 90s, 5m, 1h30m"),
    ("attempts", "Max attempts", "total attempts, e.g. 3"),
    ("retry_on", "Retry on", "lost failed timed_out"),
    ("secrets", "Secrets", "names: DB_PASSWORD env:TOKEN"),
    ("file", "Job file", "a job file (TOML); the fields above override it"),
)


def _words(value: str) -> list[str]:
    return value.replace(",", " ").split()


def build_spec(values: dict[str, str], script: str) -> jobs_pb2.JobSpec:
    """The JobSpec the form describes; raises UsageError saying what to fix."""
    base = jobfile.JobOptions()
    if path := values.get("file", "").strip():
        base = jobfile.load(Path(path).expanduser())
    form = jobfile.JobOptions(
        name=values.get("name", "").strip() or None,
        labels=jobfile.parse_pairs(_words(values.get("labels", "")), "labels"),
        selector=jobfile.parse_pairs(_words(values.get("selector", "")), "selector"),
        secrets=[{"name": name} for name in _words(values.get("secrets", ""))],
    )
    if command := values.get("command", "").strip():
        try:
            form.command = shlex.split(command)
        except ValueError as error:
            raise UsageError(f"command: {error}") from None
    if script.strip():
        form.script = script
        form.interpreter = values.get("interpreter", "").strip() or None
    if cpus := values.get("cpus", "").strip():
        form.cpus = _number(cpus, "CPUs", float)
    if memory := values.get("memory", "").strip():
        form.memory_mb = int(_number(memory, "Memory MiB", int))
    if timeout := values.get("timeout", "").strip():
        try:
            form.timeout_seconds = durations.parse(timeout)
        except ValueError:
            raise UsageError(f"timeout: {timeout!r} is not a duration (90s, 5m, 1h30m)") from None
    if attempts := values.get("attempts", "").strip():
        form.max_attempts = int(_number(attempts, "Max attempts", int))
    if retry_on := _words(values.get("retry_on", "")):
        unknown = [w for w in retry_on if w not in jobfile.RETRY_ON]
        if unknown:
            raise UsageError(f"retry on: {unknown[0]!r} is not one of "
                             + ", ".join(jobfile.RETRY_ON))
        form.retry_on = retry_on
    return jobfile.to_spec(jobfile.merge(base, form))


def _number(text: str, field: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{field}: {text!r} is not a number") from None
    if value < 0:
        raise UsageError(f"{field}: must not be negative")
    return float(value)


class SubmitScreen(ModalScreen[None]):
    """Fill in, then ctrl+s (or the Submit button); Esc leaves without submitting."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Submit"),
        Binding("escape", "dismiss", "Back"),
    ]
    AUTO_FOCUS = "#field-command"

    def __init__(self) -> None:
        super().__init__()
        # One key per form: submitting twice (a retried click) makes one job.
        self.idempotency_key = f"tui-{uuid.uuid4()}"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="submit-form"):
            yield Label("New job", id="submit-title")
            for key, label, placeholder in FIELDS[:3]:
                with Horizontal(classes="field"):
                    yield Label(label)
                    yield Input(placeholder=placeholder, id=f"field-{key}")
            with Horizontal(classes="field script"):
                yield Label("Script")
                yield TextArea(id="field-script")
            for key, label, placeholder in FIELDS[3:]:
                with Horizontal(classes="field"):
                    yield Label(label)
                    yield Input(placeholder=placeholder, id=f"field-{key}")
            yield Label("", id="submit-error")
            with Horizontal(id="submit-buttons"):
                yield Button("Submit (ctrl+s)", id="submit", variant="primary")
                yield Button("Back (Esc)", id="back")

    def values(self) -> dict[str, str]:
        return {key: self.query_one(f"#field-{key}", Input).value for key, _, _ in FIELDS}

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss()

    def on_input_submitted(self) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        app = cast(Console, self.app)
        error_label = self.query_one("#submit-error", Label)
        try:
            spec = build_spec(self.values(), self.query_one("#field-script", TextArea).text)
        except HodeiCtlError as error:
            error_label.update(Text(one_line(str(error))))
            return
        key = self.idempotency_key

        def submitted(reply: jobs_pb2.SubmitJobResponse) -> None:
            app.apply_job(reply.job)
            app.notify(f"submitted {reply.job.id}")
            self.dismiss()

        app.act("submit", lambda client: client.submit_job(spec, key), submitted)

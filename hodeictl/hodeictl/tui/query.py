"""The jobs filter typed after `/`: words that narrow the job list.

`state:failed` (or `state:failed,lost`), `label:team=infra`, `worker:NAME-OR-ID` and any
other word, matched against a job's id, name and command. Words combine with AND.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hodei_api.v1 import jobs_pb2
from hodeictl.errors import UsageError

STATE_NAMES = {
    name.removeprefix("JOB_STATE_").lower(): value
    for name, value in jobs_pb2.JobState.items()
    if value != jobs_pb2.JOB_STATE_UNSPECIFIED
}
KEYS = ("state", "label", "worker")


@dataclass(frozen=True)
class JobQuery:
    """A parsed filter. The states go to the server; the rest narrows what it sends."""

    states: frozenset[int] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()
    workers: tuple[str, ...] = ()
    words: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.states or self.labels or self.workers or self.words)

    def matches(self, job: jobs_pb2.Job, worker_names: dict[str, str] | None = None) -> bool:
        """Whether `job` passes every word of the filter."""
        if self.states and job.state not in self.states:
            return False
        for key, value in self.labels:
            if job.spec.labels.get(key) != value:
                return False
        if self.workers:
            name = (worker_names or {}).get(job.worker_id, "")
            if not any(w in (job.worker_id, name) or (len(w) >= 4 and job.worker_id.startswith(w))
                       for w in self.workers):
                return False
        if self.words:
            haystack = " ".join((job.id, job.spec.name, " ".join(job.spec.command),
                                 job.spec.script)).lower()
            if not all(word in haystack for word in self.words):
                return False
        return True

    def text(self) -> str:
        """The filter as it would be typed."""
        parts = []
        if self.states:
            names = sorted(n for n, v in STATE_NAMES.items() if v in self.states)
            parts.append("state:" + ",".join(names))
        parts += [f"label:{k}={v}" for k, v in self.labels]
        parts += [f"worker:{w}" for w in self.workers]
        parts += list(self.words)
        return " ".join(parts)


def parse(text: str) -> JobQuery:
    """The query for `text`; raises UsageError with what to fix."""
    states: set[int] = set()
    labels: list[tuple[str, str]] = []
    workers: list[str] = []
    words: list[str] = []
    for word in text.split():
        key, sep, value = word.partition(":")
        if not sep or key.lower() not in KEYS:
            words.append(word.lower())
            continue
        key = key.lower()
        if not value:
            raise UsageError(f"{key}: needs a value, e.g. {_example(key)}")
        if key == "state":
            for name in value.lower().split(","):
                if name not in STATE_NAMES:
                    raise UsageError(f"unknown state {name!r}; one of: "
                                     + ", ".join(STATE_NAMES))
                states.add(STATE_NAMES[name])
        elif key == "label":
            label, eq, label_value = value.partition("=")
            if not eq or not label:
                raise UsageError(f"label: expects KEY=VALUE, e.g. {_example(key)}")
            labels.append((label, label_value))
        else:
            workers.append(value)
    return JobQuery(frozenset(states), tuple(labels), tuple(workers), tuple(words))


def _example(key: str) -> str:
    return {"state": "state:failed", "label": "label:team=infra", "worker": "worker:w1"}[key]

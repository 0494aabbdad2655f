"""Jobs and workers as people name them: a full id, a unique prefix of one, or a name.

A job: its id; the start of its id as tables show it (`a5541420`), refused when it starts
more than one job's id, listing them; or its name, meaning the newest job of that name (a
note on stderr says so when there are others). A worker: its id, a unique prefix, or its
name. What matches nothing is NotFound, saying what was looked for.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hodeictl.errors import NotFound, UsageError
from hodeictl.output import note
from hodeictl.values import shown

if TYPE_CHECKING:
    from hodei_api.v1 import jobs_pb2, workers_pb2
    from hodeictl.client import HodeiClient

_PREFIX = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{0,35}")
# Candidates listed when a prefix is ambiguous.
SHOWN_CANDIDATES = 5
MAX_REF = 253


def full_id(ref: str) -> str | None:
    """The canonical form of `ref` if it is a whole id (a UUID), else None."""
    if len(ref) < 32:
        return None
    import uuid

    try:
        return str(uuid.UUID(ref))
    except ValueError:
        return None


def short_length(ids: list[str], least: int = 8) -> int:
    """How much of each id a table shows: `least` characters, or more until no two of
    `ids` look the same (like git's abbreviated hashes)."""
    length = least
    while length < 36 and len({i[:length] for i in ids}) < len(set(ids)):
        length += 1
    return length


def _describe(job: jobs_pb2.Job) -> str:
    from hodeictl.output import job_state

    return f"{job.id} ({job.spec.name or 'no name'}, {job_state(job.state)})"


async def job_id(client: HodeiClient, ref: str) -> str:
    """The id of the job `ref` names; raises NotFound or UsageError (ambiguous)."""
    from hodeictl.client import job_filter

    if not ref or len(ref) > MAX_REF:
        raise UsageError(f"{shown(ref)} is not a job id, id prefix or name")
    if (full := full_id(ref)) is not None:
        return full
    if _PREFIX.fullmatch(ref):
        found = await client.list_jobs(job_filter(id_prefix=ref.lower()), SHOWN_CANDIDATES + 1)
        if len(found) == 1:
            return found[0].id
        if len(found) > 1:
            more = " ..." if len(found) > SHOWN_CANDIDATES else ""
            listed = "; ".join(_describe(job) for job in found[:SHOWN_CANDIDATES])
            raise UsageError(f"{shown(ref)} starts more than one job id: {listed}{more}; "
                             "give more of the id")
    # The server matches a name with * or ? in it as a glob: keep the exact matches.
    named = [job for job in await client.list_jobs(job_filter(name_glob=ref), 50)
             if job.spec.name == ref]
    if not named:
        raise NotFound(f"no job has an id starting with, or the name, {shown(ref)}")
    if len(named) > 1:
        note(f"{ref}: the newest of several jobs of that name, {named[0].id}")
    return named[0].id


async def worker_id(client: HodeiClient, ref: str) -> str:
    """The id of the worker `ref` names: a whole id as it is (the server says what it knows
    of it), else the live worker with that name or unique id prefix."""
    if (full := full_id(ref)) is not None:
        return full
    return (await worker(client, ref)).id


async def worker(client: HodeiClient, ref: str) -> workers_pb2.Worker:
    """The live worker `ref` names (id, unique id prefix, or name)."""
    workers = await client.list_workers(include_gone=False)
    exact = [w for w in workers if w.id == ref or w.name == ref]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [w for w in workers if _PREFIX.fullmatch(ref)
                        and w.id.startswith(ref.lower())]
    if not matches:
        raise NotFound(f"no live worker has the id, an id starting with, or the name "
                       f"{shown(ref)}")
    if len(matches) > 1:
        listed = "; ".join(f"{w.id} ({w.name or 'no name'})" for w in matches[:5])
        raise UsageError(f"{shown(ref)} names more than one worker: {listed}; give its id")
    return matches[0]

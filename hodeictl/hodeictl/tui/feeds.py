"""The seam between the server's streams and the screens.

Each feed is an async iterator of updates: first a snapshot (`reset=True`), then changes
as the server sends them. A feed ends or raises when its stream breaks; the app then
reconnects with backoff and resumes from the last revision it applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NamedTuple

from hodei_api.v1 import jobs_pb2, workers_pb2
from hodeictl.client import HodeiClient

# How many of the newest jobs a snapshot holds (the server filters and pages the rest).
SNAPSHOT_JOBS = 2000
PAGE = 100


class JobsUpdate(NamedTuple):
    """Jobs to store (all of them when `reset`), ids to drop, and the revision reached."""

    reset: bool
    jobs: list[jobs_pb2.Job]
    removed: list[str]
    revision: int


class WorkersUpdate(NamedTuple):
    reset: bool
    workers: list[workers_pb2.Worker]
    removed: list[str]
    revision: int


async def list_jobs_page(
    client: HodeiClient, states: list[int], page_token: str, page_size: int = PAGE,
) -> tuple[list[jobs_pb2.Job], str]:
    """One page of jobs (newest first) and the token of the next ("" at the end)."""
    request = jobs_pb2.ListJobsRequest(states=states, page_size=page_size,
                                       page_token=page_token)
    reply = await client._call(client._jobs.ListJobs, request)
    return list(reply.jobs), reply.next_page_token


async def job_snapshot(client: HodeiClient, states: list[int],
                       limit: int = SNAPSHOT_JOBS) -> list[jobs_pb2.Job]:
    jobs: list[jobs_pb2.Job] = []
    token = ""
    while len(jobs) < limit:
        page, token = await list_jobs_page(client, states, token)
        jobs.extend(page)
        if not token or not page:
            break
    return jobs[:limit]


async def watch_jobs(client: HodeiClient, states: list[int],
                     after_revision: int = 0) -> AsyncIterator[JobsUpdate]:
    """The jobs in `states` (all when empty): a snapshot, then every change."""
    jobs = await job_snapshot(client, states)
    yield JobsUpdate(True, jobs, [], after_revision)
    await asyncio.Event().wait()  # the change stream plugs in here


async def watch_workers(client: HodeiClient,
                        after_revision: int = 0) -> AsyncIterator[WorkersUpdate]:
    """Every worker: a snapshot, then every change."""
    workers = await client.list_workers(include_gone=False)
    yield WorkersUpdate(True, workers, [], after_revision)
    await asyncio.Event().wait()  # the change stream plugs in here

"""A job with its events, as `job get` shows them (hodeictl.views words and draws them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hodei_api.v1 import events_pb2, jobs_pb2
    from hodeictl.client import HodeiClient

# How many of a job's latest events `job get` shows.
JOB_EVENTS = 200


async def job_with_events(
    client: HodeiClient, ref: str,
) -> tuple[jobs_pb2.Job, list[events_pb2.Event], str]:
    """The job `ref` names, its latest JOB_EVENTS events (oldest first), and a note when
    they could not be read or older ones were left out.

    A server without the event service (UNIMPLEMENTED) has no events to show: no note.
    """
    import grpc

    from hodei_api.v1 import events_pb2
    from hodeictl import resolve, streams
    from hodeictl.errors import HodeiCtlError

    job = await client.get_job(await resolve.job_id(client, ref))
    wanted = events_pb2.EventFilter(job_id=job.id)
    try:
        events = [event async for event in streams.watch_events(
            client, wanted, follow=False, limit=JOB_EVENTS)]
    except HodeiCtlError as error:
        cause: Any = error.__cause__
        if getattr(cause, "code", lambda: None)() == grpc.StatusCode.UNIMPLEMENTED:
            return job, [], ""
        return job, [], f"Events: not shown ({error})"
    more = (f"Events: the latest {JOB_EVENTS}; hodeictl events --job {job.id} --limit N "
            "shows more") if len(events) >= JOB_EVENTS else ""
    return job, events, more

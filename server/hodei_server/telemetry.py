"""The server's Prometheus instruments (served on `metrics_listen`); every layer may count
into them. What reads the database and serves them is `hodei_server.dispatch.metrics`.

Three kinds, so that a sum over replicas counts each thing once:
- What happens on one replica is counted there: dispatch rounds and errors, log chunks and
  bytes stored, the database pool in use.
- What the database holds (jobs and workers by state and provider, slots, workers' load)
  is read at scrape time by a collector, on the leader only: every replica would read the
  same rows.
- How long jobs wait, start and run: histograms the leader observes from the event feed,
  one observation per job transition, whichever replica made it.
No metric has a job id as a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

DISPATCH_ROUNDS = Counter("hodei_dispatch_rounds", "Dispatch rounds run by this replica.",
                          registry=REGISTRY)
PLACED_AT_SUBMISSION = Counter(
    "hodei_jobs_placed_at_submission",
    "Jobs this replica assigned as they were submitted, no job waiting (no claim round).",
    registry=REGISTRY)
DISPATCH_ERRORS = Counter("hodei_dispatch_errors", "Dispatch rounds that failed.",
                          registry=REGISTRY)
LOG_CHUNKS = Counter("hodei_log_chunks", "Output chunks stored by this replica.",
                     registry=REGISTRY)
LOG_BYTES = Counter("hodei_log_bytes", "Output bytes stored by this replica.",
                    registry=REGISTRY)

_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
QUEUE_WAIT = Histogram("hodei_job_queue_wait_seconds",
                       "From runnable (submitted, or due for a retry) to assigned.",
                       registry=REGISTRY, buckets=_BUCKETS)
SUBMIT_TO_START = Histogram("hodei_job_submit_to_start_seconds",
                            "From submitted to running, per attempt.",
                            registry=REGISTRY, buckets=_BUCKETS)
RUN_TIME = Histogram("hodei_job_run_seconds", "From running to its end, by how it ended.",
                     ["outcome"], registry=REGISTRY, buckets=_BUCKETS)

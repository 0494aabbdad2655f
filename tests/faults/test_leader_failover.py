"""kill -9 the reconciler leader replica: the other replica takes the lock over."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.faults.conftest import Recorder
from tests.faults.harness import FaultServer, wait_for

pytestmark = pytest.mark.e2e

LEADER_LINE = "this replica is now the reconciler leader"
LEADER_LOCK = 0x48_4F_44_45_49_02  # hodei_server.dispatch.reconciler._LEADER_LOCK


def lock_holders(url: str) -> list[int]:
    """Backend pids holding the leader advisory lock (a bigint key: classid high, objid low)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
            (LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFF_FFFF),
        ).fetchall()
    return [r[0] for r in rows]


def test_killing_the_leader_hands_the_reconciler_over(
    tmp_path: Path, database_url: str, servers: list[FaultServer], record_figure: Recorder,
) -> None:
    a = FaultServer(tmp_path, database_url, workers=0, name="a")
    b = FaultServer(tmp_path, database_url, workers=0, name="b")
    servers.extend([a, b])
    a.launch()
    b.launch()
    a.wait_ready()
    b.wait_ready()

    def leaders() -> list[FaultServer]:
        return [s for s in (a, b) if LEADER_LINE in s.log_text()]

    wait_for(lambda: leaders() and lock_holders(database_url), 15, "a leader")
    [leader] = leaders()
    follower = b if leader is a else a
    [old_backend] = lock_holders(database_url)
    leader.kill9()
    killed = time.monotonic()
    took_over = wait_for(lambda: LEADER_LINE in follower.log_text(), 30,
                         "the follower to take over", interval=0.01)
    holders = lock_holders(database_url)
    record_figure("takeover time (s)", round(took_over, 3))
    assert len(holders) == 1 and holders != [old_backend]
    assert time.monotonic() - killed < 10

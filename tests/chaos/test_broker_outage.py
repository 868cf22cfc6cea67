"""Broker outage: Redis stopped for 10 s while alerts keep arriving.

Ingestion does not need the broker: every alert is committed first and its
triage message published after the commit; a failed publish is logged and left
to the stuck-incident sweeper. The restarted Redis is empty (no persistence),
so every message queued before the outage is gone too: the sweeper re-sends
them all once beat and the workers have reconnected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.chaos.conftest import ChaosStack, report, scale

pytestmark = pytest.mark.chaos


def test_alerts_during_a_redis_outage_are_accepted_and_completed(
    chaos_stack: Callable[..., ChaosStack],
) -> None:
    stack = chaos_stack()
    redis = stack.backends.redis
    assert redis is not None
    before = stack.fire([f"before-{i}" for i in range(scale(20, minimum=5))])

    outage = 10.0
    redis.stop_server()
    started = time.monotonic()
    during: list[str] = []
    slowest = 0.0
    i = 0
    while time.monotonic() - started < outage:
        t0 = time.monotonic()
        r = stack.post_alert(f"during-{i}")
        slowest = max(slowest, time.monotonic() - t0)
        assert r.status_code == 202, (r.status_code, r.text)
        during.append(str(r.json()["incident_id"]))
        i += 1
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
    redis.start()  # same port, empty: everything queued before is lost
    after = stack.fire([f"after-{i}" for i in range(scale(20, minimum=5))])

    ids = before + during + after
    stored = len(stack.statuses(ids))
    waited = stack.wait_for(ids, lambda s: s == "awaiting_approval", 120, "awaiting approval")
    report(
        "broker-outage",
        {
            "outage_seconds": outage,
            "alerts_during_outage": len(during),
            "accepted_202": len(ids),
            "stored": stored,
            "slowest_webhook_during_outage_s": round(slowest, 2),
            "all_awaiting_approval_after_s": round(waited, 1),
            "duplicate_stage_results": stack.duplicate_stage_results(),
        },
    )
    assert stored == len(ids) == len(set(ids))
    assert stack.duplicate_stage_results() == 0
    assert len(during) >= 20

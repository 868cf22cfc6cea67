"""Database restart mid-flow: PostgreSQL stopped for a few seconds while alerts
arrive and incidents are being analysed, then started again.

During the outage the webhook answers 503 with a JSON reason (never a 500, never
a hang); the sender retries, as Alertmanager does. Workers whose transaction
failed retry their task. Afterwards every alert is stored exactly once, one
incident per alert group, and every incident reaches approval with no stage
result written twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from tests.chaos.conftest import ChaosStack, report, scale

pytestmark = pytest.mark.chaos


def test_postgres_restart_answers_503_then_loses_nothing(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack()
    pg = stack.backends.pg
    assert pg is not None
    n = scale(150, minimum=30)
    keys = [f"pg-restart-{i}" for i in range(n)]
    outage_at, outage_seconds = n // 3, 4.0
    unavailable: list[dict[str, object]] = []
    other_errors: list[tuple[int, str]] = []
    pending: list[str] = []
    accepted: dict[str, str] = {}
    restarted_at = 0.0

    def post(key: str) -> None:
        try:
            r = stack.post_alert(key, timeout=15)
        except requests.RequestException as exc:  # connection dropped mid-request: retry it
            other_errors.append((0, repr(exc)))
            pending.append(key)
            return
        if r.status_code == 202:
            accepted[key] = str(r.json()["incident_id"])
        elif r.status_code == 503:
            unavailable.append(r.json())
            pending.append(key)
        else:
            other_errors.append((r.status_code, r.text[:200]))
            pending.append(key)

    for i, key in enumerate(keys):
        if i == outage_at:
            pg.stop_server("fast")
            down_since = time.monotonic()
        if i > outage_at and not restarted_at and time.monotonic() - down_since > outage_seconds:
            pg._pg_ctl_start()
            restarted_at = time.monotonic()
        post(key)
        time.sleep(0.05)
    if not restarted_at:
        time.sleep(max(0.0, outage_seconds - (time.monotonic() - down_since)))
        pg._pg_ctl_start()
    # The sender retries what was refused, with a pause, as Alertmanager does.
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        retry, pending[:] = list(pending), []
        time.sleep(1.0)
        for key in retry:
            post(key)
    assert not pending, f"{len(pending)} alerts never accepted"

    ids = [accepted[k] for k in keys]
    waited = stack.wait_for(ids, lambda s: s == "awaiting_approval", 120, "awaiting approval")
    per_key = stack.query(
        "SELECT fingerprint, count(*) FROM incidents WHERE fingerprint LIKE '%pg-restart-%' GROUP BY fingerprint"
    )
    dup_results = stack.duplicate_stage_results()
    report(
        "database-restart",
        {
            "alerts": n,
            "outage_seconds": outage_seconds,
            "answered_503_json": len(unavailable),
            "answered_other_error": len(other_errors),
            "incidents": len(per_key),
            "duplicate_incidents": sum(1 for _, c in per_key if c != 1),
            "duplicate_stage_results": dup_results,
            "all_awaiting_approval_after_s": round(waited, 1),
        },
    )
    assert unavailable, "no request hit the outage"
    assert all(u.get("error") == "service_unavailable" and u.get("reason") for u in unavailable)
    assert not [e for e in other_errors if e[0] >= 500 and e[0] != 503], other_errors[:5]
    assert len(per_key) == n and all(c == 1 for _, c in per_key)
    assert len(set(ids)) == n
    assert dup_results == 0

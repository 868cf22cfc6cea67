"""Workers killed mid-stage: `kill -9` every ~2 s while incidents flow, then
while their plans execute.

Two kinds of kill alternate: the whole analysis worker (threads pool, its
process group; it is restarted, and its unacknowledged messages are recovered
by the stuck-incident sweeper) and one prefork child of the ops worker (its
parent re-queues the message: acks_late + reject_on_worker_lost).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.conftest import ChaosStack, Repeater, report, scale

pytestmark = pytest.mark.chaos


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_kill_9_workers_every_two_seconds(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack()
    n = scale(200, minimum=20)
    analysis, ops = stack.workers
    kills = {"analysis_worker": 0, "ops_child": 0}
    lock = threading.Lock()
    turn = [0]

    def kill_one() -> None:
        with lock:
            turn[0] += 1
            if turn[0] % 2:
                analysis.kill(signal.SIGKILL)
                assert analysis.proc is not None
                analysis.proc.wait(10)
                analysis.start()
                kills["analysis_worker"] += 1
            elif ops.proc is not None:
                children = _children(ops.proc.pid)
                if children:
                    os.kill(random.choice(children), signal.SIGKILL)
                    kills["ops_child"] += 1

    keys = [f"kill-{i}" for i in range(n)]
    flow_seconds = max(10.0, 20.0 * n / 200)  # incidents keep arriving while workers die
    with Repeater(kill_one, 2.0, limit=240) as killer:
        ids = stack.fire_paced(keys, flow_seconds)
        waited = stack.wait_for(ids, lambda s: s == "awaiting_approval", 150, "awaiting approval")
        to_approval = sum(1 for s in stack.statuses(ids).values() if s == "awaiting_approval")
        decisions = []
        for i, incident_id in enumerate(ids):  # approvals spread out too: plans execute under kills
            decisions.append(stack.decide(incident_id, True, "chaos"))
            if i % 10 == 9:
                time.sleep(flow_seconds / max(1, n / 10))
        assert all(r.status_code == 200 for r in decisions), {r.status_code for r in decisions}
        # A step interrupted by a kill stays `running` until its lease (step timeout + 60 s)
        # expires; it is then recorded as outcome unknown, never re-run, and the incident
        # escalates after rolling back what completed. Everything else resolves.
        stack.wait_for(ids, lambda s: s in ("resolved", "escalated"), 150, "closed")
    assert not killer.errors, killer.errors

    final = stack.statuses(ids)
    dup_results = stack.duplicate_stage_results()
    dup_rows = stack.duplicate_step_rows()
    twice = stack.steps_run_twice()
    unknown = int(stack.query("SELECT count(*) FROM step_runs WHERE status = 'unknown'")[0][0])
    report(
        "worker-kill",
        {
            "incidents": n,
            "reached_awaiting_approval": to_approval,
            "seconds_after_last_alert_to_all_awaiting": round(waited, 1),
            "resolved": sum(1 for s in final.values() if s == "resolved"),
            "escalated_after_interrupted_step": sum(1 for s in final.values() if s == "escalated"),
            "kills": kills["analysis_worker"] + kills["ops_child"],
            "kills_analysis_worker": kills["analysis_worker"],
            "kills_ops_child": kills["ops_child"],
            "duplicate_stage_results": dup_results,
            "duplicate_step_records": dup_rows,
            "steps_executed_twice": len(twice),
            "steps_outcome_unknown": unknown,
        },
    )
    assert to_approval == n
    assert dup_results == 0 and dup_rows == 0
    assert twice == [], twice[:5]
    assert kills["analysis_worker"] + kills["ops_child"] >= 3
    # An incident escalates only because one of its steps was interrupted by a kill.
    escalated = [i for i, s in final.items() if s == "escalated"]
    if escalated:
        rows = stack.query(
            "SELECT count(DISTINCT incident_id) FROM step_runs WHERE status = 'unknown' AND incident_id = ANY(:ids)",
            ids=escalated,
        )
        assert int(rows[0][0]) == len(escalated)
    # And never resolves past one: a resolved incident has no step of unknown outcome.
    resolved = [i for i, s in final.items() if s == "resolved"]
    if resolved:
        rows = stack.query(
            "SELECT count(*) FROM step_runs WHERE status = 'unknown' AND incident_id = ANY(:ids)",
            ids=resolved,
        )
        assert int(rows[0][0]) == 0

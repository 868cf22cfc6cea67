"""Web process restarts while incidents await approval: approval is state in the
database, not in a web process, so a new web process takes the decisions and the
plans run to the post-mortem.

- killed (-9): whatever was in flight is lost to its sender, nothing else;
- stopped gracefully (SIGTERM, what a deploy or a scale-down sends): granian stops
  accepting, finishes the requests in flight, then exits. Every alert it stored
  was answered 202 and every 202 was stored; no decision it recorded went
  unanswered (a sender retrying a refused approval gets 200, never 409).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.chaos.conftest import ChaosStack, report, scale

pytestmark = pytest.mark.chaos


def test_approve_after_a_web_restart_completes(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack(env={"REMEDIATION_EXECUTOR": "dry-run"})
    n = scale(20, minimum=5)
    ids = stack.fire([f"web-restart-{i}" for i in range(n)])
    stack.wait_for(ids, lambda s: s == "awaiting_approval", 60, "awaiting approval")

    stack.web.kill()  # SIGKILL the whole granian process group, no graceful shutdown
    assert stack.web.proc is not None
    stack.web.proc.wait(10)
    stack.web.proc = None
    stack.web.start()

    answers = [stack.decide(i, True, "after-restart").status_code for i in ids]
    waited = stack.wait_for(ids, lambda s: s == "resolved", 90, "resolved")
    decided = stack.query(
        "SELECT count(*) FROM incidents WHERE id = ANY(:ids) AND decided_by = 'after-restart'", ids=ids
    )
    report(
        "web-restart",
        {
            "incidents": n,
            "approved_200": answers.count(200),
            "resolved": n,
            "resolved_after_s": round(waited, 1),
        },
    )
    assert answers == [200] * n
    assert int(decided[0][0]) == n


def test_a_graceful_web_restart_answers_what_it_accepted(chaos_stack: Callable[..., ChaosStack]) -> None:
    stack = chaos_stack(env={"REMEDIATION_EXECUTOR": "dry-run"})
    n = scale(20, minimum=5)
    ids = stack.fire([f"graceful-{i}" for i in range(n)])
    stack.wait_for(ids, lambda s: s == "awaiting_approval", 60, "awaiting approval")

    alerts: dict[str, int | str] = {}  # key -> HTTP status, or "refused" (no answer)
    decisions: dict[str, int | str] = {}
    lock = threading.Lock()
    done = threading.Event()

    def send_alerts(thread: int) -> None:
        i = 0
        while not done.is_set():
            key = f"graceful-storm-{thread}-{i}"
            i += 1
            try:
                outcome: int | str = stack.post_alert(key).status_code
            except requests.ConnectionError:
                outcome = "refused"
                time.sleep(0.02)
            with lock:
                alerts[key] = outcome

    def decide_all() -> None:
        for incident_id in ids:  # spread over the restart
            try:
                outcome: int | str = stack.decide(incident_id, True, "graceful").status_code
            except requests.ConnectionError:
                outcome = "refused"
            decisions[incident_id] = outcome
            time.sleep(0.1)

    web = stack.web
    with ThreadPoolExecutor(9) as pool:
        senders = [pool.submit(send_alerts, t) for t in range(8)]
        time.sleep(1.0)
        decider = pool.submit(decide_all)
        time.sleep(0.5)
        before = len(alerts)
        assert web.proc is not None
        started = time.monotonic()
        # To the main process, as `docker stop` does; it stops its workers itself. (With
        # the whole group signalled, a worker may exit before the main process marks it
        # as stopping: granian then logs an "unexpected exit" and returns 1.)
        os.kill(web.proc.pid, signal.SIGTERM)
        exit_code = web.proc.wait(15)
        stopped_after = time.monotonic() - started
        web.proc = None
        web.start()
        restarted = len(alerts)
        time.sleep(1.0)
        done.set()
        for future in [*senders, decider]:
            future.result(60)

    retried = {i: stack.decide(i, True, "graceful").status_code for i, s in decisions.items() if s != 200}
    rows = stack.query("SELECT fingerprint FROM incidents WHERE fingerprint LIKE '%graceful-storm-%'")
    stored = {m for (fp,) in rows for m in re.findall(r'key="(graceful-storm-[0-9]+-[0-9]+)"', fp)}
    accepted = {k for k, s in alerts.items() if s == 202}
    outcomes = {str(s) for s in alerts.values()}
    waited = stack.wait_for(ids, lambda s: s == "resolved", 90, "resolved")
    report(
        "web-graceful-restart",
        {
            "alerts_sent": len(alerts),
            "alerts_before_sigterm": before,
            "alerts_202": len(accepted),
            "alerts_refused": sum(1 for s in alerts.values() if s == "refused"),
            "stored": len(stored),
            "exit_code": exit_code,
            "stopped_after_s": round(stopped_after, 2),
            "approvals_200": sum(1 for s in decisions.values() if s == 200),
            "approvals_refused_then_200": sum(1 for s in retried.values() if s == 200),
            "resolved_after_s": round(waited, 1),
        },
    )
    assert exit_code == 0, "stopped by SIGTERM, not killed after --workers-kill-timeout"
    assert outcomes <= {"202", "refused"}, outcomes
    assert stored == accepted, (len(stored - accepted), len(accepted - stored))
    assert retried == dict.fromkeys(retried, 200), retried  # a 409 = a decision whose answer was lost
    assert 202 in list(alerts.values())[restarted:], "the new process takes alerts"

"""Every message of an incident's run goes through Celery's publishing API: the
`before_task_publish` and `after_task_publish` signals (which tracing and error
reporting libraries instrument) fire for each one, and each stage runs as its own
named task. The embedded worker consumes real messages from the in-process broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.signals import after_task_publish, before_task_publish, task_prerun
from flask.testing import FlaskClient

from iras.analysts import set_analyst
from iras.dispatch import NOTIFICATIONS, STAGE_TASKS
from iras.integrations import mock
from tests.conftest import WaitFor
from tests.support.analysts import ScriptedAnalyst

SCENARIO = json.loads((Path(__file__).parent / "data" / "checkout-guest-npe-after-release.json").read_text())


def _fire(client: FlaskClient) -> str:
    """An alert whose evidence (a bad release) gets a plan with steps."""
    set_analyst(ScriptedAnalyst(confidence=0.9))
    mock.set_fixture(SCENARIO["evidence"])
    response = client.post("/webhook/alert", json=SCENARIO["alert"])
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["incident_id"])


class Recorder:
    """Task ids seen by each signal, with the task name and the incident id argument."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.before: dict[str, tuple[str, Any]] = {}
        self.after: dict[str, tuple[str, Any]] = {}
        self.ran: dict[str, tuple[str, Any]] = {}

    def on_before(self, sender: str, body: Any, headers: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.before[headers["id"]] = (sender, body[0][0] if body[0] else None)

    def on_after(self, sender: str, body: Any, headers: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.after[headers["id"]] = (sender, body[0][0] if body[0] else None)

    def on_prerun(self, task_id: str, task: Any, args: Any, **_: Any) -> None:
        with self.lock:
            self.ran[task_id] = (task.name, args[0] if args else None)

    def of(self, incident_id: str, seen: dict[str, tuple[str, Any]]) -> dict[str, str]:
        with self.lock:
            return {tid: name for tid, (name, arg) in seen.items() if arg == incident_id}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    before_task_publish.connect(rec.on_before, weak=False)
    after_task_publish.connect(rec.on_after, weak=False)
    task_prerun.connect(rec.on_prerun, weak=False)
    try:
        yield rec
    finally:
        before_task_publish.disconnect(rec.on_before)
        after_task_publish.disconnect(rec.on_after)
        task_prerun.disconnect(rec.on_prerun)


def _settled(rec: Recorder, incident_id: str, names: set[str], timeout: float = 10.0) -> dict[str, str]:
    """Wait until tasks with every name in `names` ran for the incident (notifications
    follow the commits that make the incident's status final)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        ran = rec.of(incident_id, rec.ran)
        if names <= set(ran.values()) or time.monotonic() > deadline:
            return ran
        time.sleep(0.05)


def _check(rec: Recorder, incident_id: str, expected: set[str]) -> None:
    ran = _settled(rec, incident_id, expected)
    before, after = rec.of(incident_id, rec.before), rec.of(incident_id, rec.after)
    assert set(ran.values()) == expected, "each stage and notification is its own task"
    # Every task that ran came from a message both signals saw, and every message
    # announced was delivered: no message bypassed Celery's publishing path.
    assert set(ran) <= set(before) and set(ran) <= set(after)
    assert before == after
    assert set(before) == set(ran)


def test_an_approved_incident_runs_one_published_task_per_stage(
    pipeline: FlaskClient, wait_for: WaitFor, recorder: Recorder
) -> None:
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    response = pipeline.post(
        f"/incidents/{incident_id}/approve", json={"by": "alice", "plan_id": doc["plan"]["id"]}
    )
    assert response.status_code == 200
    wait_for(incident_id, "resolved")
    _check(
        recorder,
        incident_id,
        {
            "incidents.run_triage",
            "incidents.gather_context",
            "incidents.run_rca",
            "incidents.run_plan",
            "incidents.execute_plan",
            "incidents.write_postmortem",
            "notify.post_plan",
            "notify.post_decision",
            "notify.post_postmortem",
            "notify.resolve_page",
        },
    )


def test_a_rejected_incident_is_escalated_and_paged_through_published_tasks(
    pipeline: FlaskClient, wait_for: WaitFor, recorder: Recorder
) -> None:
    incident_id = _fire(pipeline)
    wait_for(incident_id, "awaiting_approval")
    response = pipeline.post(f"/incidents/{incident_id}/reject", json={"by": "bob", "reason": "not it"})
    assert response.status_code == 200
    wait_for(incident_id, "escalated")
    _check(
        recorder,
        incident_id,
        {
            "incidents.run_triage",
            "incidents.gather_context",
            "incidents.run_rca",
            "incidents.run_plan",
            "incidents.escalate",
            "incidents.write_postmortem",
            "notify.post_plan",
            "notify.post_decision",
            "notify.page",
            "notify.post_escalation",
            "notify.post_postmortem",
        },
    )


def test_every_name_dispatch_sends_is_a_registered_task_on_its_queue() -> None:
    import iras.tasks  # noqa: F401 - registers the tasks
    from iras.celery_app import ANALYSIS_QUEUE, OPS_QUEUE, celery_app

    ops = {"incidents.execute_plan", "incidents.escalate"}
    for name in [*STAGE_TASKS.values(), *NOTIFICATIONS]:
        assert name in celery_app.tasks, name
        route = celery_app.amqp.router.route({}, name, (), {})
        assert route["queue"].name == (OPS_QUEUE if name in ops else ANALYSIS_QUEUE), name

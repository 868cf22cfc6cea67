"""End to end on the embedded default: SQLite + a real Celery worker consuming
real messages from the in-process broker (not eager mode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from iras.analysts import set_analyst
from iras.config import reset_settings
from iras.db import new_session
from iras.integrations import mock
from iras.models import Incident, StageResult, StepRun
from iras.schemas import RemediationPlan, RemediationStep, RiskLevel, RunbookAction
from iras.tasks import expire_approvals
from tests.conftest import WaitFor, fire
from tests.support.analysts import ScriptedAnalyst

SCENARIO = json.loads((Path(__file__).parent / "data" / "checkout-guest-npe-after-release.json").read_text())


def _fire_scenario(client: FlaskClient, confident: bool = True) -> str:
    """Fire the scenario's alert. Unless `confident` is False (the test is about the
    real analyst's diagnosis), the RCA confidence is pinned above the threshold so
    the test exercises the pipeline path it names, not the analyst's quality."""
    from iras import analysts

    if confident and analysts._override is None:
        set_analyst(ScriptedAnalyst(confidence=0.9))
    mock.set_fixture(SCENARIO["evidence"])
    response = client.post("/webhook/alert", json=SCENARIO["alert"])
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["incident_id"])


def _eventually(probe: Any, timeout: float = 30.0) -> Any:
    """Notifications are their own tasks: wait for one to have run."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _events(doc: dict[str, Any]) -> list[str]:
    return [t["event"] for t in doc["timeline"]]


def test_alert_to_approval_to_resolved_with_postmortem(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = _fire_scenario(pipeline, confident=False)  # the real offline analyst, end to end
    doc = wait_for(incident_id, "awaiting_approval")
    assert doc["severity"] in ("P0", "P1")
    assert doc["plan"]["steps"], "a bad deploy gets a plan"
    assert doc["approval_deadline"]
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")["result"]
    assert rca["culprit_deployment_sha"] == SCENARIO["expected"]["culprit_deployment_sha"]

    response = pipeline.post(
        f"/incidents/{incident_id}/approve",
        json={"by": "alice", "reason": "matches the release", "plan_id": doc["plan"]["id"]},
    )
    assert response.status_code == 200, response.get_json()
    doc = wait_for(incident_id, "resolved")
    assert doc["outcome"] == "resolved"
    assert doc["decision"]["by"] == "alice" and doc["decision"]["via"] == "api"
    assert [r["status"] for r in doc["step_runs"]] == ["succeeded"] * len(doc["plan"]["steps"])
    assert _events(doc) == [
        "ingested",
        "triaged",
        "context_gathered",
        "rca_confident",
        "plan_ready",
        "approved",
        "remediation_succeeded",
        "closed_resolved",
    ]
    pm = doc["postmortem"]
    assert pm["outcome"] == "resolved"
    # Written in the remediation's task from the row it read: the incident's own facts.
    assert pm["severity"] == doc["severity"] and doc["title"] in pm["markdown"]
    assert "## Timeline" in pm["markdown"] and "Plan approved (api:alice)" in pm["markdown"]
    assert rca["primary_cause"][:40] in pm["markdown"]
    assert _eventually(lambda: {"kind": "pagerduty.resolve", "dedup_key": incident_id} in mock.SENT)


@pytest.mark.parametrize("in_extra", [False, True], ids=["typed-field", "extra-fallback"])
def test_a_severity_reassessed_from_the_evidence_is_said_on_the_timeline(
    pipeline: FlaskClient, wait_for: WaitFor, in_extra: bool
) -> None:
    set_analyst(ScriptedAnalyst(confidence=0.9, severity="P0", severity_in_extra=in_extra))
    doc = wait_for(_fire_scenario(pipeline), "awaiting_approval")
    triaged = next(s for s in doc["stages"] if s["stage"] == "triage")["result"]["severity"]
    assert triaged != "P0" and doc["severity"] == "P0"
    rca = next(t for t in doc["timeline"] if t["event"] == "rca_confident")
    assert f"severity {triaged} -> P0 from the evidence" in rca["detail"]["summary"]
    assert ("(scripted)" in rca["detail"]["summary"]) is not in_extra  # the typed field's reason


def test_reject_escalates_with_postmortem_and_a_page(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = _fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    response = pipeline.post(
        f"/incidents/{incident_id}/reject", json={"by": "bob", "reason": "not the release"}
    )
    assert response.status_code == 200
    doc = wait_for(incident_id, "escalated")
    assert doc["outcome"] == "escalated" and not doc["step_runs"]
    assert "rejected" in _events(doc) and doc["postmortem"]["outcome"] == "escalated"
    assert "not the release" in json.dumps(doc["timeline"])
    assert _eventually(lambda: [m for m in mock.SENT if m["kind"] == "pagerduty.trigger"]) == [
        {"kind": "pagerduty.trigger", "dedup_key": incident_id}
    ]


def test_low_confidence_widens_the_window_then_escalates(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    analyst = ScriptedAnalyst(confidence=0.3)
    set_analyst(analyst)
    incident_id = _fire_scenario(pipeline)
    doc = wait_for(incident_id, "escalated")
    assert doc["rca_attempts"] == 3
    windows = [w for stage, w in analyst.calls if stage == "rca"]
    assert windows == sorted(windows) and len(set(windows)) == 3, "each retry looks further back"
    assert _events(doc).count("rca_inconclusive") == 2 and "rca_exhausted" in _events(doc)
    assert doc["postmortem"] is not None and doc["plan"] is None


def test_approval_timeout_escalates(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = _fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    assert expire_approvals() == 0, "deadline not reached yet"
    with new_session() as session:
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(approval_deadline=Incident.created_at)
        )
        session.commit()
    assert expire_approvals() == 1
    doc = wait_for(incident_id, "escalated")
    assert doc["decision"]["via"] == "timeout"
    late = pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "late-larry"})
    assert late.status_code == 409


def _shell_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Really run the steps (argv, no shell), with harmless programs only."""
    monkeypatch.setenv("REMEDIATION_EXECUTOR", "shell")
    monkeypatch.setenv("REMEDIATION_ALLOWED_COMMANDS", "true,false,echo")
    reset_settings()


def _plan(*commands: tuple[str, str]) -> RemediationPlan:
    return RemediationPlan(
        summary="three steps",
        steps=[
            RemediationStep(
                order=i,
                action=RunbookAction.RESTART_SERVICE,
                description=f"step {i}",
                command=cmd,
                rollback_command=rb,
                risk_level=RiskLevel.LOW,
            )
            for i, (cmd, rb) in enumerate(commands, start=1)
        ],
    )


def test_a_failing_step_rolls_back_completed_steps_in_reverse(
    pipeline: FlaskClient, wait_for: WaitFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shell_executor(monkeypatch)
    set_analyst(
        ScriptedAnalyst(
            confidence=0.9,
            plan=_plan(("echo one", "echo undo-one"), ("echo two", "echo undo-two"), ("false", "true")),
        )
    )
    incident_id = _fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    assert pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "alice"}).status_code == 200
    doc = wait_for(incident_id, "escalated")
    runs = [(r["kind"], r["step"], r["status"]) for r in doc["step_runs"]]
    assert runs == [
        ("apply", 1, "succeeded"),
        ("apply", 2, "succeeded"),
        ("apply", 3, "failed"),
        ("rollback", 2, "succeeded"),
        ("rollback", 1, "succeeded"),
    ]
    assert [r["output_tail"].strip() for r in doc["step_runs"] if r["kind"] == "rollback"] == [
        "undo-two",
        "undo-one",
    ]
    assert "remediation_failed" in _events(doc) and doc["postmortem"]["outcome"] == "escalated"


def test_every_task_is_a_no_op_on_duplicate_delivery(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    from iras import tasks

    incident_id = _fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    assert pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "alice"}).status_code == 200
    wait_for(incident_id, "resolved")
    with new_session() as session:
        before = (
            len(list(session.scalars(select(StageResult).where(StageResult.incident_id == incident_id)))),
            len(list(session.scalars(select(StepRun).where(StepRun.incident_id == incident_id)))),
        )
    for task in (
        tasks.run_triage,
        tasks.gather_context,
        tasks.run_rca,
        tasks.run_plan,
        tasks.execute_plan,
        tasks.escalate,
        tasks.write_postmortem,
    ):
        task(incident_id)  # a late redelivery of every stage
    doc = pipeline.get(f"/incidents/{incident_id}").get_json()
    assert doc["status"] == "resolved"
    assert (len(doc["stages"]), len(doc["step_runs"])) == before


def test_an_analyst_crash_escalates_instead_of_losing_the_incident(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    set_analyst(ScriptedAnalyst(confidence=0.9, fail={"plan": ValueError("model returned nonsense")}))
    incident_id = _fire_scenario(pipeline)
    doc = wait_for(incident_id, "escalated")
    assert "stage_failed" in _events(doc)
    assert "model returned nonsense" in json.dumps(doc["timeline"])


def test_a_duplicate_alert_joins_the_open_incident(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    first = fire(pipeline, title="Disk full on db-1", service="db")
    second = pipeline.post(
        "/webhook/alert",
        json={"title": "Disk full on db-1", "timestamp": "2026-11-25T10:01:00Z", "service": "db"},
    )
    assert second.status_code == 202
    assert second.get_json() == {"incident_id": first, "status": "deduplicated", "alerts_received": 1}
    doc = pipeline.get(f"/incidents/{first}").get_json()
    assert doc["alert_count"] == 2 and len(doc["alerts"]) == 2


def test_the_stuck_sweeper_re_enqueues_a_lost_incident(
    pipeline: FlaskClient, wait_for: WaitFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iras.tasks import sweep_stuck
    from iras.workflow import IncidentStatus

    # An incident committed while the broker was down: no message was ever sent.
    with new_session() as session:
        incident = Incident(
            status=IncidentStatus.TRIAGING.value,
            title="lost",
            service="checkout",
            source="generic",
            fingerprint="lost-1",
        )
        session.add(incident)
        session.commit()
        incident_id = incident.id
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(updated_at=Incident.created_at)
        )
        session.commit()
    monkeypatch.setenv("STUCK_AFTER_SECONDS", "5")
    reset_settings()
    set_analyst(ScriptedAnalyst(confidence=0.9))
    with new_session() as session:
        from datetime import timedelta

        from iras.schemas import utcnow

        session.execute(
            update(Incident)
            .where(Incident.id == incident_id)
            .values(updated_at=utcnow() - timedelta(minutes=10))
        )
        session.commit()
    assert sweep_stuck() == 1
    wait_for(incident_id, "awaiting_approval", "escalated", "resolved")


def test_every_context_source_down_still_completes_with_source_unavailable_evidence(
    pipeline: FlaskClient, wait_for: WaitFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.services import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("LOKI_URL", dead)
    monkeypatch.setenv("PROMETHEUS_URL", dead)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test")
    monkeypatch.setenv("GITHUB_API_URL", dead)
    monkeypatch.setenv("GITHUB_REPOS", "checkout=acme/checkout")
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "1")
    reset_settings()
    incident_id = fire(pipeline, title="Checkout errors", service="checkout")
    doc = wait_for(incident_id, "resolved", "escalated", timeout=60)
    assert doc["postmortem"] is not None
    contexts = [s["result"] for s in doc["stages"] if s["stage"] == "context"]
    assert contexts, "the context stage ran"
    for bundle in contexts:
        assert {s["kind"]: s["status"] for s in bundle["sources"]} == {
            "logs": "unavailable",
            "metrics": "unavailable",
            "deployments": "unavailable",
        }
        assert all("source unavailable" in s["error"] for s in bundle["sources"])


def test_a_manual_step_is_never_run_and_the_next_steps_go_on(
    pipeline: FlaskClient, wait_for: WaitFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shell_executor(monkeypatch)
    # Step 2 claims low risk, but --force is destructive: safety makes it manual.
    analyst = ScriptedAnalyst(
        confidence=0.9,
        plan=_plan(("echo one", "echo undo-one"), ("echo --force wipe", "true"), ("echo three", "true")),
    )
    set_analyst(analyst)
    incident_id = _fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    assert doc["plan"]["steps"][1]["executable"] is False and doc["plan"]["steps"][1]["risk_level"] == "high"
    assert pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "alice"}).status_code == 200
    doc = wait_for(incident_id, "resolved")
    runs = [(r["step"], r["status"], (r["output_tail"] or "").strip()) for r in doc["step_runs"]]
    assert runs[0] == (1, "succeeded", "one") and runs[2] == (3, "succeeded", "three")
    assert runs[1][:2] == (2, "manual") and "wipe" not in runs[1][2]
    assert "Confirm manual step 2 was carried out" in doc["postmortem"]["markdown"]
    # The post-mortem saw the step rows the remediation wrote (kept in memory, not
    # read back): exactly what the database holds.
    assert [
        (v.order, v.command, v.status, v.output_tail, v.rolled_back)
        for v in analyst.postmortem_inputs[0].step_runs
    ] == [
        (r["step"], r["command"], r["status"], (r["output_tail"] or "")[-500:], r["rolled_back"])
        for r in doc["step_runs"]
    ]


def test_a_rollback_whose_worker_died_is_not_re_run_and_the_incident_escalates(client: FlaskClient) -> None:
    """Redelivery after a worker died mid-rollback: the rollback row says `running`;
    it must be declared unknown (never run twice, never a unique-key crash loop)."""
    from datetime import timedelta

    from iras import tasks
    from iras.schemas import utcnow
    from iras.workflow import IncidentStatus

    plan = _plan(("echo one", "echo undo-one"), ("false", "true"))
    long_ago = utcnow() - timedelta(hours=1)
    with new_session() as session:
        incident = Incident(
            status=IncidentStatus.EXECUTING.value, title="t", source="generic", fingerprint="rb-1"
        )
        session.add(incident)
        session.flush()
        row = StageResult(
            incident_id=incident.id,
            stage="plan",
            attempt=1,
            result=plan.model_dump(mode="json"),
            analyst="test",
        )
        session.add(row)
        session.flush()
        incident.plan_id = row.id
        session.add_all(
            [
                StepRun(
                    incident_id=incident.id,
                    plan_id=row.id,
                    step_order=1,
                    kind="apply",
                    command="echo one",
                    status="succeeded",
                    started_at=long_ago,
                ),
                StepRun(
                    incident_id=incident.id,
                    plan_id=row.id,
                    step_order=2,
                    kind="apply",
                    command="false",
                    status="failed",
                    started_at=long_ago,
                ),
                StepRun(
                    incident_id=incident.id,
                    plan_id=row.id,
                    step_order=1,
                    kind="rollback",
                    command="echo undo-one",
                    status="running",
                    started_at=long_ago,
                ),
            ]
        )
        session.commit()
        incident_id = incident.id
    tasks.execute_plan(incident_id)
    doc = client.get(f"/incidents/{incident_id}").get_json()
    assert doc["status"] in ("escalating", "closing", "escalated")
    rollbacks = [r for r in doc["step_runs"] if r["kind"] == "rollback"]
    assert [(r["step"], r["status"]) for r in rollbacks] == [(1, "unknown")]
    assert "rollback outcome unknown" in json.dumps(doc["timeline"])


def test_unconfigured_notifiers_get_each_notification_once(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    """Without a Slack token or PagerDuty key the notification tasks run as they do
    with them, and the mocks receive each notification once."""
    incident_id = _fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    assert pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "alice"}).status_code == 200
    wait_for(incident_id, "resolved")

    def sent() -> list[str]:
        return sorted(
            m["kind"] for m in mock.SENT if incident_id in (m.get("incident_id"), m.get("dedup_key"))
        )

    expected = ["pagerduty.resolve", "slack.decision", "slack.plan", "slack.postmortem"]
    assert _eventually(lambda: sent() == expected), sent()
    assert sent() == expected


def test_configured_slack_and_pagerduty_get_the_full_incident(
    pipeline: FlaskClient, wait_for: WaitFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a Slack token and a PagerDuty key the notification tasks run and send the
    whole incident: the plan with its buttons, the decision as an update of that
    message, the post-mortem; a page with the root cause when a plan is rejected."""
    from tests.fakes.servers import FakePagerDuty, FakeSlack

    with FakeSlack(token="xoxb-test") as slack, FakePagerDuty() as pagerduty:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_API_URL", f"{slack.url}/api/")
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "r" * 32)
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", f"{pagerduty.url}/v2/enqueue")
        reset_settings()
        approved = _fire_scenario(pipeline)
        doc = wait_for(approved, "awaiting_approval")
        assert _eventually(lambda: len(slack.posts()) == 1)
        plan_post = json.dumps(slack.posts()[0])
        assert doc["plan"]["steps"][0]["command"] in plan_post and "approve" in plan_post.lower()
        assert pipeline.post(f"/incidents/{approved}/approve", json={"by": "alice"}).status_code == 200
        wait_for(approved, "resolved")
        assert _eventually(lambda: len(slack.posts()) == 2), "the post-mortem is posted"
        assert _eventually(lambda: "alice" in json.dumps(slack.posts()[0])), "the plan message is updated"
        assert "Post-mortem" in json.dumps(slack.posts()[1])
        assert _eventually(lambda: pagerduty.alerts.get(approved, {}).get("status") == "resolved") or (
            approved in json.dumps([c.json for c in pagerduty.calls()])
        )

        rejected = _fire_scenario(pipeline)
        wait_for(rejected, "awaiting_approval")
        response = pipeline.post(f"/incidents/{rejected}/reject", json={"by": "bob", "reason": "not it"})
        assert response.status_code == 200
        wait_for(rejected, "escalated")
        triggers = lambda: [  # noqa: E731
            c.json for c in pagerduty.calls() if c.json.get("event_action") == "trigger"
        ]
        assert _eventually(triggers)
        page = triggers()[0]
        assert page["dedup_key"] == rejected
        assert page["payload"]["custom_details"]["root_cause"]
        assert "not it" in page["payload"]["custom_details"]["reason"]
    reset_settings()


def test_a_remediation_task_retried_after_closing_sends_the_post_mortem_once(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    """A redelivery or retry of the remediation that finds the incident in `closing`
    (its post-mortem message lost, say) sends the post-mortem task; the post-mortem
    is written once however often it is sent."""
    from iras import tasks

    incident_id = _fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    with new_session() as session:
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(status="closing", outcome="resolved")
        )
        session.commit()
    tasks.execute_plan(incident_id)
    doc = wait_for(incident_id, "resolved")
    assert doc["postmortem"]["outcome"] == "resolved"
    tasks.execute_plan(incident_id)  # once more: nothing left to do
    assert (
        len(
            [
                s
                for s in pipeline.get(f"/incidents/{incident_id}").get_json()["stages"]
                if s["stage"] == "postmortem"
            ]
        )
        == 1
    )


def test_a_rejected_diagnosis_is_written_up_as_rejected_with_the_reason_as_the_lead(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    analyst = ScriptedAnalyst(confidence=0.9)
    set_analyst(analyst)
    incident_id = _fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")["result"]
    assert rca["culprit_deployment_sha"], "the scenario's diagnosis names a release"
    response = pipeline.post(
        f"/incidents/{incident_id}/reject", json={"by": "bob", "reason": "not the release; DB is slow"}
    )
    assert response.status_code == 200
    doc = wait_for(incident_id, "escalated")

    [data] = analyst.postmortem_inputs
    assert data.decision is not None and data.decision["decision"] == "rejected"  # what Claude is given too
    pm = doc["postmortem"]["markdown"]
    root_cause = pm.split("## Root cause", 1)[1].split("##", 1)[0]
    assert root_cause.strip().startswith("Not established. bob rejected the proposed diagnosis:")
    assert root_cause.index("not the release; DB is slow") < root_cause.index("Rejected diagnosis:")
    assert "rejected by bob" in pm.split("## Summary", 1)[1].split("##", 1)[0]
    resolution = pm.split("## Resolution", 1)[1].split("##", 1)[0]
    assert "bob rejected the plan" in resolution and "escalated" in resolution
    actions = pm.split("## Action items", 1)[1]
    assert "Review release" not in actions and "regression test" not in actions
    assert "Investigate the approver's lead (bob: \u201cnot the release; DB is slow\u201d)" in actions


def test_an_approved_plan_is_not_written_up_as_rejected(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    analyst = ScriptedAnalyst(confidence=0.9)
    set_analyst(analyst)
    incident_id = _fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    pipeline.post(
        f"/incidents/{incident_id}/approve",
        json={"by": "alice", "reason": "ok", "plan_id": doc["plan"]["id"]},
    )
    doc = wait_for(incident_id, "resolved")
    assert analyst.postmortem_inputs[-1].decision["decision"] == "approved"  # type: ignore[index]
    assert "Not established" not in doc["postmortem"]["markdown"]
    assert "Review release" in doc["postmortem"]["markdown"]

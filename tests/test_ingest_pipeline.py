"""Every source end to end: its firing payload and resolved twin (tests/payloads/,
in the exact shape each sender posts) through the real webhook and a real Celery
worker, deduplication into one incident, resolution -> auto_resolved before
approval (short post-mortem, nothing executed) or a note after it; and the
dead-letter table with replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from iras.analysts import set_analyst
from iras.db import new_session
from iras.models import AlertEvent, DeadLetter, Incident, Transition
from iras.schemas import RemediationPlan, RemediationStep, RiskLevel, RunbookAction
from tests.conftest import WaitFor, fire
from tests.support.analysts import ScriptedAnalyst

PAYLOADS = Path(__file__).parent / "payloads"
SOURCES = ["alertmanager", "grafana", "pagerduty", "datadog", "generic"]


@pytest.fixture(autouse=True)
def _worker_idle_at_teardown(iras_env: str) -> Iterator[None]:
    """Let the session's embedded worker finish this test's messages before the
    database and settings are torn down: a task still running then would read the
    next test's half-reset settings and open a stray default database."""
    yield
    from celery.worker import state

    deadline, quiet = time.monotonic() + 10, 0
    while quiet < 5 and time.monotonic() < deadline:
        quiet = 0 if (state.active_requests or state.reserved_requests) else quiet + 1
        time.sleep(0.02)


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def _plan() -> RemediationPlan:
    return RemediationPlan(
        summary="restart the service",
        steps=[
            RemediationStep(
                order=1,
                action=RunbookAction.RESTART_SERVICE,
                description="restart",
                command="kubectl rollout restart deploy/x",
                rollback_command="kubectl rollout undo deploy/x",
                risk_level=RiskLevel.LOW,
            )
        ],
    )


def _events(doc: dict[str, Any]) -> list[str]:
    return [t["event"] for t in doc["timeline"]]


def _count(model: Any) -> int:
    with new_session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _post(client: FlaskClient, path: str, body: Any) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("source", SOURCES)
def test_firing_then_duplicate_then_resolved_twin_auto_resolves_before_approval(
    pipeline: FlaskClient, wait_for: WaitFor, source: str
) -> None:
    # A confident diagnosis and a fixed plan: the incident reliably waits for approval,
    # the state in which a resolution must close it instead of remediating.
    set_analyst(ScriptedAnalyst(confidence=0.9, plan=_plan()))
    firing, resolved = payload(f"{source}_firing"), payload(f"{source}_resolved")
    n_alerts = len(firing.get("alerts", [None]))

    first = _post(pipeline, "/webhook/alert", firing)  # source detected from the shape
    assert first["status"] == "processing" and first["alerts_received"] == n_alerts
    incident_id = first["incident_id"]
    doc = wait_for(incident_id, "awaiting_approval")
    assert doc["source"] == source
    assert doc["fingerprint"].startswith(f"{source}:")
    stored = doc["alerts"]
    assert len(stored) == n_alerts and all(a["status"] == "firing" and a["fingerprint"] for a in stored)
    assert all(a["source"] == source and a["title"] for a in stored)

    again = _post(pipeline, f"/webhook/{source}", firing)  # named route, same fingerprint
    assert again == {"incident_id": incident_id, "status": "deduplicated", "alerts_received": n_alerts}
    doc = pipeline.get(f"/incidents/{incident_id}").get_json()
    assert doc["status"] == "awaiting_approval" and doc["alert_count"] == 2 * n_alerts
    assert _count(Incident) == 1

    done = _post(pipeline, f"/webhook/{source}", resolved)
    assert done == {"incident_id": incident_id, "status": "resolved_noted", "alerts_received": n_alerts}
    doc = wait_for(incident_id, "auto_resolved")
    assert doc["outcome"] == "auto_resolved"
    assert doc["alert_count"] == 3 * n_alerts
    assert _events(doc)[-2:] == ["alerts_resolved", "closed_auto_resolved"]
    assert doc["step_runs"] == [], "a resolved incident is not remediated"
    assert doc["decision"] is None
    pm = doc["postmortem"]
    assert pm["outcome"] == "auto_resolved" and "auto" in pm["markdown"].lower()
    resolution = next(t for t in doc["timeline"] if t["event"] == "alerts_resolved")
    assert resolution["actor"] == f"alert-source:{source}"
    assert sorted(resolution["detail"]["resolved"]) == sorted({a["fingerprint"] for a in stored})
    # Approving now is refused: the plan is moot.
    assert pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "alice"}).status_code == 409

    # The fingerprint is free again: the same alert firing later is a new incident.
    later = _post(pipeline, "/webhook/alert", firing)
    assert later["status"] == "processing" and later["incident_id"] != incident_id
    wait_for(later["incident_id"], "awaiting_approval")


def test_alertmanager_partial_resolution_is_on_the_timeline_and_keeps_the_incident_open(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    set_analyst(ScriptedAnalyst(confidence=0.9, plan=_plan()))
    incident_id = _post(pipeline, "/webhook/alert", payload("alertmanager_firing"))["incident_id"]
    wait_for(incident_id, "awaiting_approval")

    partial = _post(pipeline, "/webhook/alert", payload("alertmanager_partially_resolved"))
    assert partial["status"] == "deduplicated"  # two of three still fire
    doc = pipeline.get(f"/incidents/{incident_id}").get_json()
    assert doc["status"] == "awaiting_approval"
    note = [t for t in doc["timeline"] if t["event"] == "alert_resolved"]
    assert len(note) == 1
    assert note[0]["detail"]["resolved"] == ["5a1c9e0f7b3d2a41"]
    assert note[0]["detail"]["still_firing"] == ["c04e8d2b91f7a6e3", "e7b2f15a0c6d9384"]
    assert "2 still firing" in note[0]["detail"]["summary"]

    # Alertmanager repeats the resolved alert in its next notification: not news.
    _post(pipeline, "/webhook/alert", payload("alertmanager_partially_resolved"))
    doc = pipeline.get(f"/incidents/{incident_id}").get_json()
    assert _events(doc).count("alert_resolved") == 1

    _post(pipeline, "/webhook/alert", payload("alertmanager_resolved"))
    doc = wait_for(incident_id, "auto_resolved")
    closing = next(t for t in doc["timeline"] if t["event"] == "alerts_resolved")
    # Only the two that were still firing resolve in this notification.
    assert closing["detail"]["resolved"] == ["c04e8d2b91f7a6e3", "e7b2f15a0c6d9384"]


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record stage messages instead of sending them: the session's embedded worker
    (started by an earlier test) must not move the incident under the test's feet."""
    from iras import dispatch

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(dispatch, "enqueue_stage", lambda iid, status: sent.append((iid, status.value)))
    monkeypatch.setattr(
        dispatch, "enqueue_stages", lambda ids, status: sent.extend((iid, status.value) for iid in ids)
    )
    return sent


@pytest.mark.parametrize("status", ["executing", "escalating", "closing"])
def test_after_approval_a_resolution_is_only_noted(
    client: FlaskClient, enqueued: list[tuple[str, str]], status: str
) -> None:
    incident_id = _post(client, "/webhook/pagerduty", payload("pagerduty_firing"))["incident_id"]
    with new_session() as session:
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(status=status, decided_by="alice")
        )
        session.commit()
    done = _post(client, "/webhook/pagerduty", payload("pagerduty_resolved"))
    assert done["status"] == "resolved_noted"
    doc = client.get(f"/incidents/{incident_id}").get_json()
    assert doc["status"] == status and doc["outcome"] is None
    assert _events(doc)[-1] == "alerts_resolved_noted"
    assert "operator decides" in doc["timeline"][-1]["detail"]["summary"]
    # A second "resolved" from the sender is not noted twice.
    _post(client, "/webhook/pagerduty", payload("pagerduty_resolved"))
    assert _events(client.get(f"/incidents/{incident_id}").get_json()).count("alerts_resolved_noted") == 1
    assert [s for _, s in enqueued] == ["triaging"], (
        "nothing is executed or closed on a resolution after approval"
    )


def test_a_resolution_during_triage_closes_without_analysis(
    client: FlaskClient, enqueued: list[tuple[str, str]]
) -> None:
    incident_id = _post(client, "/webhook/datadog", payload("datadog_firing"))["incident_id"]
    _post(client, "/webhook/datadog", payload("datadog_resolved"))
    doc = client.get(f"/incidents/{incident_id}").get_json()
    assert (doc["status"], doc["outcome"]) == ("closing", "auto_resolved")
    assert _events(doc) == ["ingested", "alerts_resolved"]
    # The stage still owed is the post-mortem, not the triage.
    assert enqueued == [(incident_id, "triaging"), (incident_id, "closing")]


def test_a_resolved_alert_without_an_open_incident_writes_nothing(client: FlaskClient) -> None:
    response = client.post("/webhook/grafana", json=payload("grafana_resolved"))
    assert response.status_code == 202
    assert response.get_json() == {"incident_id": None, "status": "no_open_incident", "alerts_received": 2}
    assert (_count(Incident), _count(AlertEvent), _count(Transition), _count(DeadLetter)) == (0, 0, 0, 0)


def test_an_alert_for_an_incident_closed_meanwhile_opens_a_new_one(
    client: FlaskClient, enqueued: list[tuple[str, str]]
) -> None:
    first = fire(client, title="Queue lag", service="billing")
    with new_session() as session:
        session.execute(update(Incident).where(Incident.id == first).values(status="resolved"))
        session.commit()
    second = fire(client, title="Queue lag", service="billing")
    assert second != first
    assert _count(Incident) == 2


# --------------------------------------------------------------------------- dead letters

MALFORMED: list[tuple[str, Any, str]] = [
    # (route, body, the field the 400 names)
    ("alertmanager", {**payload("alertmanager_firing"), "groupKey": ""}, "groupKey"),
    ("alertmanager", {**payload("alertmanager_firing"), "alerts": "nope"}, "alerts"),
    ("grafana", {**payload("grafana_firing"), "alerts": [{"status": "firing"}]}, "alerts[0]"),
    ("pagerduty", {"event": {"event_type": "incident.triggered"}}, "event"),
    ("datadog", {**payload("datadog_firing"), "tags": 42}, "tags"),
    ("generic", {"title": "x", "timestamp": "yesterday"}, "timestamp"),
    ("alert", {"hello": "world"}, "payload"),
    ("nagios", payload("generic_firing"), "source"),
]


@pytest.mark.parametrize(
    ("route", "body", "field"), MALFORMED, ids=[m[0] + str(i) for i, m in enumerate(MALFORMED)]
)
def test_malformed_payloads_of_every_source_land_in_dead_letters(
    client: FlaskClient, route: str, body: Any, field: str
) -> None:
    response = client.post(f"/webhook/{route}", json=body)
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["field"].startswith(field), doc
    assert doc["dead_letter_id"]
    with new_session() as session:
        row = session.get(DeadLetter, doc["dead_letter_id"])
        assert row is not None
        assert json.loads(row.raw_body) == body
        assert row.error == doc["reason"] and row.field == doc["field"]
        assert row.source == (None if route == "alert" else route)
        assert row.content_type == "application/json" and not row.truncated and row.replayed_at is None
    assert (_count(Incident), _count(AlertEvent)) == (0, 0)


def test_invalid_json_and_non_objects_are_kept_too(client: FlaskClient) -> None:
    bad = client.post("/webhook/alert", data=b'{"title": "x", ', content_type="application/json")
    array = client.post("/webhook/datadog", data=b"[1, 2]", content_type="application/json")
    assert bad.status_code == array.status_code == 400
    with new_session() as session:
        rows = list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))
    assert [r.raw_body for r in rows] == ['{"title": "x", ', "[1, 2]"]
    assert "not valid JSON" in rows[0].error and rows[1].source == "datadog"


def test_a_large_rejected_body_is_cut_and_marked(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iras.config import reset_settings

    monkeypatch.setenv("DEAD_LETTER_MAX_BYTES", "2048")
    reset_settings()
    body = {"title": "x", "timestamp": "not a time", "blob": "é" * 5000}
    response = client.post("/webhook/generic", json=body)
    assert response.status_code == 400
    with new_session() as session:
        row = session.get(DeadLetter, response.get_json()["dead_letter_id"])
        assert row is not None and row.truncated
        assert len(row.raw_body.encode()) <= 2048 + 3  # a cut multi-byte character becomes U+FFFD
        assert row.body_bytes > 10_000


def test_replay_ingests_a_fixed_dead_letter_and_marks_it(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from iras.cli import main

    # Sent to the wrong route: the Datadog adapter cannot read an Alertmanager body.
    wrong = client.post("/webhook/datadog", json=payload("alertmanager_firing")).get_json()
    broken = client.post("/webhook/generic", json={"title": "x", "timestamp": "soon"}).get_json()
    assert main(["alerts", "dead-letters"]) == 0
    listing = capsys.readouterr().out
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert set(lines) == {str(wrong["dead_letter_id"]), str(broken["dead_letter_id"])}
    assert (
        "datadog" in lines[str(wrong["dead_letter_id"])]
        and "alert_title" in lines[str(wrong["dead_letter_id"])]
    )
    assert "timestamp" in lines[str(broken["dead_letter_id"])]
    assert "CheckoutPodHighErrorRate" not in listing  # errors, not bodies
    assert main(["alerts", "dead-letters", "--show", str(wrong["dead_letter_id"])]) == 0
    assert "CheckoutPodHighErrorRate" in capsys.readouterr().out

    # Replay it under the right source; the broken one stays dead with its new error.
    assert main(["alerts", "replay", "--id", str(wrong["dead_letter_id"]), "--source", "alertmanager"]) == 0
    out = capsys.readouterr().out
    assert "processing" in out
    with new_session() as session:
        row = session.get(DeadLetter, wrong["dead_letter_id"])
        assert row is not None and row.replayed_at is not None and row.replay_count == 1
        assert row.replay_result is not None and row.replay_result["status"] == "processing"
        incident = session.get(Incident, row.replay_result["incident_id"])
        assert incident is not None and incident.source == "alertmanager" and incident.alert_count == 3

    assert main(["alerts", "replay", "--all"]) == 1  # one still fails: non-zero exit
    out = capsys.readouterr().out
    assert str(broken["dead_letter_id"]) in out and "timestamp" in out
    with new_session() as session:
        row = session.get(DeadLetter, broken["dead_letter_id"])
        assert row is not None and row.replayed_at is None and row.replay_count == 1
        assert row.replay_result == {
            "id": row.id,
            "ok": False,
            "error": row.replay_result["error"],
            "field": "timestamp",
        }
    # --all only picks rows not replayed yet: the fixed one is not ingested twice.
    assert _count(Incident) == 1
    assert main(["alerts", "dead-letters"]) == 0
    listing = capsys.readouterr().out
    assert [line.split()[0] for line in listing.splitlines()[1:]] == [str(broken["dead_letter_id"])]


def test_replaying_into_an_open_incident_deduplicates(client: FlaskClient) -> None:
    from iras import deadletter

    incident_id = fire(client, title="Disk full", service="db")
    dead = client.post(
        "/webhook/datadog", json={"title": "Disk full", "timestamp": "2026-11-25T10:00:00Z", "service": "db"}
    )
    assert dead.status_code == 400
    with new_session() as session:
        [result] = deadletter.replay(session, ids=[dead.get_json()["dead_letter_id"]], source="generic")
    assert (result.ok, result.incident_id, result.status) == (True, incident_id, "deduplicated")
    with new_session() as session:
        missing = deadletter.replay(session, ids=[999_999])
    assert [(r.ok, r.error) for r in missing] == [(False, "no such dead letter")]

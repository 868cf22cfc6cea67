"""The embedded default with no integration configured: no invented evidence.

A fresh `make run` has no log, metric or deployment source. Every alert must then
end in an escalation that says which sources are missing, never in a diagnosis
from canned data with a remediation plan; the canned mock evidence is served only
with IRAS_MOCK_EVIDENCE=true, which /health and the console name plainly."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from iras.analysts import set_analyst
from iras.config import reset_settings
from iras.integrations import mock
from iras.tasks.analysis import NO_EVIDENCE_CONFIDENCE
from tests.conftest import WaitFor, fire
from tests.support.analysts import ScriptedAnalyst


@pytest.fixture
def nothing_configured(monkeypatch: pytest.MonkeyPatch, iras_env: str) -> None:
    monkeypatch.setenv("IRAS_MOCK_EVIDENCE", "false")
    reset_settings()


def _events(doc: dict[str, object]) -> list[str]:
    return [t["event"] for t in doc["timeline"]]  # type: ignore[index, union-attr]


def _escalation_settled(pipeline: FlaskClient, incident_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The incident once its post-mortem is written and the Slack escalation sent: both
    are tasks of their own that run after the status reaches `escalated`."""
    deadline = time.monotonic() + timeout
    while True:
        doc = pipeline.get(f"/incidents/{incident_id}").get_json()
        sent = {"kind": "slack.escalation", "incident_id": incident_id} in mock.SENT
        if (doc.get("postmortem") and sent) or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def _rca(doc: dict[str, object]) -> dict[str, object]:
    return next(s for s in doc["stages"] if s["stage"] == "rca")["result"]  # type: ignore[attr-defined, index]


@pytest.mark.parametrize(
    ("title", "service"),
    [
        ("Disk almost full on db-1", "postgres"),
        ("search pods OOMKilled", "search"),
        ("Payments latency p99 above 2s", "payments"),
    ],
)
def test_with_nothing_configured_every_alert_escalates_honestly_without_a_plan(
    nothing_configured: None, pipeline: FlaskClient, wait_for: WaitFor, title: str, service: str
) -> None:
    incident_id = fire(pipeline, title=title, service=service)
    wait_for(incident_id, "escalated")
    doc = _escalation_settled(pipeline, incident_id)

    assert doc["plan"] is None and not doc["step_runs"]
    assert _events(doc) == [
        "ingested",
        "triaged",
        "context_gathered",
        "rca_exhausted",  # at once: a wider window cannot reach a source that is not configured
        "escalated",
        "closed_escalated",
    ]
    context = next(s for s in doc["stages"] if s["stage"] == "context")["result"]
    assert {s["kind"]: s["status"] for s in context["sources"]} == {
        "logs": "not_configured",
        "metrics": "not_configured",
        "deployments": "not_configured",
    }
    assert context["logs"] == context["metrics"] == context["deployments"] == []
    rca = _rca(doc)
    assert rca["confidence"] <= NO_EVIDENCE_CONFIDENCE
    assert "no evidence source is configured" in rca["reasoning"][-1]
    summary = next(t for t in doc["timeline"] if t["event"] == "rca_exhausted")["detail"]["summary"]
    assert "not trusted: no evidence source is configured" in summary and "LOKI_URL" in summary
    # The evidence never changes the severity when there is none: triage's stands.
    triaged = next(s for s in doc["stages"] if s["stage"] == "triage")["result"]["severity"]
    assert doc["severity"] == triaged
    assert not any("NullPointerException" in json.dumps(s["result"]) for s in doc["stages"])
    gathered = next(t for t in doc["timeline"] if t["event"] == "context_gathered")["detail"]["summary"]
    assert gathered.endswith("; not configured: logs, metrics, deployments") and "unavailable" not in gathered
    pm = doc["postmortem"]["markdown"]
    root_cause = pm.split("## Root cause", 1)[1].split("##", 1)[0].strip()
    stayed = re.match(
        r"Not established: the diagnosis stayed at (\d+)% confidence, below the gate", root_cause
    )
    assert stayed and int(stayed.group(1)) <= NO_EVIDENCE_CONFIDENCE * 100
    actions = pm.split("## Action items", 1)[1]
    assert "Establish the root cause by hand" in actions and "LOKI_URL" in actions
    assert "Tune the alert rule" not in actions and "Review release" not in actions
    assert {"kind": "slack.escalation", "incident_id": incident_id} in mock.SENT


def test_a_confident_analyst_on_no_evidence_cannot_pass_the_gate(
    nothing_configured: None, pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    set_analyst(ScriptedAnalyst(confidence=0.99, severity="P0"))
    doc = wait_for(fire(pipeline), "escalated")

    assert doc["plan"] is None
    assert _rca(doc)["confidence"] == NO_EVIDENCE_CONFIDENCE
    triaged = next(s for s in doc["stages"] if s["stage"] == "triage")["result"]["severity"]
    assert triaged != "P0" and doc["severity"] == triaged  # no evidence, no re-assessment
    assert "rca_confident" not in _events(doc)


def test_mock_evidence_on_gives_the_canned_bundle_and_says_so(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    """IRAS_MOCK_EVIDENCE=true (the tests' setting): the canned sources answer."""
    set_analyst(ScriptedAnalyst(confidence=0.9))
    doc = wait_for(fire(pipeline), "awaiting_approval")
    context = next(s for s in doc["stages"] if s["stage"] == "context")["result"]
    assert {s["client"] for s in context["sources"]} == {"mock-logs", "mock-metrics", "mock-deployments"}
    health = pipeline.get("/health").get_json()
    assert health["evidence"] == {"mock_evidence": True, "not_configured": {}}
    assert any("MOCK EVIDENCE MODE" in w for w in health["warnings"])
    page = pipeline.get(f"/ui/incidents/{doc['id']}").get_data(as_text=True)
    assert 'id="mock-evidence"' in page and "IRAS_MOCK_EVIDENCE=true" in page


def test_health_and_console_name_the_sources_to_configure(
    nothing_configured: None, pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    health = pipeline.get("/health").get_json()
    assert health["evidence"]["mock_evidence"] is False
    assert health["evidence"]["not_configured"] == {
        "logs": ["LOKI_URL", "ELASTICSEARCH_URL"],
        "metrics": ["PROMETHEUS_URL"],
        "deployments": ["GITHUB_TOKEN with GITHUB_REPOS"],
    }
    assert not any("MOCK EVIDENCE" in w for w in health["warnings"])
    assert any("not configured: logs (set LOKI_URL or ELASTICSEARCH_URL)" in w for w in health["warnings"])

    incident_id = fire(pipeline)
    wait_for(incident_id, "escalated")
    page = pipeline.get(f"/ui/incidents/{incident_id}").get_data(as_text=True)
    assert 'id="mock-evidence"' not in page
    assert 'id="no-evidence"' in page
    for name in ("LOKI_URL", "ELASTICSEARCH_URL", "PROMETHEUS_URL", "GITHUB_TOKEN"):
        assert name in page
    listing = pipeline.get("/ui/").get_data(as_text=True)
    assert 'id="configure-evidence"' in listing and "PROMETHEUS_URL" in listing

"""The whole pipeline on the Claude analyst: the real `anthropic` client and
`instructor`, against a local server speaking the Messages API wire format, with
the stages running on a real Celery worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from iras.integrations import mock
from tests.conftest import WaitFor
from tests.fakes.anthropic_server import (
    FakeAnthropicServer,
    RecordedRequest,
    Reply,
    error,
    realistic,
    tool_use,
)

SCENARIO = json.loads((Path(__file__).parent / "data" / "checkout-guest-npe-after-release.json").read_text())


def _fire(client: FlaskClient) -> str:
    mock.set_fixture(SCENARIO["evidence"])
    response = client.post("/webhook/alert", json=SCENARIO["alert"])
    assert response.status_code == 202
    return str(response.get_json()["incident_id"])


def test_a_full_incident_on_claude(
    pipeline: FlaskClient, wait_for: WaitFor, fake_anthropic: FakeAnthropicServer
) -> None:
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "awaiting_approval", "escalated", timeout=60)
    assert doc["status"] == "awaiting_approval", doc["timeline"]
    by_stage = {s["stage"]: s for s in doc["stages"]}
    for stage in ("triage", "rca", "plan"):
        assert by_stage[stage]["analyst"] == "claude", by_stage[stage]["note"]
        assert by_stage[stage]["model"] and by_stage[stage]["tokens"]["input"] > 0
    assert pipeline.post(f"/incidents/{incident_id}/approve", json={"by": "alice"}).status_code == 200
    doc = wait_for(incident_id, "resolved")
    assert doc["postmortem"]["analyst"] == "claude"
    assert doc["cost"]["input_tokens"] > 0 and doc["cost"]["estimated_cost_usd"] > 0
    assert "est. $" in doc["postmortem"]["markdown"]
    # Every request carried the cached system prompt and the evidence as delimited data.
    assert fake_anthropic.requests and all(r.system_cache_marked for r in fake_anthropic.requests)


def test_an_overloaded_api_is_retried_by_celery(
    pipeline: FlaskClient, wait_for: WaitFor, fake_anthropic: FakeAnthropicServer
) -> None:
    fake_anthropic.enqueue(error(529, retry_after=0.1))
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "awaiting_approval", "escalated", timeout=60)
    triage = next(s for s in doc["stages"] if s["stage"] == "triage")
    assert triage["analyst"] == "claude", "the retry reached Claude, not the fallback"
    assert len(fake_anthropic.requests_for(fake_anthropic.requests[0].tool_name or "")) >= 2


def test_an_auth_error_falls_back_to_the_offline_analyst_and_says_so(
    pipeline: FlaskClient, wait_for: WaitFor, fake_anthropic: FakeAnthropicServer
) -> None:
    fake_anthropic.enqueue(error(401, "invalid x-api-key"))
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "awaiting_approval", "escalated", timeout=60)
    triage = next(s for s in doc["stages"] if s["stage"] == "triage")
    assert triage["analyst"] == "offline"
    assert "fallback from claude" in triage["note"]
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")
    assert rca["analyst"] == "claude", "only the failing call fell back"


def test_the_verification_report_is_kept_with_the_stage_result(
    pipeline: FlaskClient, wait_for: WaitFor, fake_anthropic: FakeAnthropicServer
) -> None:
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "awaiting_approval", "escalated", timeout=60)
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")
    assert rca["details"], "what was checked is stored beside what the model said"


def _line_holding(key: str) -> str:
    """The physical log line of the scenario holding `key`, as a model would quote it."""
    return next(
        part.strip()
        for log in SCENARIO["evidence"]["logs"]
        for part in log["message"].splitlines()
        if key in part
    )


def _rca_answering(**answer: Any) -> Any:
    """A responder: the realistic model for every stage, `answer` for the diagnosis."""

    def respond(request: RecordedRequest) -> Reply:
        if request.tool_name == "RootCauseHypothesis":
            return tool_use(answer)(request)
        return realistic(request)

    return respond


SHA = SCENARIO["expected"]["culprit_deployment_sha"]
CAUSE_LINE = _line_holding("PromoCodeResolver.java:112")
VERSION_LINE = _line_holding("version=2.41.0")


def test_the_models_suspects_and_severity_reach_the_stored_diagnosis_and_the_incident(
    pipeline: FlaskClient, wait_for: WaitFor, fake_anthropic: FakeAnthropicServer
) -> None:
    """Triage (alert only) says P1; the evidence shows a minority of requests failing: the
    RCA's P2 replaces it, and the timeline says why."""
    fake_anthropic.responder = _rca_answering(
        primary_cause="Release 2.41.0 of checkout-service dereferences a null loyalty tier for guests",
        category="bad_deploy",
        culprit_service="checkout-service",
        culprit_deployment_sha=SHA,
        evidence=[CAUSE_LINE, VERSION_LINE],
        confidence=0.86,
        reasoning=["NPEs start a minute after 2.41.0 reached checkout-service"],
        suspects=[
            {
                "service": "checkout-service",
                "score": 0.8,
                "category": "bad_deploy",
                "reason": "its own NPEs start right after its release",
                "evidence": [CAUSE_LINE, "a line the model made up entirely"],
            },
            {"service": "api-gateway", "score": 0.15, "reason": "only relays the 500s", "evidence": []},
        ],
        severity="P2",
        severity_reason="only guest checkouts fail, a minority of requests",
    )
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "awaiting_approval", "escalated", timeout=60)
    assert doc["status"] == "awaiting_approval", doc["timeline"]
    assert doc["severity"] == "P2"
    stored = next(s for s in doc["stages"] if s["stage"] == "rca")
    assert stored["analyst"] == "claude"
    rca = stored["result"]
    assert rca["severity"] == "P2" and rca["severity_reason"].startswith("only guest checkouts")
    assert [s["service"] for s in rca["suspects"]] == ["checkout-service", "api-gateway"]
    assert rca["suspects"][0]["evidence"] == [CAUSE_LINE]  # the invented citation was dropped
    note = next(t for t in doc["timeline"] if t["event"] == "rca_confident")
    assert "severity P1 -> P2 from the evidence (only guest checkouts fail" in note["detail"]["summary"]


def test_a_diagnosis_below_the_gate_escalates_with_its_suspects_and_no_plan(
    pipeline: FlaskClient, wait_for: WaitFor, fake_anthropic: FakeAnthropicServer
) -> None:
    suspects = [
        {
            "service": "checkout-service",
            "score": 0.45,
            "reason": "NPEs after its release",
            "evidence": [CAUSE_LINE],
        },
        {
            "service": "loyalty-service",
            "score": 0.35,
            "reason": "the null tier may come from it",
            "evidence": [],
        },
        {"service": "api-gateway", "score": 0.2, "reason": "relays the 500s", "evidence": []},
    ]
    fake_anthropic.responder = _rca_answering(
        primary_cause="Either checkout-service 2.41.0 or the loyalty tier it reads",
        category="bad_deploy",
        culprit_service="checkout-service",
        culprit_deployment_sha=SHA,
        evidence=[CAUSE_LINE],
        confidence=0.55,
        suspects=suspects,
    )
    incident_id = _fire(pipeline)
    doc = wait_for(incident_id, "escalated", "awaiting_approval", timeout=60)
    assert doc["status"] == "escalated" and doc["plan"] is None
    attempts = [s for s in doc["stages"] if s["stage"] == "rca"]
    assert len(attempts) == 3 and all(a["result"]["confidence"] == 0.55 for a in attempts)
    assert [s["service"] for s in attempts[-1]["result"]["suspects"]] == [
        "checkout-service",
        "loyalty-service",
        "api-gateway",
    ]
    assert not fake_anthropic.requests_for("RemediationPlan")

"""The whole pipeline on the Claude analyst: the real `anthropic` client and
`instructor`, against a local server speaking the Messages API wire format, with
the stages running on a real Celery worker."""

from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskClient

from iras.integrations import mock
from tests.conftest import WaitFor
from tests.fakes.anthropic_server import FakeAnthropicServer, error

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

"""`POST /slack/actions` end to end on the real route and database: a signed click
from an approver decides; everything else is refused without changing state."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from iras.config import reset_settings
from iras.db import new_session
from iras.models import Incident, Transition
from iras.workflow import IncidentStatus

SECRET = "slack-signing-secret-for-tests"
APPROVER, STRANGER = "U0ALICE", "U0MALLORY"


@pytest.fixture
def slack_env(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("SLACK_APPROVER_IDS", f"{APPROVER},U0BOB")
    reset_settings()
    return client


def _awaiting(plan_id: int = 7) -> str:
    with new_session() as session:
        incident = Incident(
            status=IncidentStatus.AWAITING_APPROVAL.value,
            title="t",
            source="generic",
            fingerprint=f"slack-{time.monotonic_ns()}",
            plan_id=plan_id,
        )
        session.add(incident)
        session.commit()
        return incident.id


def _click(incident_id: str, action: str = "approve", user: str = APPROVER, plan_id: int | None = 7) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "actions": [
            {
                "action_id": action,
                "value": incident_id,
                "type": "button",
                "block_id": f"decision:{incident_id}:{plan_id}" if plan_id else f"decision:{incident_id}",
            }
        ],
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C1"},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _post(client: FlaskClient, body: bytes, ts: int | None = None, secret: str = SECRET):  # type: ignore[no-untyped-def]
    ts = int(time.time()) if ts is None else ts
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return client.post(
        "/slack/actions",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig},
    )


def _state(incident_id: str) -> tuple[str, str | None, str | None, int]:
    with new_session() as session:
        incident = session.get(Incident, incident_id)
        n = len(list(session.scalars(select(Transition).where(Transition.incident_id == incident_id))))
        return incident.status, incident.decided_by, incident.decided_via, n


def test_a_signed_click_from_an_approver_approves(slack_env: FlaskClient) -> None:
    incident_id = _awaiting()
    response = _post(slack_env, _click(incident_id))
    assert response.status_code == 200, response.get_json()
    assert _state(incident_id) == ("executing", APPROVER, "slack", 1)


def test_a_reject_click_escalates_with_the_user_recorded(slack_env: FlaskClient) -> None:
    incident_id = _awaiting()
    assert _post(slack_env, _click(incident_id, "reject")).status_code == 200
    status, by, via, _ = _state(incident_id)
    # A session's embedded worker (started by an earlier test) may already be escalating it.
    assert (status, by, via) in {(s, APPROVER, "slack") for s in ("escalating", "closing", "escalated")}


@pytest.mark.parametrize(
    ("tamper", "status"),
    [("bad_signature", 401), ("stale", 401), ("stranger", 403), ("old_plan", 409)],
)
def test_refused_clicks_change_nothing(slack_env: FlaskClient, tamper: str, status: int) -> None:
    incident_id = _awaiting()
    before = _state(incident_id)
    if tamper == "bad_signature":
        response = _post(slack_env, _click(incident_id), secret="not-the-secret")
    elif tamper == "stale":
        response = _post(slack_env, _click(incident_id), ts=int(time.time()) - 6 * 60)
    elif tamper == "stranger":
        response = _post(slack_env, _click(incident_id, user=STRANGER))
    else:
        response = _post(slack_env, _click(incident_id, plan_id=3))
    assert response.status_code == status, response.get_json()
    assert _state(incident_id) == before


def test_a_second_click_after_the_decision_is_refused(slack_env: FlaskClient) -> None:
    incident_id = _awaiting()
    assert _post(slack_env, _click(incident_id)).status_code == 200
    second = _post(slack_env, _click(incident_id, "reject", user="U0BOB"))
    assert second.status_code == 409
    assert _state(incident_id) == ("executing", APPROVER, "slack", 1)


def test_slack_actions_are_refused_when_no_signing_secret_is_configured(client: FlaskClient) -> None:
    incident_id = _awaiting()
    response = _post(client, _click(incident_id))
    assert response.status_code == 503
    assert _state(incident_id)[0] == "awaiting_approval"


def _payload(incident_id: str, **override: object) -> bytes:
    payload = json.loads(dict(parse_qsl(_click(incident_id).decode()))["payload"])
    payload.update(override)
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize(
    "shape",
    [
        "non_utf8_any_signature",
        "non_utf8_signed",
        "user_string",
        "actions_number",
        "nul_value",
        "huge_plan",
        "superscript_plan",
    ],
)
def test_malformed_clicks_are_4xx_and_change_nothing(slack_env: FlaskClient, shape: str) -> None:
    """Each of these was a 500 (issue 19)."""
    incident_id = _awaiting()
    before = _state(incident_id)
    if shape == "non_utf8_any_signature":
        response = slack_env.post(
            "/slack/actions",
            data=b"payload=\xff\xfe",
            content_type="application/x-www-form-urlencoded",
            headers={"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"},
        )
    elif shape == "non_utf8_signed":
        response = _post(slack_env, b"payload=\xff\xfe")
    elif shape == "user_string":
        response = _post(slack_env, _payload(incident_id, user=APPROVER))
    elif shape == "actions_number":
        response = _post(slack_env, _payload(incident_id, actions=7))
    elif shape == "nul_value":
        action = {
            "action_id": "approve",
            "value": incident_id + "\x00",
            "block_id": f"decision:{incident_id}:7",
        }
        response = _post(slack_env, _payload(incident_id, actions=[action]))
    else:
        plan = str(2**63) if shape == "huge_plan" else "²"
        action = {"action_id": "approve", "value": incident_id, "block_id": f"decision:{incident_id}:{plan}"}
        response = _post(slack_env, _payload(incident_id, actions=[action]))
    assert 400 <= response.status_code < 500, response.get_json()
    assert isinstance(response.get_json(), dict)
    assert _state(incident_id) == before

"""Slack: messages through the real `slack_sdk.WebClient` against a fake Web API, and
verification of signed button clicks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from iras.config import Settings
from iras.integrations.base import SourceUnavailable, TransientNotifyError
from iras.integrations.slack import (
    InvalidSignature,
    NotConfigured,
    SlackNotifier,
    StaleRequest,
    UnknownApprover,
    handle_slack_action,
    verify_and_parse_action,
)
from tests.fakes.servers import FakeSlack, Reply

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APPROVER, STRANGER = "U0APPROVER", "U0STRANGER"
INCIDENT_ID = "6f1c2c7e-0000-4000-8000-000000000001"


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": INCIDENT_ID,
        "status": "awaiting_approval",
        "severity": "P1",
        "title": "checkout-service 5xx ratio is 41%",
        "service": "checkout-service",
        "approval_deadline": "2025-06-01T12:15:00+00:00",
        "decision": None,
        "stages": [
            {
                "stage": "triage",
                "attempt": 1,
                "result": {
                    "severity": "P1",
                    "affected_services": ["checkout-service"],
                    "blast_radius": "41% of checkouts fail",
                },
            },
            {
                "stage": "rca",
                "attempt": 1,
                "result": {"primary_cause": "first guess", "category": "network", "confidence": 0.4},
            },
            {
                "stage": "rca",
                "attempt": 2,
                "result": {
                    "primary_cause": "release v2.4.0 dereferences a null promo code",
                    "category": "bad_deploy",
                    "culprit_service": "checkout-service",
                    "culprit_deployment_sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
                    "confidence": 0.86,
                    "evidence": ["NullPointerException at Order.total <!channel>"],
                },
            },
        ],
        "plan": {
            "id": 7,
            "summary": "Roll back checkout-service to v2.3.9",
            "steps": [
                {
                    "order": 1,
                    "action": "rollback_deployment",
                    "description": "Roll back the release",
                    "command": "kubectl rollout undo deployment/checkout-service",
                    "rollback_command": "kubectl rollout undo deployment/checkout-service",
                    "risk_level": "medium",
                }
            ],
            "requires_human_approval": True,
            "reversible": True,
            "safety_notes": [],
        },
        "timeline": [],
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token="xoxb-test") as fake:
        yield fake  # type: ignore[misc]


def _notifier(fake: FakeSlack, token: str = "xoxb-test", channel: str = "#incidents") -> SlackNotifier:
    return SlackNotifier(
        Settings(
            slack_bot_token=token,
            slack_api_url=f"{fake.url}/api/",
            slack_channel=channel,
            http_timeout_seconds=2,
        )
    )


def _texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# --------------------------------------------------------------------------- posting


def test_the_plan_is_posted_with_severity_root_cause_steps_and_buttons(slack: FakeSlack) -> None:
    ref = _notifier(slack).post_plan(_doc())

    assert ref["channel"] == "C0INCIDENT" and ref["ts"]
    message = slack.messages[(ref["channel"], ref["ts"])]
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and "P1" in blocks[0]["text"]["text"]
    text = _texts(blocks)
    assert "release v2.4.0 dereferences a null promo code" in text and "first guess" not in text
    assert "kubectl rollout undo deployment/checkout-service" in text and "medium" in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text  # a log line cannot ping the channel
    actions = next(b for b in blocks if b["type"] == "actions")
    buttons = {e["action_id"]: e for e in actions["elements"]}
    assert buttons["approve"]["value"] == INCIDENT_ID and buttons["reject"]["value"] == INCIDENT_ID
    assert buttons["approve"]["style"] == "primary" and "confirm" not in buttons["approve"]
    assert buttons["open_incident"]["url"].endswith(f"/incidents/{INCIDENT_ID}")
    assert "awaiting approval" in message["text"]


def test_a_high_risk_or_irreversible_plan_asks_for_confirmation(slack: FakeSlack) -> None:
    doc = _doc()
    doc["plan"]["steps"][0].update(risk_level="high", rollback_command=None)

    ref = _notifier(slack).post_plan(doc)

    blocks = slack.messages[(ref["channel"], ref["ts"])]["blocks"]
    approve = next(b for b in blocks if b["type"] == "actions")["elements"][0]
    assert approve["confirm"]["title"]["text"] == "Run this plan?"
    assert "no rollback (irreversible)" in _texts(blocks)


def test_the_decision_updates_the_original_message_and_removes_the_buttons(slack: FakeSlack) -> None:
    notifier = _notifier(slack)
    ref = notifier.post_plan(_doc())
    decided = _doc(
        status="executing",
        decision={
            "by": APPROVER,
            "via": "slack",
            "at": "2025-06-01T12:03:00+00:00",
            "reason": "approve clicked",
        },
        timeline=[{"event": "approved", "to": "executing", "actor": f"slack:{APPROVER}"}],
    )

    notifier.post_decision(decided, ref)

    assert len(slack.messages) == 1
    updated = slack.messages[(ref["channel"], ref["ts"])]
    assert all(b["type"] != "actions" for b in updated["blocks"])
    assert f"*Approved* by <@{APPROVER}>" in _texts(updated["blocks"])
    assert [r.path for r in slack.calls()] == ["/api/chat.postMessage", "/api/chat.update"]


def test_a_rejection_by_api_user_is_shown_by_name(slack: FakeSlack) -> None:
    notifier = _notifier(slack)
    ref = notifier.post_plan(_doc())
    rejected = _doc(
        status="escalating",
        outcome="escalated",
        decision={"by": "alice", "via": "api", "at": None, "reason": "wrong culprit"},
        timeline=[{"event": "rejected", "to": "escalating"}],
    )

    notifier.post_decision(rejected, ref)

    assert "*Rejected* by alice: wrong culprit" in _texts(
        slack.messages[(ref["channel"], ref["ts"])]["blocks"]
    )


def test_a_decision_whose_original_message_is_gone_is_posted_anew(slack: FakeSlack) -> None:
    _notifier(slack).post_decision(
        _doc(decision={"by": APPROVER, "via": "slack"}), {"channel": "C0INCIDENT", "ts": "1.000001"}
    )

    assert len(slack.messages) == 1
    assert [r.path for r in slack.calls()] == ["/api/chat.update", "/api/chat.postMessage"]


def test_escalation_and_postmortem_are_posted(slack: FakeSlack) -> None:
    notifier = _notifier(slack)
    escalated = _doc(
        status="escalating",
        timeline=[
            {"event": "approval_timed_out", "to": "escalating", "detail": {"reason": "no decision in 15 min"}}
        ],
    )

    notifier.post_escalation(escalated)
    notifier.post_postmortem(
        escalated, "# Checkout outage\n\n**Root cause**: a [release](https://git.example/pr/1)\n- roll back\n"
    )

    escalation, postmortem = slack.posts()
    assert "Escalated" in escalation["text"] and "approval timed out: no decision in 15 min" in _texts(
        escalation["blocks"]
    )
    pm_text = _texts(postmortem["blocks"])
    assert "*Checkout outage*" in pm_text and "*Root cause*" in pm_text
    assert "<https://git.example/pr/1|release>" in pm_text and "• roll back" in pm_text


def test_a_huge_postmortem_stays_within_slack_block_limits(slack: FakeSlack) -> None:
    _notifier(slack).post_postmortem(_doc(), "line of text\n" * 5000)

    (message,) = slack.posts()
    assert len(message["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in message["blocks"])
    assert "read the full post-mortem" in _texts(message["blocks"])


def test_a_rate_limit_is_a_transient_error_carrying_retry_after(slack: FakeSlack) -> None:
    slack.script("/api/chat.postMessage", FakeSlack.rate_limited(retry_after=30))

    with pytest.raises(TransientNotifyError) as caught:
        _notifier(slack).post_plan(_doc())

    assert caught.value.retry_after == 30
    assert slack.messages == {}


def test_a_slack_outage_is_transient(slack: FakeSlack) -> None:
    slack.script("/api/chat.postMessage", Reply(503, "<html>upstream unavailable</html>"))

    with pytest.raises(TransientNotifyError):
        _notifier(slack).post_escalation(_doc())


@pytest.mark.parametrize(
    ("token", "channel", "error"),
    [("xoxb-wrong", "#incidents", "invalid_auth"), ("xoxb-test", "#nope", "channel_not_found")],
)
def test_configuration_errors_are_permanent(slack: FakeSlack, token: str, channel: str, error: str) -> None:
    with pytest.raises(SourceUnavailable, match=error) as caught:
        _notifier(slack, token=token, channel=channel).post_plan(_doc())
    assert not isinstance(caught.value, TransientNotifyError)


def test_an_unreachable_slack_is_transient() -> None:
    with FakeSlack() as fake:
        url = fake.url
    notifier = SlackNotifier(
        Settings(slack_bot_token="xoxb-test", slack_api_url=f"{url}/api/", http_timeout_seconds=1)
    )

    with pytest.raises(TransientNotifyError):
        notifier.post_plan(_doc())


# --------------------------------------------------------------------------- clicks


def _click(action_id: str = "approve", user: str = APPROVER, value: str = INCIDENT_ID) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM"},
        "channel": {"id": "C0INCIDENT"},
        "message": {"ts": "1717243200.000100"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"decision:{value}",
                "value": value,
                "action_ts": "1717243260.000200",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _settings(approvers: str = f"{APPROVER},U0OTHER", secret: str | None = SECRET) -> Settings:
    return Settings(slack_signing_secret=secret, slack_approver_ids=approvers)


NOW = 1_717_243_260


def test_a_correctly_signed_click_from_an_approver_parses() -> None:
    body = _click("reject")

    action = verify_and_parse_action(body, _signed(body, NOW - 10), _settings(), now=NOW)

    assert action[:3] == (INCIDENT_ID, "reject", APPROVER) and action.plan_id is None


def test_a_bad_signature_is_refused() -> None:
    body = _click()
    tampered = body.replace(APPROVER.encode(), b"U0APPROVEX")
    with pytest.raises(InvalidSignature):
        verify_and_parse_action(tampered, _signed(body, NOW), _settings(), now=NOW)
    with pytest.raises(InvalidSignature):
        verify_and_parse_action(body, _signed(body, NOW, secret="another-secret"), _settings(), now=NOW)
    with pytest.raises(InvalidSignature):
        verify_and_parse_action(body, {}, _settings(), now=NOW)


def test_a_replayed_click_older_than_five_minutes_is_refused() -> None:
    body = _click()
    with pytest.raises(StaleRequest):
        verify_and_parse_action(body, _signed(body, NOW - 301), _settings(), now=NOW)
    assert verify_and_parse_action(body, _signed(body, NOW - 299), _settings(), now=NOW).action == "approve"


def test_a_user_not_in_the_approver_list_is_refused_and_an_empty_list_refuses_everyone() -> None:
    body = _click(user=STRANGER)
    with pytest.raises(UnknownApprover):
        verify_and_parse_action(body, _signed(body, NOW), _settings(), now=NOW)
    mine = _click()
    with pytest.raises(UnknownApprover):
        verify_and_parse_action(mine, _signed(mine, NOW), _settings(approvers=""), now=NOW)


def test_without_a_signing_secret_every_click_is_refused() -> None:
    body = _click()
    with pytest.raises(NotConfigured):
        verify_and_parse_action(body, _signed(body, NOW), _settings(secret=None), now=NOW)


class Decisions:
    """A stand-in for the API's compare-and-set decide: first decision wins."""

    def __init__(self) -> None:
        self.status = {INCIDENT_ID: "awaiting_approval"}
        self.calls: list[tuple[str, str, str, str]] = []

    def __call__(
        self, incident_id: str, action: str, actor: str, reason: str, plan_id: int | None = None
    ) -> None:
        self.calls.append((incident_id, action, actor, reason))
        if incident_id not in self.status:
            raise Refused(404, f"incident {incident_id} not found")
        if self.status[incident_id] != "awaiting_approval":
            raise Refused(409, f"incident is {self.status[incident_id]}, not awaiting approval")
        self.status[incident_id] = "executing" if action == "approve" else "escalating"


class Refused(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code, self.message = status_code, message


def test_a_signed_click_approves_and_a_second_click_is_refused_without_change() -> None:
    decide = Decisions()
    first, second = _click("approve"), _click("reject", user="U0OTHER")

    answer, status = handle_slack_action(first, _signed(first, NOW), decide, _settings(), now=NOW)
    again, again_status = handle_slack_action(
        second, _signed(second, NOW + 5), decide, _settings(), now=NOW + 5
    )

    assert status == 200 and answer["ok"] is True and answer["decided_by"] == APPROVER
    assert decide.calls[0][:3] == (INCIDENT_ID, "approve", APPROVER) and APPROVER in decide.calls[0][3]
    assert again_status == 409 and again["ok"] is False and "not awaiting approval" in again["reason"]
    assert decide.status[INCIDENT_ID] == "executing"


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda b: _signed(b, NOW, secret="wrong"), 401, "invalid_signature"),
        (lambda b: _signed(b, NOW - 600), 401, "stale_request"),
    ],
    ids=["bad-signature", "replay"],
)
def test_refused_clicks_never_reach_decide(make: Any, status: int, code: str) -> None:
    decide = Decisions()
    body = _click()

    answer, got = handle_slack_action(body, make(body), decide, _settings(), now=NOW)

    assert (got, answer["error"]) == (status, code) and decide.calls == []
    assert decide.status[INCIDENT_ID] == "awaiting_approval"


def test_a_stranger_s_click_never_reaches_decide() -> None:
    decide = Decisions()
    body = _click(user=STRANGER)

    answer, status = handle_slack_action(body, _signed(body, NOW), decide, _settings(), now=NOW)

    assert status == 403 and answer["error"] == "not_an_approver" and decide.calls == []


def test_the_open_in_iras_link_button_is_acknowledged_and_ignored() -> None:
    decide = Decisions()
    body = _click("open_incident")

    answer, status = handle_slack_action(body, _signed(body, NOW), decide, _settings(), now=NOW)

    assert status == 200 and answer["error"] == "ignored" and decide.calls == []


def test_an_unknown_incident_is_refused_with_not_found() -> None:
    body = _click(value="no-such-incident")

    answer, status = handle_slack_action(body, _signed(body, NOW), Decisions(), _settings(), now=NOW)

    assert status == 404 and answer["ok"] is False


def test_a_real_clock_accepts_a_fresh_click() -> None:
    body = _click()
    assert verify_and_parse_action(body, _signed(body, int(time.time())), _settings()).user_id == APPROVER


def test_the_mock_notifier_keeps_only_the_newest_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Slack configured, a long-running worker must not grow by a record per
    notification (bench/memory.py found it: ~150 B per incident, for ever)."""
    from iras.integrations import mock

    monkeypatch.setattr(mock, "SENT", [])
    monkeypatch.setattr(mock, "SENT_KEEP", 10)
    chat = mock.MockChatNotifier()
    refs = [chat.post_plan({"id": f"inc-{i}"}) for i in range(25)]
    assert len(mock.SENT) == 10
    assert [m["incident_id"] for m in mock.SENT] == [f"inc-{i}" for i in range(15, 25)]
    assert len({r["ts"] for r in refs}) == 25, "message refs stay unique after trimming"


# --------------------------------------------------------------------------- suspects


SUSPECTS = [
    {
        "service": "orders-db",
        "score": 0.46,
        "category": "database",
        "reason": "connection pool exhausted first, 3 min before checkout errors",
        "evidence": [f"FATAL: remaining connection slots are reserved (pid {i})" for i in range(6)],
    },
    {
        "service": "checkout-service",
        "score": 0.31,
        "category": "bad_deploy",
        "reason": "released 12 min before the page",
        "evidence": ["checkout-service starting version 2.41.0"],
    },
    {"service": "payments-gw", "score": 0.12, "reason": "timeouts <!here>", "evidence": []},
]


def _below_gate_doc() -> dict[str, Any]:
    doc = _doc(
        status="escalating",
        plan=None,
        timeline=[
            {
                "event": "rca_exhausted",
                "to": "escalating",
                "detail": {"summary": "database in orders-db (confidence 0.46, attempt 3)"},
            }
        ],
    )
    doc["stages"].append(
        {
            "stage": "rca",
            "attempt": 3,
            "result": {
                "primary_cause": "orders-db connection pool exhausted",
                "category": "database",
                "culprit_service": "orders-db",
                "confidence": 0.46,
                "evidence": [],
                "suspects": SUSPECTS,
            },
        }
    )
    return doc


def test_an_escalation_below_the_gate_hands_over_the_suspects_and_their_evidence(slack: FakeSlack) -> None:
    _notifier(slack).post_escalation(_below_gate_doc())

    [escalation] = slack.posts()
    text = _texts(escalation["blocks"])
    assert (
        "Leading hypothesis (below the confidence gate, not acted on)" in text and "*Root cause*" not in text
    )
    assert "*Suspects* (not confident" in text
    for rank, name, score in (
        (1, "orders-db", "46%"),
        (2, "checkout-service", "31%"),
        (3, "payments-gw", "12%"),
    ):
        assert f"{rank}. *{name}* {score}" in text
    # Six lines of one template are one quote with its count, not six quotes.
    assert text.count("remaining connection slots are reserved") == 1 and "(×6)" in text
    assert "&lt;!here&gt;" in text and "<!here>" not in text
    assert "Proposed plan" not in text


def test_the_plan_message_lists_the_suspects_and_a_confident_root_cause(slack: FakeSlack) -> None:
    doc = _doc()
    doc["stages"][-1]["result"]["suspects"] = SUSPECTS[:2]
    ref = _notifier(slack).post_plan(doc)
    text = _texts(slack.messages[(ref["channel"], ref["ts"])]["blocks"])
    assert "*Root cause*" in text and "*Suspects*" in text and "(not confident" not in text
    assert "1. *orders-db* 46%" in text and "2. *checkout-service* 31%" in text


def test_an_escalation_with_no_evidence_configured_names_the_settings(slack: FakeSlack) -> None:
    doc = _below_gate_doc()
    doc["stages"].append(
        {
            "stage": "context",
            "attempt": 1,
            "result": {
                "sources": [
                    {
                        "kind": "logs",
                        "status": "not_configured",
                        "configure": ["LOKI_URL", "ELASTICSEARCH_URL"],
                    },
                    {"kind": "metrics", "status": "not_configured", "configure": ["PROMETHEUS_URL"]},
                    {"kind": "deployments", "status": "ok", "items": 2},
                ]
            },
        }
    )
    _notifier(slack).post_escalation(doc)
    text = _texts(slack.posts()[0]["blocks"])
    assert (
        "*Evidence not configured*: logs (set LOKI_URL or ELASTICSEARCH_URL); metrics (set PROMETHEUS_URL)"
        in text
    )
    assert "deployments (set" not in text


def test_the_fallback_text_of_every_message_is_escaped_like_the_blocks(slack: FakeSlack) -> None:
    """`text` is what notifications show: alert text in it must not ping or link (issue 19)."""
    hostile = "Disk full <!channel> <http://evil.example|click here> & more"
    notifier = _notifier(slack)
    doc = _doc(title=hostile)
    ref = notifier.post_plan(doc)
    decided = _doc(
        title=hostile,
        status="executing",
        decided_by="alice",
        decided_via="api",
        decision_reason="<!here> ok",
        timeline=[
            {"event": "approved", "to": "executing", "detail": {"reason": "<!here> ok", "by": "alice"}}
        ],
    )
    notifier.post_decision(decided, ref)
    escalated = _doc(
        title=hostile,
        status="escalating",
        timeline=[
            {"event": "rejected", "to": "escalating", "detail": {"reason": "<!everyone> <http://x|y>"}}
        ],
    )
    notifier.post_escalation(escalated)
    notifier.post_postmortem(escalated, "# pm")
    texts = [m["text"] for m in slack.posts()] + [m["text"] for m in slack.messages.values()]
    assert len(texts) >= 4
    for text in texts:
        assert "<!" not in text and "<http" not in text, text
    assert any("&lt;!channel&gt;" in text for text in texts)

"""PagerDuty Events v2 client against a fake that validates and answers like the real API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iras.config import Settings
from iras.integrations.base import SourceUnavailable, TransientNotifyError
from iras.integrations.http import RetryPolicy
from iras.integrations.pagerduty import PagerDutyPager
from tests.fakes.servers import FakePagerDuty, Reply

ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, as PagerDuty's
# Shaped like iras.services.serialize_incident: stage results and the transition timeline.
INCIDENT = {
    "id": "6f1c2c7e-0000-4000-8000-000000000001",
    "title": "checkout-service 5xx ratio is 41%",
    "severity": "P1",
    "service": "checkout-service",
    "status": "escalating",
    "decision": None,
    "stages": [
        {
            "stage": "triage",
            "attempt": 1,
            "result": {"severity": "P1", "affected_services": ["checkout-service"]},
        },
        {
            "stage": "rca",
            "attempt": 1,
            "result": {
                "primary_cause": "release v2.4.0 NPE in Order.total",
                "category": "bad_deploy",
                "culprit_service": "checkout-service",
                "confidence": 0.82,
            },
        },
    ],
    "plan": {"id": 3, "summary": "Roll back checkout-service to v2.3.9", "steps": []},
    "timeline": [
        {"from": "planning", "to": "awaiting_approval", "event": "plan_ready", "detail": None},
        {
            "from": "awaiting_approval",
            "to": "escalating",
            "event": "approval_timed_out",
            "detail": {"reason": "no decision within 15 minutes"},
        },
    ],
}


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake  # type: ignore[misc]


def _pager(
    fake: FakePagerDuty, attempts: int = 3, routing_key: str = ROUTING_KEY
) -> tuple[PagerDutyPager, list[float]]:
    waits: list[float] = []
    settings = Settings(
        pagerduty_routing_key=routing_key,
        pagerduty_events_url=f"{fake.url}/v2/enqueue",
        public_url="https://iras.example.com/",
    )
    policy = RetryPolicy(attempts=attempts, backoff_seconds=0.01, max_sleep_seconds=2, sleep=waits.append)
    return PagerDutyPager(settings, policy=policy), waits


def test_escalating_twice_sends_the_same_dedup_key_and_pages_once(pagerduty: FakePagerDuty) -> None:
    pager, _ = _pager(pagerduty)

    pager.trigger(INCIDENT)
    pager.trigger(INCIDENT)

    keys = [call.json["dedup_key"] for call in pagerduty.calls("/v2/enqueue")]
    assert keys == [INCIDENT["id"], INCIDENT["id"]]
    assert list(pagerduty.alerts) == [INCIDENT["id"]]
    assert pagerduty.alerts[INCIDENT["id"]]["status"] == "triggered"


def test_the_trigger_carries_summary_severity_source_details_and_a_link_back(
    pagerduty: FakePagerDuty,
) -> None:
    pager, _ = _pager(pagerduty)

    pager.trigger(INCIDENT)

    event = pagerduty.calls()[0].json
    payload = event["payload"]
    assert payload["summary"] == "[P1] checkout-service 5xx ratio is 41%"
    assert (payload["severity"], payload["source"], payload["component"]) == (
        "error",
        "checkout-service",
        "checkout-service",
    )
    assert payload["class"] == "bad_deploy"
    details = payload["custom_details"]
    assert details["root_cause"] == "release v2.4.0 NPE in Order.total"
    assert details["reason"] == "approval timed out: no decision within 15 minutes"
    assert details["affected_services"] == ["checkout-service"] and details["rca_confidence"] == 0.82
    assert details["plan"] == "Roll back checkout-service to v2.3.9"
    link = f"https://iras.example.com/ui/incidents/{INCIDENT['id']}"
    assert event["links"] == [{"href": link, "text": "Incident in IRAS"}] and event["client_url"] == link


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("P0", "critical"), ("P1", "error"), ("P2", "warning"), ("P3", "info"), (None, "error")],
)
def test_severity_mapping(pagerduty: FakePagerDuty, severity: str | None, expected: str) -> None:
    pager, _ = _pager(pagerduty)

    pager.trigger({"id": "inc-1", "title": "t", "severity": severity})

    assert pagerduty.calls()[0].json["payload"]["severity"] == expected
    assert pagerduty.calls()[0].json["payload"]["source"] == "iras"  # no service: the configured source


def test_an_overlong_title_is_cut_to_the_api_limit(pagerduty: FakePagerDuty) -> None:
    pager, _ = _pager(pagerduty)

    pager.trigger({**INCIDENT, "title": "x" * 5000})

    assert len(pagerduty.calls()[0].json["payload"]["summary"]) == 1024


@pytest.mark.parametrize(
    "failure", [FakePagerDuty.throttled(), FakePagerDuty.server_error()], ids=["429", "500"]
)
def test_throttling_and_server_errors_are_retried(pagerduty: FakePagerDuty, failure: Reply) -> None:
    pagerduty.script("/v2/enqueue", failure, times=2)
    pager, waits = _pager(pagerduty)

    pager.trigger(INCIDENT)

    assert len(pagerduty.calls()) == 3 and len(waits) == 2
    assert {call.json["dedup_key"] for call in pagerduty.calls()} == {INCIDENT["id"]}
    assert pagerduty.alerts[INCIDENT["id"]]["status"] == "triggered"


def test_persistent_throttling_is_left_to_the_task_retry(pagerduty: FakePagerDuty) -> None:
    pagerduty.script("/v2/enqueue", FakePagerDuty.throttled(), times=5)
    pager, _ = _pager(pagerduty, attempts=2)

    with pytest.raises(TransientNotifyError, match="arriving too quickly"):
        pager.trigger(INCIDENT)
    assert pagerduty.alerts == {}


def test_an_invalid_event_is_permanent_not_transient(pagerduty: FakePagerDuty) -> None:
    pager, waits = _pager(pagerduty, routing_key="too-short")

    with pytest.raises(SourceUnavailable, match="Event object is invalid.*routing_key") as caught:
        pager.trigger(INCIDENT)
    assert not isinstance(caught.value, TransientNotifyError) and waits == []


def test_resolve_closes_the_same_alert(pagerduty: FakePagerDuty) -> None:
    pager, _ = _pager(pagerduty)

    pager.trigger(INCIDENT)
    pager.resolve(INCIDENT["id"])

    resolve = pagerduty.calls()[1].json
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": INCIDENT["id"]}
    assert pagerduty.alerts[INCIDENT["id"]]["status"] == "resolved"


def test_an_unsure_escalation_pages_with_the_suspects_and_the_missing_evidence(
    pagerduty: FakePagerDuty,
) -> None:
    pager, _ = _pager(pagerduty)
    incident = {
        **INCIDENT,
        "plan": None,
        "stages": [
            {
                "stage": "context",
                "attempt": 1,
                "result": {
                    "sources": [
                        {"kind": "logs", "status": "ok", "items": 12},
                        {"kind": "metrics", "status": "not_configured", "configure": ["PROMETHEUS_URL"]},
                    ]
                },
            },
            {
                "stage": "rca",
                "attempt": 3,
                "result": {
                    "primary_cause": "orders-db pool exhausted",
                    "category": "database",
                    "culprit_service": "orders-db",
                    "confidence": 0.46,
                    "suspects": [
                        {"service": "orders-db", "score": 0.46, "reason": "pool exhausted first"},
                        {"service": "checkout-service", "score": 0.31, "reason": ""},
                    ],
                },
            },
        ],
    }

    pager.trigger(incident)

    details = pagerduty.calls()[0].json["payload"]["custom_details"]
    assert details["suspects"] == ["orders-db (46%): pool exhausted first", "checkout-service (31%)"]
    assert details["evidence_not_configured"] == ["metrics"]
    assert "plan" not in details

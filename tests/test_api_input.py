"""Bad input on every endpoint gets a clear 4xx with a JSON reason; nothing is
half-written."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from iras.db import new_session
from iras.models import AlertEvent, Incident, Transition
from tests.conftest import fire


def _counts() -> tuple[int, int, int]:
    with new_session() as session:
        return (
            session.scalar(select(func.count()).select_from(Incident)) or 0,
            session.scalar(select(func.count()).select_from(AlertEvent)) or 0,
            session.scalar(select(func.count()).select_from(Transition)) or 0,
        )


BAD_WEBHOOK_BODIES = [
    ("not json at all", "application/json", 400),
    ('{"title": "x", "timestamp": NaN}', "application/json", 400),
    ("[1, 2, 3]", "application/json", 400),
    ('"a string"', "application/json", 400),
    ("{}", "application/json", 400),
    ('{"title": "x"}', "application/json", 400),
    ('{"timestamp": "2026-01-01T00:00:00Z"}', "application/json", 400),
    ('{"title": 42, "timestamp": "2026-01-01T00:00:00Z"}', "application/json", 400),
    ('{"title": "x", "timestamp": "yesterday"}', "application/json", 400),
    ('{"title": "x", "timestamp": true}', "application/json", 400),
    ('{"title": "x", "timestamp": "2026-01-01T00:00:00Z"}', "text/plain", 415),
    ("", "application/json", 400),
    ("[" * 100_000 + "]" * 100_000, "application/json", 400),
]


@pytest.mark.parametrize(("body", "content_type", "status"), BAD_WEBHOOK_BODIES)
def test_bad_webhook_bodies_get_a_clear_4xx_and_write_nothing(
    client: FlaskClient, body: str, content_type: str, status: int
) -> None:
    response = client.post("/webhook/alert", data=body, content_type=content_type)
    assert response.status_code == status
    doc = response.get_json()
    assert doc["reason"] and doc["error"]
    assert _counts() == (0, 0, 0)


def test_a_missing_field_is_named(client: FlaskClient) -> None:
    doc = client.post("/webhook/alert", json={"title": "x"}).get_json()
    assert doc["field"] == "timestamp"


def test_a_10_mb_body_is_refused_with_413(client: FlaskClient) -> None:
    body = (
        b'{"title": "x", "timestamp": "2026-01-01T00:00:00Z", "blob": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    )
    response = client.post("/webhook/alert", data=body, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["reason"]
    assert _counts() == (0, 0, 0)


def test_unicode_everywhere_is_stored_whole(client: FlaskClient) -> None:
    title = "Ошибка 💥 在 checkout — \u202e reversed \u0000 nul"
    response = client.post(
        "/webhook/alert",
        json={
            "title": title,
            "timestamp": "2026-01-01T00:00:00+02:00",
            "service": "kassé",
            "extra": {"ключ": ["値", 1.5]},
        },
    )
    assert response.status_code == 202
    doc = client.get(f"/incidents/{response.get_json()['incident_id']}").get_json()
    # NUL is the one character PostgreSQL cannot store: it becomes U+FFFD on every backend.
    assert doc["title"] == title.strip().replace("\u0000", "\ufffd")
    assert doc["payload"]["extra"] == {"ключ": ["値", 1.5]}


def test_extra_fields_pass_through_to_the_stored_payload(client: FlaskClient) -> None:
    incident_id = fire(client, runbook="https://runbooks/x", region="eu-west-1", error_rate=0.42)
    payload = client.get(f"/incidents/{incident_id}").get_json()["payload"]
    assert payload["region"] == "eu-west-1" and payload["error_rate"] == 0.42


def test_unknown_source_path_is_a_400(client: FlaskClient) -> None:
    response = client.post("/webhook/nagios", json={"title": "x", "timestamp": "2026-01-01T00:00:00Z"})
    assert response.status_code == 400 and "nagios" in response.get_json()["reason"]


@pytest.mark.parametrize("incident_id", [str(uuid.uuid4()), "not-a-uuid", "1' OR '1'='1", "💥"])
def test_unknown_ids_are_404_everywhere(client: FlaskClient, incident_id: str) -> None:
    assert client.get(f"/incidents/{incident_id}").status_code == 404
    for action in ("approve", "reject"):
        response = client.post(f"/incidents/{incident_id}/{action}", json={"by": "a", "reason": "r"})
        assert response.status_code == 404 and response.get_json()["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "by"),
        ({"by": ""}, "by"),
        ({"by": 7}, "by"),
        ({"by": "a" * 300}, "by"),
        ({"by": "a", "reason": ["x"]}, "reason"),
        ({"by": "a", "plan_id": "3"}, "plan_id"),
        ({"by": "a", "plan_id": True}, "plan_id"),
    ],
)
def test_bad_decision_bodies_name_the_field(client: FlaskClient, body: dict, field: str) -> None:
    incident_id = fire(client)
    response = client.post(f"/incidents/{incident_id}/approve", json=body)
    assert response.status_code == 400 and response.get_json()["field"] == field


def test_a_reject_needs_a_reason(client: FlaskClient) -> None:
    incident_id = fire(client)
    response = client.post(f"/incidents/{incident_id}/reject", json={"by": "bob"})
    assert response.status_code == 400 and response.get_json()["field"] == "reason"


def test_deciding_an_incident_not_awaiting_approval_is_409(client: FlaskClient) -> None:
    incident_id = fire(client)  # no worker in this test: it stays in triage
    response = client.post(f"/incidents/{incident_id}/approve", json={"by": "alice"})
    assert response.status_code == 409 and "not awaiting approval" in response.get_json()["reason"]


@pytest.mark.parametrize("query", ["status=bogus", "severity=P9", "limit=0", "limit=abc", "limit=100000"])
def test_bad_list_filters_are_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/incidents?{query}")
    assert response.status_code == 400 and response.get_json()["reason"]


def test_list_filters_work(client: FlaskClient) -> None:
    a = fire(client, title="A", service="api")
    fire(client, title="B", service="web")
    doc = client.get("/incidents?service=api").get_json()
    assert [i["id"] for i in doc["incidents"]] == [a]
    for _ in range(50):  # the session's embedded worker may move it on between the two reads
        status = client.get(f"/incidents/{a}").get_json()["status"]
        listed = [
            i["id"] for i in client.get(f"/incidents?service=api&status={status}").get_json()["incidents"]
        ]
        if listed == [a]:
            break
    assert listed == [a]


def test_wrong_methods_and_unknown_paths_are_json(client: FlaskClient) -> None:
    assert client.get("/webhook/alert").status_code == 405
    assert client.get("/webhook/alert").get_json()["reason"]
    assert client.get("/nope").status_code == 404 and client.get("/nope").get_json()["reason"]


def test_health_reports_database_and_broker(client: FlaskClient) -> None:
    doc = client.get("/health").get_json()
    assert doc["status"] == "ok" and doc["checks"]["database"]["ok"] and doc["checks"]["broker"]["ok"]


def test_health_is_503_naming_the_database_when_it_is_down(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iras.config import reset_settings
    from iras.db import reset_engine

    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    reset_settings()
    reset_engine()
    response = client.get("/health")
    assert response.status_code == 503 and response.get_json()["failing"] == ["database"]
    webhook = client.post("/webhook/alert", json={"title": "x", "timestamp": "2026-01-01T00:00:00Z"})
    assert webhook.status_code == 503 and webhook.get_json()["reason"]


@pytest.mark.parametrize("plan_id", ["²", "9" * 5000, str(2**63), "-1", "0"])
def test_a_console_decision_with_an_unreadable_plan_id_decides_nothing(
    client: FlaskClient, plan_id: str
) -> None:
    """Each was a 500 (issue 19): "²" passes str.isdigit(), int() refuses 5,000 digits."""
    incident_id = _awaiting_incident()
    csrf = _csrf(client)
    form = {"csrf_token": csrf, "action": "approve", "plan_id": plan_id, "name": "alice"}
    response = client.post(f"/ui/incidents/{incident_id}/decision", data=form)
    assert response.status_code == 303
    assert client.get(f"/incidents/{incident_id}").get_json()["status"] == "awaiting_approval"


def test_a_nul_in_a_console_reason_is_a_400(client: FlaskClient) -> None:
    incident_id = _awaiting_incident()
    csrf = _csrf(client)
    form = {"csrf_token": csrf, "action": "reject", "plan_id": "1", "name": "alice", "reason": "a\x00b"}
    response = client.post(f"/ui/incidents/{incident_id}/decision", data=form)
    assert response.status_code == 400 and "NUL" in response.get_json()["reason"]


@pytest.mark.parametrize("plan_id", [2**63, -(2**63) - 1, 0])
def test_an_api_plan_id_outside_bigint_is_a_400(client: FlaskClient, plan_id: int) -> None:
    incident_id = _awaiting_incident()
    response = client.post(f"/incidents/{incident_id}/approve", json={"by": "alice", "plan_id": plan_id})
    assert response.status_code == 400 and response.get_json()["field"] == "plan_id"


@pytest.mark.parametrize(
    "query",
    ["since=9999-12-31T23:59:59-14:00", "until=0001-01-01T00:00:00%2B14:00", "service=%00", "service=a%00b"],
)
def test_postmortem_filters_that_overflow_or_carry_nul_are_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/postmortems?{query}")
    assert response.status_code == 400, response.get_data()


@pytest.mark.parametrize("path", ["/incidents?service=%00", "/ui/?service=%00", "/postmortems?service=%00"])
def test_a_nul_in_a_query_parameter_is_a_400(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 400


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as session:
        session["csrf"] = "csrf-for-this-session"
    return "csrf-for-this-session"


def _awaiting_incident() -> str:
    from iras.workflow import IncidentStatus

    with new_session() as session:
        incident = Incident(
            status=IncidentStatus.AWAITING_APPROVAL.value,
            title="t",
            source="generic",
            fingerprint=f"api-input-{uuid.uuid4()}",
            plan_id=1,
        )
        session.add(incident)
        session.commit()
        return str(incident.id)

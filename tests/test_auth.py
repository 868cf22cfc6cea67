"""Access control: hashed tokens with roles, 401/403 on every endpoint, the
`iras tokens` command, and the audit trail of every decision path (API,
console, Slack, timeout): who, how and why, on the timeline and in the post-mortem."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from iras.auth import ROLES, create_token, find_token, hash_token
from iras.cli import main as iras_cli
from iras.config import reset_settings
from iras.db import new_session
from iras.models import ApiToken, Incident, Transition
from iras.tasks import expire_approvals
from tests.conftest import WaitFor, fire
from tests.test_console import (
    csrf_of,
    fire_scenario,
    quiet_worker_after_test,  # noqa: F401 - autouse fixture
)

SOME_ID = "00000000-0000-0000-0000-000000000000"

# Deliberately reachable without an IRAS token, each for a stated reason. A new
# route missing from this list must require a token, or the test below fails.
PUBLIC = {
    "/webhook/alert": "alert senders authenticate with WEBHOOK_TOKENS",
    "/webhook/<source>": "alert senders authenticate with WEBHOOK_TOKENS",
    "/slack/actions": "Slack request signature",
    "/health": "load balancers and orchestrators",
    "/metrics": "Prometheus scrapes it; counts only, keep it on the internal network",
    "/static/<path:filename>": "CSS and JS",
    "/ui/static/<path:filename>": "CSS and JS",
    "/": "redirect to /ui/",
    "/ui/login": "where you sign in",
    "/ui/logout": "signing out needs no role",
}

# The JSON API: the role each endpoint needs.
API_ROLES = [
    ("GET", "/incidents", "viewer"),
    ("GET", f"/incidents/{SOME_ID}", "viewer"),
    ("GET", "/postmortems", "viewer"),
    ("GET", f"/incidents/{SOME_ID}/postmortem.md", "viewer"),
    ("POST", f"/incidents/{SOME_ID}/approve", "approver"),
    ("POST", f"/incidents/{SOME_ID}/reject", "approver"),
]
RANK = {role: i for i, role in enumerate(ROLES)}


@pytest.fixture
def secured_app(iras_env: str) -> Flask:
    from iras.web import create_app

    return create_app({"AUTH_ENABLED": True, "SECRET_KEY": "s" * 40, "TESTING": True})


@pytest.fixture
def tokens(iras_env: str) -> dict[str, str]:
    made = {}
    with new_session() as session:
        for role, name in (("viewer", "vera"), ("approver", "alice"), ("admin", "root")):
            made[role] = create_token(session, name, role)[1]
        session.commit()
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    if method == "POST":
        return client.post(path, json={"by": "x", "reason": "because"}, headers=headers or {})
    return client.get(path, headers=headers or {})


# --------------------------------------------------------------------------- tokens


def test_tokens_are_stored_only_as_their_hash(iras_env: str) -> None:
    with new_session() as session:
        row, token = create_token(session, "alice", "approver")
        session.commit()
        assert token.startswith("iras_") and len(token) >= 40
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
        stored = session.execute(select(ApiToken.__table__)).one()
        assert all(token not in str(value) for value in stored), "no column holds the secret"
        assert find_token(session, token) is not None
        assert find_token(session, token + "x") is None and find_token(session, "x" * 10_000) is None


def test_unknown_roles_and_empty_names_are_refused(iras_env: str) -> None:
    with new_session() as session:
        with pytest.raises(ValueError, match="unknown role"):
            create_token(session, "alice", "superuser")
        with pytest.raises(ValueError, match="name"):
            create_token(session, "  ", "viewer")


def test_every_endpoint_needs_a_token_unless_deliberately_public(secured_app: Flask) -> None:
    client = secured_app.test_client()
    checked = 0
    for rule in secured_app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        path = re.sub(r"<[^>]+>", SOME_ID, rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, json={})
            if rule.endpoint.startswith("console.") and method == "GET":
                assert response.status_code == 302 and "/ui/login" in response.headers["Location"], rule.rule
            else:
                assert response.status_code == 401, (method, rule.rule, response.status_code)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(("method", "path", "needed"), API_ROLES)
def test_each_api_endpoint_answers_401_then_403_by_role(
    secured_app: Flask, tokens: dict[str, str], method: str, path: str, needed: str
) -> None:
    client = secured_app.test_client()
    anonymous = _call(client, method, path)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="iras"'
    assert anonymous.get_json()["error"] == "unauthorized"
    for header in ("Bearer iras_not-a-token", "Basic YWxpY2U6cHc=", "Bearer", tokens["admin"]):
        assert _call(client, method, path, {"Authorization": header}).status_code == 401, header
    for role in ROLES:
        response = _call(client, method, path, bearer(tokens[role]))
        if RANK[role] < RANK[needed]:
            assert response.status_code == 403, role
            assert f"needs the {needed} role" in response.get_json()["reason"]
        else:
            assert response.status_code not in (401, 403), (role, response.get_json())


def test_a_revoked_token_is_refused_everywhere(
    secured_app: Flask, tokens: dict[str, str], capsys: Any
) -> None:
    client = secured_app.test_client()
    assert client.get("/incidents", headers=bearer(tokens["viewer"])).status_code == 200
    assert iras_cli(["tokens", "revoke", "vera"]) == 0
    assert client.get("/incidents", headers=bearer(tokens["viewer"])).status_code == 401


def test_the_api_ignores_the_console_cookie(secured_app: Flask, tokens: dict[str, str]) -> None:
    """The JSON API has no CSRF token, so an ambient browser cookie must not authenticate it."""
    browser = secured_app.test_client()
    page = browser.get("/ui/login").text
    browser.post("/ui/login", data={"token": tokens["admin"], "csrf_token": csrf_of(page)})
    assert browser.get("/ui/").status_code == 200
    assert browser.get("/incidents").status_code == 401
    assert browser.post(f"/incidents/{SOME_ID}/approve", json={"by": "x"}).status_code == 401


def test_token_use_is_recorded_at_most_every_few_minutes(secured_app: Flask, tokens: dict[str, str]) -> None:
    client = secured_app.test_client()
    client.get("/incidents", headers=bearer(tokens["viewer"]))
    with new_session() as session:
        first = session.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "vera"))
    assert first is not None
    client.get("/incidents", headers=bearer(tokens["viewer"]))
    with new_session() as session:
        assert session.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "vera")) == first


def test_with_auth_off_the_api_is_open_and_asks_who_decides(client: FlaskClient) -> None:
    assert client.get("/incidents").status_code == 200
    incident_id = fire(client)
    response = client.post(f"/incidents/{incident_id}/approve", json={"reason": "x"})
    assert response.status_code == 400 and response.get_json()["field"] == "by"


# --------------------------------------------------------------------------- iras tokens


def test_iras_tokens_create_list_revoke(iras_env: str, capsys: Any) -> None:
    status = iras_cli(["tokens", "create", "--role", "approver", "--name", "alice"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    out = captured.out.strip().splitlines()
    token = out[-1]
    assert re.fullmatch(r"iras_[A-Za-z0-9_-]{40,}", token), "the token is the last line"
    with new_session() as session:
        row = find_token(session, token)
        assert row is not None and (row.name, row.role) == ("alice", "approver")
    assert iras_cli(["tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "approver" in listing and token not in listing and "active" in listing
    assert iras_cli(["tokens", "revoke", str(row.id)]) == 0
    assert "revoked approver token" in capsys.readouterr().out
    assert iras_cli(["tokens", "revoke", "alice"]) == 1, "nothing active left to revoke"
    assert iras_cli(["tokens", "list"]) == 0 and "alice" not in capsys.readouterr().out
    assert iras_cli(["tokens", "list", "--all"]) == 0 and "revoked" in capsys.readouterr().out
    with new_session() as session:
        assert find_token(session, token) is None
    with pytest.raises(SystemExit):
        iras_cli(["tokens", "create", "--role", "root", "--name", "x"])


# --------------------------------------------------------------------------- the audit trail of each decision path

SLACK_SECRET = "slack-signing-secret-for-auth-tests"


def _slack_click(client: FlaskClient, incident_id: str, plan_id: int) -> Any:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "actions": [
            {
                "action_id": "approve",
                "value": incident_id,
                "type": "button",
                "block_id": f"decision:{incident_id}:{plan_id}",
            }
        ],
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C1"},
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    signature = (
        "v0=" + hmac.new(SLACK_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    )
    return client.post(
        "/slack/actions",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature},
    )


@pytest.mark.parametrize("via", ["api", "console", "slack", "timeout"])
def test_every_decision_path_records_who_how_and_why(
    pipeline: FlaskClient,
    wait_for: WaitFor,
    secured_app: Flask,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("SLACK_APPROVER_IDS", "U0ALICE")
    reset_settings()
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    plan_id = doc["plan"]["id"]
    secured = secured_app.test_client()
    if via == "api":
        response = secured.post(
            f"/incidents/{incident_id}/approve",
            json={"by": "somebody-else", "reason": "rollback is safe", "plan_id": plan_id},
            headers=bearer(tokens["approver"]),
        )
        assert response.status_code == 200, response.get_json()
        expected_by, expected_reason, final = "alice", "rollback is safe", "resolved"
    elif via == "console":
        page = secured.get("/ui/login").text
        secured.post("/ui/login", data={"token": tokens["approver"], "csrf_token": csrf_of(page)})
        page = secured.get(f"/ui/incidents/{incident_id}").text
        form = {
            "csrf_token": csrf_of(page),
            "plan_id": str(plan_id),
            "action": "approve",
            "reason": "rollback is safe",
        }
        assert secured.post(f"/ui/incidents/{incident_id}/decision", data=form).status_code == 303
        expected_by, expected_reason, final = "alice", "rollback is safe", "resolved"
    elif via == "slack":
        response = _slack_click(secured, incident_id, plan_id)
        assert response.status_code == 200, response.get_json()
        expected_by, expected_reason, final = "U0ALICE", None, "resolved"
    else:
        with new_session() as session:
            session.execute(
                update(Incident)
                .where(Incident.id == incident_id)
                .values(approval_deadline=Incident.created_at)
            )
            session.commit()
        assert expire_approvals() == 1
        expected_by, expected_reason, final = "timeout", "approval deadline passed", "escalated"

    doc = wait_for(incident_id, final)
    decision = doc["decision"]
    assert (decision["by"], decision["via"]) == (expected_by, via)
    if expected_reason:
        assert decision["reason"] == expected_reason
    event = "approval_timed_out" if via == "timeout" else "approved"
    with new_session() as session:
        row = session.scalars(
            select(Transition).where(Transition.incident_id == incident_id, Transition.event == event)
        ).one()
    assert row.actor == ("timeout" if via == "timeout" else f"{via}:{expected_by}")
    assert row.detail is not None and row.detail["via"] == via
    on_timeline = next(t for t in doc["timeline"] if t["event"] == event)
    assert on_timeline["actor"] == row.actor
    words = "Approval timed out" if via == "timeout" else "Plan approved"
    assert f"{words} ({row.actor})" in doc["postmortem"]["markdown"]
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    assert 'id="decision-record"' in page and f"via <strong>{via}</strong>" in page and row.actor in page


def test_ids_in_urls_are_validated_before_any_lookup(secured_app: Flask, tokens: dict[str, str]) -> None:
    client = secured_app.test_client()
    response = client.get("/incidents/../../etc/passwd", headers=bearer(tokens["viewer"]))
    assert response.status_code == 404
    response = client.get(f"/incidents/{uuid.uuid4()}", headers=bearer(tokens["viewer"]))
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_logout_revokes_the_session_on_the_server(secured_app: Flask, tokens: dict[str, str]) -> None:
    """A copy of the cookie taken before sign-out must not sign in afterwards (issue 19)."""
    browser = secured_app.test_client()
    page = browser.get("/ui/login").text
    browser.post("/ui/login", data={"token": tokens["approver"], "csrf_token": csrf_of(page)})
    assert browser.get("/ui/").status_code == 200
    cookie = browser.get_cookie("iras_session")
    assert cookie is not None
    stolen = secured_app.test_client()
    stolen.set_cookie(cookie.key, cookie.value, domain=cookie.domain)
    assert stolen.get("/ui/").status_code == 200
    csrf = csrf_of(browser.get("/ui/").text)
    assert browser.post("/ui/logout", data={"csrf_token": csrf}).status_code == 303
    assert browser.get("/ui/").status_code == 302
    response = stolen.get("/ui/")
    assert response.status_code == 302 and "/ui/login" in response.headers["Location"]
    # Signing in again starts a new session; the revoked one stays revoked.
    page = browser.get("/ui/login").text
    browser.post("/ui/login", data={"token": tokens["approver"], "csrf_token": csrf_of(page)})
    assert browser.get("/ui/").status_code == 200
    assert stolen.get("/ui/").status_code == 302

"""The web console (Flask test client): pages, escaping, the decision form with
its CSRF token and role check, sign-in, and the post-mortem endpoints.
The same flows in a real browser are in tests/browser/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from iras.analysts import set_analyst
from iras.auth import create_token
from iras.db import new_session
from iras.integrations import mock
from iras.models import Incident, PostMortemRecord, Transition
from iras.schemas import RemediationPlan, RemediationStep, Severity, Suspect, utcnow
from iras.web.console import render_markdown, safe_url
from tests.conftest import WaitFor, fire
from tests.support.analysts import ScriptedAnalyst

SCENARIO = json.loads((Path(__file__).parent / "data" / "checkout-guest-npe-after-release.json").read_text())
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
XSS_TITLE = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "every console form carries a CSRF token"
    return found.group(1)


def fire_scenario(client: FlaskClient) -> str:
    """The checkout bad-deploy scenario with RCA confidence pinned above the threshold,
    so the incident reliably reaches awaiting_approval with a plan."""
    set_analyst(ScriptedAnalyst(confidence=0.9))
    mock.set_fixture(SCENARIO["evidence"])
    response = client.post("/webhook/alert", json=SCENARIO["alert"])
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["incident_id"])


def wait_until_worker_idle(timeout: float = 10.0) -> None:
    """Until the embedded worker has nothing running, reserved or queued.

    A test that ends while follow-up tasks (notifications, the post-mortem) are
    still running lets them touch the database during the next test's setup,
    when the settings cache is being swapped: they can re-cache the default
    DATABASE_URL and the next test fails with "no such table"."""
    from tests.conftest import wait_for_idle_worker

    wait_for_idle_worker(timeout)


@pytest.fixture(autouse=True)
def quiet_worker_after_test(iras_env: str) -> Iterator[None]:
    yield
    wait_until_worker_idle()


@pytest.fixture
def secured_app(iras_env: str) -> Flask:
    """The same database as `client`, served by an app with AUTH_ENABLED."""
    from iras.web import create_app

    return create_app({"AUTH_ENABLED": True, "SECRET_KEY": "k" * 40, "TESTING": True})


@pytest.fixture
def tokens(iras_env: str) -> dict[str, str]:
    made = {}
    with new_session() as session:
        for role, name in (("viewer", "vera"), ("approver", "alice"), ("admin", "root")):
            made[role] = create_token(session, name, role)[1]
        session.commit()
    return made


SignIn = Callable[[str], FlaskClient]


@pytest.fixture
def sign_in(secured_app: Flask, tokens: dict[str, str]) -> SignIn:
    def _sign_in(role: str) -> FlaskClient:
        browser = secured_app.test_client()
        page = browser.get("/ui/login")
        response = browser.post(
            "/ui/login", data={"token": tokens[role], "csrf_token": csrf_of(page.text), "next": "/ui/"}
        )
        assert response.status_code == 303, response.text
        return browser

    return _sign_in


# --------------------------------------------------------------------------- pages


def test_root_redirects_to_the_console(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/ui/")


def _incident(title: str, service: str, status: str = "triaging", severity: str | None = None) -> str:
    """A row written directly, with no task sent: the list test must not race the worker."""
    with new_session() as session:
        row = Incident(
            status=status,
            severity=severity,
            title=title,
            service=service,
            source="generic",
            fingerprint=f"{title}-{service}",
        )
        session.add(row)
        session.commit()
        return row.id


def test_the_list_filters_by_status_severity_and_service(client: FlaskClient) -> None:
    a = _incident("Checkout 5xx", "checkout", severity="P1")
    b = _incident("Search latency", "search", status="resolved", severity="P3")
    c = _incident("Payments down", "payments")
    everything = client.get("/ui/").text
    assert all(f'data-incident-id="{i}"' in everything for i in (a, b, c))
    only_p1 = client.get("/ui/?severity=P1").text
    assert a in only_p1 and b not in only_p1 and c not in only_p1
    resolved = client.get("/ui/?status=resolved").text
    assert b in resolved and a not in resolved
    still_open = client.get("/ui/?status=open").text
    assert a in still_open and c in still_open and b not in still_open
    search = client.get("/ui/?service=search").text
    assert b in search and a not in search
    assert 'data-refresh="3"' in everything, "incidents are moving: the list refreshes itself"
    assert 'data-refresh="30"' in client.get("/ui/?status=resolved").text, "nothing moving: slow refresh"
    bad = client.get("/ui/?status=<b>nope</b>")
    assert bad.status_code == 200 and "Unknown status" in bad.text and "<b>nope</b>" not in bad.text


def test_an_alert_title_with_markup_renders_as_text(client: FlaskClient) -> None:
    incident_id = fire(client, title=XSS_TITLE, service="checkout")
    for page in (client.get("/ui/").text, client.get(f"/ui/incidents/{incident_id}").text):
        assert "<script>alert(" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page


def test_pages_send_a_strict_content_security_policy(client: FlaskClient) -> None:
    headers = client.get("/ui/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"


def test_an_unknown_incident_is_a_404_page(client: FlaskClient) -> None:
    assert client.get("/ui/incidents/not-a-uuid").status_code == 404
    assert client.get("/ui/incidents/00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_incident_page_shows_what_iras_found(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")["result"]
    plan = doc["plan"]
    # alert, triage, evidence, root cause with its cited evidence, plan with risk and rollback
    assert 'id="alert"' in page and "checkout-service 5xx ratio" in page
    assert f'<span class="sev sev-{doc["severity"]}">' in page
    assert 'id="metrics-table"' in page and 'id="deployments-table"' in page and 'id="log-lines"' in page
    assert rca["culprit_deployment_sha"] in page
    assert 'id="cited-evidence"' in page and 'class="cited' in page, "cited log lines are marked"
    # the ranked suspects the analyst weighed, not one guess
    assert rca["suspects"] and 'id="suspects"' in page and rca["suspects"][0]["service"] in page
    for step in plan["steps"]:
        assert f"risk-{step['risk_level']}" in page
        assert step["rollback_command"] is None or step["rollback_command"] in page.replace("&#39;", "'")
    # the decision form, with the deadline counting down
    assert 'id="decision-form"' in page and 'id="approve-button"' in page
    assert f'data-deadline="{doc["approval_deadline"]}"' in page
    assert f'name="plan_id" value="{plan["id"]}"' in page
    assert 'id="timeline"' in page and "Remediation plan ready, awaiting approval" in page
    assert 'data-refresh="20"' in page, "waiting: a slow refresh that never eats a half-typed reason"


def test_approving_in_the_console_lands_on_the_timeline_and_in_the_postmortem(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    form = {
        "csrf_token": csrf_of(page),
        "plan_id": str(doc["plan"]["id"]),
        "reason": "matches the 2.41.0 release",
    }
    nameless = pipeline.post(f"/ui/incidents/{incident_id}/decision", data={**form, "action": "approve"})
    assert nameless.status_code == 303
    assert wait_for(incident_id, "awaiting_approval"), "auth is off: the form must say who decides"
    response = pipeline.post(
        f"/ui/incidents/{incident_id}/decision", data={**form, "action": "approve", "name": "alice"}
    )
    assert response.status_code == 303 and response.headers["Location"].endswith(
        f"/ui/incidents/{incident_id}"
    )
    doc = wait_for(incident_id, "resolved")
    assert doc["decision"] == {
        **doc["decision"],
        "by": "alice",
        "via": "console",
        "reason": "matches the 2.41.0 release",
    }
    approved = next(t for t in doc["timeline"] if t["event"] == "approved")
    assert (
        approved["actor"] == "console:alice" and approved["detail"]["reason"] == "matches the 2.41.0 release"
    )
    assert "Plan approved (console:alice): matches the 2.41.0 release" in doc["postmortem"]["markdown"]
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    assert "Plan approved by alice." in page, "the flash message after the redirect"
    assert 'id="decision-form"' not in page, "no buttons once decided"
    assert '<article class="markdown">' in page and "<h2>Timeline (UTC)</h2>" in page
    assert "data-refresh" not in page, "closed: nothing moves, no refresh"
    again = pipeline.post(
        f"/ui/incidents/{incident_id}/decision",
        data={**form, "action": "reject", "name": "bob", "reason": "late"},
    )
    assert again.status_code == 303
    assert (
        "Not applied: incident is resolved, not awaiting approval"
        in pipeline.get(f"/ui/incidents/{incident_id}").text
    )


def test_rejecting_needs_a_reason(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    form = {"csrf_token": csrf_of(page), "plan_id": str(doc["plan"]["id"]), "name": "bob", "action": "reject"}
    pipeline.post(f"/ui/incidents/{incident_id}/decision", data=form)
    assert "A reason is required to reject" in pipeline.get(f"/ui/incidents/{incident_id}").text
    pipeline.post(f"/ui/incidents/{incident_id}/decision", data={**form, "reason": "wrong service"})
    doc = wait_for(incident_id, "escalated")
    assert doc["decision"]["by"] == "bob" and doc["decision"]["via"] == "console"


@pytest.mark.parametrize("token", [None, "", "forged", "use-another-session"])
def test_a_decision_without_this_sessions_csrf_token_is_refused(
    pipeline: FlaskClient, wait_for: WaitFor, token: str | None
) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    if token == "use-another-session":
        other = pipeline.application.test_client()
        token = csrf_of(other.get(f"/ui/incidents/{incident_id}").text)
    pipeline.get(f"/ui/incidents/{incident_id}")  # this browser has a session and its own token
    form = {"plan_id": str(doc["plan"]["id"]), "action": "approve", "name": "mallory"}
    if token is not None:
        form["csrf_token"] = token
    response = pipeline.post(f"/ui/incidents/{incident_id}/decision", data=form)
    assert response.status_code == 403 and "CSRF" in response.text
    assert wait_for(incident_id, "awaiting_approval")["decision"] is None


# --------------------------------------------------------------------------- roles and sign-in


def test_a_viewer_sees_no_approve_button_and_a_forged_post_is_refused(
    pipeline: FlaskClient, wait_for: WaitFor, sign_in: SignIn
) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    viewer = sign_in("viewer")
    page = viewer.get(f"/ui/incidents/{incident_id}").text
    assert "vera" in page and "approve-button" not in page and 'id="no-decision-rights"' in page
    form = {"csrf_token": csrf_of(page), "plan_id": str(doc["plan"]["id"]), "action": "approve"}
    response = viewer.post(f"/ui/incidents/{incident_id}/decision", data=form)
    assert response.status_code == 403 and "approver role" in response.text
    assert wait_for(incident_id, "awaiting_approval")["decision"] is None

    approver = sign_in("approver")
    page = approver.get(f"/ui/incidents/{incident_id}").text
    assert 'id="approve-button"' in page and 'name="name"' not in page, (
        "signed in: the token names the approver"
    )
    response = approver.post(
        f"/ui/incidents/{incident_id}/decision",
        data={
            "csrf_token": csrf_of(page),
            "plan_id": str(doc["plan"]["id"]),
            "action": "approve",
            "name": "mallory",
        },
    )
    assert response.status_code == 303
    doc = wait_for(incident_id, "resolved")
    assert doc["decision"]["by"] == "alice", "the token's name, never a name typed into the form"


def test_signed_out_the_console_sends_you_to_sign_in(secured_app: Flask) -> None:
    browser = secured_app.test_client()
    response = browser.get("/ui/?status=open")
    assert response.status_code == 302 and "/ui/login?next=" in response.headers["Location"]
    post = browser.post("/ui/incidents/00000000-0000-0000-0000-000000000000/decision", data={})
    assert post.status_code == 401
    assert browser.get("/ui/incidents/00000000-0000-0000-0000-000000000000/postmortem.md").status_code == 302


@pytest.mark.parametrize("target", ["/\r", "/x\r\nSet-Cookie: a=b", "/\t/evil.example", "/\x7f"])
def test_a_next_with_control_characters_goes_home_not_elsewhere(client: FlaskClient, target: str) -> None:
    """CR/LF cannot go into a Location header (it was a 500); browsers drop tabs, so
    `/\t/evil.example` would be an open redirect."""
    response = client.get("/ui/login", query_string={"next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/ui/"


def test_sign_in_sets_a_hardened_cookie_and_refuses_bad_tokens(
    secured_app: Flask, tokens: dict[str, str]
) -> None:
    browser = secured_app.test_client()
    page = browser.get("/ui/login").text
    csrf = csrf_of(page)
    bad = browser.post("/ui/login", data={"token": "iras_nope", "csrf_token": csrf})
    assert bad.status_code == 401 and "not valid" in bad.text
    no_csrf = browser.post("/ui/login", data={"token": tokens["viewer"]})
    assert no_csrf.status_code == 403
    good = browser.post(
        "/ui/login", data={"token": tokens["viewer"], "csrf_token": csrf, "next": "//evil.example/x"}
    )
    assert good.status_code == 303 and good.headers["Location"] == "/ui/", "no open redirect"
    cookie = good.headers["Set-Cookie"]
    assert "iras_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert tokens["viewer"] not in cookie, "the cookie holds a signed token id, never the token"
    page = browser.get("/ui/").text
    assert "vera" in page and 'id="auth-off"' not in page
    assert csrf_of(page) != csrf, "a fresh CSRF token after sign-in"
    browser.post("/ui/logout", data={"csrf_token": csrf_of(page)})
    assert browser.get("/ui/").status_code == 302


def test_revoking_a_token_ends_its_console_session(sign_in: SignIn) -> None:
    from iras.auth import revoke_tokens

    viewer = sign_in("viewer")
    assert viewer.get("/ui/").status_code == 200
    with new_session() as session:
        assert revoke_tokens(session, "vera")
        session.commit()
    assert viewer.get("/ui/").status_code == 302


def test_the_console_and_health_say_plainly_when_auth_is_off(client: FlaskClient, secured_app: Flask) -> None:
    page = client.get("/ui/").text
    assert 'id="auth-off"' in page and "Authentication is off" in page
    health = client.get("/health").get_json()
    assert health["auth"] == {"enabled": False}
    assert any("authentication is OFF" in w for w in health["warnings"])
    assert secured_app.test_client().get("/health").get_json()["auth"] == {"enabled": True}


# --------------------------------------------------------------------------- Markdown


def test_postmortem_markdown_keeps_no_raw_html_and_no_script_links() -> None:
    html = str(
        render_markdown(
            "# T <script>alert(1)</script>\n\n<div onclick=x>hi</div>\n\n"
            "[x](javascript:alert(1)) [y](JaVa\tScRiPt:alert(2)) [ok](https://example.com/a) "
            "![pixel](https://tracker.example/p.gif) `a<b`\n\n- **bold** item\n"
        )
    )
    assert "<script" not in html and "<div" not in html and "onclick=x>" not in html
    assert "&lt;script&gt;" in html and "&lt;div onclick=x&gt;" in html
    assert "javascript" not in html.lower() and "<img" not in html
    assert '<a href="https://example.com/a" rel="noopener noreferrer nofollow">ok</a>' in html
    assert "<strong>bold</strong>" in html and "<code>a&lt;b</code>" in html


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://grafana.example/d/1", True),
        ("/ui/incidents/1", True),
        ("mailto:oncall@example.com", True),
        ("javascript:alert(1)", False),
        (" JAVASCRIPT:alert(1)", False),
        ("java\nscript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("vbscript:msgbox", False),
    ],
)
def test_only_safe_urls_become_links(url: str, kept: bool) -> None:
    assert (safe_url(url) is not None) is kept


# --------------------------------------------------------------------------- post-mortems API


def _close(client: FlaskClient, wait_for: WaitFor, *, approve: bool, severity: str, days_ago: int) -> str:
    incident_id = fire_scenario(client)
    wait_for(incident_id, "awaiting_approval")
    body = {"by": "alice", "reason": "test"}
    client.post(f"/incidents/{incident_id}/{'approve' if approve else 'reject'}", json=body)
    wait_for(incident_id, "resolved" if approve else "escalated")
    with new_session() as session:
        session.execute(
            update(PostMortemRecord)
            .where(PostMortemRecord.incident_id == incident_id)
            .values(severity=severity, created_at=utcnow() - timedelta(days=days_ago))
        )
        session.commit()
    return incident_id


def test_postmortems_are_filtered_by_severity_outcome_and_time(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    old_p1 = _close(pipeline, wait_for, approve=True, severity="P1", days_ago=10)
    new_p1 = _close(pipeline, wait_for, approve=True, severity="P1", days_ago=1)
    new_p2 = _close(pipeline, wait_for, approve=False, severity="P2", days_ago=1)

    def ids(query: str) -> list[str]:
        response = pipeline.get(f"/postmortems{query}")
        assert response.status_code == 200, response.get_json()
        return [p["incident_id"] for p in response.get_json()["postmortems"]]

    assert set(ids("")) == {old_p1, new_p1, new_p2}
    assert set(ids("?severity=P1")) == {old_p1, new_p1}
    assert ids("?outcome=escalated") == [new_p2]
    assert set(ids("?outcome=resolved,escalated&severity=P2")) == {new_p2}
    week_ago = (utcnow() - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(ids(f"?since={week_ago}")) == {new_p1, new_p2}
    assert ids(f"?until={week_ago}") == [old_p1]
    assert ids(f"?since={(utcnow() - timedelta(days=30)).date().isoformat()}&until={week_ago}") == [old_p1]
    item = pipeline.get("/postmortems?outcome=escalated").get_json()["postmortems"][0]
    assert item["markdown_url"] == f"/incidents/{new_p2}/postmortem.md" and item["summary"]
    for bad in (
        "?severity=P9",
        "?outcome=fine",
        "?since=yesterday",
        "?since=2026-02-01&until=2026-01-01",
        "?limit=0",
    ):
        response = pipeline.get(f"/postmortems{bad}")
        assert response.status_code == 400 and response.get_json()["reason"], bad


def test_a_postmortem_downloads_as_markdown(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = _close(pipeline, wait_for, approve=True, severity="P1", days_ago=0)
    response = pipeline.get(f"/incidents/{incident_id}/postmortem.md")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert f'filename="postmortem-{incident_id}.md"' in response.headers["Content-Disposition"]
    assert response.text.startswith("# Post-mortem:") and "## Timeline (UTC)" in response.text
    console = pipeline.get(f"/ui/incidents/{incident_id}/postmortem.md")
    assert console.status_code == 200 and console.text == response.text
    waiting = fire(pipeline, title="still open", service="x")
    missing = pipeline.get(f"/incidents/{waiting}/postmortem.md")
    assert missing.status_code == 404 and "no post-mortem yet" in missing.get_json()["reason"]
    assert pipeline.get("/incidents/nope/postmortem.md").status_code == 404


def test_the_timeline_shows_every_transition(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    incident_id = fire_scenario(pipeline)
    wait_for(incident_id, "awaiting_approval")
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    with new_session() as session:
        events = list(session.scalars(select(Transition.event).where(Transition.incident_id == incident_id)))
    from iras.postmortem import EVENT_WORDS

    for name in events:
        assert EVENT_WORDS[name] in page


# --------------------------------------------------------------------------- what a tired engineer reads

# As rendered: Jinja escapes the "<" of a repr.
PYTHON_REPR = re.compile(r"(<|&lt;)(built-in method|bound method|function) |object at 0x[0-9a-f]+")


def assert_no_python_reprs(page: str) -> None:
    found = PYTHON_REPR.search(page)
    assert found is None, (
        f"a Python repr leaked into the page: {page[max(0, found.start() - 80) : found.end() + 40]!r}"
    )


class SuspectingAnalyst(ScriptedAnalyst):
    """The offline analyst's diagnosis with ranked suspects and a severity re-judged
    from the evidence, as an analyst that fills those fields returns them."""

    def __init__(self, confidence: float, severity: str | None = None, reason: str | None = None) -> None:
        super().__init__(confidence=confidence)
        self.new_severity, self.reason = severity, reason

    def analyze(self, facts: Any, bundle: Any, attempt: int) -> Any:
        out = super().analyze(facts, bundle, attempt)
        repeated = [line.message for line in bundle.logs if "NullPointerException" in line.message]
        out.result = out.result.model_copy(
            update={
                "evidence": repeated or out.result.evidence,
                "suspects": [
                    Suspect(
                        service="checkout-service",
                        score=0.55,
                        category="bad_deploy",
                        reason="new stack traces right after v2.41.0",
                        evidence=repeated,
                    ),
                    Suspect(service="catalog-service", score=0.2, reason="released 4 min earlier"),
                ],
                "severity": Severity(self.new_severity) if self.new_severity else None,
                "severity_reason": self.reason,
            }
        )
        return out


def test_the_incident_page_shows_no_python_reprs_and_counts_each_source(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    assert_no_python_reprs(page)
    assert_no_python_reprs(pipeline.get("/ui/").text)
    context = next(s for s in doc["stages"] if s["stage"] == "context")["result"]
    sources = page[page.index('id="evidence-sources"') :].split("</p>", 1)[0]
    for src in context["sources"]:
        assert f"{src['kind']}: {src['name']} ok ({src['items']} item" in sources


def test_the_approval_box_shows_the_exact_commands_and_their_rollbacks(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    incident_id = fire_scenario(pipeline)
    doc = wait_for(incident_id, "awaiting_approval")
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    box = page[page.index('id="decision"') : page.index("</section>", page.index('id="decision"'))]
    box = box.replace("&#39;", "'").replace("&#34;", '"').replace("&amp;", "&")
    assert 'id="approval-commands"' in box and box.index("approval-commands") < box.index("decision-form")
    for step in doc["plan"]["steps"]:
        assert f'<code class="run-cmd">{step["command"]}</code>' in box
        if step["rollback_command"]:
            assert f'<code class="undo-cmd">{step["rollback_command"]}</code>' in box
        else:
            assert "no rollback: cannot be undone" in box
    assert "Approve plan" not in box, "the button says what it does, not a plan number"


def test_a_severity_changed_by_the_evidence_is_explained_in_header_and_triage(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    set_analyst(
        SuspectingAnalyst(0.9, severity="P0", reason="38% of checkouts fail (5xx ratio 0.38 vs 0.002)")
    )
    mock.set_fixture(SCENARIO["evidence"])
    incident_id = pipeline.post("/webhook/alert", json=SCENARIO["alert"]).get_json()["incident_id"]
    doc = wait_for(incident_id, "awaiting_approval")
    triaged = next(s for s in doc["stages"] if s["stage"] == "triage")["result"]["severity"]
    assert triaged != "P0" and doc["severity"] == "P0"
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    assert (
        f"raised from {triaged} (triage, from the alert) to P0 by the evidence: "
        "38% of checkouts fail (5xx ratio 0.38 vs 0.002)"
    ) in page
    assert '; now <span class="sev sev-P0">P0</span> from the evidence' in page
    summary = next(t for t in doc["timeline"] if t["event"] == "rca_confident")["detail"]["summary"]
    assert f"severity {triaged} -> P0 from the evidence (38% of checkouts fail" in summary


def test_suspects_and_cited_evidence_show_each_repeated_template_once_with_a_count(
    pipeline: FlaskClient, wait_for: WaitFor
) -> None:
    set_analyst(SuspectingAnalyst(0.9))
    mock.set_fixture(SCENARIO["evidence"])
    incident_id = pipeline.post("/webhook/alert", json=SCENARIO["alert"]).get_json()["incident_id"]
    doc = wait_for(incident_id, "awaiting_approval")
    rca = next(s for s in doc["stages"] if s["stage"] == "rca")["result"]
    assert len(rca["evidence"]) > 1
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    suspects = page[page.index('id="suspects"') : page.index("</ol>", page.index('id="suspects"'))]
    assert '<strong>checkout-service</strong> <span class="score">55%</span> · bad deploy' in suspects
    assert '<strong>catalog-service</strong> <span class="score">20%</span>' in suspects
    cited = page[page.index('id="cited-evidence"') : page.index("</ul>", page.index('id="cited-evidence"'))]
    assert cited.count("<li>") < len(rca["evidence"]), "near-identical lines are grouped"
    assert "×" in cited
    assert 'id="not-confident"' not in page


def test_a_safety_note_of_the_plan_and_its_step_shows_once(pipeline: FlaskClient, wait_for: WaitFor) -> None:
    note = "Check the rollout history before undoing"
    plan = RemediationPlan(
        summary="restart checkout",
        steps=[
            RemediationStep(
                order=1,
                action="restart_service",
                description="restart checkout",
                command="kubectl rollout restart deployment/checkout",
                rollback_command="kubectl rollout undo deployment/checkout",
                risk_level="low",
                safety_notes=[note],
            )
        ],
        safety_notes=[note],
    )
    set_analyst(ScriptedAnalyst(confidence=0.9, plan=plan))
    mock.set_fixture(SCENARIO["evidence"])
    incident_id = pipeline.post("/webhook/alert", json=SCENARIO["alert"]).get_json()["incident_id"]
    wait_for(incident_id, "awaiting_approval")
    assert pipeline.get(f"/ui/incidents/{incident_id}").text.count(note) == 1


def test_below_the_gate_the_page_hands_over_the_suspects_not_a_plan(
    pipeline: FlaskClient, wait_for: WaitFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iras.config import reset_settings

    monkeypatch.setenv("RCA_MAX_ATTEMPTS", "1")
    reset_settings()
    set_analyst(SuspectingAnalyst(0.45))
    mock.set_fixture(SCENARIO["evidence"])
    incident_id = pipeline.post("/webhook/alert", json=SCENARIO["alert"]).get_json()["incident_id"]
    doc = wait_for(incident_id, "escalated")
    assert doc["plan"] is None
    page = pipeline.get(f"/ui/incidents/{incident_id}").text
    assert "Not confident: 45% is below the 70% gate, so no plan was made." in page
    assert 'id="suspects"' in page and "checkout-service" in page and "catalog-service" in page
    assert "Leading hypothesis:" in page and 'id="decision-form"' not in page
    assert_no_python_reprs(page)

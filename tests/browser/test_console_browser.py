"""The console in a real headless Chromium (Playwright), against a real HTTP
server and the embedded Celery worker, with AUTH_ENABLED as in production:
fire an alert, watch it appear, open it, approve it with a reason, see the
timeline and the post-mortem; an XSS title stays text; a viewer gets no
Approve button and a forged POST is refused. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from iras.analysts import set_analyst
from iras.auth import create_token
from iras.db import new_session
from iras.integrations import mock
from iras.web import console
from tests.integration._require import missing
from tests.support.analysts import ScriptedAnalyst
from tests.test_console import SCENARIO

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS_TITLE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> Checkout down'
TIMEOUT_MS = 30_000


@pytest.fixture
def server(iras_env: str, embedded_worker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The app with auth on, on a free port, with tokens for an approver and a viewer."""
    from werkzeug.serving import make_server

    from iras.web import create_app

    # Short refresh intervals so the test watches the real auto-refresh instead of waiting 30 s.
    monkeypatch.setattr(console, "REFRESH_MOVING", 1)
    monkeypatch.setattr(console, "REFRESH_WAITING", 2)
    monkeypatch.setattr(console, "REFRESH_IDLE", 1)
    with new_session() as session:
        approver = create_token(session, "alice", "approver")[1]
        viewer = create_token(session, "vera", "viewer")[1]
        session.commit()
    app = create_app({"AUTH_ENABLED": True, "SECRET_KEY": "b" * 48})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="console-test-server", daemon=True)
    thread.start()
    set_analyst(ScriptedAnalyst(confidence=0.9))
    mock.set_fixture(SCENARIO["evidence"])
    try:
        yield {"url": f"http://127.0.0.1:{httpd.server_port}", "approver": approver, "viewer": viewer}
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        from tests.test_console import wait_until_worker_idle

        wait_until_worker_idle()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        missing(f"the console browser test needs Debian's chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _fire(base: str, body: dict[str, Any]) -> str:
    response = requests.post(f"{base}/webhook/alert", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["incident_id"])


def _api(base: str, token: str, path: str) -> dict[str, Any]:
    response = requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _sign_in(context: Any, base: str, token: str, shot: str | None = None) -> Any:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{base}/ui/")
    assert "/ui/login" in page.url, "signed out: the console sends you to sign in"
    if shot:
        _shot(page, shot, full_page=False)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/")
    return page


def _shot(page: Any, name: str, full_page: bool = True) -> Path:
    """A screenshot artefact: the whole page, plus what the first screen shows."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(ARTIFACTS / f"{name}-screen.png"), full_page=False)
    if full_page:
        page.screenshot(path=str(path), full_page=True, timeout=60_000)
    return path


def test_an_approver_fires_watches_approves_and_reads_the_postmortem(
    browser: Any, server: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    base = server["url"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        page = _sign_in(context, base, server["approver"], shot="console-login")
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        expect(page.locator(".me")).to_contain_text("alice")

        incident_id = _fire(base, SCENARIO["alert"])
        row = page.locator(f'[data-incident-id="{incident_id}"]')
        expect(row).to_be_visible()  # appears through the list's own auto-refresh
        _shot(page, "console-list", full_page=False)
        row.click()
        page.wait_for_url(f"{base}/ui/incidents/{incident_id}")
        expect(page.locator("#incident-status")).to_have_text("awaiting approval")
        expect(page.locator("#approve-button")).to_be_visible()
        countdown = page.locator(".countdown")
        expect(countdown).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)? left$"))
        first = countdown.inner_text()
        page.wait_for_timeout(1100)
        assert countdown.inner_text() != first, "the deadline counts down"
        expect(page.locator("#cited-evidence li").first).to_be_visible()
        expect(page.locator(".step .risk").first).to_contain_text("risk")
        _shot(page, "console-awaiting-approval")

        page.fill("#reason", "matches the 2.41.0 release; rollback is safe")
        page.click("#approve-button")
        expect(page.locator(".flash.ok")).to_contain_text("Plan approved by alice.")
        expect(page.locator("#incident-status")).to_have_text("resolved")  # the page refreshes while it moves
        timeline = page.locator("#timeline")
        expect(timeline).to_contain_text("Plan approved")
        expect(timeline).to_contain_text("console:alice")
        expect(timeline).to_contain_text("matches the 2.41.0 release; rollback is safe")
        postmortem = page.locator("#postmortem article.markdown")
        expect(postmortem.locator("h1")).to_contain_text("Post-mortem:")
        expect(postmortem).to_contain_text("Plan approved (console:alice)")
        expect(page.locator("#decision-record")).to_contain_text("alice via console")
        _shot(page, "console-resolved")
        ARTIFACTS.mkdir(exist_ok=True)
        for section in ("timeline", "postmortem", "plan", "root-cause"):
            page.locator(f"#{section}").screenshot(path=str(ARTIFACTS / f"console-section-{section}.png"))

        doc = _api(base, server["approver"], f"/incidents/{incident_id}")
        assert doc["decision"]["by"] == "alice" and doc["decision"]["via"] == "console"

        phone = browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
        )
        try:
            mobile = _sign_in(phone, base, server["approver"])
            mobile.goto(f"{base}/ui/incidents/{incident_id}")
            width = mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"no sideways scrolling on a phone (page is {width}px wide)"
            _shot(mobile, "console-phone", full_page=False)
        finally:
            phone.close()
        assert not errors, errors
    finally:
        context.close()


def test_an_xss_title_renders_as_text(browser: Any, server: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    base = server["url"]
    context = browser.new_context()
    try:
        page = _sign_in(context, base, server["viewer"])
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        incident_id = _fire(
            base, {"title": XSS_TITLE, "timestamp": "2026-11-25T10:00:00Z", "service": "checkout"}
        )
        row = page.locator(f'[data-incident-id="{incident_id}"] .title')
        expect(row).to_have_text(XSS_TITLE)
        page.goto(f"{base}/ui/incidents/{incident_id}")
        expect(page.locator("#incident-title")).to_have_text(XSS_TITLE)
        assert page.evaluate("window.__xss") is None, "the payload must not run"
        assert (
            page.locator("#incident-title img").count() == 0
            and page.locator("#incident-title script").count() == 0
        )
        assert not dialogs
        _shot(page, "console-xss-title")
    finally:
        context.close()


def test_a_viewer_sees_no_approve_button_and_a_forged_post_is_refused(
    browser: Any, server: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    base = server["url"]
    context = browser.new_context()
    try:
        page = _sign_in(context, base, server["viewer"])
        incident_id = _fire(base, SCENARIO["alert"])
        page.goto(f"{base}/ui/incidents/{incident_id}")
        expect(page.locator("#incident-status")).to_have_text("awaiting approval")
        expect(page.locator("#no-decision-rights")).to_be_visible()
        assert page.locator("#approve-button").count() == 0 and page.locator("#decision-form").count() == 0
        _shot(page, "console-viewer")

        plan_id = _api(base, server["viewer"], f"/incidents/{incident_id}")["plan"]["id"]
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
        url = f"{base}/ui/incidents/{incident_id}/decision"
        form = {"plan_id": str(plan_id), "action": "approve", "reason": "forged"}
        # The viewer's own session, with a valid CSRF token: refused by role.
        by_role = context.request.post(url, form={**form, "csrf_token": csrf or ""}, max_redirects=0)
        assert by_role.status == 403 and "approver role" in by_role.text()
        # A cross-site forgery rides on an approver's cookie but cannot know the CSRF token.
        approver = browser.new_context()
        try:
            _sign_in(approver, base, server["approver"]).close()
            forged = approver.request.post(url, form=form, max_redirects=0)
            assert forged.status == 403 and "CSRF" in forged.text()
        finally:
            approver.close()
        doc = _api(base, server["viewer"], f"/incidents/{incident_id}")
        assert doc["status"] == "awaiting_approval" and doc["decision"] is None
    finally:
        context.close()

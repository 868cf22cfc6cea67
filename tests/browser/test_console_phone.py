"""The console on a phone in real headless Chromium: the approval box shows the
exact commands and their rollbacks above the fold, and the incident list keeps
titles whole. Screenshots go to test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_console_browser import _api, _fire, _shot, _sign_in, browser, server  # noqa: F401
from tests.test_console import SCENARIO

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}


def _unescape_spaces(text: str) -> str:
    return " ".join(text.split())


def test_on_a_phone_the_approval_box_shows_the_commands_above_the_fold(
    browser: Any,  # noqa: F811
    server: dict[str, Any],  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    base = server["url"]
    context = browser.new_context(**PHONE)
    try:
        page = _sign_in(context, base, server["approver"])
        incident_id = _fire(base, SCENARIO["alert"])
        page.goto(f"{base}/ui/incidents/{incident_id}")
        expect(page.locator("#incident-status")).to_have_text("awaiting approval")
        plan = _api(base, server["approver"], f"/incidents/{incident_id}")["plan"]
        assert plan["steps"]
        _shot(page, "console-phone-approval", full_page=False)

        box = page.locator("#approval-commands")
        expect(box).to_be_visible()
        runs = box.locator("code.run-cmd")
        undos = box.locator("code.undo-cmd")
        assert [_unescape_spaces(t) for t in runs.all_inner_texts()] == [s["command"] for s in plan["steps"]]
        assert [_unescape_spaces(t) for t in undos.all_inner_texts()] == [
            s["rollback_command"] for s in plan["steps"] if s["rollback_command"]
        ]
        fold = page.viewport_size["height"]
        for code in [*runs.all(), *undos.all()]:
            rect = code.bounding_box()
            assert rect is not None and rect["y"] >= 0 and rect["y"] + rect["height"] <= fold, (
                f"a command is below the fold on a phone: {rect} (fold {fold}px)"
            )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"no sideways scrolling on a phone (page is {width}px wide)"
    finally:
        context.close()


def test_on_a_phone_the_list_keeps_long_titles_whole(
    browser: Any,  # noqa: F811
    server: dict[str, Any],  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    base = server["url"]
    title = "HighMemoryUsage search-indexer pods OOMKilled"
    context = browser.new_context(**PHONE)
    try:
        page = _sign_in(context, base, server["viewer"])
        incident_id = _fire(base, {"title": title, "timestamp": "2026-11-25T10:00:00Z", "service": "search"})
        row = page.locator(f'[data-incident-id="{incident_id}"]')
        expect(row.locator(".title")).to_have_text(title)
        _shot(page, "console-phone-list", full_page=False)
        # Each word of the title stays on one line: no word is split mid-word.
        split = page.evaluate(
            """(el) => {
                const node = el.firstChild, range = document.createRange(), words = [];
                let at = 0;
                for (const word of node.textContent.split(/[ -]/)) {  // a break after a hyphen is fine
                    range.setStart(node, at); range.setEnd(node, at + word.length);
                    if (range.getClientRects().length > 1) words.push(word);
                    at += word.length + 1;
                }
                return words;
            }""",
            row.locator(".title").element_handle(),
        )
        assert split == [], f"words broken across lines on a phone: {split}"
        title_box, status_box = row.locator(".title").bounding_box(), row.locator(".status").bounding_box()
        assert title_box and status_box and title_box["width"] > 220, (
            "the status pill must not squeeze the title"
        )
    finally:
        context.close()

"""Post-mortem Markdown on the console: links only to http(s), mailto or this site,
whatever encoding hides the scheme (issue 19)."""

from __future__ import annotations

import re

import pytest

from iras.web.console import render_markdown, safe_url

HOSTILE = [
    "&#106;avascript:alert(document.domain)",
    "&#x6A;avascript:alert(1)",
    "&#X6a;avascript:alert(1)",
    "&#0000106;avascript:alert(1)",
    "&#106avascript:alert(1)",
    "jav&#x09;ascript:alert(1)",
    "jav&#9;ascript:alert(1)",
    "java&#10;script:alert(1)",
    "&#x20;javascript:alert(1)",
    "javascript&colon;alert(1)",
    "JaVaScRiPt:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "//evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "\\\\evil.example",
    "&#47;&#47;evil.example",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_a_hostile_link_in_a_postmortem_renders_without_its_target(url: str) -> None:
    html = str(render_markdown(f"[Runbook]({url})"))
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs == [], html
    assert "Runbook" in html
    assert safe_url(url) is None


@pytest.mark.parametrize(
    "url",
    ["https://runbooks.example/checkout", "http://grafana.local/d/x", "mailto:oncall@example.com", "/ui/"],
)
def test_ordinary_links_stay(url: str) -> None:
    html = str(render_markdown(f"[link]({url})"))
    assert f'href="{url}"' in html and 'rel="noopener noreferrer nofollow"' in html


def test_raw_html_in_a_title_stays_text() -> None:
    html = str(render_markdown('# <img src=x onerror=alert(1)> <a href="javascript:x">y</a>'))
    assert "<img" not in html and "<a " not in html and "&lt;img" in html

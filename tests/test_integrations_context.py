"""Client selection by configuration, and the evidence bundle when real sources fail."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from iras.config import Settings
from iras.integrations import active_clients, evidence_status, log_source
from iras.integrations.context import evidence_gap, gather_context, nothing_configured
from tests.fakes.servers import FakeGitHub, FakeLoki, Reply

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def loki() -> Iterator[FakeLoki]:
    with FakeLoki() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="ghp_test") as fake:
        yield fake  # type: ignore[misc]


def test_unconfigured_evidence_sources_are_not_configured_and_notifiers_are_recording_mocks() -> None:
    settings = Settings(mock_evidence=False)
    assert active_clients(settings) == {
        "logs": "not-configured",
        "metrics": "not-configured",
        "deployments": "not-configured",
        "chat": "mock-slack",
        "pager": "mock-pagerduty",
    }
    assert evidence_status(settings) == {
        "mock_evidence": False,
        "not_configured": {
            "logs": ["LOKI_URL", "ELASTICSEARCH_URL"],
            "metrics": ["PROMETHEUS_URL"],
            "deployments": ["GITHUB_TOKEN with GITHUB_REPOS"],
        },
    }


def test_the_canned_mock_evidence_serves_only_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRAS_MOCK_EVIDENCE", raising=False)
    assert Settings().mock_evidence is False  # the default: nothing is invented
    monkeypatch.setenv("IRAS_MOCK_EVIDENCE", "true")
    settings = Settings()
    assert settings.mock_evidence is True
    assert {k: v for k, v in active_clients(settings).items() if k in ("logs", "metrics", "deployments")} == {
        "logs": "mock-logs",
        "metrics": "mock-metrics",
        "deployments": "mock-deployments",
    }
    assert evidence_status(settings) == {"mock_evidence": True, "not_configured": {}}
    bundle = gather_context(settings, ["checkout"], T0)
    assert bundle.logs and bundle.metrics and bundle.deployments
    assert {s.status for s in bundle.sources} == {"ok"}


def test_with_nothing_configured_the_bundle_is_empty_and_names_what_to_configure() -> None:
    bundle = gather_context(Settings(mock_evidence=False), ["checkout"], T0)

    assert (bundle.logs, bundle.metrics, bundle.deployments) == ([], [], [])
    assert {s.kind: (s.status, s.items, s.configure) for s in bundle.sources} == {
        "logs": ("not_configured", 0, ["LOKI_URL", "ELASTICSEARCH_URL"]),
        "metrics": ("not_configured", 0, ["PROMETHEUS_URL"]),
        "deployments": ("not_configured", 0, ["GITHUB_TOKEN with GITHUB_REPOS"]),
    }
    gap = evidence_gap(bundle)
    assert gap is not None and "LOKI_URL or ELASTICSEARCH_URL" in gap and "PROMETHEUS_URL" in gap
    assert nothing_configured(bundle)


def test_one_configured_source_is_asked_and_the_others_say_not_configured(loki: FakeLoki) -> None:
    loki.push({"service": "checkout"}, T0 - timedelta(minutes=2), "ERROR connection refused to db")
    bundle = gather_context(Settings(loki_url=loki.url, mock_evidence=False), ["checkout"], T0)

    assert [line.message for line in bundle.logs] == ["ERROR connection refused to db"]
    assert {s.kind: s.status for s in bundle.sources} == {
        "logs": "ok",
        "metrics": "not_configured",
        "deployments": "not_configured",
    }
    assert evidence_gap(bundle) is None and not nothing_configured(bundle)


def test_a_configured_source_that_answers_nothing_is_evidence_but_one_that_fails_is_not(
    loki: FakeLoki, closed_port: int
) -> None:
    quiet = gather_context(Settings(loki_url=loki.url, mock_evidence=False), ["checkout"], T0)
    assert quiet.logs == [] and evidence_gap(quiet) is None  # "no errors in the window" is a finding

    down = gather_context(
        Settings(loki_url=f"http://127.0.0.1:{closed_port}", mock_evidence=False, http_max_attempts=1),
        ["checkout"],
        T0,
    )
    gap = evidence_gap(down)
    assert gap is not None and "logs unavailable" in gap
    assert not nothing_configured(down)  # a source is configured: a later, wider try may reach it


def test_each_configured_integration_gets_its_real_client() -> None:
    settings = Settings(
        loki_url="http://loki:3100",
        prometheus_url="http://prometheus:9090",
        github_token="ghp_x",
        slack_bot_token="xoxb-x",
        pagerduty_routing_key="R" * 32,
    )
    assert active_clients(settings) == {
        "logs": "loki",
        "metrics": "prometheus",
        "deployments": "github",
        "chat": "slack",
        "pager": "pagerduty",
    }


def test_loki_is_preferred_and_elasticsearch_serves_logs_without_it() -> None:
    assert log_source(Settings(elasticsearch_url="http://es:9200")).name == "elasticsearch"
    assert (
        log_source(Settings(elasticsearch_url="http://es:9200", loki_url="http://loki:3100")).name == "loki"
    )


def test_all_context_sources_failing_at_once_still_yield_a_bundle_that_says_so(
    loki: FakeLoki, github: FakeGitHub, closed_port: int
) -> None:
    loki.script("/loki", Reply(503, "Service Unavailable\n"), times=10)
    settings = Settings(
        loki_url=loki.url,
        prometheus_url=f"http://127.0.0.1:{closed_port}",
        github_token="ghp_revoked",
        github_api_url=github.url,
        github_repos="checkout=acme/checkout",
        http_max_attempts=2,
        http_max_backoff_seconds=0.05,
        http_timeout_seconds=2,
    )

    bundle = gather_context(settings, ["checkout"], T0)

    assert (bundle.logs, bundle.metrics, bundle.deployments) == ([], [], [])
    status = {s.kind: s for s in bundle.sources}
    assert {kind: s.status for kind, s in status.items()} == {
        "logs": "unavailable",
        "metrics": "unavailable",
        "deployments": "unavailable",
    }
    assert {kind: s.client for kind, s in status.items()} == {
        "logs": "loki",
        "metrics": "prometheus",
        "deployments": "github",
    }
    assert "source unavailable" in (status["logs"].error or "") and "HTTP 503" in (status["logs"].error or "")
    assert "connection failed" in (status["metrics"].error or "")
    assert "HTTP 401: Bad credentials" in (status["deployments"].error or "")


def test_one_failing_source_leaves_the_others_evidence_intact(
    loki: FakeLoki, github: FakeGitHub, closed_port: int
) -> None:
    loki.push({"service": "checkout"}, T0 - timedelta(minutes=2), "ERROR NullPointerException at Order.total")
    github.add_deployment(
        "acme/checkout", sha="a" * 40, created_at=T0 - timedelta(minutes=14), states=["success"]
    )
    settings = Settings(
        loki_url=loki.url,
        prometheus_url=f"http://127.0.0.1:{closed_port}",
        github_token="ghp_test",
        github_api_url=github.url,
        github_repos="checkout=acme/checkout",
        http_max_attempts=1,
    )

    bundle = gather_context(settings, ["checkout"], T0)

    assert [line.message for line in bundle.logs] == ["ERROR NullPointerException at Order.total"]
    assert [(d.sha, d.status) for d in bundle.deployments] == [("a" * 40, "success")]
    assert {s.kind: s.status for s in bundle.sources} == {
        "logs": "ok",
        "metrics": "unavailable",
        "deployments": "ok",
    }

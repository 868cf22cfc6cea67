"""Client selection by configuration, and the evidence bundle when real sources fail."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from iras.config import Settings
from iras.integrations import active_clients, log_source
from iras.integrations.context import gather_context
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


def test_every_integration_is_a_mock_until_configured() -> None:
    assert active_clients(Settings()) == {
        "logs": "mock-logs",
        "metrics": "mock-metrics",
        "deployments": "mock-deployments",
        "chat": "mock-slack",
        "pager": "mock-pagerduty",
    }


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

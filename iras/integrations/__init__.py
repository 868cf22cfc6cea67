"""Integration clients, chosen by configuration: a real client when its URL or
token is set. Otherwise an evidence source is "not configured" (returns nothing,
names the settings to set) unless IRAS_MOCK_EVIDENCE=true asks for the canned
mock evidence; chat and pager fall back to the recording mocks.

Real clients are imported on first use, so a deployment without Slack never
imports slack_sdk and the mocks stay importable without any client library.
"""

from __future__ import annotations

from typing import Any

from iras.config import Settings
from iras.integrations.base import ChatNotifier, DeploymentSource, LogSource, MetricSource, Pager
from iras.integrations.mock import (
    MockChatNotifier,
    MockDeploymentSource,
    MockLogSource,
    MockMetricSource,
    MockPager,
)
from iras.integrations.unconfigured import (
    CONFIGURE,
    NotConfiguredDeploymentSource,
    NotConfiguredLogSource,
    NotConfiguredMetricSource,
)


def log_source(settings: Settings) -> LogSource:
    """Loki if LOKI_URL is set, else Elasticsearch/OpenSearch if ELASTICSEARCH_URL, else the
    mock with IRAS_MOCK_EVIDENCE=true, else not configured."""
    if settings.loki_url:
        from iras.integrations.loki import LokiLogSource

        return LokiLogSource(settings)
    if settings.elasticsearch_url:
        from iras.integrations.elasticsearch import ElasticsearchLogSource

        return ElasticsearchLogSource(settings)
    return MockLogSource() if settings.mock_evidence else NotConfiguredLogSource()


def metric_source(settings: Settings) -> MetricSource:
    if settings.prometheus_url:
        from iras.integrations.prometheus import PrometheusMetricSource

        return PrometheusMetricSource(settings)
    return MockMetricSource() if settings.mock_evidence else NotConfiguredMetricSource()


def deployment_source(settings: Settings) -> DeploymentSource:
    if settings.github_token:
        from iras.integrations.github import GitHubDeploymentSource

        return GitHubDeploymentSource(settings)
    return MockDeploymentSource() if settings.mock_evidence else NotConfiguredDeploymentSource()


def chat_configured(settings: Settings) -> bool:
    """A real chat client is configured (otherwise chat_notifier is the mock)."""
    return bool(settings.slack_bot_token)


def pager_configured(settings: Settings) -> bool:
    """A real pager is configured (otherwise pager is the mock)."""
    return bool(settings.pagerduty_routing_key)


def chat_notifier(settings: Settings) -> ChatNotifier:
    if chat_configured(settings):
        from iras.integrations.slack import SlackNotifier

        return SlackNotifier(settings)
    return MockChatNotifier()


def pager(settings: Settings) -> Pager:
    if pager_configured(settings):
        from iras.integrations.pagerduty import PagerDutyPager

        return PagerDutyPager(settings)
    return MockPager()


def evidence_status(settings: Settings) -> dict[str, Any]:
    """For /health and the console (read per page, so no client is built): whether the
    canned mock evidence is on, and which evidence sources are not configured with the
    settings that would configure them."""
    configured = {
        "logs": bool(settings.loki_url or settings.elasticsearch_url),
        "metrics": bool(settings.prometheus_url),
        "deployments": bool(settings.github_token),
    }
    return {
        "mock_evidence": settings.mock_evidence,
        "not_configured": {}
        if settings.mock_evidence
        else {kind: list(CONFIGURE[kind]) for kind, ok in configured.items() if not ok},
    }


def active_clients(settings: Settings) -> dict[str, str]:
    """Which client serves each integration, for /health."""
    return {
        "logs": log_source(settings).name,
        "metrics": metric_source(settings).name,
        "deployments": deployment_source(settings).name,
        "chat": chat_notifier(settings).name,
        "pager": pager(settings).name,
    }

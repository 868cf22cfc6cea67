"""Integration clients, chosen by configuration: a real client when its URL or
token is set, the mock with the same interface otherwise.

Real clients are imported on first use, so a deployment without Slack never
imports slack_sdk and the mocks stay importable without any client library.
"""

from __future__ import annotations

from iras.config import Settings
from iras.integrations.base import ChatNotifier, DeploymentSource, LogSource, MetricSource, Pager
from iras.integrations.mock import (
    MockChatNotifier,
    MockDeploymentSource,
    MockLogSource,
    MockMetricSource,
    MockPager,
)


def log_source(settings: Settings) -> LogSource:
    """Loki if LOKI_URL is set, else Elasticsearch/OpenSearch if ELASTICSEARCH_URL, else the mock."""
    if settings.loki_url:
        from iras.integrations.loki import LokiLogSource

        return LokiLogSource(settings)
    if settings.elasticsearch_url:
        from iras.integrations.elasticsearch import ElasticsearchLogSource

        return ElasticsearchLogSource(settings)
    return MockLogSource()


def metric_source(settings: Settings) -> MetricSource:
    if settings.prometheus_url:
        from iras.integrations.prometheus import PrometheusMetricSource

        return PrometheusMetricSource(settings)
    return MockMetricSource()


def deployment_source(settings: Settings) -> DeploymentSource:
    if settings.github_token:
        from iras.integrations.github import GitHubDeploymentSource

        return GitHubDeploymentSource(settings)
    return MockDeploymentSource()


def context_is_local(settings: Settings) -> bool:
    """Every evidence source is the in-process mock (no Loki, Elasticsearch, Prometheus,
    GitHub or Kubernetes configured): gathering the evidence waits on no network."""
    return not (
        settings.loki_url
        or settings.elasticsearch_url
        or settings.prometheus_url
        or settings.github_token
        or settings.kubernetes_configured
    )


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


def active_clients(settings: Settings) -> dict[str, str]:
    """Which client serves each integration, for /health."""
    return {
        "logs": log_source(settings).name,
        "metrics": metric_source(settings).name,
        "deployments": deployment_source(settings).name,
        "chat": chat_notifier(settings).name,
        "pager": pager(settings).name,
    }

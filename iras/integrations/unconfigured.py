"""Evidence sources that are not configured: they return nothing, and say which
settings would turn them on.

With no Loki/Elasticsearch, Prometheus or GitHub configured (and the canned mock
evidence off), IRAS has no evidence beyond the alert. The context gatherer
records each such source as `not_configured` instead of fetching, so the
diagnosis, the console and the escalation can say what is missing rather than
reason over invented data.
"""

from __future__ import annotations

from datetime import datetime

from iras.schemas import Deployment, LogLine, MetricDelta

# The settings that configure each kind of evidence (alternatives), as the console shows them.
CONFIGURE: dict[str, tuple[str, ...]] = {
    "logs": ("LOKI_URL", "ELASTICSEARCH_URL"),
    "metrics": ("PROMETHEUS_URL",),
    "deployments": ("GITHUB_TOKEN with GITHUB_REPOS",),
}


class _NotConfigured:
    kind = ""
    name = "not-configured"

    @property
    def configure(self) -> tuple[str, ...]:
        return CONFIGURE[self.kind]


class NotConfiguredLogSource(_NotConfigured):
    kind = "logs"

    def fetch_logs(
        self, services: list[str], start: datetime, end: datetime, limit: int = 500
    ) -> list[LogLine]:
        return []


class NotConfiguredMetricSource(_NotConfigured):
    kind = "metrics"

    def fetch_metrics(self, services: list[str], start: datetime, end: datetime) -> list[MetricDelta]:
        return []


class NotConfiguredDeploymentSource(_NotConfigured):
    kind = "deployments"

    def fetch_deployments(self, services: list[str], start: datetime, end: datetime) -> list[Deployment]:
        return []

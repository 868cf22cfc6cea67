"""Interfaces of the context tools and notifiers.

Each has a real client (issue: real integrations) and a mock with the same
interface, chosen by whether its URL/token is set. A client raises
`SourceUnavailable` on failure; the context gatherer turns that into a
"source unavailable" entry in the bundle instead of failing the incident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from iras.schemas import Deployment, LogLine, MetricDelta


class SourceUnavailable(Exception):
    """A context source or notifier could not be reached or answered an error."""


class TransientNotifyError(Exception):
    """A notifier hit a rate limit or a 5xx: the Celery task retries it."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LogSource(Protocol):
    name: str

    def fetch_logs(
        self, services: list[str], start: datetime, end: datetime, limit: int = 500
    ) -> list[LogLine]: ...


class MetricSource(Protocol):
    name: str

    def fetch_metrics(self, services: list[str], start: datetime, end: datetime) -> list[MetricDelta]: ...


class DeploymentSource(Protocol):
    name: str

    def fetch_deployments(self, services: list[str], start: datetime, end: datetime) -> list[Deployment]: ...


class ChatNotifier(Protocol):
    """Slack-like: posts the plan with Approve/Reject, escalations, post-mortems."""

    name: str

    def post_plan(self, incident: dict[str, Any]) -> dict[str, Any]: ...

    def post_decision(self, incident: dict[str, Any], message_ref: dict[str, Any] | None) -> None: ...

    def post_escalation(self, incident: dict[str, Any]) -> None: ...

    def post_postmortem(self, incident: dict[str, Any], markdown: str) -> None: ...


class Pager(Protocol):
    """PagerDuty-like: trigger is idempotent per dedup_key (the incident id)."""

    name: str

    def trigger(self, incident: dict[str, Any]) -> None: ...

    def resolve(self, incident_id: str) -> None: ...

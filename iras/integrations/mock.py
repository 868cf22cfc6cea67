"""Mock context tools and notifiers.

The evidence mocks serve only with IRAS_MOCK_EVIDENCE=true (tests, `iras demo`,
`iras eval`, scripted checks): an unconfigured source is otherwise "not
configured" (iras/integrations/unconfigured.py). Evidence comes from, in order:
1. a fixture registered in-process (`set_fixture`, used by `iras eval` and tests),
2. a scenario-shaped JSON file named by `MOCK_EVIDENCE_FILE` (for separate worker
   processes in benchmarks and integration tests),
3. otherwise a small synthetic, clearly labelled demo bundle derived from the
   alert window (the same for every alert: it exercises the pipeline, it
   diagnoses nothing).

Notifiers record what they would have sent in memory (`SENT`, the newest
`SENT_KEEP` messages: a long-running process without Slack or PagerDuty
configured must not grow by a record per notification), which the tests read.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
from datetime import datetime, timedelta
from typing import Any

from iras.schemas import Deployment, LogLine, MetricDelta

_lock = threading.Lock()
_fixture: dict[str, Any] | None = None
_file_cache: dict[str, dict[str, Any]] = {}
SENT: list[dict[str, Any]] = []
SENT_KEEP = 1_000
_message_ts = itertools.count(1)


def _sent(message: dict[str, Any]) -> None:
    """Record a notification, keeping the newest SENT_KEEP (a list, trimmed in place:
    a reader iterating it while a worker thread appends never raises)."""
    with _lock:
        SENT.append(message)
        if len(SENT) > SENT_KEEP:
            del SENT[: len(SENT) - SENT_KEEP]


def set_fixture(evidence: dict[str, Any] | None) -> None:
    """Serve this scenario `evidence` ({logs, metrics, deployments}) from every mock source."""
    global _fixture
    with _lock:
        _fixture = evidence


def _current_fixture() -> dict[str, Any] | None:
    if _fixture is not None:
        return _fixture
    path = os.environ.get("MOCK_EVIDENCE_FILE")
    if not path:
        return None
    if path not in _file_cache:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        _file_cache[path] = data.get("evidence", data)
    return _file_cache[path]


def _synthetic_deploy_sha(service: str) -> str:
    return hashlib.sha1(f"demo:{service}".encode()).hexdigest()


class MockLogSource:
    name = "mock-logs"

    def fetch_logs(
        self, services: list[str], start: datetime, end: datetime, limit: int = 500
    ) -> list[LogLine]:
        fixture = _current_fixture()
        if fixture is not None:
            return [LogLine.model_validate(item) for item in fixture.get("logs", [])][-limit:]
        lines: list[LogLine] = []
        for service in services:
            sha = _synthetic_deploy_sha(service)[:7]
            deploy_at = end - timedelta(minutes=12)
            lines.append(
                LogLine(
                    timestamp=deploy_at + timedelta(seconds=20),
                    service=service,
                    level="INFO",
                    message=f"{service} starting version {sha} (demo data from the mock log source)",
                )
            )
            for i in range(6):
                lines.append(
                    LogLine(
                        timestamp=deploy_at + timedelta(minutes=2 + i),
                        service=service,
                        level="ERROR",
                        message=(
                            f"Unhandled exception in request handler: NullPointerException at "
                            f"{service}.handlers.Order.total (request {i})"
                        ),
                    )
                )
        return lines[-limit:]


class MockMetricSource:
    name = "mock-metrics"

    def fetch_metrics(self, services: list[str], start: datetime, end: datetime) -> list[MetricDelta]:
        fixture = _current_fixture()
        if fixture is not None:
            return [MetricDelta.model_validate(item) for item in fixture.get("metrics", [])]
        metrics: list[MetricDelta] = []
        for service in services:
            metrics.append(
                MetricDelta(
                    name="error_rate",
                    service=service,
                    query=f'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])) / '
                    f'sum(rate(http_requests_total{{service="{service}"}}[5m]))',
                    current=0.24,
                    baseline_7d=0.002,
                    unit="ratio",
                )
            )
            metrics.append(
                MetricDelta(
                    name="request_rate", service=service, current=410.0, baseline_7d=395.0, unit="req/s"
                )
            )
        return metrics


class MockDeploymentSource:
    name = "mock-deployments"

    def fetch_deployments(self, services: list[str], start: datetime, end: datetime) -> list[Deployment]:
        fixture = _current_fixture()
        if fixture is not None:
            return [Deployment.model_validate(item) for item in fixture.get("deployments", [])]
        return [
            Deployment(
                service=service,
                sha=_synthetic_deploy_sha(service),
                ref="v1.0.1",
                created_at=end - timedelta(minutes=12),
                creator="demo",
                description="demo deployment from the mock deployment source",
                status="success",
            )
            for service in services
        ]


class MockChatNotifier:
    name = "mock-slack"

    def post_plan(self, incident: dict[str, Any]) -> dict[str, Any]:
        _sent({"kind": "slack.plan", "incident_id": incident["id"]})
        return {"channel": "mock", "ts": f"{next(_message_ts)}.000"}

    def post_decision(self, incident: dict[str, Any], message_ref: dict[str, Any] | None) -> None:
        _sent({"kind": "slack.decision", "incident_id": incident["id"]})

    def post_escalation(self, incident: dict[str, Any]) -> None:
        _sent({"kind": "slack.escalation", "incident_id": incident["id"]})

    def post_postmortem(self, incident: dict[str, Any], markdown: str) -> None:
        _sent({"kind": "slack.postmortem", "incident_id": incident["id"]})


class MockPager:
    name = "mock-pagerduty"

    def trigger(self, incident: dict[str, Any]) -> None:
        _sent({"kind": "pagerduty.trigger", "dedup_key": incident["id"]})

    def resolve(self, incident_id: str) -> None:
        _sent({"kind": "pagerduty.resolve", "dedup_key": incident_id})

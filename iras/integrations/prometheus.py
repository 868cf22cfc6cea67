"""Metrics from the Prometheus HTTP API: each service's key signals now vs the
same window 7 days ago.

For every service and every configured metric (error rate, request rate, p99
latency, CPU, memory, restarts) the client runs two instant queries at the
evaluation time, the template rendered with `$offset` = "" and with
`$offset` = "offset 7d", and reports both values; the delta and ratio are
computed in code (`MetricDelta`), never by the query.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Any

import requests

from iras.config import Settings
from iras.integrations.base import SourceUnavailable
from iras.integrations.http import HTTPStatusError, RetryPolicy, json_body, new_session, request
from iras.schemas import MetricDelta, utcnow

log = logging.getLogger(__name__)

BASELINE_OFFSET = "offset 7d"


@dataclass(frozen=True)
class MetricQuery:
    name: str
    template: str
    unit: str


def configured_queries(settings: Settings) -> list[MetricQuery]:
    return [
        MetricQuery("error_rate", settings.prometheus_query_error_rate, "ratio"),
        MetricQuery("request_rate", settings.prometheus_query_request_rate, "req/s"),
        MetricQuery("latency_p99", settings.prometheus_query_latency_p99, "seconds"),
        MetricQuery("cpu", settings.prometheus_query_cpu, "cores"),
        MetricQuery("memory", settings.prometheus_query_memory, "bytes"),
        MetricQuery("restarts", settings.prometheus_query_restarts, "restarts"),
    ]


def promql_string(value: str) -> str:
    """Escape a value for a double-quoted PromQL string: a service name comes from
    an alert payload and must not be able to close the label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(template: str, service: str, window: str, offset: str) -> str:
    query = Template(template).safe_substitute(service=promql_string(service), window=window, offset=offset)
    return " ".join(query.split())


def sample_value(data: dict[str, Any], query: str) -> float | None:
    """One number from a query result; None when there is no data.

    Templates are expected to aggregate to one series; if one does not, the
    largest series is reported (the worst, for every default signal).
    NaN (0/0, e.g. an error ratio with no traffic) and infinities are "no data".
    """
    kind = data.get("resultType")
    result = data.get("result")
    values: list[float] = []
    if kind == "scalar" and isinstance(result, list):
        values = [float(result[1])]
    elif kind == "vector" and isinstance(result, list):
        values = [float(item["value"][1]) for item in result]
    elif kind == "matrix" and isinstance(result, list):
        values = [float(item["values"][-1][1]) for item in result if item.get("values")]
    else:
        raise SourceUnavailable(f"prometheus: unexpected result type {kind!r} for {query}")
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) > 1:
        log.info("query returned %d series, reporting the largest: %s", len(finite), query)
    return max(finite) if finite else None


class PrometheusMetricSource:
    name = "prometheus"

    def __init__(
        self,
        settings: Settings,
        *,
        policy: RetryPolicy | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not settings.prometheus_url:
            raise ValueError("PROMETHEUS_URL is not set")
        self.base_url = settings.prometheus_url.rstrip("/")
        self.timeout = settings.http_timeout_seconds
        self.window = settings.prometheus_rate_window
        self.queries = configured_queries(settings)
        self.policy = policy or RetryPolicy.from_settings(settings)
        self._now = now

    def fetch_metrics(self, services: list[str], start: datetime, end: datetime) -> list[MetricDelta]:
        """Current vs 7-day baseline for every service and metric, evaluated at `end`.

        `end` is clamped to now: the context window ends a few minutes after the
        alert, and a query evaluated in the future sees no samples at all.
        A bad template (HTTP 400/422) loses that metric only and is logged; an
        unreachable Prometheus raises `SourceUnavailable` at the first query
        instead of timing out once per metric.
        """
        at = min(end, self._now())
        results: list[MetricDelta] = []
        failed: list[str] = []
        with new_session({"Accept": "application/json"}) as session:
            for service in services:
                for metric in self.queries:
                    current_query = render(metric.template, service, self.window, "")
                    baseline_query = render(metric.template, service, self.window, BASELINE_OFFSET)
                    try:
                        current = self.query(session, current_query, at)
                        baseline = self.query(session, baseline_query, at)
                    except HTTPStatusError as exc:
                        if exc.status not in (400, 422):
                            raise
                        failed.append(f"{metric.name}: {exc}")
                        log.warning("metric %s for %s failed: %s", metric.name, service, exc)
                        continue
                    if current is None and baseline is None:
                        continue  # this service does not export that signal
                    results.append(
                        MetricDelta(
                            name=metric.name,
                            service=service,
                            query=current_query,
                            current=current,
                            baseline_7d=baseline,
                            unit=metric.unit,
                        )
                    )
        if failed and not results:
            raise SourceUnavailable("prometheus: every query failed; first error: " + failed[0])
        return results

    def query(self, session: requests.Session, promql: str, at: datetime) -> float | None:
        """Run one instant query (`POST /api/v1/query`, form-encoded so long
        queries fit) and reduce the result to one number."""
        response = request(
            session,
            "POST",
            f"{self.base_url}/api/v1/query",
            source="prometheus",
            timeout=self.timeout,
            policy=self.policy,
            # Prometheus' own evaluation timeout: stop the work server-side when we stop waiting.
            data={"query": promql, "time": f"{at.timestamp():.3f}", "timeout": f"{self.timeout:g}s"},
        )
        body = json_body(response, "prometheus")
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise SourceUnavailable(f"prometheus: query failed: {error}")
        for warning in body.get("warnings") or []:
            log.warning("prometheus warning for %s: %s", promql, warning)
        return sample_value(body.get("data") or {}, promql)

"""Prometheus metrics: `GET /metrics`.

Two kinds of series:
- Counted where they happen (this process): Celery task and stage durations,
  queue lag (publish to start), LLM tokens and cost per stage and model,
  approval wait time, remediation outcomes, plan steps, webhook and HTTP
  requests. With PROMETHEUS_MULTIPROC_DIR set (granian workers, Celery prefork
  children on one host) they are summed across processes; otherwise each
  process exposes its own (the web app on /metrics, Celery workers on
  WORKER_METRICS_PORT). That directory must be dedicated to it (every *.db
  file in it is read as metrics) and emptied before the processes start.
- Read from the database at scrape time (true whichever process did the work):
  incidents by status and severity, the oldest incident waiting on a worker,
  the oldest pending approval, and the Redis queue depth. The queries are small
  GROUP BY / MIN over indexed columns, cached for a few seconds so several
  scrapers cannot hammer the database.

Metrics never break the work they describe: every observation swallows its errors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import bindparam, event, func, inspect, select
from sqlalchemy.orm import Session

from iras.models import Incident, StageResult, StepRun, Transition
from iras.schemas import Severity, utcnow
from iras.workflow import WORKING, IncidentStatus

log = logging.getLogger(__name__)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Stages take from milliseconds (offline analyst) to minutes (a model retried, a rollout).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
# Approval waits are human time: a minute to the P3 deadline of hours.
WAIT_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)

TASK_DURATION = Histogram(
    "iras_task_duration_seconds",
    "Celery task run time, by task and final state",
    ["task", "state"],
    buckets=DURATION_BUCKETS,
)
STAGE_DURATION = Histogram(
    "iras_stage_duration_seconds",
    "Pipeline stage run time (the stage's Celery task), by stage and state",
    ["stage", "state"],
    buckets=DURATION_BUCKETS,
)
QUEUE_LAG = Histogram(
    "iras_task_queue_lag_seconds",
    "Time from publishing a task (or its ETA) to a worker starting it",
    ["task"],
    buckets=DURATION_BUCKETS,
)
LLM_TOKENS = Counter(
    "iras_llm_tokens",
    "Model tokens spent, by stage, model and kind (input, output, cache_read, cache_creation)",
    ["stage", "model", "kind"],
)
LLM_COST = Counter("iras_llm_cost_usd", "Estimated model cost in USD, by stage and model", ["stage", "model"])
APPROVAL_WAIT = Histogram(
    "iras_approval_wait_seconds",
    "Time from plan ready to a decision, by channel and decision",
    ["via", "decision"],
    buckets=WAIT_BUCKETS,
)
REMEDIATION_OUTCOMES = Counter(
    "iras_remediation_outcomes", "Executed plans by outcome (succeeded, failed)", ["outcome"]
)
REMEDIATION_STEPS = Counter(
    "iras_remediation_steps", "Plan step runs by kind (apply, rollback) and final status", ["kind", "status"]
)
INCIDENTS_CLOSED = Counter(
    "iras_incidents_closed", "Incidents closed with a post-mortem, by outcome", ["outcome"]
)
WEBHOOK_REQUESTS = Counter(
    "iras_webhook_requests", "Alert webhook requests by source and HTTP status", ["source", "status"]
)
HTTP_REQUESTS = Counter(
    "iras_http_requests", "HTTP requests by route, method and status", ["endpoint", "method", "status"]
)
HTTP_DURATION = Histogram(
    "iras_http_request_duration_seconds",
    "HTTP request handling time by route",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

STAGE_OF_TASK = {
    "incidents.run_triage": "triage",
    "incidents.gather_context": "context",
    "incidents.run_rca": "rca",
    "incidents.run_plan": "plan",
    "incidents.execute_plan": "execute",
    "incidents.escalate": "escalate",
    "incidents.write_postmortem": "postmortem",
}


def _safe(fn: Any) -> Any:
    """Decorator: a metrics bug must never fail a request or a task."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.warning("metrics observation failed", exc_info=True)
            return None

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


# --------------------------------------------------------------------------- observations


@_safe
def observe_stage_usage(stage: str, model: str | None, tokens: dict[str, int]) -> None:
    """Tokens and estimated cost of one committed stage result."""
    from iras.analysts.pricing import Usage, estimate_cost_usd, price_table
    from iras.config import get_settings

    label = model or "none"
    for kind, count in tokens.items():
        if count:
            LLM_TOKENS.labels(stage, label, kind).inc(count)
    if model and any(tokens.values()):
        usage = Usage(tokens["input"], tokens["output"], tokens["cache_read"], tokens["cache_creation"])
        cost = estimate_cost_usd(model, usage, price_table(get_settings()))
        if cost:
            LLM_COST.labels(stage, label).inc(cost)


@_safe
def observe_remediation(outcome: str) -> None:
    """One executed plan's outcome: `succeeded` or `failed` (then rolled back)."""
    REMEDIATION_OUTCOMES.labels(outcome).inc()


def plan_ready_at(session: Session, incident_id: str) -> datetime | None:
    """When the pending plan was ready (its `plan_ready` transition), read inside the
    decision's own transaction: one indexed statement, no session of its own (it can
    fail only if the database does, and then the decision fails with it anyway)."""
    return session.scalar(_PLAN_READY_AT, {"incident_id": incident_id})


_PLAN_READY_AT = (
    select(Transition.at)
    .where(Transition.incident_id == bindparam("incident_id"), Transition.event == "plan_ready")
    .order_by(Transition.id.desc())
    .limit(1)
)


@_safe
def observe_approval_wait(via: str | None, event: str, ready: datetime | None, decided: datetime) -> None:
    """Observe the approval wait of a decision (plan ready -> decided). Called once
    per decision, whichever channel made it (API, console, Slack, the timeout),
    after its transaction committed."""
    decision = {"approved": "approved", "rejected": "rejected", "approval_timed_out": "timed_out"}.get(event)
    if decision is None or ready is None:  # every alert resolved while pending: nobody decided
        return
    APPROVAL_WAIT.labels(via or "unknown", decision).observe(max(0.0, (decided - ready).total_seconds()))


@_safe
def _emit(item: tuple[Any, ...]) -> None:
    kind = item[0]
    if kind == "stage":
        observe_stage_usage(item[1], item[2], item[3])
    elif kind == "step":
        REMEDIATION_STEPS.labels(item[1], item[2]).inc()
    elif kind == "closed":
        INCIDENTS_CLOSED.labels(item[1]).inc()


# Unit-of-work hooks: rows are noted at flush and counted once their transaction
# commits (dropped on rollback), whichever code path wrote them.


@event.listens_for(Session, "after_flush")
def _collect_rows(session: Session, _context: Any) -> None:
    from iras.models import PostMortemRecord

    try:
        pending: list[tuple[Any, ...]] = session.info.setdefault("iras_metrics", [])
        for obj in session.new:
            if isinstance(obj, StageResult):
                tokens = {
                    "input": obj.input_tokens or 0,
                    "output": obj.output_tokens or 0,
                    "cache_read": obj.cache_read_tokens or 0,
                    "cache_creation": obj.cache_creation_tokens or 0,
                }
                pending.append(("stage", obj.stage, obj.model, tokens))
            elif isinstance(obj, PostMortemRecord):
                pending.append(("closed", obj.outcome))
        for obj in list(session.new) + list(session.dirty):
            changed = isinstance(obj, StepRun) and (
                obj in session.new or inspect(obj).attrs.status.history.has_changes()
            )
            if changed and obj.status != "running":
                pending.append(("step", obj.kind, obj.status))
    except Exception:  # noqa: BLE001
        log.warning("metrics collection failed", exc_info=True)


def emit_committed(*items: tuple[Any, ...]) -> None:
    """Count rows committed outside an ORM session (`iras.workflow.advance`)."""
    for item in items:
        _emit(item)


@event.listens_for(Session, "after_commit")
def _emit_rows(session: Session) -> None:
    for item in session.info.pop("iras_metrics", []):
        _emit(item)


@event.listens_for(Session, "after_rollback")
def _drop_rows(session: Session) -> None:
    session.info.pop("iras_metrics", None)


# --------------------------------------------------------------------------- Celery signals

_started: dict[str, float] = {}
_started_lock = threading.Lock()


# --------------------------------------------------------------------------- log context

# What the current thread is working on (a Celery task, a web request), so every
# log line can say which incident and stage it is about without each call
# passing `extra=`. Celery's thread pool and the web server's threads each
# get their own value.
_log_context: ContextVar[dict[str, str] | None] = ContextVar("iras_log_context", default=None)


def log_context() -> dict[str, str]:
    """incident_id / stage / task of the running task or request (empty outside one)."""
    return dict(_log_context.get() or {})


class LogContextFilter(logging.Filter):
    """Adds the log context to each record that does not carry those fields
    already; attach it to the JSON handler (`handler.addFilter(LogContextFilter())`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_log_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _incident_arg(args: Any) -> str | None:
    if isinstance(args, list | tuple) and args and isinstance(args[0], str) and len(args[0]) == 36:
        return args[0]
    return None


def _eta_timestamp(eta: Any) -> float | None:
    if eta is None:
        return None
    if isinstance(eta, datetime):
        return eta.timestamp()
    try:
        return datetime.fromisoformat(str(eta)).timestamp()
    except ValueError:
        return None


def _connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init

    @before_task_publish.connect(weak=False)
    def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
        # Lag is measured from this stamp; a retry re-publishes with a new one.
        if isinstance(headers, dict):
            headers["iras_sent_at"] = time.time()

    @task_prerun.connect(weak=False)
    @_safe
    def _prerun(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        if task_id is None or task is None:
            return
        context = {"task": task.name, "stage": STAGE_OF_TASK.get(task.name, task.name), "task_id": task_id}
        incident_id = _incident_arg(args)
        if incident_id:
            context["incident_id"] = incident_id
        _log_context.set(context)
        with _started_lock:
            if len(_started) > 10_000:  # tasks whose postrun never came (worker lost)
                _started.clear()
            _started[task_id] = time.perf_counter()
        sent = getattr(task.request, "iras_sent_at", None)
        if isinstance(sent, int | float):
            due = max(float(sent), _eta_timestamp(task.request.eta) or 0.0)
            QUEUE_LAG.labels(task.name).observe(max(0.0, time.time() - due))

    @task_postrun.connect(weak=False)
    @_safe
    def _postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
        _log_context.set(None)  # the pool thread runs other tasks next
        if task_id is None or task is None:
            return
        with _started_lock:
            started = _started.pop(task_id, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        TASK_DURATION.labels(task.name, state or "UNKNOWN").observe(elapsed)
        stage = STAGE_OF_TASK.get(task.name)
        if stage:
            STAGE_DURATION.labels(stage, state or "UNKNOWN").observe(elapsed)

    @worker_init.connect(weak=False)
    @_safe
    def _worker_exporter(**_: Any) -> None:
        from iras.config import get_settings

        port = get_settings().worker_metrics_port
        if port:
            from prometheus_client import start_http_server

            start_http_server(port, registry=scrape_registry())
            log.info("worker metrics on /metrics", extra={"port": port})


_connect_celery_signals()


# --------------------------------------------------------------------------- database-derived gauges


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time (cached for `ttl` seconds)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached_at = 0.0
        self._cached: list[Any] = []

    def collect(self) -> Iterable[Any]:
        with self._lock:
            if time.monotonic() - self._cached_at > self.ttl:
                self._cached = list(self._read())
                self._cached_at = time.monotonic()
            return list(self._cached)

    def describe(self) -> Iterable[Any]:
        # Describing without a query keeps registration from touching the database.
        return []

    def _read(self) -> Iterator[Any]:
        up = GaugeMetricFamily("iras_metrics_database_up", "1 if the last metrics query reached the database")
        try:
            families = self._query()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the DB is down
            log.warning("metrics query failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        yield from self._queue_depth()

    def _query(self) -> list[Any]:
        from iras.db import get_engine

        now = utcnow()
        engine = get_engine()
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL statement_timeout = 2000")
            counts = conn.execute(
                select(Incident.status, Incident.severity, func.count()).group_by(
                    Incident.status, Incident.severity
                )
            ).all()
            oldest_working = conn.execute(
                select(Incident.updated_at)
                .where(Incident.status.in_([s.value for s in WORKING]))
                .order_by(Incident.updated_at)
                .limit(1)
            ).scalar()
            oldest_pending = conn.execute(
                select(Incident.updated_at)
                .where(Incident.status == IncidentStatus.AWAITING_APPROVAL.value)
                .order_by(Incident.updated_at)
                .limit(1)
            ).scalar()
            conn.rollback()
        incidents = GaugeMetricFamily(
            "iras_incidents",
            "Incidents by status and severity (none = not triaged yet)",
            labels=["status", "severity"],
        )
        seen: dict[tuple[str, str], int] = {}
        for status, severity, count in counts:
            key = (str(status), str(severity or "none"))
            seen[key] = seen.get(key, 0) + int(count)
        # Zeros for every status keep a series from vanishing when its last incident moves on.
        for status in IncidentStatus:
            for severity in [*(s.value for s in Severity), "none"]:
                seen.setdefault((status.value, severity), 0)
        for (status, severity), count in sorted(seen.items()):
            incidents.add_metric([status, severity], count)
        lag = GaugeMetricFamily(
            "iras_pipeline_oldest_working_seconds",
            "Seconds since the oldest incident in a working state last moved (0 if none): the pipeline's lag",
        )
        working_at = oldest_working
        lag.add_metric([], max(0.0, (now - working_at).total_seconds()) if working_at else 0.0)
        pending = GaugeMetricFamily(
            "iras_approval_oldest_pending_seconds",
            "Seconds the oldest plan has waited for approval (0 if none)",
        )
        pending_at = oldest_pending
        pending.add_metric([], max(0.0, (now - pending_at).total_seconds()) if pending_at else 0.0)
        return [incidents, lag, pending]

    def _queue_depth(self) -> Iterator[Any]:
        from iras.config import get_settings

        url = get_settings().celery_broker_url
        if not url.startswith(("redis://", "rediss://")):
            return
        depth = GaugeMetricFamily(
            "iras_queue_depth", "Messages waiting in each Celery queue (Redis)", labels=["queue"]
        )
        try:
            import redis

            from iras.celery_app import ANALYSIS_QUEUE, OPS_QUEUE

            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            try:
                for queue in (ANALYSIS_QUEUE, OPS_QUEUE):
                    depth.add_metric([queue], float(client.llen(queue)))
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("queue depth unavailable: %s", exc)
            return
        yield depth


_db_collector = DatabaseCollector()
if not MULTIPROCESS:
    REGISTRY.register(_db_collector)


def scrape_registry() -> CollectorRegistry:
    """The registry to expose: the process's own, or, in multiprocess mode, the
    sum over every process's files plus the database gauges."""
    if not MULTIPROCESS:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_db_collector)
    return registry


# --------------------------------------------------------------------------- Flask

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    return Response(generate_latest(scrape_registry()), mimetype=CONTENT_TYPE_LATEST)


def _webhook_source(path: str) -> str:
    """Bounded label values: a sender cannot create series by inventing sources."""
    from iras.ingest import KNOWN_SOURCES

    parts = path.strip("/").split("/")
    if len(parts) < 2:
        return "other"
    if parts[1] == "alert":
        return "auto"
    return parts[1] if parts[1] in KNOWN_SOURCES else "other"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.before_request
    def _start_timer() -> None:
        g._iras_started = time.perf_counter()
        context = {"stage": "web", "endpoint": request.endpoint or "unmatched"}
        incident_id = (request.view_args or {}).get("incident_id")
        if isinstance(incident_id, str):
            context["incident_id"] = incident_id[:64]
        _log_context.set(context)

    @app.teardown_request
    def _clear_context(_exc: BaseException | None) -> None:
        _log_context.set(None)

    @app.after_request
    def _count(response: Response) -> Response:
        _observe_request(response)
        return response


# A label value is a time series: any other method name (`curl -X FOOBAR1`) is "other",
# or a client could create series without bound.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


@_safe
def _observe_request(response: Response) -> None:
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = str(response.status_code)
    HTTP_REQUESTS.labels(endpoint, method_label(request.method), status).inc()
    started = g.get("_iras_started")
    if started is not None:
        HTTP_DURATION.labels(endpoint).observe(time.perf_counter() - started)
    if request.path.startswith("/webhook/") and request.method == "POST":
        WEBHOOK_REQUESTS.labels(_webhook_source(request.path), status).inc()

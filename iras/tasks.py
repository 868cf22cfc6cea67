"""Celery tasks: one per stage, plus notifications and the beat jobs.

Every stage task follows the same steps (grafana/oncall's escalation steps and
healthchecks' conditional updates are the model):
1. load the incident by id; return quietly if it is gone or not in the state
   this task expects (a duplicate delivery, or someone else moved it);
2. run the analyst outside any transaction (a model call can take seconds);
3. in one short transaction: compare-and-set the status, store the typed result
   and the transition row;
4. enqueue the next task only after that commit.
A task that runs twice therefore does its side effect at most once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, NamedTuple

from celery import Task
from celery.exceptions import Retry
from sqlalchemy import (
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from iras import metrics
from iras.analysts import get_analyst
from iras.analysts.base import (
    IncidentFacts,
    PostMortemInput,
    StageOutput,
    StepRunView,
    TransientAnalystError,
)
from iras.analysts.runbooks import pin_to_workloads
from iras.celery_app import celery_app as app
from iras.config import get_settings
from iras.db import (
    after_commit,
    autocommit_connection,
    get_engine,
    held_connection,
    new_session,
    post_commit,
    read_connection,
    session_scope,
)
from iras.executor import get_executor
from iras.integrations import chat_configured, chat_notifier, context_is_local, pager, pager_configured
from iras.integrations.base import TransientNotifyError
from iras.integrations.context import evidence_gap, gather_context, nothing_configured
from iras.models import AlertEvent, Incident, PostMortemRecord, StageResult, StepRun, Transition
from iras.postmortem import timeline_from
from iras.publish import configured_publisher
from iras.safety import enforce_invariants
from iras.schemas import (
    ContextBundle,
    NormalizedAlert,
    RemediationPlan,
    RootCauseHypothesis,
    Severity,
    TriageResult,
    utcnow,
)
from iras.services import cost_summary, serialize_incident
from iras.workflow import (
    ANALYSIS_STATES,
    CLOSING_EVENT_FOR_OUTCOME,
    WORKING,
    Event,
    IncidentStatus,
    advance,
    step_outcome_cte,
    store_step_outcome,
    transition,
)

log = logging.getLogger(__name__)
S = IncidentStatus


class PipelineTask(Task):  # type: ignore[misc]
    """Base for stage tasks: late acks, redelivery on worker loss, bounded retries
    with exponential backoff and jitter on transient errors (model overload,
    database restart), honouring a provider's retry-after."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries = 8
    retry_backoff_max = 300

    def retry_later(self, exc: Exception, retry_after: float | None = None) -> Any:
        backoff = min(self.retry_backoff_max, 2 ** (self.request.retries + 1))
        countdown = max(retry_after or 0.0, backoff * random.uniform(0.5, 1.0))
        log.warning(
            "transient error, retrying",
            extra={
                "task": self.name,
                "retries": self.request.retries,
                "countdown": countdown,
                "error": str(exc),
            },
        )
        raise self.retry(exc=exc, countdown=countdown)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """A stage that failed for good (a bug, retries exhausted) hands the incident
        to a human instead of leaving it for the sweeper to retry forever."""
        if args and self.name in _ESCALATE_ON_FAILURE:
            _mark_stage_failed(str(args[0]), self.name, exc)


_ESCALATE_ON_FAILURE = {
    "incidents.run_triage",
    "incidents.gather_context",
    "incidents.run_rca",
    "incidents.run_plan",
}


def _mark_stage_failed(incident_id: str, task_name: str, exc: Exception) -> None:
    try:
        with session_scope() as session:
            current = session.scalar(select(Incident.status).where(Incident.id == incident_id))
            if current is None or IncidentStatus(current) not in ANALYSIS_STATES:
                return
            if transition(
                session,
                incident_id,
                IncidentStatus(current),
                Event.STAGE_FAILED,
                detail={"summary": f"{task_name} failed: {type(exc).__name__}: {exc}"[:300]},
                values={"outcome": "escalated"},
            ):
                after_commit(session, lambda: enqueue_stage(incident_id, IncidentStatus.ESCALATING))
    except Exception:  # noqa: BLE001 - the sweeper is the last resort
        log.exception("could not mark stage failed", extra={"incident_id": incident_id})


def _stage_task(name: str) -> Any:
    return app.task(name=name, bind=True, base=PipelineTask)


# --------------------------------------------------------------------------- helpers


def _facts(
    db: Session | Connection,
    incident: Any,
    *,
    read_triage: bool = True,
    triage: TriageResult | None = None,
) -> IncidentFacts:
    """The alert facts the analyst sees (`incident`: an Incident or a row of its
    columns). `read_triage=False` when the caller knows the triage result already
    (or that there is none yet): one statement less."""
    if read_triage:
        found = _latest_result(db, incident.id, "triage")
        triage = TriageResult.model_validate(found) if found is not None else None
    return _facts_from(incident, db.execute(_ALERTS, {"incident_id": incident.id}).all(), triage)


def _facts_from(incident: Any, alert_rows: list[Any], triage: TriageResult | None) -> IncidentFacts:
    """The facts from rows of `_ALERTS`' two columns (alert document, request body).
    The incident's payload is the request body kept with its first alert event
    (migration 0007); the other events' bodies are not decoded."""
    alerts = [NormalizedAlert.model_validate({**row[0], "raw": {}}) for row in alert_rows]
    payload = (alert_rows[0][1] if alert_rows else None) or {}
    return IncidentFacts(
        incident_id=incident.id,
        title=incident.title,
        source=incident.source,
        service=incident.service,
        alerts=alerts,
        payload=payload,
        triage=triage,
    )


def _latest_result(db: Session | Connection, incident_id: str, stage: str) -> Any:
    """The result document of the stage's latest attempt, or None."""
    return db.execute(_LATEST_RESULT, {"incident_id": incident_id, "stage": stage}).scalar()


# The reads above, built once with bind parameters: building a statement (and its
# cache key) per call was a tenth of the post-mortem's CPU (py-spy, bench/pipeline.py).
_FIRST_ALERT_ID = (
    select(func.min(AlertEvent.id))
    .where(AlertEvent.incident_id == bindparam("incident_id"))
    .scalar_subquery()
)
_ALERTS = (
    select(
        AlertEvent.alert, case((AlertEvent.id == _FIRST_ALERT_ID, AlertEvent.raw), else_=None).label("raw")
    )
    .where(AlertEvent.incident_id == bindparam("incident_id"))
    .order_by(AlertEvent.id)
    .limit(50)
)
_LATEST_RESULT = (
    select(StageResult.result)
    .where(StageResult.incident_id == bindparam("incident_id"), StageResult.stage == bindparam("stage"))
    .order_by(StageResult.attempt.desc(), StageResult.id.desc())
    .limit(1)
)


_INCIDENT_ROW = select(Incident.__table__).where(Incident.id == bindparam("id"))


def _load(conn: Connection, incident_id: str, expected: IncidentStatus) -> Any:
    """The incident as a row of its columns (Core: no ORM object to build), or None if
    it is gone or not in `expected` (a duplicate delivery, or someone else moved it)."""
    row = conn.execute(_INCIDENT_ROW, {"id": incident_id}).first()
    if row is None:
        log.info("incident gone", extra={"incident_id": incident_id})
        return None
    if row.status != expected.value:
        log.info(
            "stale delivery ignored",
            extra={"incident_id": incident_id, "expected": expected.value, "status": row.status},
        )
        return None
    return row


def _result_row(stage: str, attempt: int, out: StageOutput[Any]) -> dict[str, Any]:
    """A stage_results row (its incident_id added by `advance`)."""
    row: dict[str, Any] = {
        "stage": stage,
        "attempt": attempt,
        "result": out.result.model_dump(mode="json"),
        "analyst": out.analyst,
        "model": out.model,
        "input_tokens": out.input_tokens,
        "output_tokens": out.output_tokens,
        "cache_read_tokens": out.cache_read_tokens,
        "cache_creation_tokens": out.cache_creation_tokens,
        "latency_ms": out.latency_ms,
        "note": out.note,
        "created_at": utcnow(),
    }
    if out.extra:  # left out otherwise: SQL NULL, not a JSON null
        row["details"] = _json_safe(out.extra)
    return row


def _count_usage(stage: str, out: StageOutput[Any]) -> None:
    """The token usage of a committed stage result, in the metrics."""
    metrics.emit_committed(
        (
            "stage",
            stage,
            out.model,
            {
                "input": out.input_tokens or 0,
                "output": out.output_tokens or 0,
                "cache_read": out.cache_read_tokens or 0,
                "cache_creation": out.cache_creation_tokens or 0,
            },
        )
    )


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    import json

    return dict(json.loads(json.dumps(value, default=str)))


def _call_analyst(task: PipelineTask, method: str, *args: Any) -> Any:
    """Call `method` on the configured analyst. A transient provider error is retried
    by Celery with backoff; once the retries are spent the stage falls back to the
    offline analyst (recorded in the stage result's note) instead of stalling."""
    analyst = get_analyst()
    try:
        return getattr(analyst, method)(*args)
    except TransientAnalystError as exc:
        if task.request.retries < task.max_retries:
            task.retry_later(exc, exc.retry_after)
        if analyst.name == "offline":
            raise
        from iras.analysts.offline import OfflineAnalyst

        out = getattr(OfflineAnalyst(), method)(*args)
        out.note = f"fallback from {analyst.name}: still failing after {task.request.retries} retries: {exc}"[
            :500
        ]
        return out


def _guard_db(task: PipelineTask, fn: Any, *args: Any) -> Any:
    """Run a stage body; a database outage is transient: retry later."""
    try:
        return fn(*args)
    except OperationalError as exc:
        task.retry_later(exc)
    except IntegrityError:
        # A concurrent duplicate delivery wrote the same row first: nothing to do.
        log.info("duplicate result ignored", extra={"task": task.name, "args": args})
        return None


def enqueue_stage(incident_id: str, status: IncidentStatus) -> None:
    """Send the task that owns `status`. Called only after a commit; raises when the
    broker refuses (the callers log it and the sweeper re-sends).

    With a Redis broker the message is pushed ready-made (`iras.publish`): kombu's
    publish path was a quarter of an approval's web CPU."""
    task = STAGE_TASKS.get(status)
    if task is None:
        return
    publisher = configured_publisher()
    if publisher is None or not publisher.send(task.name, (incident_id,)):
        task.delay(incident_id)


_PAGER_NOTIFICATIONS = frozenset({"notify.page", "notify.resolve_page"})


def enqueue_notify(name: str, incident_id: str) -> None:
    """Send a notification task. Called only after a commit.

    A notifier that is not configured (no SLACK_BOT_TOKEN / PAGERDUTY_ROUTING_KEY) is
    the in-process mock, which reads nothing of the incident but its id: it is called
    right here instead. A notification task costs a publish, a delivery, an ack and a
    full incident document (six queries); four per incident were most of the
    notification cost in bench/pipeline.py while nothing was ever sent anywhere.
    """
    settings = get_settings()
    pager_kind = name in _PAGER_NOTIFICATIONS
    if pager_configured(settings) if pager_kind else chat_configured(settings):
        publisher = configured_publisher()
        if publisher is None or not publisher.send(name, [incident_id]):
            app.send_task(name, args=[incident_id])
        return
    try:
        doc = {"id": incident_id}
        if name == "notify.page":
            pager(settings).trigger(doc)
        elif name == "notify.resolve_page":
            pager(settings).resolve(incident_id)
        elif name == "notify.post_plan":
            chat_notifier(settings).post_plan(doc)
        elif name == "notify.post_decision":
            chat_notifier(settings).post_decision(doc, None)
        elif name == "notify.post_escalation":
            chat_notifier(settings).post_escalation(doc)
        elif name == "notify.post_postmortem":
            chat_notifier(settings).post_postmortem(doc, "")
        else:
            raise ValueError(f"unknown notification {name!r}")
    except Exception as exc:  # noqa: BLE001 - a notifier must never break the pipeline
        log.error("notification failed", extra={"task": name, "error": str(exc)})


# --------------------------------------------------------------------------- analysis
#
# The four analysis stages (triage -> context -> RCA -> plan, and back to
# context when the RCA is inconclusive) share one queue, so they run one after
# another in the same task: each stage still commits on its own (its result,
# the transition and the status are durable before the next stage starts), but
# the next stage starts right after that commit, without a broker round trip and
# without reading back what is already in memory (the alert facts, the evidence
# bundle, the root cause). Measured in bench/README.md: about a third of the
# CPU per incident was publishing, receiving and re-loading between stages.
#
# Every analysis task therefore resumes at the stage the incident is in: a
# message redelivered after a worker died mid-chain, or a retry after a
# transient model error, continues where the chain stopped. A delivery for an
# incident that left the analysis states (or is gone) is a no-op, as before.


@dataclass
class _Carry:
    """What one analysis stage hands to the next when they run in the same task."""

    facts: IncidentFacts
    rca_attempts: int
    severity: str | None
    bundle: ContextBundle | None = None
    rca: RootCauseHypothesis | None = None


def _start_analysis(incident_id: str) -> tuple[IncidentStatus, _Carry] | None:
    """Load what the incident's current analysis stage needs, or None if there is nothing to do."""
    with read_connection() as conn:
        incident = conn.execute(_INCIDENT_ROW, {"id": incident_id}).first()
        if incident is None:
            log.info("incident gone", extra={"incident_id": incident_id})
            return None
        status = IncidentStatus(incident.status)
        if status not in ANALYSIS_STATES:
            log.info("stale delivery ignored", extra={"incident_id": incident_id, "status": incident.status})
            return None
        # Nothing is triaged yet in `triaging` (the first delivery): no triage to read.
        facts = _facts(conn, incident, read_triage=status != S.TRIAGING)
        carry = _Carry(facts, incident.rca_attempts, incident.severity)
        if status in (S.ANALYZING, S.PLANNING):
            context = _latest_result(conn, incident_id, "context")
            if context is None:  # cannot happen through the table; be explicit if it does
                raise RuntimeError(f"incident {incident_id} reached analysis without evidence")
            carry.bundle = ContextBundle.model_validate(context)
        if status == S.PLANNING:
            rca = _latest_result(conn, incident_id, "rca")
            if rca is None:
                raise RuntimeError(f"incident {incident_id} reached planning without a root cause")
            carry.rca = RootCauseHypothesis.model_validate(rca)
    return status, carry


def _run_analysis(task: PipelineTask, incident_id: str) -> None:
    try:
        started = _start_analysis(incident_id)
    except OperationalError as exc:
        # The database is restarting: retry later. Failing here would have the
        # task's on_failure escalate a healthy incident as "stage failed".
        task.retry_later(exc)
    if started is None:
        return
    status, carry = started
    while status in _ANALYSIS_STAGES:
        begun = time.perf_counter()
        following = _ANALYSIS_STAGES[status](task, incident_id, carry)
        # Each analysis stage is timed here, the first one too: the task's own
        # run time (task_postrun, iras/metrics.py) spans every stage it ran inline.
        _observe_stage(_STAGE_NAMES[status], time.perf_counter() - begun)
        if following is None:  # someone else moved the incident: they carry on
            return
        status = following


def _observe_stage(stage: str, seconds: float, state: str = "SUCCESS") -> None:
    try:
        metrics.STAGE_DURATION.labels(stage, state).observe(seconds)
    except Exception:  # noqa: BLE001 - a metrics bug must never fail a stage
        log.warning("stage metric not recorded", exc_info=True)


@contextmanager
def _timed(stage: str) -> Iterator[None]:
    """Observe one stage run inline by a task that runs more than one stage."""
    begun = time.perf_counter()
    state = "FAILURE"
    try:
        yield
        state = "SUCCESS"
    except Retry:
        state = "RETRY"
        raise
    finally:
        _observe_stage(stage, time.perf_counter() - begun, state)


def _triage_stage(task: PipelineTask, incident_id: str, carry: _Carry) -> IncidentStatus | None:
    out = _call_analyst(task, "triage", carry.facts)

    def commit() -> IncidentStatus | None:
        if (
            advance(
                incident_id,
                S.TRIAGING,
                Event.TRIAGED,
                detail={"summary": f"{out.result.severity.value}: {out.result.blast_radius}"[:300]},
                values={"severity": out.result.severity.value},
                rows=(("stage_results", _result_row("triage", 1, out)),),
            )
            is None
        ):
            return None
        _count_usage("triage", out)
        return S.GATHERING_CONTEXT

    following = _guard_db(task, commit)
    if following is not None:
        carry.facts = carry.facts.model_copy(update={"triage": out.result})
        carry.severity = out.result.severity.value
    return following


def _context_stage(task: PipelineTask, incident_id: str, carry: _Carry) -> IncidentStatus | None:
    settings = get_settings()
    facts = carry.facts
    attempt = carry.rca_attempts + 1
    services = list(
        dict.fromkeys(
            (facts.triage.affected_services if facts.triage else [])
            + ([facts.service] if facts.service else [])
        )
    )
    alert_time = facts.alert.timestamp if facts.alert else utcnow()
    started = time.perf_counter()
    bundle = gather_context(settings, services, alert_time, attempt)
    out = StageOutput(
        result=bundle, analyst="context-tools", latency_ms=(time.perf_counter() - started) * 1000
    )
    unavailable = [s.name for s in bundle.sources if s.status == "unavailable"]
    unconfigured = [s.kind for s in bundle.sources if s.status == "not_configured"]

    def commit() -> IncidentStatus | None:
        if (
            advance(
                incident_id,
                S.GATHERING_CONTEXT,
                Event.CONTEXT_GATHERED,
                detail={
                    "summary": f"{len(bundle.logs)} log lines, {len(bundle.metrics)} metrics, "
                    f"{len(bundle.deployments)} deployments over {bundle.window_minutes} min"
                    + (f"; unavailable: {', '.join(unavailable)}" if unavailable else "")
                    + (f"; not configured: {', '.join(unconfigured)}" if unconfigured else ""),
                    "attempt": attempt,
                },
                rows=(("stage_results", _result_row("context", attempt, out)),),
            )
            is None
        ):
            return None
        _count_usage("context", out)
        return S.ANALYZING

    following = _guard_db(task, commit)
    if following is not None:
        carry.bundle = bundle
    return following


# The most a diagnosis without any evidence item may claim (iras.integrations.context.evidence_gap).
NO_EVIDENCE_CONFIDENCE = 0.3


def _rca_stage(task: PipelineTask, incident_id: str, carry: _Carry) -> IncidentStatus | None:
    settings = get_settings()
    attempt = carry.rca_attempts + 1
    assert carry.bundle is not None
    out = _call_analyst(task, "analyze", carry.facts, carry.bundle, attempt)
    rca: RootCauseHypothesis = out.result
    # Triage sees only the alert; an analyst that re-assesses severity from the
    # evidence (customer impact in the metrics) updates the incident's severity.
    # The typed RCA field first; an analyst's extra["severity"] (older analysts set only that) else.
    reassessed: dict[str, Any] = {}
    if rca.severity is not None:
        reassessed = {"severity": Severity(rca.severity).value}
    elif isinstance(out.extra.get("severity"), str) and out.extra["severity"] in Severity.__members__:
        reassessed = {"severity": out.extra["severity"]}
    # Enforced here, not trusted to the analyst: a diagnosis with no evidence at all is a
    # guess from the alert's words. It cannot pass the gate or change the severity, and
    # when no source is configured a wider window cannot help: escalate now with what
    # is known (the escalation hands over the suspects and says what is missing).
    gap = evidence_gap(carry.bundle)
    if gap is not None:
        rca = rca.model_copy(
            update={
                "confidence": min(rca.confidence, NO_EVIDENCE_CONFIDENCE),
                "reasoning": [*rca.reasoning, f"Capped at {NO_EVIDENCE_CONFIDENCE:.0%}: {gap}"],
                "severity": None,
                "severity_reason": None,
            }
        )
        out = replace(out, result=rca)
        reassessed = {}
    if rca.confidence >= settings.rca_confidence_threshold and gap is None:
        event, next_status, values = Event.RCA_CONFIDENT, S.PLANNING, {}
    elif gap is not None and nothing_configured(carry.bundle):
        event, next_status, values = Event.RCA_EXHAUSTED, S.ESCALATING, {"outcome": "escalated"}
    elif attempt < settings.rca_max_attempts:
        event, next_status, values = Event.RCA_INCONCLUSIVE, S.GATHERING_CONTEXT, {}
    else:
        event, next_status, values = Event.RCA_EXHAUSTED, S.ESCALATING, {"outcome": "escalated"}

    # The timeline says so when the evidence changes triage's severity: a reader
    # otherwise sees "Triage done: P2" above a P1 incident.
    severity_note = (
        f"; severity {carry.severity or 'unset'} -> {reassessed['severity']} from the evidence"
        + (f" ({rca.severity_reason})" if rca.severity_reason else "")
        if reassessed and reassessed["severity"] != carry.severity
        else ""
    )

    def commit() -> IncidentStatus | None:
        if (
            advance(
                incident_id,
                S.ANALYZING,
                event,
                detail={
                    "summary": f"{rca.category.value} in {rca.culprit_service} "
                    f"(confidence {rca.confidence:.2f}, attempt {attempt})"
                    + severity_note
                    + (f"; not trusted: {gap}" if gap else ""),
                    "attempt": attempt,
                },
                values={"rca_attempts": attempt, **values, **reassessed},
                rows=(("stage_results", _result_row("rca", attempt, out)),),
            )
            is None
        ):
            return None
        _count_usage("rca", out)
        if next_status not in ANALYSIS_STATES:
            post_commit(lambda: enqueue_stage(incident_id, next_status))
        return next_status

    following = _guard_db(task, commit)
    if following is not None:
        carry.rca, carry.rca_attempts = rca, attempt
        carry.severity = reassessed.get("severity", carry.severity)
    return following


def _plan_stage(task: PipelineTask, incident_id: str, carry: _Carry) -> IncidentStatus | None:
    settings = get_settings()
    assert carry.rca is not None and carry.bundle is not None
    out = _call_analyst(task, "plan", carry.facts, carry.rca, carry.bundle)
    # Rollbacks and scale steps name the revisions and replica counts Kubernetes
    # reported (or say they cannot); then the safety invariants, in code, whatever
    # the analyst said.
    pinned = pin_to_workloads(out.result, carry.bundle.workloads, carry.rca.culprit_deployment_sha)
    plan: RemediationPlan = enforce_invariants(pinned, settings.remediation_allowed_commands)
    out.result = plan
    now = utcnow()
    severity = carry.severity

    def commit() -> IncidentStatus | None:
        if not plan.steps:
            if (
                advance(
                    incident_id,
                    S.PLANNING,
                    Event.NO_ACTION_NEEDED,
                    detail={"summary": plan.summary[:300]},
                    values={"outcome": "no_action"},
                    rows=(("stage_results", _result_row("plan", 1, out)),),
                    now=now,
                )
                is None
            ):
                return None
            _count_usage("plan", out)
            post_commit(lambda: enqueue_stage(incident_id, S.CLOSING))
            return S.CLOSING
        deadline = now + timedelta(minutes=settings.approval_timeout_minutes(severity))
        if (
            advance(
                incident_id,
                S.PLANNING,
                Event.PLAN_READY,
                detail={
                    "summary": f"{len(plan.steps)} step(s), approval needed by {deadline:%H:%M} UTC"
                    + ("" if plan.reversible else "; plan is NOT fully reversible"),
                },
                values={"approval_deadline": deadline},
                plan=_result_row("plan", 1, out),
                now=now,
            )
            is None
        ):
            return None
        _count_usage("plan", out)
        post_commit(lambda: enqueue_notify("notify.post_plan", incident_id))
        return S.AWAITING_APPROVAL

    return _guard_db(task, commit)  # type: ignore[no-any-return]


_STAGE_NAMES = {S.TRIAGING: "triage", S.GATHERING_CONTEXT: "context", S.ANALYZING: "rca", S.PLANNING: "plan"}
_ANALYSIS_STAGES: dict[IncidentStatus, Any] = {
    S.TRIAGING: _triage_stage,
    S.GATHERING_CONTEXT: _context_stage,
    S.ANALYZING: _rca_stage,
    S.PLANNING: _plan_stage,
}


@_stage_task("incidents.run_triage")
def run_triage(self: PipelineTask, incident_id: str) -> None:
    _run_analysis(self, incident_id)


# How many incidents of one ingest commit share an `analyze_batch` message: enough to
# spread a task's delivery, acknowledgement and bookkeeping over several incidents,
# few enough that a burst still spreads over every worker thread and process.
ANALYSIS_BATCH = 8


class _MemberRetried(Exception):
    """A batch member hit a transient error and was re-sent as a task of its own."""


class _BatchMember:
    """The task as one incident of an `analyze_batch` sees it: a transient error
    (model overload, database restart) re-sends that incident alone, as `run_triage`
    (which resumes at whatever stage it is in) with the usual backoff, and the batch
    goes on with the next incident instead of retrying all of them."""

    def __init__(self, task: PipelineTask, incident_id: str) -> None:
        self.incident_id = incident_id
        self.name, self.request, self.max_retries = task.name, task.request, task.max_retries

    def retry_later(self, exc: Exception, retry_after: float | None = None) -> Any:
        countdown = max(retry_after or 0.0, 2 * random.uniform(0.5, 1.0))
        log.warning(
            "transient error in a batch; the incident is retried alone",
            extra={"incident_id": self.incident_id, "countdown": countdown, "error": str(exc)},
        )
        run_triage.apply_async((self.incident_id,), countdown=countdown)
        raise _MemberRetried


@app.task(name="incidents.analyze_batch", bind=True, base=PipelineTask)
def analyze_batch(self: PipelineTask, incident_ids: list[str]) -> None:
    """The analysis of several incidents opened by one ingest commit, one after the
    other in this task. Each incident is handled exactly as by `run_triage` (every
    stage its own compare-and-set commit; a redelivery resumes each at its stage and
    is a no-op for the finished ones); only the message is shared.

    Only when every stage answers locally (`_analyst_is_local`, `context_is_local`): a
    model-backed analyst or a real log/metric/deployment source waits on the network,
    so then each incident gets a task of its own and the waits overlap on the worker's
    threads."""
    if not (_analyst_is_local() and context_is_local(get_settings())):
        for incident_id in incident_ids:
            enqueue_stage(incident_id, S.TRIAGING)
        return
    for incident_id in incident_ids:
        with metrics.incident_log_context(incident_id):
            try:
                _run_analysis(_BatchMember(self, incident_id), incident_id)  # type: ignore[arg-type]
            except _MemberRetried:
                continue
            except Exception as exc:  # noqa: BLE001 - one incident's failure is not the batch's
                # What the task's on_failure does for a single incident: escalate it.
                log.exception("analysis failed in a batch", extra={"incident_id": incident_id})
                _mark_stage_failed(incident_id, self.name, exc)


@_stage_task("incidents.gather_context")
def gather_context_task(self: PipelineTask, incident_id: str) -> None:
    _run_analysis(self, incident_id)


@_stage_task("incidents.run_rca")
def run_rca(self: PipelineTask, incident_id: str) -> None:
    _run_analysis(self, incident_id)


@_stage_task("incidents.run_plan")
def run_plan(self: PipelineTask, incident_id: str) -> None:
    _run_analysis(self, incident_id)


# --------------------------------------------------------------------------- remediation


class _StepBusy(Exception):
    """Another delivery of the same task holds this step: leave it to that one."""


def _step_lease(settings: Any) -> float:
    """How long a `running` step may go unfinished before its worker is presumed dead."""
    return float(settings.remediation_step_timeout_seconds) + 15


def _rollback_completed(session: Session, incident: Any, plan: RemediationPlan, executor: Any) -> list[str]:
    """Roll back, in reverse order, every step that succeeded. Returns a log of what happened."""
    notes: list[str] = []
    runs = {
        (r.step_order, r.kind): r
        for r in session.scalars(
            select(StepRun).where(StepRun.incident_id == incident.id, StepRun.plan_id == incident.plan_id)
        )
    }
    for step in sorted(plan.steps, key=lambda s: s.order, reverse=True):
        applied = runs.get((step.order, "apply"))
        if applied is None or applied.status != "succeeded" or applied.rolled_back:
            continue
        done = runs.get((step.order, "rollback"))
        if done is not None:
            if done.status == "running":
                if done.started_at > utcnow() - timedelta(seconds=_step_lease(get_settings())):
                    raise _StepBusy  # another worker is rolling it back right now
                # Its worker died mid-rollback: the outcome is unknown and it is not re-run.
                done.status, done.finished_at = "unknown", utcnow()
                done.output_tail = "worker lost while the rollback ran; outcome unknown, not re-run"
                session.commit()
                notes.append(f"step {step.order} rollback outcome unknown (worker lost)")
            continue
        if not step.rollback_command:
            notes.append(f"step {step.order} has no rollback command: left as is")
            continue
        run = StepRun(
            incident_id=incident.id,
            plan_id=incident.plan_id,
            step_order=step.order,
            kind="rollback",
            command=step.rollback_command,
            status="running",
            started_at=utcnow(),
        )
        session.add(run)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise _StepBusy from None  # a concurrent delivery claimed this rollback first
        result = executor.run(step.rollback_command)
        run.status, run.exit_code, run.output_tail, run.finished_at = (
            result.status,
            result.exit_code,
            result.output,
            utcnow(),
        )
        if result.status == "succeeded":
            applied.rolled_back = True
        session.commit()
        notes.append(f"step {step.order} rollback {result.status}")
    return notes


# A step's outcome: the finished columns of its `running` row, stored with the
# next write (the next claim, the final transition) or alone.
_Outcome = dict[str, Any]


def _store_outcome_alone(finished: _Outcome) -> None:
    """Store a step's outcome in a transaction of its own (after a failed claim or
    commit). A database restart fails the first statement on each stale connection;
    the next connection works, and the outcome of a step that did run is kept
    (otherwise it would read as `running` until its lease expires)."""
    try:
        with session_scope() as session:
            store_step_outcome(session, finished)
    except OperationalError:
        log.error("step outcome not stored: database unavailable", extra={"step_run_id": finished["id"]})


def _claim_step(row: dict[str, Any], finished: _Outcome | None) -> int | None:
    """Insert a step row (`running`, or `manual` already finished) together with the
    previous step's outcome: one commit per step, and nothing runs unclaimed. Returns
    the row id, or None when a concurrent delivery wrote that step first (the
    previous outcome is then stored on its own, never lost)."""
    try:
        if get_engine().dialect.name == "postgresql":
            with autocommit_connection() as conn:
                return int(conn.execute(_claim_statement(tuple(row), finished is not None), {
                    **{f"_c_{k}": v for k, v in row.items()},
                    **({f"_s_{k}": v for k, v in finished.items()} | {"_s_running": "running"} if finished else {})
                }).scalar_one())  # fmt: skip
        with session_scope() as session:
            if finished is not None:
                store_step_outcome(session, finished)
            return int(session.execute(insert(StepRun).values(row).returning(StepRun.id)).scalar_one())
    except IntegrityError as exc:
        if finished is not None:
            _store_outcome_alone(finished)
        if not _is_unique_violation(exc):
            raise  # a bug (a NOT NULL column left out), not a concurrent claim
        return None


def _is_unique_violation(exc: IntegrityError) -> bool:
    code = getattr(exc.orig, "pgcode", None)
    return code == "23505" if code is not None else "UNIQUE constraint failed" in str(exc.orig)


_OUTCOME_COLUMNS = ("status", "exit_code", "output_tail", "finished_at")


@lru_cache(maxsize=8)
def _claim_statement(columns: tuple[str, ...], with_previous: bool) -> Any:
    """PostgreSQL: [WITH step_done AS (UPDATE step_runs SET <outcome> WHERE id AND status =
    'running')] INSERT INTO step_runs ... RETURNING id: one statement in autocommit."""
    table = StepRun.__table__
    # Every parameter is prefixed: an execution parameter named like a column would
    # also be taken as a SET value of the UPDATE in the CTE.
    stmt = insert(table).values({table.c[c]: bindparam(f"_c_{c}", type_=table.c[c].type) for c in columns})
    if with_previous:
        stmt = stmt.add_cte(step_outcome_cte(_OUTCOME_COLUMNS))
    return stmt.returning(table.c.id)


@app.task(name="incidents.execute_plan", bind=True, base=PipelineTask)
def execute_plan(self: PipelineTask, incident_id: str) -> None:
    """Apply the approved plan's steps in order; on failure roll back the completed
    ones in reverse. A step is recorded as `running` (committed) before its command
    starts, so a redelivery after a crash never runs it a second time. Once the
    remediation succeeded the post-mortem is written in this task when it is cheap
    (`_analyst_is_local`): on a first delivery committed together with the success
    (`_resolve_with_postmortem`), else after the closing commit; a redelivery or retry
    finding the incident in `closing` resumes there."""
    # One pooled connection for the remediation's statements (`held_connection`).
    with held_connection():
        with _timed("execute"):
            closing = _execute(self, incident_id)
        if closing:
            _close(self, incident_id)


def _execute(self: PipelineTask, incident_id: str) -> bool:
    """The remediation; True when the incident is in `closing` afterwards (its
    post-mortem is owed).

    Core statements in autocommit on PostgreSQL (`_claim_step`, `advance`): a step
    costs one statement, its claim carrying the previous step's outcome."""
    settings = get_settings()
    executor = get_executor(settings)
    # The last step's outcome, not stored yet: it goes out with the next claim, the
    # final transition, or on its own before a rollback or a retry.
    finished: _Outcome | None = None
    try:
        with read_connection() as conn:
            row = conn.execute(_EXECUTION_STATE, {"id": incident_id}).first()
            if row is None:
                log.info("incident gone", extra={"incident_id": incident_id})
                return False
            if row.status == S.CLOSING.value:
                return True  # redelivered or retried after the remediation closed
            if row.status != S.EXECUTING.value:
                log.info("stale delivery ignored", extra={"incident_id": incident_id, "status": row.status})
                return False
            if row.plan is None:
                raise RuntimeError(f"incident {incident_id} is executing without a plan")
            plan_id = row.plan_id
            plan = RemediationPlan.model_validate(row.plan)
            # A first delivery finds no step rows at all (the usual case): nothing to read.
            runs = (
                {
                    r.step_order: r
                    for r in conn.execute(_APPLIED_RUNS, {"id": incident_id, "plan_id": plan_id})
                }
                if row.has_runs
                else {}
            )
        # The step rows this delivery writes, as the post-mortem reads them (`_PM_RUNS`).
        written: list[SimpleNamespace] = []
        failure: str | None = None
        manual: list[int] = []
        for step in sorted(plan.steps, key=lambda s: s.order):
            run = runs.get(step.order)
            if run is not None:
                if run.status == "succeeded":
                    continue
                if run.status == "manual":
                    manual.append(step.order)
                    continue
                if run.status == "running":
                    lease = _step_lease(settings)
                    if run.started_at > utcnow() - timedelta(seconds=lease):
                        return False  # another worker is running this step right now
                    _store_outcome_alone({
                        "id": run.id, "status": "unknown", "finished_at": utcnow(),
                        "output_tail": "worker lost while the step ran; outcome unknown, not re-run",
                    })  # fmt: skip
                    metrics.emit_committed(("step", "apply", "unknown"))
                    failure = f"step {step.order} unknown"
                else:
                    failure = f"step {step.order} {run.status}"
                break
            claim = {
                "incident_id": incident_id, "plan_id": plan_id, "step_order": step.order, "kind": "apply",
                "command": step.command, "rolled_back": False,
            }  # fmt: skip
            if not step.executable:
                # A manual step (a change IRAS has no safe command for, or a command
                # the safety policy refused): never run, recorded for the human who
                # approved the plan, and the next steps go on.
                claim |= {"status": "manual", "started_at": utcnow(), "exit_code": None, "finished_at": utcnow(),
                          "output_tail": ("manual step, not run by IRAS: " + "; ".join(step.safety_notes))[:4000]}  # fmt: skip
                if _claim_step(claim, finished) is None:
                    return False  # a concurrent delivery recorded it first
                metrics.emit_committed(("step", "apply", "manual"))
                written.append(SimpleNamespace(**claim))
                finished = None
                manual.append(step.order)
                continue
            claim |= {"status": "running", "started_at": utcnow(), "exit_code": None, "finished_at": None,
                      "output_tail": None}  # fmt: skip
            run_id = _claim_step(claim, finished)
            if run_id is None:
                return False  # a concurrent delivery claimed this step first
            if finished is not None:
                metrics.emit_committed(("step", "apply", finished["status"]))
            result = executor.run(step.command)
            finished = {"id": run_id, "status": result.status, "exit_code": result.exit_code,
                        "output_tail": result.output, "finished_at": utcnow()}  # fmt: skip
            written.append(SimpleNamespace(**{**claim, **finished}))
            if result.status != "succeeded":
                failure = f"step {step.order} {result.status}: {result.output[-200:]}"
                break
        if failure is None:
            succeeded = {
                "summary": f"{len(plan.steps) - len(manual)} step(s) applied ({executor.name})"
                + (f"; manual step(s) {', '.join(map(str, manual))} left to a human" if manual else ""),
                "manual_steps": manual,
            }
            if not row.has_runs and _analyst_is_local():
                resolved = _resolve_with_postmortem(self, row, plan, written, finished, succeeded)
                if resolved is not None:
                    if finished is not None:
                        metrics.emit_committed(("step", "apply", finished["status"]))
                    if resolved:
                        metrics.observe_remediation("succeeded")
                    return False  # resolved: nothing is owed
            moved = advance(
                incident_id,
                S.EXECUTING,
                Event.REMEDIATION_SUCCEEDED,
                detail=succeeded,
                values={"outcome": "resolved"},
                step_outcome=finished,
            )
            if finished is not None:
                metrics.emit_committed(("step", "apply", finished["status"]))
            if moved is None:
                return False
            metrics.observe_remediation("succeeded")
            return True
        if finished is not None:
            _store_outcome_alone(finished)
            metrics.emit_committed(("step", "apply", finished["status"]))
            finished = None
        return _fail_remediation(incident_id, plan, failure, executor)
    except OperationalError as exc:
        if finished is not None:
            _store_outcome_alone(finished)
        self.retry_later(exc)
        return False  # not reached: retry_later raises


def _resolve_with_postmortem(
    task: PipelineTask,
    row: Any,
    plan: RemediationPlan,
    written: list[Any],
    finished: _Outcome | None,
    succeeded: dict[str, Any],
) -> bool | None:
    """The remediation succeeded on a first delivery and the analyst answers locally:
    its success and its post-mortem commit together, executing -> closing -> resolved as
    ONE statement on PostgreSQL (both audit rows, the post-mortem's rows, the last step's
    outcome). One commit, one update of the incident's row and one pass through the
    pool fewer than closing first and writing the post-mortem after.

    True when committed; False when the compare-and-set lost (a concurrent delivery
    moved the incident; the last step's outcome is stored anyway); None when the
    post-mortem could not be written: the caller then closes the remediation alone and
    the post-mortem follows as it does after an escalation (`_close`). A database error
    propagates: the caller stores the last step's outcome and retries."""
    now = utcnow()
    closing = SimpleNamespace(**{**row._mapping, "status": S.CLOSING.value, "outcome": "resolved"})
    # The remediation's own transition, committed with the post-mortem: in its timeline.
    pending = _PmTransition(now, Event.REMEDIATION_SUCCEEDED.value, "iras", succeeded)
    with read_connection() as conn:
        data = _postmortem_input(conn, closing, written, (pending,), plan=plan)
    try:
        with _timed("postmortem"):
            draft = _compose_postmortem(task, closing, data)
    except Exception:  # noqa: BLE001 - a transient analyst error too: the post-mortem retries on its own
        log.exception(
            "post-mortem not written with the remediation; it follows", extra={"incident_id": row.id}
        )
        return None
    moved = advance(
        row.id,
        S.EXECUTING,
        Event.REMEDIATION_SUCCEEDED,
        detail=succeeded,
        values={"outcome": "resolved"},
        step_outcome=finished,
        rows=draft.rows,
        then=(draft.event, _POSTMORTEM_WRITTEN),
        now=now,
    )
    if moved is None:
        return False
    _postmortem_committed(row.id, draft)
    return True


# The incident (every column: the post-mortem written after it uses them) and its
# approved plan, and the plan's applied steps: the remediation's reads, without ORM objects.
_EXECUTION_STATE = (
    select(
        Incident.__table__,
        StageResult.result.label("plan"),
        exists().where(StepRun.incident_id == Incident.id).label("has_runs"),
    )
    .outerjoin(StageResult, StageResult.id == Incident.plan_id)
    .where(Incident.id == bindparam("id"))
)
_APPLIED_RUNS = select(StepRun.id, StepRun.step_order, StepRun.status, StepRun.started_at).where(
    StepRun.incident_id == bindparam("id"), StepRun.plan_id == bindparam("plan_id"), StepRun.kind == "apply"
)


def _fail_remediation(incident_id: str, plan: RemediationPlan, failure: str, executor: Any) -> bool:
    """A step failed: roll back the completed ones in reverse and escalate. Rare, so
    through the ORM session as it was written first."""
    session = new_session()
    try:
        incident = _load(session.connection(), incident_id, S.EXECUTING)
        if incident is None:
            return False
        try:
            notes = _rollback_completed(session, incident, plan, executor)
        except _StepBusy:
            return False  # the sweeper re-sends this task; the holder finishes or its lease runs out
        if transition(
            session,
            incident_id,
            S.EXECUTING,
            Event.REMEDIATION_FAILED,
            detail={"summary": failure[:300], "rollback": notes},
            values={"outcome": "escalated"},
        ):
            after_commit(session, lambda: enqueue_stage(incident_id, S.ESCALATING))
            after_commit(session, lambda: metrics.observe_remediation("failed"))
        session.commit()
        return False
    finally:
        session.close()


@app.task(name="incidents.escalate", bind=True, base=PipelineTask)
def escalate(self: PipelineTask, incident_id: str) -> None:
    """Hand the incident to a human: page (idempotent per incident id) and post to
    chat as separate retried tasks, so a notifier outage never blocks the post-mortem.
    The post-mortem follows as after a remediation (`_close`)."""

    def commit() -> bool:
        with session_scope() as session:
            status = session.scalar(select(Incident.status).where(Incident.id == incident_id))
            if status == S.CLOSING.value:
                return True  # redelivered or retried after the escalation committed
            incident = _load(session.connection(), incident_id, S.ESCALATING)
            if incident is None:
                return False
            if not transition(
                session,
                incident_id,
                S.ESCALATING,
                Event.ESCALATED,
                detail={"summary": "paged on-call"},
                values={"outcome": incident.outcome or "escalated"},
            ):
                return False
            after_commit(session, lambda: enqueue_notify("notify.page", incident_id))
            after_commit(session, lambda: enqueue_notify("notify.post_escalation", incident_id))
        return True

    with _timed("escalate"):
        closing = _guard_db(self, commit)
    if closing:
        _close(self, incident_id)


@_stage_task("incidents.write_postmortem")
def write_postmortem(self: PipelineTask, incident_id: str) -> None:
    _write_postmortem(self, incident_id)


def _analyst_is_local() -> bool:
    """Whether the analyst answers locally (the offline rules, a test or benchmark
    analyst): then a stage costs a few milliseconds, less than publishing, delivering
    and acknowledging a task and loading the incident again. So the post-mortem is
    written in the task that closed the remediation or the escalation (ops queue)
    instead of a task of its own, and an `analyze_batch` runs its incidents in turn.
    A model-backed analyst (Claude) waits seconds on the model: that belongs on the
    analysis queue's threads, one incident per task, not on the few ops processes.
    """
    from iras import analysts

    if analysts._override is not None:  # a forced analyst (tests, benchmarks, eval)
        return analysts._override.name != "claude"
    return not get_settings().use_claude  # decided without constructing a client


def _close(task: PipelineTask, incident_id: str) -> None:
    """The incident entered `closing` (committed): write its post-mortem now or enqueue it."""
    if not _analyst_is_local():
        enqueue_stage(incident_id, S.CLOSING)
        return
    try:
        with _timed("postmortem"):
            _write_postmortem(task, incident_id)
    except Retry:
        raise  # a transient error: the task is retried and resumes at `closing`
    except Exception:  # noqa: BLE001 - the post-mortem task has retries of its own
        log.exception("inline post-mortem failed; enqueued", extra={"incident_id": incident_id})
        enqueue_stage(incident_id, S.CLOSING)


# The stage results the post-mortem reads: the cost columns of every row, and the
# result of every row but the evidence bundle (the largest document by far, which
# the post-mortem does not use: decoding it was most of the load's CPU).
_PM_RESULTS = (
    select(
        StageResult.id,
        StageResult.stage,
        StageResult.model,
        StageResult.input_tokens,
        StageResult.output_tokens,
        StageResult.cache_read_tokens,
        StageResult.cache_creation_tokens,
        type_coerce(
            case((StageResult.stage == "context", null()), else_=StageResult.result), StageResult.result.type
        ).label("result"),
    )
    .where(StageResult.incident_id == bindparam("incident_id"))
    .order_by(StageResult.id)
)


class _PmResult(NamedTuple):
    id: int
    stage: str
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    result: Any


class _PmTransition(NamedTuple):
    """A transition as the post-mortem's timeline reads it (`timeline_from`)."""

    at: Any
    event: str
    actor: str
    detail: Any


def _pm_read() -> Any:
    """The stage results (`_PM_RESULTS`), the transitions and the alerts (`_ALERTS`)
    as ONE statement (a UNION ALL of the three, told apart by `part`): one round trip
    where there were three, on a path every resolved incident takes. Columns: part,
    id, name, who, at, the four token counts, doc, raw."""
    # Typed NULLs: PostgreSQL types two untyped NULLs of a UNION as text.
    json_null = cast(null(), StageResult.result.type)
    none_at = cast(null(), Transition.at.type)
    no_tokens = [type_coerce(null(), StageResult.input_tokens.type)] * 4
    r = _PM_RESULTS.subquery()
    results = select(
        literal("r").label("part"), r.c.id, r.c.stage.label("name"), r.c.model.label("who"), none_at.label("at"),
        r.c.input_tokens, r.c.output_tokens, r.c.cache_read_tokens, r.c.cache_creation_tokens,
        r.c.result.label("doc"), json_null.label("raw"),
    )  # fmt: skip
    transitions = select(
        literal("t"), Transition.id, Transition.event, Transition.actor, Transition.at, *no_tokens,
        Transition.detail, json_null,
    ).where(Transition.incident_id == bindparam("incident_id"))  # fmt: skip
    a = _ALERTS.add_columns(AlertEvent.id.label("id")).subquery()
    alerts = select(literal("a"), a.c.id, null(), null(), none_at, *no_tokens, a.c.alert, a.c.raw)
    both = union_all(results, transitions, alerts).subquery()
    return select(*both.c).order_by(both.c.part, both.c.id)


_PM_READ = _pm_read()
_PM_RUNS = (
    select(
        StepRun.step_order,
        StepRun.kind,
        StepRun.command,
        StepRun.status,
        StepRun.output_tail,
        StepRun.rolled_back,
    )
    .where(StepRun.incident_id == bindparam("incident_id"))
    .order_by(StepRun.id)
)


def _write_postmortem(task: PipelineTask, incident_id: str) -> None:
    # A database restart while loading is transient: retry (the task is not escalated).
    try:
        with read_connection() as conn:
            incident = _load(conn, incident_id, S.CLOSING)
            if incident is None:
                return
            data = _postmortem_input(conn, incident, None)
    except OperationalError as exc:
        task.retry_later(exc)
    draft = _compose_postmortem(task, incident, data)

    def commit() -> None:
        if (
            advance(incident_id, S.CLOSING, draft.event, detail=_POSTMORTEM_WRITTEN, rows=draft.rows)
            is not None
        ):
            _postmortem_committed(incident_id, draft)

    _guard_db(task, commit)


_POSTMORTEM_WRITTEN = {"summary": "post-mortem written"}


def _postmortem_input(
    conn: Connection,
    incident: Any,
    runs: list[Any] | None,
    pending: tuple[Any, ...] = (),
    *,
    plan: RemediationPlan | None = None,
) -> PostMortemInput:
    """What the post-mortem is written from, every fact read from the database.
    `runs`: the incident's step rows when the caller has them (else read); `pending`:
    transitions (`_PmTransition`'s fields) that commit together with the
    post-mortem, so its timeline has them; `plan`: the incident's plan (`plan_id`'s
    document) when the caller validated it already."""
    incident_id = incident.id
    results: list[Any] = []
    transitions: list[Any] = []
    alert_rows: list[Any] = []
    # One statement for the three reads (`_PM_READ`), each part in id order.
    for part, id_, name, who, at, t1, t2, t3, t4, doc, raw in conn.execute(
        _PM_READ, {"incident_id": incident_id}
    ):
        if part == "r":
            results.append(_PmResult(id_, name, who, t1, t2, t3, t4, doc))
        elif part == "t":
            transitions.append(_PmTransition(at, name, who, doc))
        else:
            alert_rows.append((doc, raw))
    by_stage: dict[str, Any] = {}
    for r in results:
        by_stage[r.stage] = r  # ordered by id: the latest attempt wins
    triage = TriageResult.model_validate(by_stage["triage"].result) if "triage" in by_stage else None
    facts = _facts_from(incident, alert_rows, triage)
    transitions += pending
    if runs is None:
        runs = list(conn.execute(_PM_RUNS, {"incident_id": incident_id}))
    decided = next(
        (t.event for t in reversed(transitions) if t.event in (Event.APPROVED.value, Event.REJECTED.value)),
        None,
    )
    decision = (
        {
            # "approved" | "rejected": a rejected diagnosis is written up as rejected.
            "decision": decided,
            "by": incident.decided_by,
            "via": incident.decided_via,
            "reason": incident.decision_reason,
            "at": incident.decided_at.isoformat() if incident.decided_at else None,
        }
        if incident.decided_by
        else None
    )
    plan_row = next((r for r in results if r.id == incident.plan_id), None) or by_stage.get("plan")
    return PostMortemInput(
        facts=facts,
        outcome=incident.outcome or "resolved",
        triage=triage,
        rca=RootCauseHypothesis.model_validate(by_stage["rca"].result) if "rca" in by_stage else None,
        plan=plan or (RemediationPlan.model_validate(plan_row.result) if plan_row else None),
        step_runs=[
            StepRunView(
                order=r.step_order,
                command=f"{'rollback: ' if r.kind == 'rollback' else ''}{r.command}",
                status=r.status,
                output_tail=(r.output_tail or "")[-500:],
                rolled_back=r.rolled_back,
            )
            for r in runs
        ],
        timeline=timeline_from(transitions),
        decision=decision,
        cost=cost_summary(results),
    )


@dataclass(frozen=True)
class _PostMortemDraft:
    """A post-mortem ready to commit: the closing event and the rows it writes."""

    outcome: str
    event: Event
    rows: tuple[tuple[str, dict[str, Any]], ...]
    output: StageOutput[Any]


def _compose_postmortem(task: PipelineTask, incident: Any, data: PostMortemInput) -> _PostMortemDraft:
    """Ask the analyst for the post-mortem and fix what must be facts, not the model's
    version: the timeline, the cost, the outcome, the incident's severity (re-assessed
    from evidence, not triage's first guess), the manual steps a human must confirm."""
    out = _call_analyst(task, "postmortem", data)
    manual_items = [
        f"Confirm manual step {r.order} was carried out: {r.command}"
        for r in data.step_runs
        if r.status == "manual"
    ]
    pm = out.result.model_copy(
        update={
            "timeline": data.timeline,
            "cost": data.cost,
            "outcome": data.outcome,
            "severity": Severity(incident.severity) if incident.severity else out.result.severity,
            "action_items": [*manual_items, *out.result.action_items],
        }
    )
    # The Markdown is rendered from `data` when read (PostMortemRecord.markdown).
    record = {
        "outcome": data.outcome,
        "severity": pm.severity.value if pm.severity else None,
        "data": pm.model_dump(mode="json"),
        "analyst": out.analyst,
        "created_at": utcnow(),
    }
    return _PostMortemDraft(
        outcome=data.outcome,
        event=CLOSING_EVENT_FOR_OUTCOME.get(data.outcome, Event.CLOSED_RESOLVED),
        rows=(("stage_results", _result_row("postmortem", 1, out)), ("postmortems", record)),
        output=out,
    )


def _postmortem_committed(incident_id: str, draft: _PostMortemDraft) -> None:
    """What follows a committed post-mortem: usage and closing metrics, the chat post
    and, for a resolved incident, resolving its page."""
    _count_usage("postmortem", draft.output)
    metrics.emit_committed(("closed", draft.outcome))
    post_commit(lambda: enqueue_notify("notify.post_postmortem", incident_id))
    if draft.outcome in ("resolved", "auto_resolved", "no_action"):
        post_commit(lambda: enqueue_notify("notify.resolve_page", incident_id))


STAGE_TASKS: dict[IncidentStatus, Any] = {
    S.TRIAGING: run_triage,
    S.GATHERING_CONTEXT: gather_context_task,
    S.ANALYZING: run_rca,
    S.PLANNING: run_plan,
    S.EXECUTING: execute_plan,
    S.ESCALATING: escalate,
    S.CLOSING: write_postmortem,
}


# --------------------------------------------------------------------------- notifications


def _incident_doc(incident_id: str) -> dict[str, Any] | None:
    with new_session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return None
        doc = serialize_incident(session, incident)
        # The chat message of this incident, if one was posted: notify.post_plan checks it
        # (a redelivered task must not post the plan twice), post_decision updates it.
        doc["notify_ref"] = incident.notify_ref
        return doc


class NotifyTask(PipelineTask):
    abstract = True
    max_retries = 5


def _notify(task: PipelineTask, fn: Any) -> None:
    try:
        fn()
    except TransientNotifyError as exc:
        if task.request.retries >= task.max_retries:
            log.error("notification dropped after retries", extra={"task": task.name, "error": str(exc)})
            return
        task.retry_later(exc, exc.retry_after)
    except Exception as exc:  # noqa: BLE001 - a notifier must never break the pipeline
        log.error("notification failed", extra={"task": task.name, "error": str(exc)})


@app.task(name="notify.post_plan", bind=True, base=NotifyTask)
def notify_post_plan(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is None or doc["status"] != S.AWAITING_APPROVAL.value or doc.get("notify_ref"):
        return

    def send() -> None:
        ref = chat_notifier(get_settings()).post_plan(doc)
        if ref:
            with session_scope() as session:
                session.execute(update(Incident).where(Incident.id == incident_id).values(notify_ref=ref))

    _notify(self, send)


@app.task(name="notify.post_decision", bind=True, base=NotifyTask)
def notify_post_decision(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is None:
        return
    _notify(self, lambda: chat_notifier(get_settings()).post_decision(doc, doc["notify_ref"]))


@app.task(name="notify.post_escalation", bind=True, base=NotifyTask)
def notify_post_escalation(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is not None:
        _notify(self, lambda: chat_notifier(get_settings()).post_escalation(doc))


@app.task(name="notify.page", bind=True, base=NotifyTask)
def notify_page(self: PipelineTask, incident_id: str) -> None:
    doc = _incident_doc(incident_id)
    if doc is not None:
        _notify(self, lambda: pager(get_settings()).trigger(doc))


@app.task(name="notify.resolve_page", bind=True, base=NotifyTask)
def notify_resolve_page(self: PipelineTask, incident_id: str) -> None:
    _notify(self, lambda: pager(get_settings()).resolve(incident_id))


@app.task(name="notify.post_postmortem", bind=True, base=NotifyTask)
def notify_post_postmortem(self: PipelineTask, incident_id: str) -> None:
    with new_session() as session:
        pm = session.get(PostMortemRecord, incident_id)
        markdown = pm.markdown if pm else None
    doc = _incident_doc(incident_id)
    if doc is not None and markdown:
        _notify(self, lambda: chat_notifier(get_settings()).post_postmortem(doc, markdown))


# --------------------------------------------------------------------------- beat


@app.task(name="incidents.expire_approvals", bind=True, base=PipelineTask)
def expire_approvals(self: PipelineTask, limit: int = 500) -> int:
    """Escalate incidents whose approval deadline passed. Each one is its own
    compare-and-set, so an approver who clicks at the last second either wins
    cleanly or gets a 409."""
    now = utcnow()
    expired = 0
    with new_session() as session:
        ids = list(
            session.scalars(
                select(Incident.id)
                .where(Incident.status == S.AWAITING_APPROVAL.value, Incident.approval_deadline < now)
                .order_by(Incident.approval_deadline)
                .limit(limit)
            )
        )
    for incident_id in ids:
        with session_scope() as session:
            ready = metrics.plan_ready_at(session, incident_id)
            if transition(
                session,
                incident_id,
                S.AWAITING_APPROVAL,
                Event.APPROVAL_TIMED_OUT,
                actor="timeout",
                detail={"summary": "no decision before the approval deadline", "via": "timeout"},
                values={
                    "decided_by": "timeout",
                    "decided_via": "timeout",
                    "decided_at": now,
                    "decision_reason": "approval deadline passed",
                    "outcome": "escalated",
                },
                now=now,
            ):
                expired += 1
                iid = incident_id
                after_commit(session, lambda iid=iid: enqueue_stage(iid, S.ESCALATING))  # type: ignore[misc]
                after_commit(
                    session,
                    lambda r=ready: metrics.observe_approval_wait(  # type: ignore[misc]
                        "timeout", Event.APPROVAL_TIMED_OUT.value, r, now
                    ),
                )
    return expired


@app.task(name="incidents.sweep_stuck", bind=True, base=PipelineTask)
def sweep_stuck(self: PipelineTask, limit: int = 500) -> int:
    """Re-enqueue incidents that sat in a working state longer than
    STUCK_AFTER_SECONDS: a lost message or a broker outage must not lose an
    incident. Tasks are idempotent, so a spurious re-send is harmless; the
    touched `updated_at` keeps one incident from being re-sent every beat."""
    settings = get_settings()
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stuck_after_seconds)
    with session_scope() as session:
        rows = list(
            session.execute(
                select(Incident.id, Incident.status)
                .where(Incident.status.in_([s.value for s in WORKING]), Incident.updated_at < cutoff)
                .order_by(Incident.updated_at)
                .limit(limit)
            )
        )
        for incident_id, status in rows:
            session.execute(
                update(Incident)
                .where(Incident.id == incident_id, Incident.status == status)
                .values(updated_at=now)
            )
            after_commit(session, lambda i=incident_id, s=status: enqueue_stage(i, IncidentStatus(s)))  # type: ignore[misc]
    if rows:
        log.warning("re-enqueued stuck incidents", extra={"count": len(rows)})
    return len(rows)
